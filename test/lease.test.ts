import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Resources, sleep, uniquePrefix } from './helpers.js';

describe('lease-protected fills across processes', () => {
  const res = new Resources();
  after(() => res.close());

  it('200 concurrent reads of a cold key from 4 engines load it once', async () => {
    const prefix = uniquePrefix('lease');
    const engines = await Promise.all(
      [1, 2, 3, 4].map(() => res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } })),
    );
    let loads = 0;
    let leaseWaits = 0;
    let coalesced = 0;
    for (const e of engines) {
      e.events.on('lease-wait', (_k, _ms, got) => got && leaseWaits++);
      e.events.on('coalesced', () => coalesced++);
    }
    const loader = async () => {
      loads++;
      await sleep(40); // a query that takes a while
      return { id: 1, name: 'Ada' };
    };
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (engines[i % 4] as (typeof engines)[number]).getOrLoad('users:1', loader),
      ),
    );
    assert.equal(loads, 1, `loader ran ${loads} times`);
    for (const r of results) assert.deepEqual(r, { id: 1, name: 'Ada' });
    assert.equal(coalesced, 196, 'each engine sent one read to L2; the rest joined it');
    assert.equal(leaseWaits, 3, 'three engines found the lease and waited for its fill');
  });

  it('a reader whose lease holder is too slow loads by itself, without filling', async () => {
    const prefix = uniquePrefix('lease-slow');
    const a = await res.readyEngine(prefix, {
      lease: { ttlMs: 2_000, waitMs: 50 },
      cache: { earlyRefreshBeta: 0 },
    });
    const b = await res.readyEngine(prefix, {
      lease: { ttlMs: 2_000, waitMs: 50 },
      cache: { earlyRefreshBeta: 0 },
    });
    const raw = res.redis();
    const slow = a.getOrLoad('k', async () => {
      await sleep(300);
      return 'from-a';
    });
    await sleep(20);
    const started = Date.now();
    assert.equal(await b.getOrLoad('k', () => 'from-b'), 'from-b');
    assert.ok(Date.now() - started < 250, 'b waited about waitMs, not the whole load');
    const during = await raw.getBuffer(a.keys.entry('k'));
    assert.equal(during?.toString('latin1', 0, 1), 'L', "b did not take over a's lease");
    assert.equal(await slow, 'from-a');
    assert.equal(await b.getOrLoad('k', () => assert.fail('filled by a')), 'from-a');
  });

  it('a failing loader releases its lease, so the next reader loads at once', async () => {
    const prefix = uniquePrefix('lease-fail');
    const a = await res.readyEngine(prefix);
    const raw = res.redis();
    await assert.rejects(
      a.getOrLoad('k', () => {
        throw new Error('db down');
      }),
      /db down/,
    );
    await sleep(20);
    assert.equal(await raw.exists(a.keys.entry('k')), 0, 'lease released');
    assert.equal(await a.getOrLoad('k', () => 'ok'), 'ok');
  });
});
