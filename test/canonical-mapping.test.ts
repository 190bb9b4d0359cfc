/**
 * Every change reaches every cached copy: the reader caches under the name the worker
 * invalidates. Ids and WHERE values come from URLs and clients in many spellings ('042',
 * ' 42', '+42', an upper-case uuid, 'ADA@X' on citext, numeric 1.1 vs 1.10, a date); each
 * must land on the entry (or the tag) that a plain-SQL write of that row evicts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { pgConfig } from '../src/config/database.js';
import { createRepository, defineConfig, InvalidKeyError, resolveConfig } from '../src/index.js';
import { REDIS_CONFIG, Resources, uniquePrefix, waitFor } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: a dynamic schema of the test's own
type AnyDb = any;

describe('canonical keys and tags: readers and the worker agree', () => {
  const res = new Resources();
  const scope = new PgScope('canon');
  const prefix = res.track(uniquePrefix('canon'));
  const pool = new pg.Pool({
    ...pgConfig(DATABASE_URL),
    max: 4,
    options: `-c search_path=${scope.schema},public`,
  });
  pool.on('error', () => {});
  const db = new Kysely<AnyDb>({ dialect: new PostgresDialect({ pool }) });
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    entities: {
      accounts: { table: 'accounts', key: 'id', unique: ['email'] },
      items: { table: 'items', key: 'id' },
      prices: { table: 'prices', key: 'code' },
    },
    invalidateBy: { ledger: ['user_id', 'amount', 'day', 'ref'] },
  });
  const repo = createRepository({ db, config });
  let worker: InvalidationWorker | undefined;

  before(async () => {
    await scope.q('CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public').catch(() => {});
    await scope.create(`
      CREATE TABLE accounts (id int PRIMARY KEY, email public.citext UNIQUE NOT NULL, role text NOT NULL);
      ALTER TABLE accounts REPLICA IDENTITY FULL;
      CREATE TABLE items (id uuid PRIMARY KEY, label text NOT NULL);
      CREATE TABLE prices (code numeric PRIMARY KEY, label text NOT NULL);
      CREATE TABLE ledger (id int PRIMARY KEY, user_id int, amount numeric(12,2), day date, ref uuid);
      ALTER TABLE ledger REPLICA IDENTITY FULL;
      INSERT INTO accounts VALUES (42, 'Ada@X', 'user');
      INSERT INTO items VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'old');
      INSERT INTO prices VALUES (1.10, 'old');
      INSERT INTO ledger VALUES (1, 7, 12.50, '2024-01-02', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a22');`);
    worker = new InvalidationWorker({
      config: resolveConfig(config),
      slot: scope.slot(),
      heartbeatIntervalMs: 200,
    });
    await worker.start();
  });
  after(async () => {
    await worker?.close();
    await repo.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  /** Waits until `read` gives `expected` (the worker and the bus have done their part). */
  const eventually = async (what: string, read: () => Promise<unknown>, expected: unknown) => {
    let last: unknown;
    try {
      await waitFor(
        what,
        async () => {
          last = await read();
          return JSON.stringify(last) === JSON.stringify(expected);
        },
        5_000,
      );
    } catch {
      assert.deepEqual(last, expected, `${what}: still stale`);
    }
  };

  it('an int key read as 042, " 42", +42 or 42n is evicted by a plain UPDATE of row 42', async () => {
    const spellings = ['042', ' 42', '+42', 42, 42n, '42'];
    for (const id of spellings)
      assert.equal((await repo.accounts.findById(id as never))?.role, 'user');
    const many = await repo.accounts.findMany(['042'] as never[]);
    assert.deepEqual(many.missing, [], 'findMany finds row 42 under 042');
    await scope.q(`UPDATE $schema.accounts SET role = 'admin' WHERE id = 42`);
    for (const id of spellings)
      await eventually(
        `findById(${JSON.stringify(String(id))})`,
        async () => (await repo.accounts.findById(id as never))?.role,
        'admin',
      );
  });

  it('a citext unique value read in another case is evicted with the row', async () => {
    for (const email of ['ADA@X', 'ada@x', 'Ada@X'])
      assert.equal((await repo.accounts.findBy('email' as never, email))?.role, 'admin');
    await scope.q(`UPDATE $schema.accounts SET role = 'owner' WHERE id = 42`);
    for (const email of ['ADA@X', 'ada@x', 'Ada@X'])
      await eventually(
        `findBy(email, ${email})`,
        async () => (await repo.accounts.findBy('email' as never, email))?.role,
        'owner',
      );
  });

  it('an upper-case or brace uuid and a numeric 1.1 / 1.10 / 1.100 land on the row’s entry', async () => {
    const uuids = [
      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
      '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
      'a0eebc999c0b4ef8bb6d6bb9bd380a11',
    ];
    for (const id of uuids) assert.equal((await repo.items.findById(id as never))?.label, 'old');
    const codes = ['1.1', '1.10', 1.1, '01.100'];
    for (const code of codes)
      assert.equal((await repo.prices.findById(code as never))?.label, 'old');
    await scope.q(`UPDATE $schema.items SET label = 'new'`);
    await scope.q(`UPDATE $schema.prices SET label = 'new'`);
    for (const id of uuids)
      await eventually(
        `items ${id}`,
        async () => (await repo.items.findById(id as never))?.label,
        'new',
      );
    for (const code of codes)
      await eventually(
        `prices ${code}`,
        async () => (await repo.prices.findById(code as never))?.label,
        'new',
      );
  });

  it('findMany matches the rows it loads to their ids by canonical text (numeric 2.50 is 2.5)', async () => {
    await scope.q(`INSERT INTO $schema.prices VALUES (2.50, 'two'), (3.000, 'three')`);
    const many = await repo.prices.findMany(['2.5', 3, '02.50'] as never[]);
    assert.deepEqual(many.missing, [], 'the rows pg returns as 2.50 and 3.000 are found');
    assert.deepEqual(
      many.rows.map((r) => (r as { label: string } | undefined)?.label),
      ['two', 'three', 'two'],
    );
  });

  it('ids a column of that type cannot hold are refused before any cache or database work', async () => {
    for (const id of ['4x2', '', '99999999999', '1.5', 'NaN'])
      await assert.rejects(repo.accounts.findById(id as never), InvalidKeyError, `int id ${id}`);
    await assert.rejects(repo.items.findById('not-a-uuid' as never), InvalidKeyError);
    for (const code of ['NaN', 'Infinity', '1e', 'abc'])
      await assert.rejects(repo.prices.findById(code as never), InvalidKeyError, `numeric ${code}`);
  });

  it('narrowed query tags use the column’s canonical text: "07", 12.5, a date, an upper-case uuid', async () => {
    const ids = (q: { execute(): Promise<Array<{ id: number }>> }) => async () =>
      ((await repo.cached(q as never)) as Array<{ id: number }>).map((r) => r.id).sort();
    const byUser = ids(db.selectFrom('ledger').select('id').where('user_id', '=', '07'));
    const byAmount = ids(db.selectFrom('ledger').select('id').where('amount', '=', 12.5));
    const byDay = ids(db.selectFrom('ledger').select('id').where('day', '=', '2024-01-02'));
    const byRef = ids(
      db
        .selectFrom('ledger')
        .select('id')
        .where('ref', '=', 'B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A22'),
    );
    for (const read of [byUser, byAmount, byDay, byRef]) assert.deepEqual(await read(), [1]);
    await scope.q(
      `INSERT INTO $schema.ledger VALUES (2, 7, 12.50, '2024-01-02', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a22')`,
    );
    await eventually('user_id = "07"', byUser, [1, 2]);
    await eventually('amount = 12.5', byAmount, [1, 2]);
    await eventually("day = '2024-01-02'", byDay, [1, 2]);
    await eventually('ref = upper-case uuid', byRef, [1, 2]);
  });

  it('a WHERE on NaN never narrows: a NaN row (null in wal2json) still evicts it', async () => {
    const byNaN = async () =>
      (
        (await repo.cached(
          db.selectFrom('ledger').select('id').where('amount', '=', 'NaN') as never,
        )) as Array<{ id: number }>
      ).map((r) => r.id);
    assert.deepEqual(await byNaN(), []);
    await scope.q(`ALTER TABLE $schema.ledger ALTER COLUMN amount TYPE numeric`);
    await scope.q(`INSERT INTO $schema.ledger VALUES (3, 9, 'NaN', NULL, NULL)`);
    await eventually('amount = NaN', byNaN, [3]);
  });
});
