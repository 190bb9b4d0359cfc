import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { createRepository, defineConfig, resolveConfig } from '../src/index.js';
import { REDIS_CONFIG, Resources, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

describe('repository with the invalidation worker', () => {
  const res = new Resources();
  const scope = new PgScope('repow');
  const prefix = res.track(uniquePrefix('repow'));
  const { db, queries } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    repository: { readYourWritesTimeoutMs: 300 },
    entities: {
      users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
      orders: { table: 'orders', key: 'id' },
    },
    invalidateBy: { orders: ['user_id'], users: ['id', 'name'] },
  });
  // Two services: the writer and another process (its own engine, L1 and bus connection).
  const repo = createRepository({ db, config });
  const other = createRepository({ db, config });
  let worker: InvalidationWorker | undefined;
  const startWorker = async () => {
    worker = new InvalidationWorker({
      config: resolveConfig(config),
      slot: scope.slot(),
      heartbeatIntervalMs: 200,
    });
    await worker.start();
  };

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`
      INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 20) g;
      INSERT INTO $schema.orders (id, user_id, total) VALUES (1, 7, 10), (2, 7, 20), (3, 8, 5);`);
    await startWorker();
  });
  after(async () => {
    await worker?.close();
    await repo.close();
    await other.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  const ordersOf = (uid: number) =>
    db.selectFrom('orders').select(['id', 'total']).where('user_id', '=', uid).orderBy('id');
  const cachedIds = async (uid: number) => (await repo.cached(ordersOf(uid))).map((o) => o.id);
  const isCached = (uid: number) => repo.engine.peek(repo.queryKey(ordersOf(uid))) !== undefined;

  it('a cached list of user 7’s orders is evicted by an INSERT for user 7 and a move away from 7, not by user 8’s changes', async () => {
    assert.deepEqual(await cachedIds(7), [1, 2]);
    assert.deepEqual(await cachedIds(8), [3]);
    assert.ok(isCached(7) && isCached(8));

    await scope.q('INSERT INTO $schema.orders (id, user_id, total) VALUES (4, 7, 1)');
    await waitFor('user 7 list evicted by the insert', () => !isCached(7));
    assert.ok(isCached(8), 'user 8 list untouched by an insert for user 7');
    assert.deepEqual(await cachedIds(7), [1, 2, 4]);

    await scope.q('UPDATE $schema.orders SET user_id = 9 WHERE id = 1');
    await waitFor('user 7 list evicted by the move away', () => !isCached(7));
    assert.deepEqual(await cachedIds(7), [2, 4]);
    assert.ok(isCached(8));

    // Changes to user 8's orders leave user 7's list cached.
    await scope.q('UPDATE $schema.orders SET total = 99 WHERE id = 3');
    await scope.q('INSERT INTO $schema.orders (id, user_id, total) VALUES (5, 8, 1)');
    await waitFor('user 8 list evicted', () => !isCached(8));
    await scope.waitCaughtUp(scope.slot());
    assert.ok(isCached(7), 'user 7 list survives user 8 changes');
    const before = queries.length;
    assert.deepEqual(await cachedIds(7), [2, 4]);
    assert.equal(queries.length, before, 'still a hit');
  });

  it('a 200-character non-ASCII value in a WHERE or findBy: hashed into the tag and key on both sides', async () => {
    const long = 'Größe€'.repeat(40).slice(0, 200).replaceAll('e', '€'); // 200 non-ASCII-heavy characters
    const email = `${'é'.repeat(190)}@x.example`;
    await scope.q('UPDATE $schema.users SET name = $1, email = $2 WHERE id = 15', [long, email]);
    await scope.waitCaughtUp(scope.slot());
    const byName = () => db.selectFrom('users').select(['id', 'email']).where('name', '=', long);
    const cached = () => repo.engine.peek(repo.queryKey(byName())) !== undefined;
    assert.deepEqual(
      (await repo.cached(byName())).map((r) => r.id),
      ['15'],
    );
    assert.equal((await repo.users.findBy('email', email))?.id, '15');
    const prepared = repo.prepare('users-named', (name: string) =>
      db.selectFrom('users').select('id').where('name', '=', name),
    );
    assert.deepEqual(
      await prepared(long),
      [{ id: '15' }],
      'a long argument is hashed into the key',
    );
    assert.ok(cached(), 'cached under a tag of bounded length');

    // Another user's change leaves the narrowed query cached; this user's evicts both reads.
    await scope.q("UPDATE $schema.users SET name = 'someone' WHERE id = 16");
    await scope.waitCaughtUp(scope.slot());
    assert.ok(cached(), 'narrowed to the hashed name tag, not the whole table');
    await scope.q("UPDATE $schema.users SET tenant_id = 2, email = 'moved@x' WHERE id = 15");
    await waitFor('the worker bumped the hashed name tag', () => !cached());
    await waitFor(
      'the worker tombstoned the hashed unique key',
      async () => (await repo.users.findBy('email', email)) === undefined,
    );
  });

  it('an aggregate over a join is evicted by an order for that user only', async () => {
    const stats = (uid: string) =>
      db
        .selectFrom('users')
        .leftJoin('orders', 'orders.user_id', 'users.id')
        .select((eb) => ['users.id', eb.fn.count<string>('orders.id').as('n')])
        .where('users.id', '=', uid)
        .groupBy('users.id');
    const n = async (uid: string) => (await repo.cached(stats(uid)))[0]?.n;
    const cached = (uid: string) => repo.engine.peek(repo.queryKey(stats(uid))) !== undefined;
    assert.equal(await n('10'), '0');
    assert.equal(await n('11'), '0');
    await scope.q('INSERT INTO $schema.orders (id, user_id) VALUES (100, 10)');
    await waitFor('user 10 stats evicted', () => !cached('10'));
    await scope.waitCaughtUp(scope.slot());
    assert.ok(cached('11'), 'user 11 stats untouched');
    assert.equal(await n('10'), '1');
  });

  it('readYourWrites in another process: waits for the worker, or reads the database', async () => {
    assert.equal((await other.users.findById(3))?.name, 'user 3');
    // A write the writer's eviction does not cover (plain Kysely in the transaction):
    // only the worker invalidates it, so `other` keeps the old row until then.
    await worker?.close();
    const { receipt } = await repo.transaction(async (tx) => {
      await tx.db.updateTable('users').set({ name: 'three' }).where('id', '=', '3').execute();
    });
    assert.equal((await other.users.findById(3))?.name, 'user 3', 'stale without the worker');
    const timeouts: string[] = [];
    other.engine.events.on('ryw-timeout', (key) => timeouts.push(key));
    assert.equal(
      (await other.users.findById(3, { readYourWrites: receipt }))?.name,
      'three',
      'timed out waiting: read the database',
    );
    assert.equal(timeouts.length, 1);
    assert.equal(await other.waitForWorker(receipt, 50), false);

    await startWorker();
    assert.equal(await other.waitForWorker(receipt, 10_000), true);
    const before = queries.length;
    assert.equal((await other.users.findById(3, { readYourWrites: receipt }))?.name, 'three');
    assert.equal(timeouts.length, 1, 'no timeout with the worker running');
    assert.equal(queries.length, before + 1, 'filled through the cache');
    assert.equal((await other.users.findById(3))?.name, 'three');
    assert.equal(queries.length, before + 1, 'then a hit');
  });

  it('a write in one process: the writer reads it at once, the other once the worker applied it', async () => {
    await other.users.findById(4);
    await repo.users.findById(4);
    const { receipt } = await repo.users.update(4, { name: 'four' });
    assert.equal((await repo.users.findById(4))?.name, 'four');
    assert.equal((await other.users.findById(4, { readYourWrites: receipt }))?.name, 'four');
  });
});
