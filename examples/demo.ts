/**
 * `npm start`: the walcache demo, in one process, each part a separate component:
 *
 *   - a demo schema `walcache_demo` (users, orders, user_activity; 10k users, 50k orders;
 *     created and seeded idempotently),
 *   - `walcache setup` (publication and slot `walcache_demo`, wal2json),
 *   - the invalidation worker and the jobs runner (write-behind flushes),
 *   - the HTTP service of examples/http-service.ts, reading through the repository,
 *   - a load: concurrent HTTP clients (Zipf-ish user ids) plus writes through plain SQL
 *     (UPDATE users, INSERT orders) that only the worker can invalidate, and a
 *     write-behind `user_activity` touch per request,
 *   - a live view (requests/s, hit rate per tier, commit → eviction lag, slot lag,
 *     pending write-behind) and a final summary.
 *
 *   npm run setup && npm start               # Ctrl-C to stop
 *   npm start -- --duration 10               # stops by itself after 10 s
 *
 * Before the load starts, the worker catches up with what the slot kept since the last run
 * (progress shown): other work may have written a lot since. At the end the load stops,
 * the demo waits for the worker to apply every plain-SQL write (as long as the worker
 * keeps moving: a busy machine is slow, not wrong), then reads each written user back
 * through the service and compares it, field by field, with the database. Exit code 1
 * when the worker stopped before applying a write, a read was stale after the worker
 * applied its write, or nothing hit the cache.
 *
 * The slot `walcache_demo` is kept at exit so the next start reuses it (its position is
 * where this run stopped); the summary says so. `--drop-slot` drops it at exit (so it
 * retains no WAL); so does
 *   psql -c "SELECT pg_drop_replication_slot('walcache_demo')"
 * The schema stays: `DROP SCHEMA walcache_demo CASCADE`. WALCACHE_DEMO_NAME names another
 * schema, slot and publication (and key prefix), for a second demo beside the first.
 */
import type { AddressInfo } from 'node:net';
import { Cluster, Redis } from 'ioredis';
import { type ColumnType, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  createRepository,
  DEFAULT_DATABASE_URL,
  DEFAULT_REDIS_URL,
  defineConfig,
  InvalidationWorker,
  JobsRunner,
  pgConfig,
  resolveConfig,
  SetupError,
  setup,
} from '../src/index.js';
import { lsnToBigInt } from '../src/protocol/lsn.js';
import { WriteBehindStore } from '../src/write-behind/write-behind-store.js';
import { currentWalLsn, formatBytes, waitApplied } from './demo-catch-up.js';
import { createService, type Database, SCHEMA_SQL, serviceConfig } from './http-service.js';

/**
 * The demo's schema, slot and publication: `walcache_demo`, or WALCACHE_DEMO_NAME (a
 * lower-case identifier), so that two demos (a test and a person) can run side by side.
 */
const NAME = process.env.WALCACHE_DEMO_NAME ?? 'walcache_demo';
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(NAME)) {
  console.error(
    `WALCACHE_DEMO_NAME must be a lower-case SQL identifier (letters, digits, "_"), got ${JSON.stringify(NAME)}`,
  );
  process.exit(2);
}
const SCHEMA = NAME;
const PREFIX = NAME.replaceAll('_', '-');
const SLOT = NAME;
const PUBLICATION = NAME;
const USERS = 10_000;
const ORDERS = 50_000;
const CLIENTS = 4;
const WRITES_PER_SECOND = 5;
/** A read that differs from the database is re-read for this long before it counts as stale (bus delivery). */
const STALE_RECHECK_MS = 1_000;
const USAGE = 'usage: npm start [-- --duration <seconds>] [--drop-slot]';
const FIX =
  'run: npm run setup   (with Docker instead: docker compose up -d --wait, then DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm start)';

const DATABASE_URL = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
/** A Redis Cluster's seed nodes (`host:port,...`), else one Redis at REDIS_URL (the config reads both the same way). */
const CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES?.trim() || undefined;
const REDIS_URL = process.env.REDIS_URL ?? DEFAULT_REDIS_URL;

