/**
 * Consistency benchmark (issue 13, "Prove it"): how stale can a read through walcache be,
 * with several application processes, plain-SQL writers, slow loaders and faults?
 *
 * A table of hot rows (`version` bumped by every write). Reader processes
 * (consistency-reader.ts), each with its own L1 and bus connection, read random rows
 * through the repository, their loaders slowed by `delay` ms between the SELECT and the
 * fill. Writers here commit plain SQL (the worker is the only invalidation) and note when
 * each version was acknowledged. Per loader delay, two phases:
 *
 * - clean: no faults;
 * - faults: the worker SIGKILLed and restarted, the cache Redis frozen (SIGSTOP) for
 *   3 s, the cache Redis restarted empty, and with BENCH_CONSISTENCY_PG_RESTART=1 only (the
 *   database may be shared) a PostgreSQL restart. Each fault has a window (from the fault
 *   to 2 s after recovery) whose reads are reported apart.
 *
 * After each phase the writers stop, the worker catches up (its slot confirms the WAL
 * position read then), and each reader sweeps every row: `stale_after_settle` counts rows
 * a reader returns older than the database.
 *
 * Redis is a private redis-server on a free port (consistency-redis.ts); PostgreSQL is the
 * usual one (own schema and slot, dropped at the end). Every child is forked through
 * bench/children.ts and ends on every exit path. The last line of stdout is JSON.
 *
 * Knobs (environment): BENCH_CONSISTENCY_ROWS (200), _READERS (2), _READ_RATE per reader
 * (1000/s), _WRITE_RATE (100/s), _DELAYS ("0,5,50"), _CLEAN_S (12), _REPEATS (1),
 * _FAULTS (1; 0 skips the fault phase), _FREEZE_MS (3000), _PG_RESTART (0),
 * _MAX_STALENESS_MS (unset: reads pass no `maxStalenessMs`), _DEBUG (1: the stalest reads).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { freePort } from '../test/helpers.js';
import { call, type Envelope, now, once, sleep } from './cdc-common.js';
import { forkChild, stopChild } from './children.js';
import {
  analyze,
  lowestNines,
  medianNines,
  nines,
  type Reads,
  stalest,
  THRESHOLDS,
  type Window,
  type WindowStats,
} from './consistency-analysis.js';
import { DATABASE_URL, SCHEMA, SLOT } from './consistency-common.js';

const env = (name: string, fallback: number) => {
  const raw = process.env[`BENCH_CONSISTENCY_${name}`];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`BENCH_CONSISTENCY_${name} must be a number >= 0, got ${raw}`);
  return n;
};
const ROWS = env('ROWS', 200);
const READERS = Math.max(1, env('READERS', 2));
const READ_RATE = env('READ_RATE', 1000);
const WRITE_RATE = env('WRITE_RATE', 100);
const CLEAN_S = env('CLEAN_S', 12);
const REPEATS = Math.max(1, env('REPEATS', 1));
const FAULTS = env('FAULTS', 1) > 0;
const FREEZE_MS = env('FREEZE_MS', 3000);
const PG_RESTART = env('PG_RESTART', 0) > 0;
const MAX_STALENESS_MS =
  process.env.BENCH_CONSISTENCY_MAX_STALENESS_MS === undefined
    ? undefined
    : env('MAX_STALENESS_MS', 0);
/** Logs each phase's fault windows and stalest reads (ms from the phase's start). */
const DEBUG = env('DEBUG', 0) > 0;
const DELAYS = (process.env.BENCH_CONSISTENCY_DELAYS ?? '0,5,50').split(',').map(Number);
const WRITERS = 4;
/** Reads this long after a fault's recovery (the worker caught up again) still belong to its window. */
const RECOVERY_MS = 2_000;

const log = (line: string) => process.stderr.write(`${line}\n`);
const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: WRITERS + 2 });
pool.on('error', () => {});
pool.on('connect', (client) => client.on('error', () => {}));

// --- the database ------------------------------------------------------------------

async function dropSlot(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await pool.query<{ pid: number | null }>(
      'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
      [SLOT],
    );
    if (rows.length === 0) return;
    if (rows[0]?.pid) await pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    await pool.query('SELECT pg_drop_replication_slot($1)', [SLOT]).catch(() => {});
    await sleep(50);
  }
}

