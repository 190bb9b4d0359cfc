import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { wal2jsonAddTables } from '../src/cdc/wal2json-decoder.js';
import { columnTag, entityKey, resolveConfig, tableTag } from '../src/index.js';
import { Resources, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { type PrivateRedis, startRedis } from './redis-servers.js';

describe('invalidation worker (wal2json)', () => {
  const res = new Resources();
  const scope = new PgScope('worker');
  const prefix = uniquePrefix('worker');
  let worker: InvalidationWorker;
  const config = () =>
    resolveConfig({
      prefix,
      defaultSchema: scope.schema,
      entities: {
        users: { table: 'users', key: 'id', unique: ['email'] },
        orders: { table: 'orders', key: 'id' },
      },
      invalidateBy: { orders: ['user_id'] },
    });

  before(async () => {
    await scope.create(`
      CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE, name text);
      ALTER TABLE users REPLICA IDENTITY FULL;
      CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric(12,2));
      ALTER TABLE orders REPLICA IDENTITY FULL;
      CREATE TABLE unknown_things (id int PRIMARY KEY);

      INSERT INTO users VALUES (1, 'a@x', 'Ada'), (2, 'b@x', 'Bob');
      INSERT INTO orders VALUES (10, 7, 5.00), (11, 8, 6.00);`);
    worker = new InvalidationWorker({ config: config(), slot: scope.slot() });
    await worker.start();
    assert.equal(worker.role, 'active');
  });
  after(async () => {
    await worker?.close();
    await res.close();
    await scope.close();
  });

  it('UPDATE, DELETE and INSERT by a plain pg client evict the right keys and tags, in L2 and in another L1', async () => {
    const reader = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const other = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const load = async (id: number) =>
      (await scope.q('SELECT * FROM $schema.users WHERE id = $1', [id])).rows[0];
    const k1 = entityKey('users', [1]);
    const k2 = entityKey('users', [2]);
    assert.equal((await reader.getOrLoad(k1, () => load(1)))?.name, 'Ada');
    assert.equal((await reader.getOrLoad(k2, () => load(2)))?.name, 'Bob');
    await other.getOrLoad(k1, () => assert.fail('L2 hit'));
    assert.equal(other.peek<{ name: string }>(k1)?.name, 'Ada');

    await scope.q("UPDATE $schema.users SET name = 'Ada L.' WHERE id = 1");
    await waitFor(
      'both L1s dropped users:1',
      () => other.peek(k1) === undefined && reader.peek(k1) === undefined,
    );
    assert.equal((await reader.getOrLoad(k1, () => load(1)))?.name, 'Ada L.');
    assert.equal(reader.peek<{ name: string }>(k2)?.name, 'Bob', 'users:2 untouched');

    await scope.q('DELETE FROM $schema.users WHERE id = 2');
    await waitFor('users:2 dropped', () => reader.peek(k2) === undefined);
    assert.equal(await reader.getOrLoad(k2, () => load(2)), undefined);

    // A list of user 7's orders, tagged by the narrowed column tag.
    const orders = (uid: number) =>
      scope
        .q('SELECT id FROM $schema.orders WHERE user_id = $1 ORDER BY id', [uid])
        .then((r) => r.rows.map((x) => x.id));
    const t7 = [columnTag(`${scope.schema}.orders`, 'user_id', 7)];
    const t8 = [columnTag(`${scope.schema}.orders`, 'user_id', 8)];
    assert.deepEqual(await reader.getOrLoad('orders:u7', () => orders(7), { tags: t7 }), [10]);
    assert.deepEqual(await reader.getOrLoad('orders:u8', () => orders(8), { tags: t8 }), [11]);
    await scope.q('INSERT INTO $schema.orders VALUES (12, 7, 1.00)');
    await waitFor('u7 list dropped', () => reader.peek('orders:u7') === undefined);
    assert.deepEqual(await reader.getOrLoad('orders:u7', () => orders(7), { tags: t7 }), [10, 12]);
    assert.deepEqual(reader.peek('orders:u8'), [11], 'user 8 list survives');
    // Moving an order away from user 7 needs the old user_id (REPLICA IDENTITY FULL).
    await scope.q('UPDATE $schema.orders SET user_id = 8 WHERE id = 10');
    await waitFor(
      'u7 and u8 dropped',
      () => reader.peek('orders:u7') === undefined && reader.peek('orders:u8') === undefined,
    );
    assert.deepEqual(await reader.getOrLoad('orders:u7', () => orders(7), { tags: t7 }), [12]);
  });

  it('TRUNCATE bumps the table tags; tables the config does not follow are not decoded', async () => {
    const reader = await res.readyEngine(prefix);
    const unknown: string[] = [];
    worker.events.on('unknown-table', (t) => unknown.push(t));
    const rowsSeen: number[] = [];
    worker.events.on('transaction', (rows) => rowsSeen.push(rows));
    const all = [tableTag(`${scope.schema}.orders`)];
    assert.ok(
      Array.isArray(
        await reader.getOrLoad(
          'orders:all',
          () => scope.q('SELECT id FROM $schema.orders').then((r) => r.rows),
          { tags: all },
        ),
      ),
    );
    await scope.q('INSERT INTO $schema.unknown_things VALUES (1)');
    await scope.q('TRUNCATE $schema.orders');
    await waitFor('orders:all dropped', () => reader.peek('orders:all') === undefined);
    assert.deepEqual(
      await reader.getOrLoad(
        'orders:all',
        () => scope.q('SELECT id FROM $schema.orders').then((r) => r.rows),
        { tags: all },
      ),
      [],
    );
    // wal2json's add-tables keeps the other table's row out of the stream: its
    // transaction arrives as an empty begin/commit pair, and nothing is counted unknown.
    assert.deepEqual(unknown, []);
    assert.deepEqual(
      rowsSeen.filter((n) => n > 0),
      [1],
      'only the TRUNCATE carried a change; the INSERT into unknown_things none',
    );
    const lag = await reader.workerLagMs();
    assert.ok(lag >= 0 && lag < 5_000, `the worker's heartbeat bounds staleness (lag ${lag} ms)`);
    assert.equal(worker.role, 'active');
  });
});

describe("wal2json add-tables (the server's own parser)", () => {
  const scope = new PgScope('addtables');
  after(() => scope.close());

  it('escaped names select exactly the listed tables, odd characters included', async () => {
    await scope.create(`
      CREATE TABLE "odd name, *x'q" (id int PRIMARY KEY);
      CREATE TABLE "a.b" (id int PRIMARY KEY);
      CREATE TABLE other (id int PRIMARY KEY);`);
    const slot = scope.slot();
    await scope.q("SELECT pg_create_logical_replication_slot($1, 'wal2json')", [slot]);
    await scope.q(`INSERT INTO $schema."odd name, *x'q" VALUES (1)`);
    await scope.q('INSERT INTO $schema."a.b" VALUES (2)');
    await scope.q('INSERT INTO $schema.other VALUES (3)');
    const list = wal2jsonAddTables([`${scope.schema}.odd name, *x'q`, `${scope.schema}.a.b`]);
    const { rows } = await scope.q<{ data: string }>(
      `SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL,
         'format-version', '2', 'add-tables', $2)`,
      [slot, list],
    );
    const tables = rows
      .map((r) => JSON.parse(r.data) as { action: string; table?: string })
      .filter((m) => m.action === 'I')
      .map((m) => m.table);
    assert.deepEqual(tables, ["odd name, *x'q", 'a.b']);
  });

  it('refuses an empty list (wal2json would read it as every table) and unqualified names', () => {
    assert.throws(() => wal2jsonAddTables([]), TypeError);
    assert.throws(() => wal2jsonAddTables(['users']), /schema\.table/);
  });
});

describe('invalidation worker close()', () => {
  const scope = new PgScope('wclose');
  after(() => scope.close());

  it('a second close() waits for the first: once either resolves, the worker is stopped and its slot has no consumer', async () => {
    await scope.create('CREATE TABLE users (id int PRIMARY KEY, email text)');
    const slot = scope.slot();
    const worker = new InvalidationWorker({
      config: resolveConfig({
        prefix: uniquePrefix('wclose'),
        defaultSchema: scope.schema,
        entities: { users: { table: 'users', key: 'id' } },
      }),
      slot,
    });
    await worker.start();
    assert.equal(worker.role, 'active');
    const first = worker.close();
    await worker.close();
    assert.equal(worker.role, 'stopped', 'the second close() resolved before the worker stopped');
    const { rows } = await scope.q('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [
      slot,
    ]);
    assert.equal(rows[0]?.active, false, 'the slot still has a consumer');
    await first;
    await worker.close(); // a third, after the fact: resolves at once
  });
});