const ACTIVITY_SQL = `
CREATE TABLE IF NOT EXISTS user_activity (
  user_id   bigint PRIMARY KEY,
  last_seen text,
  last_path text
);
CREATE SEQUENCE IF NOT EXISTS demo_order_ids START ${ORDERS + 1};`;

const SEED_SQL = `
INSERT INTO users (id, email, name, tenant_id)
  SELECT i, 'user' || i || '@example.com', 'User ' || i, 1 + i % 5
  FROM generate_series(1, ${USERS}) AS i
ON CONFLICT DO NOTHING;
INSERT INTO orders (id, user_id, status, total)
  SELECT i, 1 + (i * 7919) % ${USERS}, CASE WHEN i % 3 = 0 THEN 'open' ELSE 'paid' END,
         round((i % 500)::numeric + 0.99, 2)
  FROM generate_series(1, ${ORDERS}) AS i
ON CONFLICT DO NOTHING;`;

/** The demo's config: the service's entities plus a write-behind entity. Shared by the worker and the runner. */
function demoConfig() {
  const base = serviceConfig({ schema: SCHEMA, prefix: PREFIX });
  return defineConfig({
    ...base,
    databaseUrl: DATABASE_URL,
    writeBehind: { flushIntervalMs: 500 },
    entities: {
      ...base.entities,
      activity: { table: 'user_activity', key: 'user_id', writeBehind: true },
    },
  });
}

interface ActivityDb {
  user_activity: {
    user_id: ColumnType<string, string | number, never>;
    last_seen: string | null;
    last_path: string | null;
  };
}

// --- arguments -----------------------------------------------------------------------

function parseArgs(argv: string[]): { durationS: number | null; dropSlot: boolean } {
  let durationS: number | null = null;
  let dropSlot = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duration' || a === '-d') {
      durationS = Number(argv[++i]);
    } else if (a?.startsWith('--duration=')) {
      durationS = Number(a.slice('--duration='.length));
    } else if (a === '--drop-slot') {
      dropSlot = true;
    } else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else {
      console.error(`unknown argument ${a}\n${USAGE}`);
      process.exit(2);
    }
    if (durationS !== null && !(Number.isFinite(durationS) && durationS > 0)) {
      console.error('--duration takes a positive number of seconds');
      process.exit(2);
    }
  }
  return { durationS, dropSlot };
}

// --- statistics ----------------------------------------------------------------------

class Stats {
  requests = 0;
  errors = 0;
  l1 = 0;
  l2 = 0;
  misses = 0;
  lags: number[] = [];
  writes: Write[] = [];
  /** Writes the worker has applied (its confirmed position is past their commit). */
  applied = 0;
  slotLagBytes = 0;
  pendingWriteBehind = 0;
  activityAccepted = 0;
  readonly startedAt = performance.now();

  lookups(): number {
    return this.l1 + this.l2 + this.misses;
  }
}

interface Write {
  readonly kind: 'update' | 'insert';
  readonly userId: number;
  readonly lsn: bigint;
  readonly committedAt: number;
  appliedAt: number | null;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

const pct = (n: number, d: number) => (d === 0 ? '0.0%' : `${((100 * n) / d).toFixed(1)}%`);

/** Zipf-ish ids (s = 1.1): a few hot users, a long tail. */
function zipf(n: number, s = 1.1): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += 1 / (i + 1) ** s;
    cdf[i] = sum;
  }
  // A fixed shuffle so the hot ids are not 1, 2, 3...
  const ids = Array.from({ length: n }, (_, i) => ((i * 7_777 + 13) % n) + 1);
  return () => {
    const x = Math.random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return ids[lo] as number;
  };
}

// --- pre-flight ----------------------------------------------------------------------

/** A problem the user fixes by starting or setting up the services: a message, no stack trace. */
class PreflightError extends Error {}