async function createTable(): Promise<void> {
  await dropSlot();
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await pool.query(`CREATE SCHEMA ${SCHEMA}`);
  await pool.query(
    `CREATE TABLE ${SCHEMA}.hot (id int PRIMARY KEY, version bigint NOT NULL DEFAULT 0,
       payload text NOT NULL, secret text NOT NULL DEFAULT 'never cached')`,
  );
  await pool.query(
    `INSERT INTO ${SCHEMA}.hot (id, payload) SELECT g, repeat('x', 200) FROM generate_series(1, $1) g`,
    [ROWS],
  );
}

async function dbVersions(): Promise<number[]> {
  const { rows } = await pool.query<{ version: string }>(
    `SELECT version FROM ${SCHEMA}.hot ORDER BY id`,
  );
  return rows.map((r) => Number(r.version));
}

/**
 * Waits until the slot confirmed the WAL position read now (the worker applied it).
 * Retries through connection errors (a PostgreSQL restart).
 */
async function waitCaughtUp(timeoutMs = 60_000): Promise<number> {
  const started = now();
  let target: string | undefined;
  for (;;) {
    try {
      target ??= (await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))
        .rows[0]?.lsn;
      const r = await pool.query<{ ok: boolean }>(
        'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2',
        [target, SLOT],
      );
      if (r.rows[0]?.ok === true) return now() - started;
    } catch {
      // the server is restarting: ask again
    }
    if (now() - started > timeoutMs) throw new Error('the worker did not catch up in 60 s');
    await sleep(20);
  }
}

/** Restarts PostgreSQL (BENCH_CONSISTENCY_PG_RESTART=1 only): needs the data directory's owner. */
async function restartPostgres(): Promise<void> {
  const { rows } = await pool.query<{ dir: string }>('SHOW data_directory');
  const { stdout } = await promisify(execFile)('pg_config', ['--bindir']).catch(() => ({
    stdout: '',
  }));
  const pgCtl = stdout.trim() ? `${stdout.trim()}/pg_ctl` : 'pg_ctl';
  await promisify(execFile)(pgCtl, ['restart', '-D', rows[0]?.dir as string, '-m', 'fast', '-w']);
}

// --- writers -------------------------------------------------------------------------

/** Per row, when each version was acknowledged (index = version). */
let acks = new Map<number, number[]>();
let writeErrors: number[] = [];
let writing = false;

async function writer(k: number, intervalMs: number): Promise<void> {
  const mine = Array.from({ length: ROWS }, (_, i) => i + 1).filter((id) => id % WRITERS === k);
  let next = now();
  while (writing) {
    const id = mine[Math.floor(Math.random() * mine.length)] as number;
    try {
      const { rows } = await pool.query<{ version: string }>(
        `UPDATE ${SCHEMA}.hot SET version = version + 1 WHERE id = $1 RETURNING version`,
        [id],
      );
      const at = now();
      const list = acks.get(id) ?? [];
      list[Number(rows[0]?.version)] = at;
      acks.set(id, list);
    } catch {
      writeErrors.push(now());
      await sleep(50);
    }
    next += intervalMs;
    const wait = next - now();
    if (wait < -1_000) next = now();
    if (wait > 0) await sleep(wait);
  }
}

function startWriters(): Promise<unknown> {
  writing = true;
  return Promise.all(
    Array.from({ length: WRITERS }, (_, k) => writer(k, (1000 * WRITERS) / WRITE_RATE)),
  );
}

// --- children ------------------------------------------------------------------------

type Child = ReturnType<typeof forkChild>;

async function fork(file: string): Promise<Child> {
  const child = forkChild(new URL(file, import.meta.url));
  await once(child, 'ready', 60_000);
  return child;
}

async function startWorker(prefix: string, redisUrl: string): Promise<Child> {
  const child = await fork('./consistency-worker.ts');
  await call(child, { type: 'start', prefix, redisUrl }, 60_000);
  return child;
}

