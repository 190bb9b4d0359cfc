/**
 * The fill fence end to end: the worker's tombstones carry the xids of the commits it
 * decoded, and a row a service loaded after a commit (its snapshot shows it) survives
 * that commit's tombstone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { createRepository, defineConfig, resolveConfig, tableTag } from '../src/index.js';
import { REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

describe('fill fence with the invalidation worker', () => {
  const res = new Resources();
  const scope = new PgScope('fencew');
  const prefix = res.track(uniquePrefix('fencew'));
  const { db, queries } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    entities: { users: { table: 'users', key: 'id', unique: ['email'] } },
  });
  const repo = createRepository({ db, config });
  const other = createRepository({ db, config });
  let worker: InvalidationWorker | undefined;
  const startWorker = async () => {
    worker = new InvalidationWorker({ config: resolveConfig(config), slot: scope.slot() });
    await worker.start();
  };

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(
      `INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 5) g`,
    );
    await startWorker();
    await repo.ready();
    await other.ready();
    // Redis too: a read before the connection is up loads without the cache.
    assert.ok(await repo.engine.ready());
    assert.ok(await other.engine.ready());
  });
  after(async () => {
    await worker?.close();
    await repo.close();
    await other.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  it('the worker leaves in place a row loaded after the commit it decodes, and tombstones with the xid otherwise', async () => {
    assert.equal((await repo.users.findById(1))?.name, 'user 1');
    await worker?.close();
    // Commits the worker has not decoded yet (it is stopped).
    const xidOf = async (sql: string) => {
      const { rows } = await scope.q<{ xid: string }>(
        `${sql} RETURNING pg_current_xact_id()::text AS xid`,
      );
      return BigInt(rows[0]?.xid as string) & 0xffffffffn;
    };
    await xidOf("UPDATE $schema.users SET name = 'renamed' WHERE id = 1");
    const xid2 = await xidOf("UPDATE $schema.users SET name = 'two' WHERE id = 2");
    // A service reads the row again from the database after the commit (forceFresh).
    assert.equal((await repo.users.findById(1, { forceFresh: true }))?.name, 'renamed');
    await startWorker();
    await scope.waitCaughtUp(scope.slot());
    const raw = res.redis();
    const entry1 = (await raw.getBuffer(repo.engine.keys.entry('users:1')))?.toString('latin1');
    assert.match(entry1 ?? '', /^D/, 'the row loaded after the commit is still there');
    const entry2 = (await raw.get(repo.engine.keys.entry('users:2'))) ?? '';
    assert.match(entry2, new RegExp(`^T[0-9a-f]{16}:${xid2}$`), 'the tombstone names the commit');
    // The table's tag was bumped for both commits of the group: its version names them.
    const version =
      (await raw.get(repo.engine.keys.tagVersion(tableTag(`${scope.schema}.users`)))) ?? '';
    assert.match(version, new RegExp(`~(\\d+,)*${xid2}$`), version);
    const before = queries.length;
    assert.equal((await other.users.findById(1))?.name, 'renamed', 'another process hits L2');
    assert.equal(queries.length, before, 'without a query');
  });
});