async function preflightRedis(): Promise<void> {
  const options = { maxRetriesPerRequest: 0, connectTimeout: 2_000 };
  const redis =
    CLUSTER_NODES === undefined
      ? new Redis(REDIS_URL, { ...options, lazyConnect: true, retryStrategy: () => null })
      : new Cluster(
          CLUSTER_NODES.split(',').map((node) => {
            const at = node.trim().lastIndexOf(':');
            return { host: node.trim().slice(0, at), port: Number(node.trim().slice(at + 1)) };
          }),
          { lazyConnect: true, redisOptions: options, clusterRetryStrategy: () => null },
        );
  const where = CLUSTER_NODES === undefined ? REDIS_URL : `the cluster ${CLUSTER_NODES}`;
  redis.on('error', () => {});
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    const why = message(error);
    throw new PreflightError(
      `Redis is not reachable at ${where}${why === 'Connection is closed.' ? '' : ` (${why})`}`,
    );
  } finally {
    redis.disconnect();
  }
}

function message(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return message(error.errors[0]);
  return error instanceof Error ? error.message.split('\n')[0] || error.name : String(error);
}

// --- main ----------------------------------------------------------------------------

/** Cleanup steps, run in reverse order on every way out of the demo, each on its own. */
class Closers {
  readonly #steps: Array<readonly [string, () => unknown]> = [];

  add(name: string, step: () => unknown): void {
    this.#steps.push([name, step]);
  }

  async run(): Promise<void> {
    for (let step = this.#steps.pop(); step !== undefined; step = this.#steps.pop()) {
      try {
        await step[1]();
      } catch (error) {
        console.error(`closing ${step[0]}: ${message(error)}`);
      }
    }
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const closers = new Closers();
  let report: { lines: string[]; problems: string[] };
  try {
    report = await run(args, closers);
  } finally {
    await closers.run();
  }
  const out = process.stdout;
  out.write(`${report.lines.join('\n')}\n`);
  const { problems } = report;
  out.write(problems.length === 0 ? 'result: ok\n' : `result: FAILED (${problems.join(', ')})\n`);
  return problems.length === 0 ? 0 : 1;
}

async function run(
  { durationS, dropSlot }: { durationS: number | null; dropSlot: boolean },
  closers: Closers,
): Promise<{ lines: string[]; problems: string[] }> {
  const out = process.stdout;
  const tty = out.isTTY === true;

  // Pre-flight: Redis, Postgres, the demo schema, then `walcache setup` (wal_level, wal2json slot).
  await preflightRedis();
  const pool = new pg.Pool({
    ...pgConfig(DATABASE_URL),
    options: `-c search_path=${SCHEMA}`,
    max: 8,
  });
  // A PostgreSQL restart must not end the demo: pg emits `error` on a checked-out client
  // too, and pg-pool listens only on idle ones (docs/repository.md).
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  closers.add('the pool', () => (pool.ending ? undefined : pool.end()));
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    throw new PreflightError(`PostgreSQL is not reachable at ${DATABASE_URL} (${message(error)})`);
  }
  const config = demoConfig();
  const resolved = resolveConfig(config);
  try {
    out.write(`walcache demo: schema ${SCHEMA}, prefix ${PREFIX}, slot ${SLOT}\n`);
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    await pool.query(SCHEMA_SQL);
    await pool.query(ACTIVITY_SQL);
    const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM orders');
    if (Number(rows[0]?.n) < ORDERS) {
      out.write(`seeding ${USERS} users and ${ORDERS} orders...\n`);
      await pool.query(SEED_SQL);
      await pool.query('ANALYZE users; ANALYZE orders');
    }
    const kept = await slotBacklog(pool);
    if (kept !== null)
      out.write(
        `slot ${SLOT} kept from an earlier run: ${formatBytes(kept)} of WAL written since, to catch up\n`,
      );
    const report = await setup({ config: resolved, slot: SLOT, publication: PUBLICATION });
    if (!report.ok) {
      const problems = report.steps
        .filter((s) => s.status === 'error')
        .map((s) => `  ${s.detail}${s.fix ? `\n    (${s.fix})` : ''}`);
      throw new PreflightError(`walcache setup failed:\n${problems.join('\n')}`);
    }
    for (const s of report.steps)
      if (s.status !== 'ok') out.write(`setup: ${s.status} ${s.detail}\n`);
  } catch (error) {
    if (error instanceof SetupError) throw new PreflightError(error.message.split('\n')[0]);
    throw error;
  }
  // Registered before the worker's stop, so it runs after it: the slot is free by then.
  let slotLine = `slot ${SLOT} kept: it holds WAL from here until the next run; drop it with \`npm start -- --drop-slot\` or psql -c "SELECT pg_drop_replication_slot('${SLOT}')"`;
  if (dropSlot)
    closers.add('the slot', async () => {
      await dropReplicationSlot(pool);
      slotLine = `slot ${SLOT} dropped (--drop-slot)`;
    });

