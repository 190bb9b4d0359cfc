import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Job } from 'bullmq';
import {
  defineConfig,
  entityKey,
  JobsRunner,
  resolveConfig,
  runMigrations,
  type WalcacheConfigInput,
  type WarmSummary,
} from '../src/index.js';
import { createQueues, enqueueWarm, queueConnection } from '../src/queues/walcache-queues.js';
import {
  freePort,
  REDIS_CONFIG,
  Resources,
  redisEnv,
  sleep,
  startRedis,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES, warmerSqlFiles } from './repo-helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The jobs runner against real Redis (BullMQ) and Postgres. The queues live under the
 * test's own prefix (`{t-jrun-...}`), obliterated and deleted at the end. The warmers'
 * SQL is a copy of `sql/hot-keys.sql` naming the test's schema (the packaged file names
 * `walcache.access_log`); cron schedules far away keep the schedulers from starting jobs
 * on their own, so each test decides what runs.
 */
describe('jobs runner', () => {
  const res = new Resources();
  const scope = new PgScope('jrun');
  const prefix = res.track(uniquePrefix('jrun'));
  res.track(`{${prefix}}`); // BullMQ's keys
  const { db } = countingDb(scope.schema);
  const sqlFiles = warmerSqlFiles(scope.schema);
  const { dir, hotKeys } = sqlFiles;
  const sqlFile = sqlFiles.file;
  const never = { cron: '0 0 1 1 *' };
  const input = {
    prefix,
    redis: REDIS_CONFIG,
    databaseUrl: DATABASE_URL,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    entities: {
      users: { table: 'users', key: 'id', deny: ['password_hash'] },
      orders: { table: 'orders', key: 'id', writeBehind: true },
    },
    writeBehind: { flushIntervalMs: 500 },
    warmers: {
      hot: { schedule: never, sql: hotKeys, entity: 'users', batchSize: 2 },
      nightly: { schedule: { cron: '0 3 * * *' }, sql: hotKeys, entity: 'users' },
      broken: {
        schedule: never,
        sql: sqlFile('broken.sql', 'SELECT key FROM no_such_table WHERE $1::text = $1 LIMIT $2'),
        entity: 'users',
      },
      slow: {
        schedule: never,
        sql: sqlFile(
          'slow.sql',
          `SELECT $1::text || ':' || g AS key FROM generate_series(40, 42) g, pg_sleep(0.3) LIMIT $2`,
        ),
        entity: 'users',
      },
    },
  } satisfies WalcacheConfigInput;
  const config = defineConfig(input);
  const resolved = resolveConfig(config);
  const inspector = queueConnection(resolved, { blocking: false });
  const queues = createQueues(resolved, inspector);
  const runners: JobsRunner[] = [];
  const runner = (overrides: Partial<WalcacheConfigInput> = {}) => {
    const r = new JobsRunner({
      config: { ...config, ...overrides },
      db,
      accessLogSchema: scope.schema,
    });
    runners.push(r);
    return r;
  };
  const schedulers = async (queue: keyof typeof queues & ('warm' | 'flush' | 'accessLog')) =>
    (await queues[queue].getJobSchedulers(0, -1)).map((s) => s.id ?? s.key).sort();
  const finished = async (id: string, timeoutMs = 15_000): Promise<Job> => {
    let job: Job | undefined;
    await waitFor(
      `job ${id} finished`,
      async () => {
        job = await queues.warm.getJob(id);
        const state = await job?.getState();
        return state === 'completed' || state === 'failed';
      },
      timeoutMs,
    );
    // Fetched again: the copy read before its state was checked may predate the result.
    return (await queues.warm.getJob(id)) ?? (job as Job);
  };

  before(async () => {
    await scope.create(TEST_TABLES);
    await runMigrations(scope.pool, { schema: scope.schema });
    await scope.q(`
      INSERT INTO $schema.users (id, email, name)
        SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 50) g;
      INSERT INTO $schema.access_log (key, entity, hits, bucket)
        SELECT 'users:' || g, 'users', 100 - g, date_trunc('hour', now()) FROM generate_series(1, 5) g;`);
  });
  // A test that fails half-way must not leave its workers taking the next test's jobs.
  afterEach(() => Promise.all(runners.map((r) => r.close())));
  after(async () => {
    for (const queue of queues.byName.values()) await queue.obliterate({ force: true });
    await queues.close();
    inspector.disconnect();
    await db.destroy();
    sqlFiles.remove();
    await res.close();
    await scope.close();
  });

  it('a warm job run through the queue reports progress and returns the summary', async () => {
    const r = runner();
    await r.start();
    await r.start(); // idempotent
    const id = await enqueueWarm(queues.warm, 'hot');
    const job = await finished(id);
    assert.equal(await job.getState(), 'completed', job.failedReason);
    const summary = job.returnvalue as WarmSummary;
    assert.deepEqual(
      { ...summary, durationMs: 0 },
      {
        warmer: 'hot',
        entity: 'users',
        keys: 5,
        loaded: 5,
        skipped: 0,
        missing: 0,
        failed: 0,
        ignored: 0,
        durationMs: 0,
      },
    );
    assert.deepEqual(job.progress, {
      done: 5,
      total: 5,
      loaded: 5,
      skipped: 0,
      missing: 0,
      failed: 0,
    });
    const fresh = await res.readyEngine(prefix, { l1: { enabled: false } });
    assert.equal((await fresh.get<{ name: string }>(entityKey('users', [3])))?.name, 'user 3');

    const metrics = await r.registry.metrics();
    assert.match(metrics, /walcache_jobs_duration_seconds_count\{queue="warm"\} 1/);
    assert.match(metrics, /walcache_jobs_queue_jobs\{queue="warm",state="delayed"\} \d+/);
    assert.match(metrics, /walcache_write_behind_pending\{entity="orders"\} 0/);
    assert.match(metrics, /walcache_write_behind_dead_letters\{entity="orders"\} 0/);
    assert.match(metrics, /walcache_warm_keys_total\{warmer="hot",outcome="loaded"\} 5/);
    assert.deepEqual(r.status(), { ready: true, started: true, closing: false, redis: 'ready' });
    await r.close();
    await r.close(); // idempotent
    assert.equal(r.status().ready, false);
  });

  it('a warmer whose SQL fails fails its job with the SQL error; another warmer still completes', async () => {
    const r = runner();
    // Before anything ran, every series the config names is there at 0: the first failure
    // is an increase Prometheus can see.
    const before = await r.registry.metrics();
    for (const queue of ['warm', 'write-behind', 'access-log']) {
      assert.match(before, new RegExp(`walcache_jobs_failures_total\\{queue="${queue}"\\} 0\n`));
      assert.match(
        before,
        new RegExp(`walcache_jobs_duration_seconds_count\\{queue="${queue}"\\} 0\n`),
      );
    }
    assert.match(before, /walcache_warm_keys_total\{warmer="broken",outcome="failed"\} 0\n/);
    assert.match(before, /walcache_write_behind_failed_rows_total\{entity="orders"\} 0\n/);
    await r.start();
    const [brokenId, hotId] = await Promise.all([
      enqueueWarm(queues.warm, 'broken'),
      enqueueWarm(queues.warm, 'hot'),
    ]);
    const broken = await finished(brokenId);
    const hot = await finished(hotId);
    assert.equal(await broken.getState(), 'failed');
    assert.match(broken.failedReason, /Warmer "broken".*no_such_table/);
    assert.equal(await hot.getState(), 'completed', hot.failedReason);
    assert.equal((hot.returnvalue as WarmSummary).skipped, 5, 'warmed by the test before');
    assert.match(await r.registry.metrics(), /walcache_jobs_failures_total\{queue="warm"\} 1/);
    await r.close();
  });

  it('schedules survive restarts and concurrent starts without duplicates; a removed warmer loses its scheduler', async () => {
    const wantWarm = ['warm:broken', 'warm:hot', 'warm:nightly', 'warm:slow'];
    // Two replicas starting at once: the scheduler lock makes them upsert in turn.
    const [a, b] = [runner(), runner()];
    await Promise.all([a.start(), b.start()]);
    assert.deepEqual(await schedulers('warm'), wantWarm);
    assert.deepEqual(await schedulers('flush'), ['flush:orders']);
    assert.deepEqual(await schedulers('accessLog'), ['access-log']);
    await Promise.all([a.close(), b.close()]);

    const c = runner();
    await c.start();
    assert.deepEqual(await schedulers('warm'), wantWarm);
    assert.deepEqual(await schedulers('flush'), ['flush:orders']);
    assert.deepEqual(await schedulers('accessLog'), ['access-log']);
    const counts = await queues.warm.getJobCounts('delayed', 'waiting');
    assert.equal(counts.delayed, wantWarm.length, 'one next job per warm scheduler');
    assert.equal(counts.waiting, 0);
    await c.close();

    const { nightly: _removed, ...warmers } = input.warmers;
    const d = runner({ warmers });
    await d.start();
    assert.deepEqual(await schedulers('warm'), ['warm:broken', 'warm:hot', 'warm:slow']);
    assert.equal((await queues.warm.getJobCounts('delayed')).delayed, 3);
    assert.equal(await queues.warm.getJobScheduler('warm:nightly'), undefined);
    await d.close();
  });

  it('close() waits for a running job to finish', async () => {
    const r = runner();
    await r.start();
    const id = await enqueueWarm(queues.warm, 'slow');
    await waitFor(
      'slow job active',
      async () => (await queues.warm.getJob(id))?.isActive() ?? false,
      10_000,
    );
    await r.close();
    const job = await finished(id, 1);
    assert.equal(await job.getState(), 'completed', job.failedReason);
    assert.equal((job.returnvalue as WarmSummary).keys, 3);
  });

  it('past jobs.shutdownTimeoutMs, close() cancels the running job between batches', async () => {
    const r = runner({ jobs: { shutdownTimeoutMs: 100 } });
    await r.start();
    const id = await enqueueWarm(queues.warm, 'slow');
    await waitFor(
      'slow job active',
      async () => (await queues.warm.getJob(id))?.isActive() ?? false,
      10_000,
    );
    const started = Date.now();
    await r.close();
    assert.ok(Date.now() - started < 5_000, 'close did not wait for the job to end on its own');
    const job = await finished(id, 1);
    assert.equal(await job.getState(), 'failed');
    assert.match(job.failedReason, /Warmer "slow" stopped: .*shutting down/);
  });
  it('close() returns while its Redis has stopped answering', async () => {
    const server = await startRedis();
    const r = new JobsRunner({
      config: { ...config, redis: { url: server.url }, jobs: { shutdownTimeoutMs: 500 } },
      db,
      accessLogSchema: scope.schema,
      schedule: false,
    });
    try {
      await r.start();
      server.process.kill('SIGSTOP');
      const started = Date.now();
      const closed = await Promise.race([
        r.close().then(() => true),
        sleep(10_000).then(() => false),
      ]);
      assert.ok(closed, 'close() still pending after 10 s');
      assert.ok(Date.now() - started < 8_000, `close took ${Date.now() - started} ms`);
    } finally {
      server.process.kill('SIGCONT');
      server.process.kill('SIGKILL');
    }
  });

  it('walcache jobs: /readyz and /metrics while running, SIGTERM stops it gracefully with exit 0', async () => {
    const port = await freePort();
    const file = join(dir, 'jobs.config.json');
    writeFileSync(
      file,
      JSON.stringify({
        ...input,
        jobs: { metricsPort: port, shutdownTimeoutMs: 5_000 },
      }),
    );
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'jobs', '--config', file, '--log-level', 'warn'],
      { cwd: ROOT, env: redisEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await waitFor(
        'walcache jobs ready',
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.ok === true,
        20_000,
      );
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /walcache_jobs_queue_jobs\{queue="warm",state="delayed"\} \d+/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      const id = await enqueueWarm(queues.warm, 'hot');
      assert.equal(await (await finished(id)).getState(), 'completed');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
  });
});