function killNow(child: Child): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function collect(readers: readonly Child[]): Promise<Reads> {
  const all = {
    t: [] as number[],
    id: [] as number[],
    v: [] as number[],
    ms: [] as number[],
    l1: [] as number[],
  };
  for (const r of readers) {
    const got = await call<Envelope & Reads>(r, { type: 'collect' }, 60_000);
    all.t.push(...got.t);
    all.id.push(...got.id);
    all.v.push(...got.v);
    all.ms.push(...got.ms);
    all.l1.push(...got.l1);
  }
  return all;
}

/** Writers stopped: the worker catches up, then every reader reads every row once. */
async function settle(readers: readonly Child[]): Promise<{ stale: number; caughtUpMs: number }> {
  const caughtUpMs = await waitCaughtUp();
  // Bus messages are published before the commit is acknowledged; let them arrive.
  await sleep(100);
  await Promise.all(readers.map((r) => call(r, { type: 'pause' })));
  const truth = await dbVersions();
  let stale = 0;
  for (const r of readers) {
    const { versions } = await call<Envelope & { versions: number[] }>(
      r,
      { type: 'sweep' },
      60_000,
    );
    versions.forEach((v, i) => {
      if (v !== truth[i]) stale++;
    });
  }
  await Promise.all(readers.map((r) => call(r, { type: 'resume' })));
  return { stale, caughtUpMs };
}

// --- one setting ---------------------------------------------------------------------

interface PhaseResult {
  readonly delayMs: number;
  readonly phase: 'clean' | 'faults';
  readonly stats: Record<string, WindowStats>;
  readonly staleAfterSettle: number;
  readonly writeErrors: number;
  readonly windows: readonly Window[];
  /** Commit → applied as the worker saw it (in the fault phase: the restarted worker only). */
  readonly workerLag: { readonly max: number; readonly over100: number; readonly n: number };
}

async function runSetting(
  delayMs: number,
  repeat: number,
  redis: Child,
  redisUrl: string,
): Promise<PhaseResult[]> {
  const prefix = `wcbench-cons-${delayMs}-${repeat}-${Date.now().toString(36)}`;
  let worker: Child | null = null;
  const readers: Child[] = [];
  const results: PhaseResult[] = [];
  try {
    worker = await startWorker(prefix, redisUrl);
    for (let i = 0; i < READERS; i++) readers.push(await fork('./consistency-reader.ts'));
    await Promise.all(
      readers.map((r) =>
        call(
          r,
          {
            type: 'start',
            prefix,
            redisUrl,
            delayMs,
            rows: ROWS,
            rate: READ_RATE,
            concurrency: 4,
            ...(MAX_STALENESS_MS !== undefined && { maxStalenessMs: MAX_STALENESS_MS }),
          },
          60_000,
        ),
      ),
    );
    await sleep(1_000); // caches fill
    await collect(readers);

    const phase = async (
      name: 'clean' | 'faults',
      schedule: (windows: Window[]) => Promise<void>,
    ) => {
      acks = new Map((await dbVersions()).map((v, i) => [i + 1, Array(v + 1)]));
      writeErrors = [];
      await collect(readers);
      const windows: Window[] = [];
      await call(worker as Child, { type: 'stats', reset: true });
      const phaseStart = now();
      const writers = startWriters();
      try {
        await schedule(windows);
      } finally {
        writing = false;
        await writers;
      }
      const reads = await collect(readers);
      const { stale, caughtUpMs } = await settle(readers);
      const { lag } = await call<Envelope & { lag: PhaseResult['workerLag'] }>(worker as Child, {
        type: 'stats',
      });
      const stats = analyze(reads, acks, windows);
      if (DEBUG) {
        const at = (t: number) => Math.round(t - phaseStart);
        for (const w of windows) log(`  window ${w.name}: ${at(w.from)}..${at(w.to)} ms`);
        for (const r of stalest(reads, acks, 100))
          log(
            `  stale read at ${at(r.t)} ms: row ${r.id} v${r.version}, ${Math.round(r.stalenessMs)} ms stale${r.l1 ? ' (L1)' : ''}`,
          );
      }
      log(
        `delay ${delayMs} ms, ${name}: ${stats.all?.reads} reads, ${stats.all?.errors} errors, ` +
          `stale >100 ms: ${stats.all?.staleBeyond[2]}, worst ${Math.round(stats.all?.worstStalenessMs ?? 0)} ms, ` +
          `stale after settle ${stale} (worker caught up in ${Math.round(caughtUpMs)} ms); ` +
          `worker lag max ${Math.round(lag.max)} ms, ${lag.over100} of ${lag.n} commits over 100 ms`,
      );
      results.push({
        delayMs,
        phase: name,
        stats,
        staleAfterSettle: stale,
        writeErrors: writeErrors.length,
        windows,
        workerLag: lag,
      });
    };

    await phase('clean', () => sleep(CLEAN_S * 1000));
    if (FAULTS)
      await phase('faults', async (windows) => {
        await sleep(2_000);
        // The worker crashes; a new one takes the slot once the walsender lets go.
        let from = now();
        await killNow(worker as Child);
        await sleep(1_000);
        worker = await startWorker(prefix, redisUrl);
        await waitCaughtUp();
        windows.push({ name: 'worker-kill', from, to: now() + RECOVERY_MS });
        await sleep(3_000);
        const frozen = await call<Envelope & { stoppedAt: number; resumedAt: number }>(
          redis,
          { type: 'freeze', ms: FREEZE_MS },
          FREEZE_MS + 30_000,
        );
        await waitCaughtUp();
        windows.push({ name: 'redis-freeze', from: frozen.stoppedAt, to: now() + RECOVERY_MS });
        await sleep(3_000);
        const restarted = await call<Envelope & { downAt: number; upAt: number }>(
          redis,
          { type: 'restart' },
          30_000,
        );
        await waitCaughtUp();
        windows.push({ name: 'redis-restart', from: restarted.downAt, to: now() + RECOVERY_MS });
        await sleep(3_000);
        if (PG_RESTART) {
          from = now();
          await restartPostgres().catch((error: Error) =>
            log(`PostgreSQL restart failed: ${error.message}`),
          );
          await waitCaughtUp();
          windows.push({ name: 'pg-restart', from, to: now() + RECOVERY_MS });
          await sleep(3_000);
        }
      });
  } finally {
    await Promise.all(readers.map((r) => stopChild(r, { type: 'stop' })));
    await stopChild(worker, { type: 'stop' });
  }
  return results;
}