  const stats = new Stats();

  // The invalidation worker.
  const worker = new InvalidationWorker({
    config: resolved,
    slot: SLOT,
    publication: PUBLICATION,
    heartbeatIntervalMs: 500,
    statusIntervalMs: 1_000,
  });
  // Commit → eviction lag of the commits made while the load runs: the backlog the slot
  // kept since the last run (replayed at start) would count its age, not the worker's lag.
  let since = Number.POSITIVE_INFINITY;
  worker.events.on('applied', (_tx, _rows, _keys, _tags, _ms, lags) => {
    const now = Date.now();
    for (const l of lags) if (now - l >= since) stats.lags.push(Math.max(0, l));
  });
  closers.add('the worker', () => worker.close());
  await worker.start();
  if (worker.role === 'standby')
    throw new PreflightError(
      `the slot ${SLOT} is in use by another process (is another demo running?)`,
    );
  // Catch up before the load: the load's writes would otherwise wait behind the backlog.
  const caughtUp = await waitApplied(worker, await currentWalLsn(pool), {
    label: 'catching up with the slot',
    out,
  });
  if (!caughtUp.caughtUp)
    throw new Error(
      `the worker did not catch up with its slot: behind by ${formatBytes(caughtUp.behindBytes)} (${caughtUp.reason})`,
    );

  // The service: repository + HTTP.
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const repo = createRepository({
    db,
    config: serviceConfig({ schema: SCHEMA, prefix: PREFIX }),
  });
  closers.add('the repository', () => repo.close());
  repo.engine.events.on('hit', (tier) => {
    if (tier === 'l1') stats.l1++;
    else stats.l2++;
  });
  repo.engine.events.on('stale-served', (tier) => {
    if (tier === 'l1') stats.l1++;
    else stats.l2++;
  });
  repo.engine.events.on('miss', () => {
    stats.misses++;
  });
  const server = createService({ repo, db });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.add('the service', () => {
    server.close();
    server.closeAllConnections();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // The write-behind component (user_activity) and the jobs runner that flushes it.
  const activityDb = new Kysely<ActivityDb>({ dialect: new PostgresDialect({ pool }) });
  const activity = createRepository({ db: activityDb, config });
  closers.add('the write-behind repository', () => activity.close());
  const runner = new JobsRunner({ config: resolved, db: activityDb, accessLogFlushMs: 5_000 });
  closers.add('the jobs runner', () => runner.close());
  await runner.start();

  out.write(`service on ${base}; ${CLIENTS} clients, ~${WRITES_PER_SECOND} SQL writes/s\n`);
  if (durationS === null) out.write('Ctrl-C to stop\n');

  // --- load --------------------------------------------------------------------------
  let running = true;
  const nextId = zipf(USERS);
  const client = async (): Promise<void> => {
    while (running) {
      const id = nextId();
      const r = Math.random();
      const path =
        r < 0.6 ? `/users/${id}` : r < 0.85 ? `/users/${id}/orders` : `/users/${id}/stats`;
      try {
        const res = await fetch(base + path);
        await res.arrayBuffer();
        stats.requests++;
        if (res.status >= 500) stats.errors++;
        if (Math.random() < 0.05) {
          await activity.activity.writeBehind(String(id), {
            last_seen: new Date().toISOString(),
            last_path: path,
          });
          stats.activityAccepted++;
        }
      } catch {
        stats.errors++;
        if (running) await sleep(50);
      }
    }
  };

  const writerClient = new pg.Client(
    pgConfig(DATABASE_URL, { options: `-c search_path=${SCHEMA}` }),
  );
  writerClient.on('error', () => {});
  closers.add('the writer', () => writerClient.end());
  await writerClient.connect();
  const writer = async (): Promise<void> => {
    let n = 0;
    while (running) {
      await sleep(1_000 / WRITES_PER_SECOND);
      if (!running) break;
      const userId = nextId();
      const kind = n++ % 2 === 0 ? 'update' : 'insert';
      try {
        if (kind === 'update') {
          await writerClient.query('UPDATE users SET name = $2 WHERE id = $1', [
            userId,
            `User ${userId} (renamed ${new Date().toISOString().slice(11, 23)})`,
          ]);
        } else {
          await writerClient.query(
            "INSERT INTO orders (id, user_id, status, total) VALUES (nextval('demo_order_ids'), $1, 'open', $2)",
            [userId, (Math.random() * 200).toFixed(2)],
          );
        }
        // At or past the end of the commit record: once the worker has applied this far, the write is invalidated.
        const { rows } = await writerClient.query<{ lsn: string }>(
          'SELECT pg_current_wal_insert_lsn()::text AS lsn',
        );
        stats.writes.push({
          kind,
          userId,
          lsn: lsnToBigInt(rows[0]?.lsn as string),
          committedAt: Date.now(),
          appliedAt: null,
        });
      } catch (error) {
        if (running) console.error(`write failed: ${message(error)}`);
      }
    }
  };

  const trackApplied = () => {
    const applied = worker.appliedLsn;
    if (applied === null) return;
    const at = lsnToBigInt(applied);
    for (const w of stats.writes) {
      if (w.appliedAt === null && w.lsn <= at) {
        w.appliedAt = Date.now();
        stats.applied++;
      }
    }
  };
  const tracker = setInterval(trackApplied, 20);
  closers.add('the tracker', () => clearInterval(tracker));

  const pendingWrites = new WriteBehindStore(resolved);
  closers.add('the write-behind store', () => pendingWrites.close());
  const slotPool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 1 });
  slotPool.on('error', () => {});
  closers.add('the slot pool', () => slotPool.end());
  const sample = async () => {
    try {
      stats.slotLagBytes = Number((await slotBacklog(slotPool)) ?? 0n);
    } catch {}
    try {
      stats.pendingWriteBehind = (await pendingWrites.stats('activity')).pending;
    } catch {}
  };

