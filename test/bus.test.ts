import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import { publishOn } from '../src/cache/bus-connection.js';
import { ON_CLUSTER, Resources, readyMasters, uniquePrefix, waitFor } from './helpers.js';

/** Kills the bus's subscribed connection, on whichever master it is. */
async function killBusConnection(raw: Redis | Cluster, prefix: string): Promise<number> {
  let killed = 0;
  for (const node of await readyMasters(raw)) {
    const list = (await node.client('LIST')) as string;
    const ids = list
      .split('\n')
      .filter((line) => line.includes(`name=walcache:${prefix}:bus `))
      .map((line) => /id=(\d+)/.exec(line)?.[1])
      .filter((id): id is string => id !== undefined);
    for (const id of ids) await node.client('KILL', 'ID', id);
    killed += ids.length;
  }
  return killed;
}

describe('L1 coherence bus', () => {
  const res = new Resources();
  after(() => res.close());

  it("a peer's invalidation drops the local L1 entry", async () => {
    const prefix = uniquePrefix('bus-peer');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    await a.getOrLoad('k1', () => 1);
    await a.getOrLoad('k2', () => 2);
    await a.delete('k1');
    await b.getOrLoad('k2', () => assert.fail());
    assert.equal(b.peek('k2'), 2);
    await a.delete('k2');
    await waitFor('b drops k2', () => b.peek('k2') === undefined);
  });

  it('a forced disconnect clears L1 and bypasses it until the bus is back', async () => {
    const prefix = uniquePrefix('bus-kill');
    const a = await res.readyEngine(prefix);
    const raw = res.redis();
    await a.getOrLoad('k', () => 'v');
    assert.equal(a.peek('k'), 'v');
    const resets: string[] = [];
    a.events.on('l1-reset', (r) => resets.push(r));
    assert.equal(await killBusConnection(raw, prefix), 1);
    await waitFor('bus down', () => !a.busHealthy);
    assert.equal(a.l1Active, false);
    assert.equal(a.peek('k'), undefined, 'L1 is bypassed while the bus is down');
    assert.equal(a.l1Stats.entries, 0, 'and was cleared');
    // Reads still work (from L2) meanwhile.
    assert.equal(await a.getOrLoad('k', () => assert.fail('L2 hit')), 'v');
    await waitFor('bus back', () => a.busHealthy, 5_000);
    assert.deepEqual(resets, ['down', 'up']);
    await a.getOrLoad('k', () => assert.fail('L2 hit'));
    assert.equal(a.peek('k'), 'v', 'L1 is used again');
  });

  it('a sequence gap from a publisher clears L1', async () => {
    const prefix = uniquePrefix('bus-gap');
    const a = await res.readyEngine(prefix);
    const raw = res.redis();
    const channel = a.keys.busChannel(ON_CLUSTER);
    await a.getOrLoad('k', () => 'v');
    const resets: string[] = [];
    a.events.on('l1-reset', (r) => resets.push(r));
    let applied = 0;
    a.events.on('bus-invalidate', () => applied++);
    await publishOn(
      raw,
      channel,
      JSON.stringify({ src: 'w1', kind: 'worker', seq: 1, keys: ['other'], tags: [] }),
    );
    await publishOn(
      raw,
      channel,
      JSON.stringify({ src: 'w1', kind: 'worker', seq: 2, keys: ['other'], tags: [] }),
    );
    await waitFor('two messages applied', () => applied === 2);
    assert.equal(resets.length, 0, 'consecutive sequence numbers are not a gap');
    assert.equal(a.peek('k'), 'v');
    await publishOn(
      raw,
      channel,
      JSON.stringify({ src: 'w1', kind: 'worker', seq: 4, keys: ['other'], tags: [] }),
    );
    await waitFor('gap reset', () => resets.includes('gap'));
    assert.equal(a.peek('k'), undefined);
  });

  it('a new worker run id clears L1; an unreadable message counts as a gap', async () => {
    const prefix = uniquePrefix('bus-worker');
    const a = await res.readyEngine(prefix);
    const raw = res.redis();
    const channel = a.keys.busChannel(ON_CLUSTER);
    const resets: string[] = [];
    a.events.on('l1-reset', (r) => resets.push(r));
    await publishOn(
      raw,
      channel,
      JSON.stringify({ src: 'run-1', kind: 'worker', seq: 1, keys: [], tags: [] }),
    );
    await a.getOrLoad('k', () => 'v');
    await publishOn(
      raw,
      channel,
      JSON.stringify({ src: 'run-2', kind: 'worker', seq: 1, keys: [], tags: [] }),
    );
    await waitFor('worker restart reset', () => resets.includes('worker-restart'));
    assert.equal(a.peek('k'), undefined);
    await a.getOrLoad('k', () => 'v');
    await publishOn(raw, channel, 'not json');
    await waitFor('gap reset', () => resets.includes('gap'));
    assert.equal(a.peek('k'), undefined);
  });
});