// --- the run -------------------------------------------------------------------------

function windowSummary(s: WindowStats) {
  return {
    reads: s.reads,
    errors: s.errors,
    ...Object.fromEntries(THRESHOLDS.map((x, k) => [`nines_within_${x}ms`, nines(s, k)])),
    worst_staleness_ms: Math.round(s.worstStalenessMs),
    max_read_ms: Math.round(s.maxReadMs),
    // An L1 hit behind maxStalenessMs comes after an await: not attributed then.
    l1_share:
      MAX_STALENESS_MS !== undefined || s.reads === 0
        ? null
        : Math.round((s.l1Reads / s.reads) * 1000) / 1000,
    stale_over_100ms: s.staleBeyond[2] as number,
    stale_over_100ms_from_l1:
      MAX_STALENESS_MS !== undefined ? null : (s.staleBeyondFromL1[2] as number),
  };
}

async function main(): Promise<void> {
  const started = now();
  let redis: Child | null = null;
  let redisPid: number | undefined;
  // Whatever ends this process, the private redis-server goes too (its own parent is
  // SIGKILLed by children.ts's exit hook, which would orphan it).
  process.on('exit', () => {
    if (redisPid !== undefined)
      try {
        process.kill(redisPid, 'SIGKILL');
      } catch {
        // already gone
      }
  });
  const all: PhaseResult[] = [];
  try {
    await createTable();
    const port = await freePort();
    const redisUrl = `redis://127.0.0.1:${port}`;
    redis = await fork('./consistency-redis.ts');
    redis.on('message', (m: Envelope) => {
      if (typeof m?.pid === 'number') redisPid = m.pid;
    });
    await call(redis, { type: 'start', port }, 30_000);
    log(
      `consistency: ${ROWS} rows, ${READERS} readers × ${READ_RATE} reads/s, ${WRITE_RATE} writes/s, ` +
        `loader delays ${DELAYS.join('/')} ms, ${CLEAN_S} s clean${FAULTS ? ' + a fault phase' : ''}${PG_RESTART ? ' (with a PostgreSQL restart)' : ''}, ${REPEATS} repeat(s)`,
    );
    for (let r = 0; r < REPEATS; r++)
      for (const delay of DELAYS) all.push(...(await runSetting(delay, r, redis, redisUrl)));
  } finally {
    await stopChild(redis, { type: 'stop' });
    await dropSlot().catch(() => {});
    await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
    await pool.end();
  }

  // Medians over repeats, per (delay, phase) and window.
  const settings = [];
  for (const delay of DELAYS)
    for (const phase of ['clean', 'faults'] as const) {
      const runs = all.filter((x) => x.delayMs === delay && x.phase === phase);
      if (runs.length === 0) continue;
      const names = [...new Set(runs.flatMap((x) => Object.keys(x.stats)))];
      const windows = Object.fromEntries(
        names.map((name) => {
          const per = runs.map((x) => x.stats[name]).filter((s) => s !== undefined);
          const summaries = per.map(windowSummary);
          const median = (f: (s: ReturnType<typeof windowSummary>) => number | null) => {
            const values = summaries.map(f);
            if (values.some((v) => v === null)) return null;
            return (values as number[]).sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
          };
          return [
            name,
            {
              reads: median((s) => s.reads),
              errors: median((s) => s.errors),
              ...Object.fromEntries(
                THRESHOLDS.map((x, k) => [
                  `nines_within_${x}ms`,
                  medianNines(per.map((s) => nines(s, k))),
                ]),
              ),
              worst_staleness_ms: median((s) => s.worst_staleness_ms),
              max_read_ms: median((s) => s.max_read_ms),
              l1_share: median((s) => s.l1_share),
              stale_over_100ms: median((s) => s.stale_over_100ms),
              stale_over_100ms_from_l1: median((s) => s.stale_over_100ms_from_l1),
            },
          ];
        }),
      );
      settings.push({
        loader_delay_ms: delay,
        phase,
        stale_after_settle: Math.max(...runs.map((x) => x.staleAfterSettle)),
        write_errors: Math.max(...runs.map((x) => x.writeErrors)),
        worker_lag_max_ms: Math.round(Math.max(...runs.map((x) => x.workerLag.max))),
        windows,
      });
    }
  const cleanNines = settings
    .filter((s) => s.phase === 'clean')
    .map(
      (s) =>
        (s.windows.all as unknown as { nines_within_100ms: number | 'inf' }).nines_within_100ms,
    );
  const staleAfterSettle = Math.max(0, ...settings.map((s) => s.stale_after_settle));
  // With N reads and none stale, "inf" only shows that at least log10(N) nines hold.
  const cleanReads = settings
    .filter((s) => s.phase === 'clean')
    .map((s) => (s.windows.all as unknown as { reads: number }).reads);
  const resolution =
    cleanReads.length === 0 ? null : Math.round(Math.log10(Math.min(...cleanReads)) * 100) / 100;
  const nines100 = lowestNines(cleanNines);
  for (const s of settings)
    for (const [name, w] of Object.entries(s.windows))
      log(`  delay ${s.loader_delay_ms} ${s.phase} ${name}: ${JSON.stringify(w)}`);
  const result = {
    bench: 'consistency',
    rows: ROWS,
    readers: READERS,
    read_rate_per_reader: READ_RATE,
    write_rate: WRITE_RATE,
    repeats: REPEATS,
    pg_restart: PG_RESTART,
    max_staleness_ms: MAX_STALENESS_MS ?? null,
    duration_s: Math.round((now() - started) / 1000),
    settings,
    stale_after_settle: staleAfterSettle,
    nines_within_100ms: nines100,
    nines_resolution: resolution,
    goals: {
      stale_after_settle_0: staleAfterSettle === 0,
      // "unproven": no stale read, but too few reads to show 5 nines (see nines_resolution).
      nines_within_100ms_at_least_5:
        nines100 !== 'inf' ? nines100 >= 5 : (resolution ?? 0) >= 5 ? true : 'unproven',
    },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  log(`bench:consistency failed: ${error instanceof Error ? error.stack : String(error)}`);
  process.exit(1);
});
