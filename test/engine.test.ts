import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { masters } from '../src/cache/redis-client.js';
import { Resources, sleep, uniquePrefix, waitFor } from './helpers.js';

describe('engine: reads through both tiers', () => {
  const res = new Resources();
  after(() => res.close());

  it('miss fills L2 and L1; another process reads L2; then L1 answers synchronously', async () => {
    const prefix = uniquePrefix('tiers');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    const events: string[] = [];
    b.events.on('hit', (tier) => events.push(`hit:${tier}`));
    b.events.on('miss', () => events.push('miss'));
    const row = {
      id: 7,
      at: new Date(1_700_000_000_000),
      big: 2n ** 70n,
      bytes: Buffer.from([1, 2, 3]),
      m: new Map([[1, 'x']]),
      s: new Set(['a']),
    };
    assert.deepEqual(await a.getOrLoad('users:7', () => row), row);
    assert.deepEqual(a.peek('users:7'), row, 'the filler keeps it in L1');
    const fromB = await b.getOrLoad('users:7', () => assert.fail('must come from L2'));
    assert.deepEqual(fromB, row, 'Date, BigInt, Buffer, Map and Set round-trip through Redis');
    assert.ok(Buffer.isBuffer((fromB as typeof row).bytes));
    assert.deepEqual(b.peek('users:7'), row);
    assert.deepEqual(events, ['hit:l2', 'hit:l1']);
  });

  it('get and getMany read without loading; unknown keys are undefined', async () => {
    const prefix = uniquePrefix('get');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix, { l1: { enabled: false } });
    await a.getOrLoad('a', () => 1);
    await a.getOrLoad('b', () => 2);
    assert.deepEqual(await b.getMany(['a', 'nope', 'b']), [1, undefined, 2]);
    assert.equal(await b.get('nope'), undefined);
  });

  it('TTL expires entries; jitter spreads expiries within the configured fraction', async () => {
    const prefix = uniquePrefix('ttl');
    const a = await res.readyEngine(prefix, {
      cache: { ttlMs: 10_000, jitter: 0.2, earlyRefreshBeta: 0 },
    });
    const raw = res.redis();
    const ttls: number[] = [];
    for (let i = 0; i < 40; i++) {
      await a.getOrLoad(`k${i}`, () => i);
      ttls.push(await raw.pttl(a.keys.entry(`k${i}`)));
    }
    for (const t of ttls) assert.ok(t >= 7_900 && t <= 12_000, `pttl ${t}`);
    assert.ok(new Set(ttls.map((t) => Math.round(t / 100))).size > 5, 'expiries are spread');

    const short = await res.readyEngine(uniquePrefix('ttl-short'), {
      cache: { ttlMs: 40, jitter: 0, earlyRefreshBeta: 0 },
    });
    let loads = 0;
    await short.getOrLoad('x', () => ++loads);
    await sleep(80);
    assert.equal(await short.getOrLoad('x', () => ++loads), 2, 'reloaded after expiry');
  });

  it('delete tombstones the key and drops it from every L1', async () => {
    const prefix = uniquePrefix('delete');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    await a.getOrLoad('k', () => 'v1');
    await b.getOrLoad('k', () => assert.fail('L2 hit'));
    assert.equal(b.peek('k'), 'v1');
    await a.delete('k');
    assert.equal(a.peek('k'), undefined);
    await waitFor('b drops k', () => b.peek('k') === undefined);
    assert.equal(await b.getOrLoad('k', () => 'v2'), 'v2');
  });

  it('invalidateTags makes tagged entries miss everywhere; untagged and other tags stay', async () => {
    const prefix = uniquePrefix('tags');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    await a.getOrLoad('orders:u7', () => 'u7-v1', { tags: ['orders:user_id=7', 'orders'] });
    await a.getOrLoad('orders:u8', () => 'u8-v1', { tags: ['orders:user_id=8', 'orders'] });
    await b.getOrLoad('orders:u7', () => assert.fail('L2 hit'), {
      tags: ['orders:user_id=7', 'orders'],
    });
    await a.invalidateTags(['orders:user_id=7']);
    await waitFor('b drops the tagged L1 entry', () => b.peek('orders:u7') === undefined);
    assert.equal(
      await b.getOrLoad('orders:u7', () => 'u7-v2', { tags: ['orders:user_id=7', 'orders'] }),
      'u7-v2',
    );
    assert.equal(
      await b.getOrLoad('orders:u8', () => assert.fail('u8 still cached'), {
        tags: ['orders:user_id=8', 'orders'],
      }),
      'u8-v1',
    );
    // `get` without naming the tags still checks them (from the entry itself).
    await a.invalidateTags(['orders']);
    const c = await res.readyEngine(prefix, { l1: { enabled: false } });
    assert.equal(await c.get('orders:u8'), undefined);
  });

  it('an evicted tag version invalidates instead of reviving older entries', async () => {
    const prefix = uniquePrefix('tag-evict');
    const a = await res.readyEngine(prefix, { l1: { enabled: false } });
    const raw = res.redis();
    await a.getOrLoad('k', () => 'v1', { tags: ['t'] });
    await raw.del(a.keys.tagVersion('t')); // what an LRU eviction would do
    assert.equal(await a.getOrLoad('k', () => 'v2', { tags: ['t'] }), 'v2');
  });

  it('bumpEpoch turns every older entry into a miss and clears every L1', async () => {
    const prefix = uniquePrefix('epoch');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    await a.getOrLoad('x', () => 'x1');
    await b.getOrLoad('x', () => assert.fail('L2 hit'));
    const resets: string[] = [];
    b.events.on('l1-reset', (r) => resets.push(r));
    await a.bumpEpoch();
    await waitFor('b clears L1 on the epoch', () => b.peek('x') === undefined);
    assert.deepEqual(resets, ['epoch']);
    assert.equal(await b.getOrLoad('x', () => 'x2'), 'x2');
  });

  it('negative caching is opt-in', async () => {
    const prefix = uniquePrefix('negative');
    const off = await res.readyEngine(prefix);
    let loads = 0;
    await off.getOrLoad('missing', () => void loads++);
    await off.getOrLoad('missing', () => void loads++);
    assert.equal(loads, 2, 'undefined is not cached by default');
    const on = await res.readyEngine(uniquePrefix('negative-on'), {
      cache: { negativeTtlMs: 5_000 },
    });
    const other = await res.readyEngine(on.config.prefix, { cache: { negativeTtlMs: 5_000 } });
    assert.equal(await on.getOrLoad('missing', () => void loads++), undefined);
    assert.equal(
      await other.getOrLoad('missing', () => assert.fail('negative entry in L2')),
      undefined,
    );
    assert.equal(loads, 3);
  });

  it('stale-while-revalidate serves the stale value at once and refreshes once in the background', async () => {
    const prefix = uniquePrefix('swr');
    const a = await res.readyEngine(prefix, {
      cache: { ttlMs: 400, jitter: 0, staleWhileRevalidateMs: 10_000, earlyRefreshBeta: 0 },
    });
    const b = await res.readyEngine(prefix, {
      cache: { ttlMs: 400, jitter: 0, staleWhileRevalidateMs: 10_000, earlyRefreshBeta: 0 },
      l1: { enabled: false },
    });
    let version = 1;
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(30);
      return `v${version}`;
    };
    await a.getOrLoad('k', loader);
    version = 2;
    await sleep(450); // past the 400 ms TTL: stale, inside the grace
    const stale: string[] = [];
    b.events.on('stale-served', () => stale.push('b'));
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => b.getOrLoad('k', loader)));
    assert.deepEqual(answers, ['v1', 'v1', 'v1', 'v1', 'v1'], 'stale served without waiting');
    assert.ok(stale.length >= 1);
    await waitFor('refreshed', async () => (await b.get('k')) === 'v2');
    assert.equal(loads, 2, 'exactly one refresh ran');
    // a's own L1 copy is inside its grace period too: served stale once, refreshed from L2.
    assert.equal(await a.getOrLoad('k', loader), 'v1');
    await waitFor('a refreshed from L2', () => a.peek('k') === 'v2');
    assert.equal(loads, 2, "a's refresh found b's value in L2 and did not load");
  });

  it('early refresh (XFetch) refreshes a hot key before it expires; beta 0 never does', async () => {
    const prefix = uniquePrefix('xfetch');
    const eager = await res.readyEngine(prefix, {
      cache: { ttlMs: 400, jitter: 0, earlyRefreshBeta: 10 },
    });
    let early = 0;
    eager.events.on('refresh', (_k, reason) => reason === 'early' && early++);
    const loader = async () => {
      await sleep(30);
      return 'v';
    };
    await eager.getOrLoad('hot', loader);
    for (let i = 0; i < 20 && early === 0; i++) {
      await eager.getOrLoad('hot', loader);
      await sleep(5);
    }
    assert.ok(early >= 1, 'an early refresh started');

    const never = await res.readyEngine(uniquePrefix('xfetch-off'), {
      cache: { ttlMs: 400, jitter: 0, earlyRefreshBeta: 0 },
    });
    let refreshes = 0;
    never.events.on('refresh', () => refreshes++);
    await never.getOrLoad('hot', loader);
    for (let i = 0; i < 20; i++) await never.getOrLoad('hot', loader);
    assert.equal(refreshes, 0);
  });

  it('forceFresh reloads and replaces the cached value', async () => {
    const prefix = uniquePrefix('force');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    await a.getOrLoad('k', () => 'v1');
    assert.equal(await a.getOrLoad('k', () => 'v2', { forceFresh: true }), 'v2');
    assert.equal(await b.getOrLoad('k', () => assert.fail('L2 holds v2')), 'v2');
  });

  it("set writes both tiers and drops other processes' L1 copies", async () => {
    const prefix = uniquePrefix('set');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    await b.getOrLoad('k', () => 'old');
    await a.set('k', 'new');
    assert.equal(a.peek('k'), 'new');
    await waitFor('b drops k', () => b.peek('k') === undefined);
    assert.equal(await b.get('k'), 'new');
  });

  it('large values are compressed in L2 and round-trip', async () => {
    const prefix = uniquePrefix('compress');
    const a = await res.readyEngine(prefix, { cache: { compressThresholdBytes: 1024 } });
    const b = await res.readyEngine(prefix, { l1: { enabled: false } });
    const raw = res.redis();
    const value = {
      rows: Array.from({ length: 500 }, (_, i) => ({
        id: i,
        name: `user number ${i}`,
        email: `u${i}@example.com`,
      })),
    };
    await a.getOrLoad('big', () => value);
    const stored = await raw.getBuffer(a.keys.entry('big'));
    assert.ok(stored && stored.length < 10_000, `stored ${stored?.length} bytes`);
    assert.deepEqual(await b.get('big'), value);
  });

  it('maxStalenessMs bypasses the cache while the worker is silent or behind, and uses it when current', async () => {
    const prefix = uniquePrefix('staleness');
    const a = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const raw = res.redis();
    await a.getOrLoad('k', () => 'cached');
    const bypassed: number[] = [];
    a.events.on('bypass', (_k, lag) => bypassed.push(lag));
    // No heartbeat at all: the worker never ran, nothing bounds staleness.
    assert.equal(await a.getOrLoad('k', () => 'db', { maxStalenessMs: 5_000 }), 'db');
    assert.equal(bypassed.length, 1);
    assert.equal(bypassed[0], Number.POSITIVE_INFINITY);
    // A worker a minute behind.
    const beat = (commitTime: number) =>
      JSON.stringify({ lsn: '0/1', commitTime, appliedAt: Date.now(), runId: 'w' });
    await raw.set(a.keys.heartbeat(), beat(Date.now() - 60_000));
    await sleep(300);
    assert.equal(await a.getOrLoad('k', () => 'db', { maxStalenessMs: 5_000 }), 'db');
    assert.ok((bypassed[1] ?? 0) >= 60_000);
    // Caught up: the cached value is served.
    await raw.set(a.keys.heartbeat(), beat(Date.now()));
    await sleep(300);
    assert.equal(await a.getOrLoad('k', () => 'db', { maxStalenessMs: 5_000 }), 'cached');
    assert.equal(bypassed.length, 2);
    assert.equal(await a.get('k'), 'cached', 'bypassed reads left the cache alone');
  });

  it('ready() resolves once every master is connected, not only the one that named the slots', async () => {
    // A cluster client is ready once it knows the slot table, and opens a master's
    // connection at the first command to it: a burst of reads would wait for that connect
    // within their command timeout. ready() connects every master first.
    const engine = await res.readyEngine(uniquePrefix('ready-masters'));
    const nodes = masters(engine.redis);
    assert.ok(nodes.length > 0);
    for (const node of nodes)
      assert.equal(node.status, 'ready', `${node.options.host}:${node.options.port}`);
  });

  it('close is idempotent and later calls fail with ClosedError', async () => {
    const a = res.engine(uniquePrefix('close'));
    const first = a.close();
    assert.equal(a.close(), first);
    await first;
    await assert.rejects(
      a.getOrLoad('k', () => 1),
      { code: 'E_CLOSED' },
    );
  });
});