  // --- live view ---------------------------------------------------------------------
  let last = { t: performance.now(), requests: 0, l1: 0, l2: 0, misses: 0 };
  let drawn = 0;
  const draw = async () => {
    await sample();
    const now = performance.now();
    const dt = (now - last.t) / 1000;
    const rps = (stats.requests - last.requests) / dt;
    const dl1 = stats.l1 - last.l1;
    const dl2 = stats.l2 - last.l2;
    const dlookups = dl1 + dl2 + (stats.misses - last.misses);
    last = { t: now, requests: stats.requests, l1: stats.l1, l2: stats.l2, misses: stats.misses };
    const elapsed = ((now - stats.startedAt) / 1000).toFixed(0);
    const recent = stats.lags.slice(-2_000);
    const lag = `p50 ${percentile(recent, 50).toFixed(0)} ms  p99 ${percentile(recent, 99).toFixed(0)} ms`;
    const slot = formatBytes(stats.slotLagBytes);
    if (tty) {
      const lines = [
        `walcache demo  ${elapsed}s   (${durationS === null ? 'Ctrl-C to stop' : `stops after ${durationS} s; Ctrl-C to stop now`})`,
        `  requests/s     ${rps.toFixed(0).padStart(7)}   total ${stats.requests}  errors ${stats.errors}`,
        `  hit rate       L1 ${pct(dl1, dlookups).padStart(6)}  L2 ${pct(dl2, dlookups).padStart(6)}  overall ${pct(dl1 + dl2, dlookups).padStart(6)}`,
        `  commit→evict   ${lag}`,
        `  slot lag       ${slot}`,
        `  SQL writes     ${stats.writes.length}  applied by the worker ${stats.applied}`,
        `  write-behind   ${stats.pendingWriteBehind} pending  (${stats.activityAccepted} accepted)`,
      ];
      if (drawn > 0) out.write(`\x1b[${drawn}A`);
      out.write(lines.map((l) => `\x1b[2K${l}\n`).join(''));
      drawn = lines.length;
    } else {
      out.write(
        `[${elapsed}s] req/s ${rps.toFixed(0)} | hit L1 ${pct(dl1, dlookups)} L2 ${pct(dl2, dlookups)} all ${pct(dl1 + dl2, dlookups)} | lag ${lag} | slot ${slot} | writes ${stats.applied}/${stats.writes.length} applied | write-behind pending ${stats.pendingWriteBehind}\n`,
      );
    }
  };
  let drawing = Promise.resolve();
  const view = setInterval(() => {
    drawing = drawing.then(draw);
  }, 1_000);
  closers.add('the view', () => clearInterval(view));

