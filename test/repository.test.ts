import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import {
  ClosedError,
  ConfigError,
  columnTag,
  createRepository,
  defineConfig,
  entityKey,
  InvalidKeyError,
  InvalidQueryError,
  InvalidWriteError,
  UnknownEntityError,
  uniqueKey,
} from '../src/index.js';
import { tableResetTag } from '../src/keys/redis-keys.js';
import { REDIS_CONFIG, Resources, storedUnder, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

describe('repository reads and writes (no worker)', () => {
  const res = new Resources();
  const scope = new PgScope('repo');
  const prefix = res.track(uniquePrefix('repo'));
  const { db, queries } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    // The counts below are about which reads query: a fill whose Redis write times out on a
    // loaded machine (the 250 ms default) is not cached, and the next read queries again.
    redis: { ...REDIS_CONFIG, commandTimeoutMs: 5_000 },
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    entities: {
      users: {
        table: 'users',
        key: 'id',
        unique: ['email'],
        deny: ['password_hash'],
        tags: (row) => [`tenant:${row.tenant_id}`],
      },
      orders: { table: 'orders', key: 'id' },
    },
    invalidateBy: { orders: ['user_id', 'status'], users: ['id'] },
  });
  const repo = createRepository({ db, config });

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`
      INSERT INTO $schema.users (id, email, name, tenant_id)
        SELECT g, 'u' || g || '@x', 'user ' || g, 1 + g % 3 FROM generate_series(1, 5000) g;
      INSERT INTO $schema.orders (id, user_id, status, total)
        SELECT g, 1 + g % 50, CASE WHEN g % 4 = 0 THEN 'paid' ELSE 'open' END, g FROM generate_series(1, 500) g;`);
    // The catalog (column types, for canonical keys) is read once; the counts below are reads.
    // And Redis is connected (longer on a cluster): a read before that skips the cache.
    await repo.ready();
    assert.ok(await repo.engine.ready());
  });
  after(async () => {
    await repo.close();
    await repo.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  const truth = async (id: number) => {
    const { rows } = await scope.q(
      'SELECT id, email, name, tenant_id FROM $schema.users WHERE id = $1',
      [id],
    );
    return rows[0];
  };

  it('findById returns the database row without denied columns, then serves it from the cache', async () => {
    const before = queries.length;
    const user = await repo.users.findById(42);
    assert.deepEqual(user, await truth(42));
    assert.equal('password_hash' in (user as object), false);
    assert.equal(queries.length, before + 1);
    assert.deepEqual(await repo.users.findById('42'), user, 'number and string ids share an entry');
    assert.equal(queries.length, before + 1, 'second read is a hit');
    assert.equal(repo.users.key(42), entityKey('users', [42]));
    assert.equal(await repo.users.findById(999_999), undefined);
  });

  it('findBy reads by a unique column', async () => {
    const user = await repo.users.findBy('email', 'u7@x');
    assert.deepEqual(user, await truth(7));
    const raw = await res
      .redis()
      .getBuffer(repo.engine.keys.entry(uniqueKey('users', 'email', 'u7@x')));
    assert.ok(raw, 'cached under the unique key');
    assert.equal(await repo.users.findBy('email', 'nobody@x'), undefined);
  });

  it('findMany: input order, duplicates, missing ids, one SQL query for the misses only', async () => {
    await repo.users.findById(100); // cached already
    const before = queries.length;
    const ids = [103, 100, 999_998, 101, 103, 102, 999_997];
    const { rows, missing } = await repo.users.findMany(ids);
    assert.equal(queries.length, before + 1, 'one query');
    const query = queries.at(-1);
    assert.match(query?.sql ?? '', /= any\(\$1\)/);
    assert.deepEqual(
      [...((query?.parameters[0] ?? []) as string[])].sort(),
      ['101', '102', '103', '999997', '999998'],
      'the cached id is not asked for (ids in their canonical text)',
    );
    assert.deepEqual(
      rows.map((r) => r?.id),
      ['103', '100', undefined, '101', '103', '102', undefined],
    );
    assert.deepEqual(missing, [999_998, 999_997]);
    for (const row of rows) if (row) assert.deepEqual(row, await truth(Number(row.id)));
    const again = queries.length;
    await repo.users.findMany(ids);
    assert.equal(queries.length, again + 1, 'hits, and one query for the ids still missing');
    assert.deepEqual([...((queries.at(-1)?.parameters[0] ?? []) as string[])].sort(), [
      '999997',
      '999998',
    ]);
  });

  it('findMany with 3000 ids (a third missing) agrees with the database in one query', async () => {
    const ids = Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? 100_000 + i : 1000 + i));
    const before = queries.length;
    const { rows, missing } = await repo.users.findMany(ids);
    assert.equal(queries.length, before + 1);
    assert.equal(missing.length, 1000);
    const { rows: db } = await scope.q(
      'SELECT id, email, name, tenant_id FROM $schema.users WHERE id = any($1)',
      [ids],
    );
    const byId = new Map(db.map((r) => [r.id, r]));
    for (const [i, id] of ids.entries()) assert.deepEqual(rows[i], byId.get(String(id)));
    const hits = queries.length;
    await repo.users.findMany(ids.filter((id) => id < 100_000));
    assert.equal(queries.length, hits, 'second call is all hits');
  });

  it('per-call options: forceFresh, ttlMs, maxStalenessMs', async () => {
    await repo.users.findById(5);
    await scope.q("UPDATE $schema.users SET name = 'changed behind the cache' WHERE id = 5");
    assert.equal((await repo.users.findById(5))?.name, 'user 5', 'no worker: cached');
    assert.equal(
      (await repo.users.findById(5, { forceFresh: true }))?.name,
      'changed behind the cache',
    );
    assert.equal((await repo.users.findById(5))?.name, 'changed behind the cache', 'refilled');

    await repo.users.findById(6, { ttlMs: 30 });
    await scope.q("UPDATE $schema.users SET name = 'six' WHERE id = 6");
    await new Promise((r) => setTimeout(r, 80));
    assert.equal((await repo.users.findById(6))?.name, 'six', 'expired after its ttl');

    // No worker has ever run under this prefix: a staleness bound bypasses the cache.
    await scope.q("UPDATE $schema.users SET name = 'seven' WHERE id = 7");
    const before = queries.length;
    assert.equal((await repo.users.findById(7, { maxStalenessMs: 10_000 }))?.name, 'seven');
    assert.equal(queries.length, before + 1);
  });

  it('writes evict at once in the writing process, old unique keys included', async () => {
    assert.equal((await repo.users.findBy('email', 'u20@x'))?.name, 'user 20');
    assert.equal((await repo.users.findById(20))?.name, 'user 20');
    const { rows, receipt } = await repo.users.update(20, { email: 'twenty@x', name: 'Twenty' });
    assert.deepEqual(rows, [{ id: '20', email: 'twenty@x', name: 'Twenty', tenant_id: 3 }]);
    assert.match(receipt.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.ok(receipt.keys.includes(uniqueKey('users', 'email', 'u20@x')));
    assert.equal((await repo.users.findById(20))?.name, 'Twenty');
    assert.equal(await repo.users.findBy('email', 'u20@x'), undefined, 'old email evicted');
    assert.equal((await repo.users.findBy('email', 'twenty@x'))?.id, '20');

    const inserted = await repo.users.insert({ id: '9001', email: 'new@x', name: 'New' });
    assert.equal(inserted.rows[0]?.name, 'New');
    assert.equal('password_hash' in (inserted.rows[0] as object), false);
    assert.equal((await repo.users.findById(9001))?.name, 'New');
    await repo.users.delete(9001);
    assert.equal(await repo.users.findById(9001), undefined);
    assert.deepEqual((await repo.users.update(424_242, { name: 'x' })).rows, []);
  });

  it('a transaction evicts after commit; a rolled back one evicts nothing', async () => {
    await repo.users.findById(30);
    const { value, receipt } = await repo.transaction(async (tx) => {
      await tx.users.update(30, { name: 'Thirty' });
      await tx.orders.insert({ id: 10_001, user_id: 30 });
      return 'done';
    });
    assert.equal(value, 'done');
    assert.ok(receipt.tags.includes(columnTag(`${scope.schema}.orders`, 'user_id', 30)));
    assert.equal((await repo.users.findById(30))?.name, 'Thirty');

    await repo.users.findById(31);
    await assert.rejects(
      repo.transaction(async (tx) => {
        await tx.users.update(31, { name: 'never' });
        throw new Error('rollback');
      }),
      /rollback/,
    );
    assert.equal((await truth(31))?.name, 'user 31');
    assert.equal((await repo.users.findById(31))?.name, 'user 31');
  });

  it('derived tags: invalidating tenant:2 evicts that tenant’s users only', async () => {
    await repo.users.findMany([1, 2]); // tenant 2 and tenant 3
    const before = queries.length;
    await repo.engine.invalidateTags(['tenant:2']);
    await repo.users.findById(1);
    assert.equal(queries.length, before + 1, 'tenant 2 reloaded');
    await repo.users.findById(2);
    assert.equal(queries.length, before + 1, 'tenant 3 still cached');
  });

  it('cached(): lists, joins and aggregates, keyed by SQL and parameters', async () => {
    const list = (uid: number) =>
      db.selectFrom('orders').select(['id', 'total']).where('user_id', '=', uid).orderBy('id');
    const before = queries.length;
    const a = await repo.cached(list(7));
    const b = await repo.cached(list(7));
    assert.deepEqual(a, b);
    assert.deepEqual(a, await list(7).execute());
    assert.equal(queries.length, before + 2, 'one load, then a hit (and the truth query)');
    assert.notEqual(repo.queryKey(list(7)), repo.queryKey(list(8)));
    const stats = db
      .selectFrom('users')
      .leftJoin('orders', 'orders.user_id', 'users.id')
      .select((eb) => [
        'users.id',
        eb.fn.count<string>('orders.id').as('orders'),
        eb.fn.sum<string>('orders.total').as('spent'),
      ])
      .where('users.id', '=', '8')
      .groupBy('users.id');
    assert.deepEqual(await repo.cached(stats, { name: 'user-stats' }), await stats.execute());
    assert.match(repo.queryKey(stats, 'user-stats'), /^q:user-stats:/);
  });

  it('prepare(): a hit neither builds nor compiles the query; writes to its narrowed rows evict it', async () => {
    let builds = 0;
    const ordersOf = repo.prepare('orders-of', (uid: number) => {
      builds++;
      return db
        .selectFrom('orders')
        .select(['id', 'status'])
        .where('user_id', '=', uid)
        .orderBy('id');
    });
    const first = await ordersOf(11);
    assert.deepEqual(
      first,
      await db
        .selectFrom('orders')
        .select(['id', 'status'])
        .where('user_id', '=', 11)
        .orderBy('id')
        .execute(),
    );
    assert.equal(builds, 1);
    assert.deepEqual(await ordersOf(11), first);
    assert.equal(builds, 1, 'an L1 hit');
    assert.equal(repo.engine.peek('q:orders-of:11'), first);
    await ordersOf(12);
    assert.equal(builds, 2);
    // A write through the repository bumps `orders:user_id=11`: the entry is evicted.
    const id = first[0]?.id as number;
    await repo.orders.update(id, { status: 'shipped' });
    const after = await ordersOf(11);
    assert.equal(builds, 3);
    assert.equal(after.find((o) => o.id === id)?.status, 'shipped');
    assert.throws(
      () => repo.prepare('orders-of', () => db.selectFrom('orders').selectAll()),
      ConfigError,
    );
    assert.throws(
      () => repo.prepare('bad name!', () => db.selectFrom('orders').selectAll()),
      ConfigError,
    );
    const audit = repo.prepare('audit-all', () => db.selectFrom('audit').selectAll());
    await assert.rejects(audit(), InvalidQueryError);
  });

  it('a denied column never reaches Redis, whatever the read', async () => {
    await repo.users.findMany([50, 51, 52]);
    await repo.users.findBy('email', 'u53@x');
    await repo.cached(db.selectFrom('users').selectAll().where('id', '=', '54'));
    await repo.users.update(55, { name: 'x' });
    const stored = await storedUnder(res.redis(), `${prefix}:k`);
    for (const [k, raw] of stored) {
      assert.equal(raw.includes('password_hash'), false, k);
      assert.equal(raw.includes('hunter2-secret'), false, k);
    }
    const seen = stored.length;
    assert.ok(seen > 20, `scanned ${seen} entries`);
    const [row] = await repo.cached(db.selectFrom('users').selectAll().where('id', '=', '54'));
    assert.equal('password_hash' in (row as object), false);
  });

  it('bad input: unknown entity, wrong key types, non-SELECT and untracked queries, empty patches', async () => {
    assert.throws(() => repo.entity('nope' as 'users'), UnknownEntityError);
    assert.equal(repo.entity('users'), repo.users);
    for (const bad of [{}, [], null, undefined, Number.NaN, Number.POSITIVE_INFINITY, true, [1, 2]])
      await assert.rejects(repo.users.findById(bad as never), InvalidKeyError, String(bad));
    await assert.rejects(repo.users.findMany('1,2' as never), InvalidKeyError);
    await assert.rejects(repo.users.findMany([1, {} as never]), InvalidKeyError);
    await assert.rejects(repo.users.findBy('name' as 'email', 'x'), InvalidKeyError);
    await assert.rejects(repo.users.findBy('email', null), InvalidKeyError);
    await assert.rejects(
      repo.cached(db.insertInto('audit').values({ id: 1, note: 'x' }) as never),
      InvalidQueryError,
    );
    await assert.rejects(repo.cached(db.deleteFrom('audit') as never), InvalidQueryError);
    await assert.rejects(
      repo.cached(db.updateTable('audit').set({ note: 'y' }) as never),
      InvalidQueryError,
    );
    await assert.rejects(
      repo.cached(db.selectFrom('audit').selectAll()),
      (e: unknown) => e instanceof InvalidQueryError && /invalidateBy/.test(e.message),
    );
    await assert.rejects(repo.cached({} as never), InvalidQueryError);
    await assert.rejects(
      repo.cached(db.selectFrom('users').select(sql<number>`(select count(*) from audit)`.as('n'))),
      InvalidQueryError,
    );
    assert.equal((await audits()).length, 0, 'nothing was executed');
    await assert.rejects(repo.users.update(1, {}), InvalidWriteError);
    await assert.rejects(repo.users.insert('x' as never), InvalidWriteError);
    await assert.rejects(repo.users.findById(1, { readYourWrites: 'garbage' }), ConfigError);
    assert.throws(
      () =>
        createRepository({
          db,
          config: { ...config, entities: { cached: { table: 'users', key: 'id' } } },
        }),
      ConfigError,
    );
    const other = res.engine(uniquePrefix('other'));
    assert.throws(() => createRepository({ db, config, cache: other }), ConfigError);
    const shared = createRepository({ db, config, cache: repo.engine });
    assert.equal(shared.engine, repo.engine);
    assert.equal((await shared.users.findById(1))?.id, '1');
    await shared.close();
    assert.equal(repo.engine.busHealthy, true, 'a shared engine is not closed by the repository');
    const closing = createRepository({ db, config });
    await closing.close();
    await assert.rejects(closing.cached(db.selectFrom('users').selectAll()), ClosedError);
    await assert.rejects(closing.users.findById(1), ClosedError);
    await assert.rejects(closing.users.update(1, { name: 'x' }), ClosedError);
  });

  const audits = () => scope.q('SELECT * FROM $schema.audit').then((r) => r.rows);

  it('warm loads what is not cached in one query and skips what is', async () => {
    await repo.orders.findMany([401, 402]);
    const before = queries.length;
    const result = await repo.orders.warm([401, 402, 403, 404, 999_991, {} as never]);
    assert.deepEqual(result, { loaded: 2, skipped: 2, missing: 1, failed: 1 });
    assert.equal(queries.length, before + 1);
    await repo.orders.findMany([403, 404]);
    assert.equal(queries.length, before + 1, 'warmed rows are hits');
  });

  it('entries depend on the table reset tag', async () => {
    await repo.users.findById(60);
    const before = queries.length;
    await repo.engine.invalidateTags([tableResetTag(`${scope.schema}.users`)]);
    await repo.users.findById(60);
    assert.equal(queries.length, before + 1);
  });
});
