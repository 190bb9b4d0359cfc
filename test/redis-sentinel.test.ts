/**
 * walcache on a Sentinel-managed Redis of the test's own (a master, a replica, three
 * sentinels on loopback ports): the cache, the bus and the worker follow the master the
 * sentinels name, through a failover, without a caller error and with nothing stale
 * once it has settled; doctor reports the topology.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { createRepository, defineConfig, doctor, resolveConfig } from '../src/index.js';
import { sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { type PrivateSentinel, startSentinel } from './redis-cluster-servers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

const ROWS = 100;

describe('Redis Sentinel', () => {
  const scope = new PgScope('sent');
  const prefix = uniquePrefix('sent');
  let sentinel: PrivateSentinel;
  let worker: InvalidationWorker | undefined;
  const closers: Array<() => Promise<unknown>> = [];

  const config = () =>
    defineConfig({
      prefix,
      redis: { sentinel: { sentinels: [...sentinel.sentinels], name: sentinel.name } },
      defaultSchema: scope.schema,
      cache: { earlyRefreshBeta: 0, ttlMs: 600_000 },
      accessLog: { sampleRate: 0 },
      entities: { users: { table: 'users', key: 'id', unique: ['email'] } },
    });

  before(async () => {
    sentinel = await startSentinel(1_000);
    await scope.create(TEST_TABLES);
    await scope.q(
      `INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'v0' FROM generate_series(1, ${ROWS}) g`,
    );
    worker = new InvalidationWorker({ config: resolveConfig(config()), slot: scope.slot() });
    await worker.start();
  });
  after(async () => {
    try {
      await worker?.close();
      for (const close of closers.reverse()) await close().catch(() => {});
    } finally {
      await sentinel?.stop();
      await scope.close();
    }
  });

  const service = async () => {
    const { db } = countingDb(scope.schema);
    closers.push(() => db.destroy());
    const repo = createRepository({ db, config: config() });
    closers.push(() => repo.close());
    await repo.ready();
    return repo;
  };

  it('doctor names the master the sentinels chose', async () => {
    const report = await doctor({ config: resolveConfig(config()), slot: scope.slot() });
    const topology = report.checks.find((c) => c.name === 'redis-topology');
    assert.equal(topology?.status, 'ok', JSON.stringify(topology));
    assert.match(
      topology?.detail ?? '',
      new RegExp(`sentinel master "${sentinel.name}" at 127\\.0\\.0\\.1:${sentinel.master.port}`),
    );
  });

  it('the master killed: reads answer throughout, the replica takes over, and invalidations reach it', async () => {
    const readers = [await service(), await service()];
    for (const repo of readers) for (let id = 1; id <= ROWS; id++) await repo.users.findById(id);
    const errors: unknown[] = [];
    let reads = 0;
    let running = true;
    const loops = readers.map(async (repo) => {
      while (running) {
        try {
          await repo.users.findById(1 + Math.floor(Math.random() * ROWS));
          reads++;
        } catch (error) {
          errors.push(error);
        }
        await sleep(1);
      }
    });
    await sleep(200);
    sentinel.master.signal('SIGKILL');
    await waitFor(
      'the sentinels to promote the replica',
      async () => (await sentinel.currentMasterPort()) === sentinel.replica.port,
      20_000,
    );
    const readsAtFailover = reads;
    // Writes after the failover: the worker must tombstone them on the new master.
    await scope.q("UPDATE $schema.users SET name = 'v1' WHERE id <= 10");
    await scope.waitCaughtUp(scope.slot(), 30_000);
    await sleep(300);
    running = false;
    await Promise.all(loops);
    assert.deepEqual(errors, [], 'no read failed');
    assert.ok(reads > readsAtFailover, 'reads went on');
    const { rows } = await scope.q<{ id: string; name: string }>(
      'SELECT id::text, name FROM $schema.users ORDER BY id',
    );
    const stale: string[] = [];
    for (const repo of readers) {
      assert.ok(repo.engine.busHealthy, 'the bus follows the new master');
      for (const row of rows) {
        const cached = await repo.users.findById(Number(row.id));
        if (cached?.name !== row.name) stale.push(`${row.id}: ${cached?.name} != ${row.name}`);
      }
    }
    assert.deepEqual(stale, [], 'stale_after_settle is 0');
    // The entries of the rows changed are the new master's tombstones, then the fresh rows.
    const other = await service();
    assert.equal((await other.users.findById(5))?.name, 'v1');
  });
});
