/**
 * docs/design.md, Contract 1, forced deterministically: a reader misses and loads the old
 * row; the write commits and its invalidation lands while the loader is held; then
 * the loader returns the old row. The stale value must end up in neither tier.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { publishOn } from '../src/cache/bus-connection.js';
import { deferred, ON_CLUSTER, Resources, uniquePrefix, waitFor } from './helpers.js';

describe('contract 1: no stale fill survives', () => {
  const res = new Resources();
  after(() => res.close());

  it('a key invalidated during the load is not filled (L2 and L1)', async () => {
    const prefix = uniquePrefix('race-key');
    const reader = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const invalidator = await res.readyEngine(prefix);
    const raw = res.redis();
    const db = { value: 'old' };
    const loaded = deferred();
    const release = deferred();

    const read = reader.getOrLoad('users:1', async () => {
      const row = db.value; // the reader's SELECT sees the old row
      loaded.resolve();
      await release.promise;
      return row;
    });
    await loaded.promise;
    db.value = 'new'; // the write commits...
    await invalidator.delete('users:1'); // ...and its invalidation lands
    release.resolve();

    assert.equal(await read, 'old', 'the reader itself may answer with what it read');
    const stored = await raw.getBuffer(reader.keys.entry('users:1'));
    assert.equal(stored?.toString('latin1', 0, 1), 'T', 'L2 holds the tombstone, not the old row');
    assert.equal(reader.peek('users:1'), undefined, 'L1 did not keep the old row');
    let loads = 0;
    const again = await reader.getOrLoad('users:1', () => {
      loads++;
      return db.value;
    });
    assert.equal(again, 'new');
    assert.equal(loads, 1, 'the next read loads the new row');
  });

  it('a tag bumped during the load makes the fill read as a miss', async () => {
    const prefix = uniquePrefix('race-tag');
    const reader = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const other = await res.readyEngine(prefix);
    const db = { rows: ['a'] };
    const loaded = deferred();
    const release = deferred();

    const read = reader.getOrLoad(
      'orders:user:7',
      async () => {
        const rows = [...db.rows];
        loaded.resolve();
        await release.promise;
        return rows;
      },
      { tags: ['orders:user_id=7'] },
    );
    await loaded.promise;
    db.rows.push('b');
    await other.invalidateTags(['orders:user_id=7']);
    release.resolve();
    assert.deepEqual(await read, ['a']);

    assert.equal(reader.peek('orders:user:7'), undefined, 'L1 dropped the fill');
    const fromOther = await other.getOrLoad('orders:user:7', () => [...db.rows], {
      tags: ['orders:user_id=7'],
    });
    assert.deepEqual(
      fromOther,
      ['a', 'b'],
      'L2 entry filled under the old tag version reads as a miss',
    );
  });

  it('an invalidation that reaches L1 during a fill keeps the fill out of L1 (generations)', async () => {
    // Only the bus message arrives (no tombstone), so the L2 fill succeeds: what keeps
    // the value out of L1 is the generation snapshot taken before the load.
    const prefix = uniquePrefix('race-l1');
    const reader = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const raw = res.redis();
    const resets: string[] = [];
    reader.events.on('l1-reset', (reason) => resets.push(reason));
    let applied = 0;
    reader.events.on('bus-invalidate', () => applied++);
    const loaded = deferred();
    const release = deferred();
    const read = reader.getOrLoad('k', async () => {
      loaded.resolve();
      await release.promise;
      return 'v1';
    });
    await loaded.promise;
    await publishOn(
      raw,
      reader.keys.busChannel(ON_CLUSTER),
      JSON.stringify({ src: 'w1', kind: 'worker', seq: 1, keys: ['k'], tags: [] }),
    );
    await waitFor('bus message applied', () => applied === 1);
    release.resolve();
    assert.equal(await read, 'v1');
    const stored = await raw.getBuffer(reader.keys.entry('k'));
    assert.equal(
      stored?.toString('latin1', 0, 1),
      'D',
      'the L2 fill went through (its lease was intact)',
    );
    assert.equal(
      reader.peek('k'),
      undefined,
      'L1 refused the fill that began before the invalidation',
    );
    assert.equal(resets.length, 0, 'no reset was involved: the generation did it');
    // A read now comes from L2 and is kept in L1.
    assert.equal(await reader.getOrLoad('k', () => assert.fail('must not load')), 'v1');
    assert.equal(reader.peek('k'), 'v1');
  });

  it('control: naive cache-aside in the same interleaving stores the stale row', async () => {
    // Shows the scenario above really is the race: without the lease, the old row stays.
    const prefix = uniquePrefix('race-naive');
    const raw = res.redis();
    const naiveKey = `${prefix}:naive:users:1`;
    const db = { value: 'old' };
    const loaded = deferred();
    const release = deferred();
    const naiveRead = (async () => {
      const hit = await raw.get(naiveKey);
      if (hit !== null) return hit;
      const row = db.value;
      loaded.resolve();
      await release.promise;
      await raw.set(naiveKey, row, 'PX', 60_000);
      return row;
    })();
    await loaded.promise;
    db.value = 'new';
    await raw.del(naiveKey);
    release.resolve();
    await naiveRead;
    assert.equal(await raw.get(naiveKey), 'old', 'naive cache-aside keeps the stale row');
    await raw.del(naiveKey);
  });
});