describe('invalidation worker close() with its Redis gone', () => {
  const scope = new PgScope('wgone');
  const servers: PrivateRedis[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
    await scope.close();
  });

  it('returns within its shutdown budget while a received change cannot be applied, and holds the position', async () => {
    await scope.create('CREATE TABLE users (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)');
    const server = await startRedis((_dir, port) => ['--port', String(port)]);
    servers.push(server);
    const slot = scope.slot();
    const worker = new InvalidationWorker({
      config: resolveConfig({
        prefix: uniquePrefix('wgone'),
        redis: { url: `redis://127.0.0.1:${server.port}` },
        defaultSchema: scope.schema,
        entities: { users: { table: 'users', key: 'id' } },
      }),
      slot,
    });
    await worker.start();
    await scope.q('INSERT INTO $schema.users VALUES (1, 0)');
    await waitFor('applied', () => worker.appliedLsn !== null, 10_000);
    const applied = worker.appliedLsn;
    let failures = 0;
    worker.events.on('failure', (kind) => kind === 'redis' && failures++);
    server.signal('SIGKILL');
    await scope.q('UPDATE $schema.users SET n = n + 1 WHERE id = 1');
    await waitFor('the apply failing', () => failures > 0, 15_000);
    const started = performance.now();
    await worker.close();
    const took = performance.now() - started;
    assert.ok(took < 7_000, `close() took ${took.toFixed(0)} ms with Redis gone`);
    assert.equal(worker.appliedLsn, applied, 'nothing past the unapplied change was acknowledged');
  });
});
