/**
 * A commit the worker decodes before it is visible (docs/consistency.md, "fills fenced by
 * snapshots"). PostgreSQL writes and flushes a commit record before the transaction
 * leaves the ProcArray; logical decoding sends it from the flushed WAL, so the worker can
 * tombstone a key while new snapshots still see the row before the commit. With a
 * synchronous standby that never answers, a committing session stays in that state until
 * it is cancelled: the moment is held open, deterministically.
 *
 * Runs alone (scripts/test.sh runs test/serial after the parallel suite): for a moment,
 * every commit on the server that writes waits for the missing standby.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { InvalidationWorker } from '../../src/cdc/invalidation-worker.js';
import { pgConfig } from '../../src/config/database.js';
import { entityKey, resolveConfig } from '../../src/index.js';
import { formatLsn } from '../../src/protocol/lsn.js';
import { Resources, uniquePrefix, waitFor } from '../helpers.js';
import { DATABASE_URL, PgScope } from '../pg-helpers.js';

describe('a commit decoded before it is visible', () => {
  const res = new Resources();
  const scope = new PgScope('visible');
  const prefix = uniquePrefix('visible');
  let worker: InvalidationWorker | undefined;
  const admin = new pg.Client(pgConfig(DATABASE_URL));

  const syncStandby = async (name: string) => {
    await admin.query(`ALTER SYSTEM SET synchronous_standby_names = '${name}'`);
    await admin.query('SELECT pg_reload_conf()');
    await waitFor('setting in effect', async () => {
      const { rows } = await admin.query('SHOW synchronous_standby_names');
      return rows[0]?.synchronous_standby_names === name;
    });
  };

  before(async () => {
    await admin.connect();
    // This session never waits for a standby, whatever the server's setting.
    await admin.query('SET synchronous_commit = local');
    await scope.create(
      "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL); INSERT INTO items VALUES (1, 'v0');",
    );
    worker = new InvalidationWorker({
      config: resolveConfig({
        prefix,
        defaultSchema: scope.schema,
        entities: { items: { table: 'items', key: 'id' } },
      }),
      slot: scope.slot(),
    });
    await worker.start();
  });
  after(async () => {
    await syncStandby('').catch(() => {});
    await admin.end().catch(() => {});
    await worker?.close();
    await res.close();
    await scope.close();
  });

  it('a read between the decode and the visibility loads the old row and does not cache it', async () => {
    const reader = await res.readyEngine(prefix, {
      l1: { enabled: false },
      cache: { earlyRefreshBeta: 0, ttlMs: 600_000 },
    });
    const key = entityKey('items', [1]);
    const load = async () =>
      (await scope.q<{ v: string }>('SELECT v FROM $schema.items WHERE id = 1')).rows[0]?.v;
    const snapshot = async () =>
      (await scope.q<{ s: string }>('SELECT pg_current_snapshot()::text AS s')).rows[0]?.s;
    assert.equal(await reader.getOrLoad(key, load, { snapshot }), 'v0');

    const writer = new pg.Client(pgConfig(DATABASE_URL));
    await writer.connect();
    try {
      await syncStandby('walcache_test_standby_that_never_answers');
      const pid = (await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]
        ?.pid;
      // Flushed locally, then waits for the standby: not yet visible to anyone.
      const committing = writer
        .query(`UPDATE ${scope.schema}.items SET v = 'v1' WHERE id = 1`)
        .catch(() => {});
      const raw = res.redis();
      let stone = '';
      await waitFor('the worker tombstoned the key', async () => {
        stone = (await raw.get(reader.keys.entry(key))) ?? '';
        return stone.startsWith('T');
      });
      assert.equal(await load(), 'v0', 'the commit is decoded, and new snapshots do not see it');
      const flushed = (
        await scope.q<{ ahead: boolean }>(
          'SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ahead',
          [formatLsn(BigInt(`0x${stone.slice(1, 17)}`))],
        )
      ).rows[0]?.ahead;
      assert.equal(flushed, true, 'so a fence on WAL positions alone would trust this load');

      // The read in that moment: a miss (the tombstone), a load of the old row.
      let rejected = '';
      reader.events.on('fill-rejected', (_k, reason) => {
        rejected = reason;
      });
      assert.equal(await reader.getOrLoad(key, load, { snapshot }), 'v0');

      // The standby wait is cancelled: the transaction completes and becomes visible.
      await admin.query('SELECT pg_cancel_backend($1)', [pid]);
      await committing;
      await syncStandby('');
      assert.equal(await load(), 'v1');
      assert.equal(
        await reader.getOrLoad(key, load, { snapshot }),
        'v1',
        'the row before the commit was not cached',
      );
      assert.equal(rejected, 'not-proven', 'its fill was refused: the snapshot did not show it');
    } finally {
      await syncStandby('').catch(() => {});
      await writer.end().catch(() => {});
    }
  });
});
