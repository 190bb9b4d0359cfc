import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { jsonArrayFrom, jsonObjectFrom } from 'kysely/helpers/postgres';
import { createRepository, defineConfig, InvalidQueryError } from '../src/index.js';
import { deleteByPrefix, REDIS_CONFIG, Resources, storedUnder, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

const SECRET = 'hunter2-secret'; // every user's password_hash (TEST_TABLES' default)

/**
 * Denied columns (`users.deny = ['password_hash']`) through every way a cached query can
 * carry a row: nested rows from Kysely's relation helpers are stripped at any depth; what
 * stripping cannot see (whole-row references, a denied column under another name, raw SQL
 * naming the table) is refused. After each case every entry under the prefix is read
 * back from Redis.
 */
describe('denied columns never leave the database', () => {
  const res = new Resources();
  const scope = new PgScope('secrets');
  const prefix = res.track(uniquePrefix('secrets'));
  const { db } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    entities: {
      users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
      orders: { table: 'orders', key: 'id' },
    },
    invalidateBy: { orders: ['user_id'], users: ['id'] },
  });
  const repo = createRepository({ db, config });

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`
      INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 20) g;
      INSERT INTO $schema.orders (id, user_id) SELECT g, 1 + g % 5 FROM generate_series(1, 30) g;`);
    assert.ok(await repo.engine.ready(), 'connected, so reads fill Redis and L1');
  });
  // Each case is judged on what it wrote itself.
  afterEach(() => deleteByPrefix(res.redis(), prefix));
  after(async () => {
    await repo.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  /** Every entry under the prefix, read back raw: none may hold the hash or its column name. */
  async function assertRedisClean(what: string): Promise<number> {
    const stored = await storedUnder(res.redis(), prefix);
    for (const [k, raw] of stored) {
      assert.equal(raw.includes(SECRET), false, `${what}: ${k} holds the hash`);
      assert.equal(raw.includes('password_hash'), false, `${what}: ${k} names the column`);
    }
    return stored.length;
  }

  /** No value anywhere inside `value` is the hash, and no object has the denied key. */
  function assertNoSecret(value: unknown, what: string): void {
    const text = JSON.stringify(value);
    assert.equal(text.includes(SECRET), false, `${what}: the caller got the hash: ${text}`);
    assert.equal(text.includes('password_hash'), false, `${what}: ${text}`);
  }

  /** Reads twice (a fill, then an L1 hit), checks both answers and Redis. */
  async function readTwice<R>(what: string, read: () => Promise<R[]>): Promise<R[]> {
    const first = await read();
    assertNoSecret(first, `${what} (load)`);
    const second = await read();
    assertNoSecret(second, `${what} (cache hit)`);
    assert.deepEqual(second, first);
    assert.ok((await assertRedisClean(what)) > 0, `${what}: something was cached`);
    return first;
  }

  it('jsonObjectFrom(selectAll()): the nested user row is stripped', async () => {
    const rows = await readTwice('jsonObjectFrom', () =>
      repo.cached(
        db
          .selectFrom('orders')
          .select((eb) => [
            'orders.id',
            jsonObjectFrom(
              eb.selectFrom('users').selectAll().whereRef('users.id', '=', 'orders.user_id'),
            ).as('user'),
          ])
          .where('orders.user_id', '=', 2),
        { tables: ['users'] },
      ),
    );
    assert.equal(rows.length, 6);
    const user = rows[0]?.user as Record<string, unknown>;
    assert.deepEqual(Object.keys(user).sort(), ['email', 'id', 'name', 'tenant_id']);
  });

  it('jsonArrayFrom(selectAll()), two levels deep: stripped at every depth', async () => {
    const rows = await readTwice('jsonArrayFrom', () =>
      repo.cached(
        db
          .selectFrom('users as owner')
          .select((eb) => [
            'owner.id',
            jsonArrayFrom(
              eb
                .selectFrom('orders')
                .select((inner) => [
                  'orders.id',
                  jsonObjectFrom(
                    inner
                      .selectFrom('users')
                      .selectAll()
                      .whereRef('users.id', '=', 'orders.user_id'),
                  ).as('buyer'),
                ])
                .whereRef('orders.user_id', '=', 'owner.id'),
            ).as('orders'),
          ])
          .where('owner.id', 'in', ['1', '2']),
        { tables: ['users', 'orders'] },
      ),
    );
    const orders = rows[0]?.orders as Array<{ buyer: Record<string, unknown> }>;
    assert.ok(orders.length > 0);
    for (const o of orders) assert.equal(typeof o.buyer.email, 'string');
  });

  it('selectAll() with a join and a prepared query: the top-level column is stripped', async () => {
    await readTwice('join', () =>
      repo.cached(
        db
          .selectFrom('orders')
          .innerJoin('users', 'users.id', 'orders.user_id')
          .selectAll()
          .where('orders.id', '=', 3),
      ),
    );
    const byId = repo.prepare('secret-user', (id: string) =>
      db.selectFrom('users').selectAll().where('id', '=', id),
    );
    await readTwice('prepared', () => byId('4'));
  });

  it('a WHERE or ORDER BY on a denied column is allowed: its value is not returned', async () => {
    const rows = await readTwice('where', () =>
      repo.cached(
        db
          .selectFrom('users')
          .select(['id', 'email'])
          .where('password_hash', '=', SECRET)
          .orderBy('password_hash')
          .where('id', '=', '5'),
      ),
    );
    assert.equal(rows.length, 1);
  });

  const refused: Array<[string, () => Parameters<typeof repo.cached>[0], RegExp]> = [
    [
      'to_jsonb(users): a whole-row reference',
      () => db.selectFrom('users').select((eb) => eb.fn('to_jsonb', [eb.table('users')]).as('u')),
      /whole row of `[a-z0-9_]+\.users`/,
    ],
    [
      'row_to_json(u) through an alias, cast to text',
      () =>
        db
          .selectFrom('users as u')
          .select((eb) => sql<string>`${eb.fn('row_to_json', [eb.table('u')])}::text`.as('j')),
      /whole row/,
    ],
    [
      'to_jsonb(users) inside a subquery of another table',
      () =>
        db.selectFrom('orders').select((eb) =>
          eb
            .selectFrom('users')
            .select((inner) => inner.fn('to_jsonb', [inner.table('users')]).as('u'))
            .whereRef('users.id', '=', 'orders.user_id')
            .as('u'),
        ),
      /whole row/,
    ],
    [
      'the denied column under another name',
      () => db.selectFrom('users').select('password_hash as h'),
      /`password_hash`/,
    ],
    [
      'the denied column in an expression',
      () =>
        db
          .selectFrom('users')
          .select((eb) => eb.fn<string>('upper', ['users.password_hash']).as('h')),
      /`password_hash`/,
    ],
    [
      'the denied column from a scalar subquery',
      () =>
        db
          .selectFrom('orders')
          .select((eb) =>
            eb
              .selectFrom('users')
              .select('password_hash')
              .whereRef('users.id', '=', 'orders.user_id')
              .as('h'),
          ),
      /`password_hash`/,
    ],
    [
      'the denied column selected by name',
      () => db.selectFrom('users').select(['id', 'password_hash']),
      /`password_hash`/,
    ],
    [
      'raw SQL naming the table as a row',
      () => db.selectFrom('users').select(sql<string>`users::text`.as('t')),
      /raw SQL/,
    ],
    [
      'raw SQL naming the denied column',
      () => db.selectFrom('users').select(sql<string>`coalesce(password_hash, '')`.as('t')),
      /raw SQL/,
    ],
  ];
  for (const [what, build, message] of refused) {
    it(`refused with InvalidQueryError: ${what}`, async () => {
      await assert.rejects(
        repo.cached(build() as never),
        (e: unknown) => e instanceof InvalidQueryError && message.test(e.message),
      );
      await assertRedisClean(what);
    });
  }
});