  // --- run until Ctrl-C / SIGTERM / --duration ----------------------------------------
  since = Date.now();
  const loadStartedAt = performance.now();
  const load = Promise.all([...Array.from({ length: CLIENTS }, client), writer()]);
  let interrupted = 0;
  await new Promise<void>((resolve) => {
    const stop = () => {
      interrupted++;
      if (interrupted > 1) {
        console.error('\nforced exit');
        process.exit(130);
      }
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (durationS !== null) setTimeout(resolve, durationS * 1000).unref();
  });
  running = false;
  await load;
  const loadSeconds = (performance.now() - loadStartedAt) / 1000;
  clearInterval(view);
  await drawing;

  // --- catch up and verify -------------------------------------------------------------
  // Wait as long as the worker keeps moving: on a busy machine it is slow, not wrong.
  const lastWrite = stats.writes.at(-1)?.lsn ?? 0n; // one writer: in commit order
  const final = await waitApplied(worker, lastWrite, {
    label: 'load stopped; applying the last writes',
    out,
  });
  trackApplied();
  clearInterval(tracker);
  // Let the jobs runner flush what write-behind accepted (bounded too).
  const flushDeadline = Date.now() + 5_000;
  await sample();
  while (stats.pendingWriteBehind > 0 && Date.now() < flushDeadline) {
    await sleep(100);
    await sample();
  }

  // Only users whose every write the worker applied can be judged; the others are behind.
  const pending = new Set(stats.writes.filter((w) => w.appliedAt === null).map((w) => w.userId));
  const judged = [...new Set(stats.writes.map((w) => w.userId))].filter((id) => !pending.has(id));
  const stale = await findStaleReads(pool, base, judged);
  for (const s of stale) console.error(`stale read: user ${s.userId} ${s.field}: ${s.detail}`);
  const staleUsers = new Set(stale.map((s) => s.userId));
  const invalidated = stats.writes.filter(
    (w) => w.appliedAt !== null && !staleUsers.has(w.userId),
  ).length;

  // --- summary -------------------------------------------------------------------------
  await closers.run(); // shut down first, so the slot line below says what happened to it
  const lookups = stats.lookups();
  const hits = stats.l1 + stats.l2;
  const writes = stats.writes.length;
  const lines = [
    '',
    'summary',
    `  requests          ${stats.requests} in ${loadSeconds.toFixed(1)} s (${(stats.requests / loadSeconds).toFixed(0)} req/s), errors ${stats.errors}`,
    `  hit rate          L1 ${pct(stats.l1, lookups)}  L2 ${pct(stats.l2, lookups)}  overall ${pct(hits, lookups)}  (${hits} of ${lookups} lookups)`,
    `  writes            ${writes} through plain SQL (${stats.writes.filter((w) => w.kind === 'update').length} updates, ${stats.writes.filter((w) => w.kind === 'insert').length} inserts)`,
    `  writes invalidated ${invalidated} of ${writes}`,
  ];
  const problems: string[] = [];
  if (!final.caughtUp) {
    const oldest = stats.writes.find((w) => w.appliedAt === null);
    const ms = oldest === undefined ? 0 : Date.now() - oldest.committedAt;
    lines.push(
      `  worker behind by  ${formatBytes(final.behindBytes)} / ${ms} ms: ${writes - stats.applied} writes not applied yet (${final.reason})`,
    );
    problems.push(`the worker stopped ${formatBytes(final.behindBytes)} behind (${final.reason})`);
  }
  lines.push(
    `  commit→evict lag  p50 ${percentile(stats.lags, 50).toFixed(0)} ms  p99 ${percentile(stats.lags, 99).toFixed(0)} ms  (${stats.lags.length} commits)`,
    `  write-behind      ${stats.activityAccepted} accepted, ${stats.pendingWriteBehind} still pending after the flush`,
    `  stale reads found ${stale.length} (checked ${judged.length} written users after the worker applied their writes)`,
    `  ${slotLine}`,
  );
  if (hits === 0) problems.push('no cache hits');
  if (writes === 0) problems.push('no writes');
  if (stale.length > 0) problems.push(`${stale.length} stale reads`);
  return { lines, problems };
}

/** Bytes of WAL written since the demo's slot last confirmed a position; null without a slot. */
async function slotBacklog(pool: pg.Pool): Promise<bigint | null> {
  const { rows } = await pool.query<{ lag: string | null }>(
    'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag FROM pg_replication_slots WHERE slot_name = $1',
    [SLOT],
  );
  const lag = rows[0]?.lag;
  return lag == null ? null : BigInt(lag) > 0n ? BigInt(lag) : 0n;
}

/** Drops the demo's slot once its walsender has let go of it (a moment after the worker stops). */
async function dropReplicationSlot(pool: pg.Pool): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await pool.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
        [SLOT],
      );
      return;
    } catch (error) {
      // 55006: "replication slot ... is active for PID ...": the walsender is still exiting.
      if ((error as { code?: string }).code !== '55006' || attempt >= 50) throw error;
      await sleep(100);
    }
  }
}

