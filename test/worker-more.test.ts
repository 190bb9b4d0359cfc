import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { entityKey, resolveConfig, SetupError } from '../src/index.js';
import { tableResetTag } from '../src/keys/redis-keys.js';
import { freePort, Resources, sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';

describe('invalidation worker: identity, row cap, pgoutput, races, Redis pauses', () => {
  const res = new Resources();
  const scope = new PgScope('wmore');
  const workers: InvalidationWorker[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    await scope.create(`
      CREATE TABLE users (id int PRIMARY KEY, email text, n int NOT NULL DEFAULT 0);
      INSERT INTO users SELECT g, 'u' || g || '@x', 0 FROM generate_series(1, 5000) g;
      CREATE TABLE accounts (id int PRIMARY KEY, owner_id int, balance int NOT NULL DEFAULT 0);
      ALTER TABLE accounts REPLICA IDENTITY FULL;
      INSERT INTO accounts SELECT g, g % 10, 0 FROM generate_series(1, 100) g;`);
  });
  after(async () => {
    for (const w of workers) await w.close();
    for (const c of children) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
    await res.close();
    await scope.close();
  });

  const start = async (
    prefix: string,
    extra: Parameters<typeof resolveConfig>[0] = {},
    options: Partial<ConstructorParameters<typeof InvalidationWorker>[0]> = {},
  ) => {
    const worker = new InvalidationWorker({
      config: resolveConfig({
        prefix,
        defaultSchema: scope.schema,
        entities: { users: { table: 'users', key: 'id' } },
        ...extra,
      }),
      slot: scope.slot(`_${workers.length}`),
      ...options,
    });
    workers.push(worker);
    await worker.start();
    return worker;
  };

  it('refuses to start when the config needs old values a DEFAULT identity does not carry, naming the table', async () => {
    const worker = new InvalidationWorker({
      config: resolveConfig({
        prefix: res.track(uniquePrefix('ident')),
        defaultSchema: scope.schema,
        entities: { users: { table: 'users', key: 'id', unique: ['email'] } },
      }),
      slot: scope.slot('_ident'),
    });
    workers.push(worker);
    await assert.rejects(worker.start(), (e: unknown) => {
      assert.ok(e instanceof SetupError);
      assert.match(
        e.message,
        new RegExp(
          `${scope.schema}\\.users needs REPLICA IDENTITY FULL: the worker needs the old values of email`,
        ),
      );
      assert.match(
        e.fix,
        new RegExp(`ALTER TABLE "${scope.schema}"\\."users" REPLICA IDENTITY FULL`),
      );
      return true;
    });
    const { rows } = await scope.q('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [
      scope.slot('_ident'),
    ]);
    assert.equal(rows.length, 0, 'no slot was created');
  });

  it('a restart bumps no epoch; a slot dropped and recreated by hand is detected and bumps it', async () => {
    const prefix = res.track(uniquePrefix('recreate'));
    const config = resolveConfig({
      prefix,
      defaultSchema: scope.schema,
      entities: { users: { table: 'users', key: 'id' } },
    });
    const slot = scope.slot('_recreate');
    const run = async () => {
      const worker = new InvalidationWorker({ config, slot });
      const bumps: string[] = [];
      worker.events.on('epoch-bump', (reason) => bumps.push(reason));
      await worker.start();
      await scope.q('UPDATE $schema.users SET n = n + 1 WHERE id = 1');
      await waitFor('applied', () => worker.appliedLsn !== null, 10_000);
      await sleep(300);
      await worker.close();
      return bumps;
    };
    assert.deepEqual(await run(), ['slot-created']);
    assert.deepEqual(await run(), [], 'a plain restart resumes without a gap');
    // The walsender lets go of the slot a moment after the worker stops.
    await waitFor(
      'the slot released',
      async () =>
        (await scope.q('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot]))
          .rows[0]?.active_pid === null,
      10_000,
    );
    await scope.q('SELECT pg_drop_replication_slot($1)', [slot]);
    await scope.q('UPDATE $schema.users SET n = n + 1 WHERE id = 2'); // never seen by any slot
    await scope.q("SELECT pg_create_logical_replication_slot($1, 'wal2json')", [slot]);
    assert.deepEqual(await run(), ['slot-ahead-of-heartbeat']);
  });

  it('a transaction past the row cap collapses into a table reset: memory flat, entries still invalidated', async () => {
    const prefix = uniquePrefix('rowcap');
    const worker = await start(prefix, {}, { transactionRowCap: 100 });
    let collapsed = 0;
    worker.events.on('transaction', (_rows, c) => c && collapsed++);
    const reader = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const load = async (id: number) =>
      (await scope.q('SELECT n FROM $schema.users WHERE id = $1', [id])).rows[0]?.n;
    // Entities depend on their table's reset tag, so a collapsed transaction reaches them.
    const tags = [tableResetTag(`${scope.schema}.users`)];
    assert.equal(await reader.getOrLoad(entityKey('users', [4321]), () => load(4321), { tags }), 0);
    await scope.q('UPDATE $schema.users SET n = n + 1'); // 5000 rows, one transaction
    await waitFor('collapsed transaction applied', () => collapsed === 1, 15_000);
    await waitFor('L1 dropped', () => reader.peek(entityKey('users', [4321])) === undefined);
    assert.equal(await reader.getOrLoad(entityKey('users', [4321]), () => load(4321), { tags }), 1);
  });

  it('pgoutput: the same invalidations through the built-in plugin', async () => {
    const prefix = uniquePrefix('pgoutput');
    const publication = `${scope.schema}_pub`;
    await scope.q(`CREATE PUBLICATION ${publication} FOR TABLE $schema.users, $schema.accounts`);
    try {
      const worker = await start(
        prefix,
        { invalidateBy: { accounts: ['owner_id'] } },
        { decoder: 'pgoutput', publication },
      );
      assert.equal(worker.role, 'active');
      const reader = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
      const other = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
      const k = entityKey('users', [7]);
      await reader.getOrLoad(
        k,
        async () => (await scope.q('SELECT n FROM $schema.users WHERE id = 7')).rows[0]?.n,
      );
      await other.getOrLoad(k, () => assert.fail('L2 hit'));
      await scope.q('UPDATE $schema.users SET n = n + 10 WHERE id = 7');
      await waitFor('other dropped users:7', () => other.peek(k) === undefined);
      const { columnTag } = await import('../src/index.js');
      const t3 = [columnTag(`${scope.schema}.accounts`, 'owner_id', 3)];
      const list = () =>
        scope
          .q('SELECT id FROM $schema.accounts WHERE owner_id = 3 ORDER BY id')
          .then((r) => r.rows.map((x) => x.id));
      const before = await reader.getOrLoad('accounts:o3', list, { tags: t3 });
      await scope.q('UPDATE $schema.accounts SET owner_id = 4 WHERE id = 3'); // old owner_id needs FULL identity
      await waitFor('owner 3 list dropped', () => reader.peek('accounts:o3') === undefined);
      const afterMove = await reader.getOrLoad('accounts:o3', list, { tags: t3 });
      assert.deepEqual(
        afterMove,
        before.filter((id: number) => id !== 3),
      );
      await worker.close();
    } finally {
      await scope.q(`DROP PUBLICATION IF EXISTS ${publication}`);
    }
  });

  it('contract 1 end to end: readers filling while writers commit; after catch-up nothing cached differs from the database', async () => {
    const prefix = uniquePrefix('e2e-race');
    await start(prefix, { entities: { accounts: { table: 'accounts', key: 'id' } } });
    const engines = await Promise.all(
      [1, 2, 3].map(() =>
        res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0, ttlMs: 600_000 } }),
      ),
    );
    const load = async (id: number) => {
      const row = (await scope.q('SELECT balance FROM $schema.accounts WHERE id = $1', [id]))
        .rows[0]?.balance;
      await sleep(Math.random() * 5); // widen the window between the read and the fill
      return row;
    };
    let writing = true;
    const writers = Promise.all(
      [0, 1].map(async (w) => {
        for (let i = 0; i < 300; i++)
          await scope.q('UPDATE $schema.accounts SET balance = balance + 1 WHERE id = $1', [
            1 + ((i * 3 + w) % 20),
          ]);
      }),
    ).finally(() => {
      writing = false;
    });
    const readers = Promise.all(
      engines.map(async (engine, e) => {
        for (let i = 0; writing; i++) {
          const id = 1 + ((i + e) % 20);
          await engine.getOrLoad(entityKey('accounts', [id]), () => load(id));
        }
      }),
    );
    await Promise.all([writers, readers]);
    await scope.waitCaughtUp(workers.at(-1)?.slot as string, 20_000);
    await sleep(50);
    let stale = 0;
    for (let id = 1; id <= 20; id++) {
      const truth = (await scope.q('SELECT balance FROM $schema.accounts WHERE id = $1', [id]))
        .rows[0]?.balance;
      for (const engine of engines) {
        const cached = await engine.getOrLoad(entityKey('accounts', [id]), () => truth);
        if (cached !== truth) stale++;
      }
    }
    assert.equal(stale, 0);
  });

  it('Redis paused while commits arrive: the worker holds the position, retries, and misses nothing', async () => {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    children.push(child);
    const url = `redis://127.0.0.1:${port}`;
    await sleep(300);
    const prefix = uniquePrefix('paused');
    const worker = await start(prefix, { redis: { url } });
    const redisErrors: unknown[] = [];
    worker.events.on('failure', (kind, e) => kind === 'redis' && redisErrors.push(e));
    const reader = await res.readyEngine(prefix, {
      redis: { url },
      cache: { earlyRefreshBeta: 0, ttlMs: 600_000 },
    });
    const load = async (id: number) =>
      (await scope.q('SELECT n FROM $schema.users WHERE id = $1', [id])).rows[0]?.n;
    for (let id = 100; id < 110; id++)
      await reader.getOrLoad(entityKey('users', [id]), () => load(id));
    child.kill('SIGSTOP');
    for (let id = 100; id < 110; id++)
      await scope.q('UPDATE $schema.users SET n = n + 5 WHERE id = $1', [id]);
    await sleep(6_000); // longer than the worker's command timeout: it must fail and retry
    const held = worker.appliedLsn;
    child.kill('SIGCONT');
    assert.ok(redisErrors.length > 0, 'applying failed while Redis was paused');
    await waitFor('applied after Redis came back', () => worker.appliedLsn !== held, 20_000);
    const check = await res.readyEngine(prefix, { redis: { url }, l1: { enabled: false } });
    for (let id = 100; id < 110; id++) {
      const truth = await load(id);
      assert.equal(
        await check.getOrLoad(entityKey('users', [id]), () => truth),
        truth,
        `users:${id}`,
      );
    }
  });
});
