import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRepository, defineConfig, runMigrations } from '../src/index.js';
import { flushAccessLog, hottestKeys } from '../src/repository/access-log.js';
import { REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, SelectGate, TEST_TABLES } from './repo-helpers.js';

describe('repository fills race writes', () => {
  const res = new Resources();
  const scope = new PgScope('reporace');
  const prefix = res.track(uniquePrefix('reporace'));
  const reader = countingDb(scope.schema);
  const writer = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 1, flushIntervalMs: 60_000 },
    entities: { users: { table: 'users', key: 'id', deny: ['password_hash'] } },
    invalidateBy: { orders: ['user_id'] },
  });
  const walSchema = `${scope.schema}_wc`;

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 10) g;
      INSERT INTO $schema.orders (id, user_id) VALUES (1, 1), (2, 2);`);
  });
  after(async () => {
    await reader.db.destroy();
    await writer.db.destroy();
    await scope.q(`DROP SCHEMA IF EXISTS ${walSchema} CASCADE`);
    await res.close();
    await scope.close();
  });

  it('a findMany load that read the old row before a write committed is not cached; the rest of the batch is', async () => {
    const gate = new SelectGate();
    const db = reader.db.withPlugin(gate);
    const repo = createRepository({ db, config });
    const other = createRepository({ db: writer.db, config });
    try {
      assert.ok(await repo.engine.ready());
      gate.armed = true;
      const reading = repo.users.findMany([1, 2]);
      await gate.entered.promise; // the SELECT has returned the old rows
      await other.users.update(1, { name: 'new' });
      gate.release.resolve();
      const { rows } = await reading;
      assert.equal(rows[0]?.name, 'user 1', 'the read itself answers what it read');
      const before = reader.queries.length;
      assert.equal((await repo.users.findById(1))?.name, 'new', 'the stale fill was refused');
      assert.equal(reader.queries.length, before + 1);
      assert.equal((await repo.users.findById(2))?.name, 'user 2');
      assert.equal(reader.queries.length, before + 1, 'the untouched row was filled');
    } finally {
      await repo.close();
      await other.close();
    }
  });

  it('a cached query whose load raced a write to its narrowed rows is not kept', async () => {
    const gate = new SelectGate();
    const db = reader.db.withPlugin(gate);
    const repo = createRepository({ db, config });
    const other = createRepository({ db: writer.db, config });
    const list = (d: typeof db) => d.selectFrom('orders').select('id').where('user_id', '=', 1);
    try {
      assert.ok(await repo.engine.ready());
      gate.armed = true;
      const reading = repo.cached(list(db));
      await gate.entered.promise;
      await other.transaction(async (tx) => {
        const row = await tx.db
          .insertInto('orders')
          .values({ id: 3, user_id: 1 })
          .returningAll()
          .executeTakeFirstOrThrow();
        tx.touched('orders', 'I', null, row);
      });
      gate.release.resolve();
      assert.deepEqual(await reading, [{ id: 1 }]);
      assert.deepEqual(
        (await repo.cached(list(db))).map((r) => r.id).sort(),
        [1, 3],
        'the racing fill was dropped',
      );
    } finally {
      await repo.close();
      await other.close();
    }
  });

  it('sampled reads reach the access log table, hottest first', async () => {
    const repo = createRepository({ db: reader.db, config });
    try {
      for (let i = 0; i < 5; i++) await repo.users.findById(7);
      await repo.users.findMany([7, 8, 8]);
      await repo.users.findById(9);
      await repo.accessLog?.flush();
      await runMigrations(scope.pool, { schema: walSchema });
      const moved = await flushAccessLog({
        redis: repo.engine.redis,
        keys: repo.engine.keys,
        db: writer.db,
        schema: walSchema,
      });
      assert.ok(moved.rows >= 3);
      const hot = await hottestKeys(writer.db, { schema: walSchema, entity: 'users' });
      assert.deepEqual(
        hot.filter((h) => /^users:[789]$/.test(h.key)).map((h) => [h.key, h.hits]),
        [
          ['users:7', 6],
          ['users:8', 1],
          ['users:9', 1],
        ],
      );
    } finally {
      await repo.close();
    }
  });
});