interface StaleRead {
  readonly userId: number;
  readonly field: 'row' | 'name' | 'email' | 'orders';
  readonly detail: string;
}

/**
 * Reads each user back through the service and compares it with the database, field by
 * field. A difference is read again for up to STALE_RECHECK_MS (the bus message that drops
 * L1 copies may arrive a moment after the worker confirmed its position); only one that
 * persists is a stale read, reported with both values.
 */
async function findStaleReads(pool: pg.Pool, base: string, ids: number[]): Promise<StaleRead[]> {
  const stale: StaleRead[] = [];
  for (const id of ids) {
    const deadline = Date.now() + STALE_RECHECK_MS;
    for (;;) {
      const difference = await compareUser(pool, base, id);
      if (difference === null) break;
      if (Date.now() >= deadline) {
        stale.push(difference);
        break;
      }
      await sleep(50);
    }
  }
  return stale;
}

async function compareUser(pool: pg.Pool, base: string, id: number): Promise<StaleRead | null> {
  const { rows } = await pool.query<{ name: string; email: string; ids: string[] | null }>(
    'SELECT u.name, u.email, (SELECT array_agg(o.id::text ORDER BY o.id) FROM orders o WHERE o.user_id = u.id) AS ids FROM users u WHERE u.id = $1',
    [id],
  );
  const row = rows[0];
  const user = (await (await fetch(`${base}/users/${id}`)).json()) as {
    name?: string;
    email?: string;
  };
  const orders = (await (await fetch(`${base}/users/${id}/orders`)).json()) as { id: string }[];
  if (row === undefined) return { userId: id, field: 'row', detail: 'gone from the database' };
  const differs = (field: StaleRead['field'], cache: unknown, database: unknown) =>
    ({
      userId: id,
      field,
      detail: `cache ${JSON.stringify(cache)}, database ${JSON.stringify(database)}`,
    }) as const;
  if (user.name !== row.name) return differs('name', user.name, row.name);
  if (user.email !== row.email) return differs('email', user.email, row.email);
  const cachedIds = Array.isArray(orders) ? orders.map((o) => String(o.id)) : orders;
  if (JSON.stringify(cachedIds) !== JSON.stringify(row.ids ?? []))
    return differs('orders', cachedIds, row.ids ?? []);
  return null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof PreflightError) {
      console.error(`walcache demo cannot start: ${error.message}\n${FIX}`);
    } else {
      console.error(`walcache demo failed: ${message(error)}`);
    }
    process.exit(1);
  },
);
