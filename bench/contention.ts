/**
 * Contention benchmark (issue 16, "Fast where it matters"): hot rows read by many
 * concurrent readers in one or more application processes while plain-SQL writers
 * update those same rows as fast as they can.
 *
 *   node --import tsx bench/contention.ts        (npm run bench:contention)
 *
 * Data: schema `walcache_bench_contention` (BENCH_CONTENTION_SCHEMA; dropped and
 * recreated at the start, dropped at the end, with its wal2json replication slot of the
 * same name, made at the start), table `hot` (id int primary key, version bigint, payload text of 200 bytes),
 * BENCH_CONTENTION_ROWS rows (200).
 *
 * Processes (every one forked through bench/children.ts, so each ends on every way out,
 * SIGINT and SIGTERM included):
 * - N app processes (contention-app.ts), each with its own pg pool (BENCH_CONTENTION_POOL,
 *   10), L1 and bus connection, running BENCH_CONTENTION_CONCURRENCY (32) read loops;
 *   each loop reads one row by id after the other (ids uniform, or Zipf with
 *   BENCH_CONTENTION_DIST=zipf and BENCH_CONTENTION_ZIPF_S, from a PRNG seeded per
 *   process, loop and round) and yields to the event loop every 16 reads (an L1 hit
 *   never does by itself);
 * - one writer process (contention-writer.ts): BENCH_CONTENTION_WRITERS (4) loops each
 *   committing single-row `UPDATE hot SET version = version + 1` (autocommit) as fast as
 *   they can, ids uniform (BENCH_CONTENTION_WRITE_RATE caps their total rate: a bentocache
 *   writer also awaits its delete, so unpinned it writes less often than in the other
 *   rounds; writes/s per contender are in the JSON);
 * - the InvalidationWorker in its own process (contention-worker.ts), running only in
 *   walcache rounds (as in bench:workload), started with the round's key prefix and
 *   caught up on the backlog before the round begins.
 *
 * Contenders, all on the same pool and the same loader delay:
 * - walcache: `repo.hot.findById(id)`; nothing invalidates but the worker;
 * - bentocache 1.6 (bench/bentocache-baseline.ts: memory L1 of 10,000 items, Redis L2,
 *   Redis bus, TTL 60 s): `getOrSet` with the same SELECT as walcache's loader; the
 *   writer deletes the row's key through its own bentocache (L1, L2, bus) after each
 *   UPDATE, as its users do by hand;
 * - direct: the same SELECT through Kysely on every read.
 *
 * Loader delay: the app processes' Kysely runs on DelayedSelects (contention-common.ts),
 * a dialect around PostgresDialect that returns the connection to the pool as soon as a
 * SELECT's rows are in and holds the result `d` ms before Kysely returns it: the delay
 * sits inside the loader, after the query, before the cache fills. Direct reads pay it on
 * every read.
 *
 * Settings (BENCH_CONTENTION_SETTINGS, `p<N>_d<ms>`): p1_d0, p2_d0, p3_d0 (1, 2 or 3 app
 * processes, no delay), p1_d5, p1_d50 (one process, 5 or 50 ms). Per setting,
 * BENCH_CONTENTION_ROUNDS rounds (3); each round runs every contender once, the order
 * rotated per round (and per setting). A contender round: fresh Redis key prefix (empty
 * caches), readers and writers start together, BENCH_CONTENTION_WARMUP_MS (500)
 * unmeasured, then BENCH_CONTENTION_SECONDS (2) measured; readers and writers stop
 * together. reads/s of a round = the sum over app processes of each one's reads in its
 * window / the window's length. Figures are medians over rounds; ratios are medians of
 * the per-round ratios (walcache / bentocache, walcache / direct).
 *
 * stale_after_settle: after each walcache round, once the writers stopped, the slot's
 * confirmed_flush_lsn is awaited up to pg_current_wal_lsn() read then, plus 100 ms for
 * the bus; then every app process reads every hot row through walcache and each version
 * is compared with the database's: the count of rows older than the database, summed
 * over processes and rounds. The same for bentocache (its own deletes were all awaited
 * by the writer; 100 ms for its bus). Direct reads are the database.
 *
 * Engine events (walcache rounds, measured windows, summed over processes and rounds):
 * every event the engine in the tree emits is counted by name (`events`), and named in
 * the JSON: loads, fills, fills rejected, lease waits and those that gave up (no value
 * from the holder in time: the reader loaded without filling), coalesced, misses.
 *
 * Needs PostgreSQL with wal2json (wal_level logical) at DATABASE_URL and Redis at
 * REDIS_URL. Drops its schema and slot and deletes its Redis keys at the end, also on
 * failure, SIGINT and SIGTERM. Human-readable lines first; the last line of stdout is
 * one JSON object.
 */
import type { ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createSlot } from '../src/database/slot.js';
import { call, type Envelope, once, round } from './cdc-common.js';
import { forkChild, stopChild } from './children.js';
import {
  type ContenderName,
  DATABASE_URL,
  KEY_PREFIX,
  REDIS_URL,
  SCHEMA,
  SLOT,
  sleep,
} from './contention-common.js';
import { deleteRedisKeys } from './redis-keys.js';
import { currentLsn, dropSlot, dropStaleSlot, waitConfirmed } from './slot.js';
import { median } from './stats.js';

const env = (name: string, fallback: number) => {
  const raw = process.env[`BENCH_CONTENTION_${name}`];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`BENCH_CONTENTION_${name} must be a number >= 0, got ${raw}`);
  return n;
};
const ROWS = Math.max(1, env('ROWS', 200));
const ROUNDS = Math.max(1, env('ROUNDS', 3));
const MEASURE_MS = 1000 * env('SECONDS', 2);
const WARMUP_MS = env('WARMUP_MS', 500);
const CONCURRENCY = Math.max(1, env('CONCURRENCY', 32));
const WRITERS = Math.max(1, env('WRITERS', 4));
/** 0: as fast as they can (the default); else the writers' total rate cap, per second. */
const WRITE_RATE = env('WRITE_RATE', 0);
const DIST = process.env.BENCH_CONTENTION_DIST === 'zipf' ? 'zipf' : 'uniform';
const ZIPF_S = env('ZIPF_S', 1);
const SETTINGS = (process.env.BENCH_CONTENTION_SETTINGS ?? 'p1_d0,p2_d0,p3_d0,p1_d5,p1_d50')
  .split(',')
  .map((name) => {
    const m = /^p(\d+)_d(\d+)$/.exec(name.trim());
    if (!m) throw new Error(`BENCH_CONTENTION_SETTINGS: ${name} is not p<N>_d<ms>`);
    return { name: name.trim(), processes: Math.max(1, Number(m[1])), delayMs: Number(m[2]) };
  });
const ALL_CONTENDERS: readonly ContenderName[] = ['walcache', 'bentocache', 'direct'];
/** BENCH_CONTENTION_ONLY=walcache,direct: a subset (for profiling; the ratios need all three). */
const CONTENDERS: readonly ContenderName[] = process.env.BENCH_CONTENTION_ONLY
  ? ALL_CONTENDERS.filter((n) =>
      (process.env.BENCH_CONTENTION_ONLY as string).split(',').includes(n),
    )
  : ALL_CONTENDERS;
/** Events named in the JSON (all of them are in `<setting>_walcache_events`). */
const NAMED_EVENTS = {
  loads: 'load',
  fills: 'fill',
  fills_rejected: 'fill-rejected',
  lease_waits: 'lease-wait',
  coalesced: 'coalesced',
  misses: 'miss',
} as const;

const log = (line = '') => console.log(line);
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : String(n);

// --- the database ------------------------------------------------------------------

const admin = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 2, application_name: 'wcb-ct-admin' });
admin.on('error', () => {});
admin.on('connect', (client) => client.on('error', () => {}));

async function waitWorker(lsn: string, timeoutMs = 60_000): Promise<void> {
  if ((await waitConfirmed(admin, SLOT, lsn, timeoutMs)) < 0)
    throw new Error(`the worker did not confirm ${lsn} within ${timeoutMs} ms`);
}

async function setupDatabase(): Promise<void> {
  await dropStaleSlot(admin, SLOT);
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await admin.query(`CREATE SCHEMA ${SCHEMA}`);
  await admin.query(
    `CREATE TABLE ${SCHEMA}.hot (id int PRIMARY KEY, version bigint NOT NULL DEFAULT 0, payload text NOT NULL)`,
  );
  await admin.query(
    `INSERT INTO ${SCHEMA}.hot (id, payload) SELECT g, repeat('x', 200) FROM generate_series(1, $1::int) g`,
    [ROWS],
  );
  await admin.query(`VACUUM ANALYZE ${SCHEMA}.hot`);
}

/**
 * The slot is made here, while the children start, not by the first worker: creating one
 * waits for every transaction running on the server to end (a shared server has some).
 */
async function setupSlot(): Promise<void> {
  await createSlot(admin, SLOT, 'wal2json');
}

async function dbVersions(): Promise<number[]> {
  const { rows } = await admin.query<{ version: string }>(
    `SELECT version FROM ${SCHEMA}.hot ORDER BY id`,
  );
  return rows.map((r) => Number(r.version));
}

// --- children ------------------------------------------------------------------------

let worker: ChildProcess | null = null;
let writer: ChildProcess | null = null;
const apps: ChildProcess[] = [];

async function fork(file: string): Promise<ChildProcess> {
  const child = forkChild(new URL(file, import.meta.url));
  await once(child, 'ready', 60_000);
  return child;
}

// --- one contender round ----------------------------------------------------------------

interface AppReport extends Envelope {
  readonly reads: number;
  readonly elapsedMs: number;
  readonly errors: number;
  readonly firstError: string;
  readonly loads: number;
  readonly leaseGaveUp: number;
  readonly events: Record<string, number>;
  readonly p50: number;
  readonly p99: number;
}

interface RoundResult {
  readonly setting: string;
  readonly name: ContenderName;
  readonly round: number;
  readonly readsPerS: number;
  readonly reads: number;
  readonly writesPerS: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly firstError: string;
  readonly loads: number;
  readonly leaseGaveUp: number;
  readonly events: Record<string, number>;
  /** Rows older than the database after settling, summed over processes (null: not checked). */
  readonly stale: number | null;
  readonly settleMs: number;
}

async function runRound(
  setting: (typeof SETTINGS)[number],
  name: ContenderName,
  r: number,
): Promise<RoundResult> {
  const prefix = `${KEY_PREFIX}-${setting.name}-r${r}-${name}`;
  const mine = apps.slice(0, setting.processes);
  const w = writer as ChildProcess;
  try {
    if (name === 'walcache') {
      await call(worker as ChildProcess, { type: 'start', prefix }, 60_000);
      await waitWorker(await currentLsn(admin));
      await call(worker as ChildProcess, { type: 'stats', reset: true });
    }
    await Promise.all([
      ...mine.map((app, i) =>
        call(
          app,
          {
            type: 'open',
            contender: name,
            prefix,
            delayMs: setting.delayMs,
            rows: ROWS,
            concurrency: CONCURRENCY,
            dist: DIST,
            zipfS: ZIPF_S,
            seed: 1 + r * 16 + i,
          },
          60_000,
        ),
      ),
      call(w, {
        type: 'open',
        mode: name,
        prefix,
        rows: ROWS,
        writers: WRITERS,
        seed: 1 + r,
        rate: WRITE_RATE,
      }),
    ]);
    await Promise.all([
      ...mine.map((app) => call(app, { type: 'start' })),
      call(w, { type: 'start' }),
    ]);
    await sleep(WARMUP_MS);
    await Promise.all(mine.map((app) => call(app, { type: 'mark' })));
    await sleep(MEASURE_MS);
    const [written, ...reports] = await Promise.all([
      call<Envelope & { writes: number; elapsedMs: number; errors: number; firstError: string }>(
        w,
        { type: 'stop' },
        60_000,
      ),
      ...mine.map((app) => call<AppReport>(app, { type: 'stop' }, 60_000)),
    ]);
    let stale: number | null = null;
    let settleMs = 0;
    if (name !== 'direct') {
      const t = performance.now();
      if (name === 'walcache') await waitWorker(await currentLsn(admin), 30_000);
      settleMs = performance.now() - t;
      await sleep(100); // the bus message reaching every app process
      const truth = await dbVersions();
      stale = 0;
      for (const app of mine) {
        const { versions } = await call<Envelope & { versions: number[] }>(
          app,
          { type: 'check' },
          60_000,
        );
        versions.forEach((v, i) => {
          if (v !== truth[i]) stale = (stale as number) + 1;
        });
      }
    }
    const events: Record<string, number> = {};
    for (const rep of reports)
      for (const [k, v] of Object.entries(rep.events)) events[k] = (events[k] ?? 0) + v;
    const errors = reports.reduce((a, x) => a + x.errors, 0) + written.errors;
    return {
      setting: setting.name,
      name,
      round: r,
      readsPerS: reports.reduce((a, x) => a + (1000 * x.reads) / x.elapsedMs, 0),
      reads: reports.reduce((a, x) => a + x.reads, 0),
      writesPerS: (1000 * written.writes) / written.elapsedMs,
      p50: median(reports.map((x) => x.p50)),
      p99: Math.max(...reports.map((x) => x.p99)),
      errors,
      firstError: reports.find((x) => x.errors > 0)?.firstError ?? written.firstError,
      loads: name === 'walcache' ? (events.load ?? 0) : reports.reduce((a, x) => a + x.loads, 0),
      leaseGaveUp: reports.reduce((a, x) => a + x.leaseGaveUp, 0),
      events,
      stale,
      settleMs,
    };
  } finally {
    await Promise.all([
      ...mine.map((app) => call(app, { type: 'close' }, 30_000).catch(() => {})),
      call(w, { type: 'close' }, 30_000).catch(() => {}),
    ]);
    if (name === 'walcache') await call(worker as ChildProcess, { type: 'stop' }, 30_000);
    await deleteRedisKeys(REDIS_URL, `${prefix}*`);
  }
}

// --- cleanup -----------------------------------------------------------------------------

let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all([
      ...apps.map((app) => stopChild(app, { type: 'exit' })),
      stopChild(writer, { type: 'exit' }),
      stopChild(worker, { type: 'exit' }),
    ]);
    const deadline = performance.now() + 30_000;
    for (;;) {
      try {
        await dropSlot(admin, SLOT);
        await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
        break;
      } catch (error) {
        if (performance.now() > deadline) {
          console.error(
            `cleanup: could not drop the slot ${SLOT} / schema ${SCHEMA} (${error instanceof Error ? error.message : String(error)}): drop them by hand`,
          );
          break;
        }
        await sleep(1_000);
      }
    }
    await admin.end().catch(() => {});
    await deleteRedisKeys(REDIS_URL, `${KEY_PREFIX}*`).catch((error: unknown) =>
      console.error(`cleanup: Redis keys ${KEY_PREFIX}* not deleted: ${String(error)}`),
    );
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    setTimeout(() => process.exit(130), 30_000).unref();
    void cleanup().finally(() => process.exit(130));
  });
}

// --- main ----------------------------------------------------------------------------------

async function main(): Promise<Record<string, unknown>> {
  const startedAt = performance.now();
  const loadStart = loadavg()[0] ?? 0;
  const maxProcesses = Math.max(...SETTINGS.map((s) => s.processes));
  log(
    `walcache contention bench: node ${process.version}, ${ROWS} hot rows (${DIST}${DIST === 'zipf' ? ` s=${ZIPF_S}` : ''}), ` +
      `${CONCURRENCY} readers per app process, ${WRITERS} writers, settings ${SETTINGS.map((s) => s.name).join(' ')}, ` +
      `${ROUNDS} rounds × (${WARMUP_MS} ms warm-up + ${MEASURE_MS / 1000} s) per contender, load avg ${loadStart.toFixed(2)}`,
  );
  await deleteRedisKeys(REDIS_URL, `${KEY_PREFIX}*`);
  await setupDatabase();
  const [, ...forked] = await Promise.all([
    setupSlot(),
    fork('./contention-worker.ts'),
    fork('./contention-writer.ts'),
    ...Array.from({ length: maxProcesses }, () => fork('./contention-app.ts')),
  ]);
  worker = forked[0] as ChildProcess;
  writer = forked[1] as ChildProcess;
  apps.push(...forked.slice(2));
  log(`setup: ${fmt((performance.now() - startedAt) / 1000, 1)} s`);

  const results: RoundResult[] = [];
  for (const [si, setting] of SETTINGS.entries()) {
    for (let r = 0; r < ROUNDS; r++) {
      const order = CONTENDERS.map((_, i) => CONTENDERS[(i + r + si) % CONTENDERS.length]);
      for (const name of order as ContenderName[]) {
        if (cleaning) throw new Error('interrupted');
        const t = performance.now();
        const res = await runRound(setting, name, r);
        results.push(res);
        const ev = res.events;
        log(
          `  ${setting.name} round ${r + 1} ${name.padEnd(10)} ${fmt(res.readsPerS).padStart(9)} reads/s  ` +
            `(${fmt((performance.now() - t) / 1000, 1)} s in all) ` +
            `p50 ${fmt(res.p50, 3)} ms  p99 ${fmt(res.p99, 2)} ms  writes ${fmt(res.writesPerS)}/s  ` +
            `loads ${fmt(res.loads)}` +
            (res.stale !== null ? `  stale after settle ${res.stale}` : '') +
            (name === 'walcache'
              ? `\n      events: ${Object.entries(ev)
                  .sort()
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ')}; lease waits that gave up ${res.leaseGaveUp}`
              : '') +
            (res.errors > 0 ? `  ERRORS ${res.errors}: ${res.firstError}` : ''),
        );
      }
    }
  }

  // --- summary --------------------------------------------------------------------------
  const out: Record<string, unknown> = {
    bench: 'contention',
    rows: ROWS,
    distribution: DIST,
    ...(DIST === 'zipf' && { zipf_s: ZIPF_S }),
    readers_per_process: CONCURRENCY,
    writers: WRITERS,
    write_rate_cap: WRITE_RATE,
    rounds: ROUNDS,
    measure_s: MEASURE_MS / 1000,
    warmup_ms: WARMUP_MS,
  };
  log('');
  log(
    `medians over ${ROUNDS} rounds (${MEASURE_MS / 1000} s measured each; reads/s summed over app processes):`,
  );
  log(
    '  setting   walcache  bentocache    direct  vs_bento  vs_direct  stale w/b  writes/s w/b/d    loads  fills  rejected  lease waits (gave up)  coalesced',
  );
  for (const setting of SETTINGS) {
    const s = setting.name;
    const of = (name: ContenderName) => results.filter((x) => x.setting === s && x.name === name);
    const med = (name: ContenderName, f: (x: RoundResult) => number) => median(of(name).map(f));
    const ratio = (b: ContenderName) => {
      const all: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const x = of('walcache').find((y) => y.round === r);
        const y = of(b).find((z) => z.round === r);
        if (x && y) all.push(x.readsPerS / y.readsPerS);
      }
      return { median: median(all), all };
    };
    const vsBento = ratio('bentocache');
    const vsDirect = ratio('direct');
    const sum = (name: ContenderName, f: (x: RoundResult) => number) =>
      of(name).reduce((a, x) => a + f(x), 0);
    const events: Record<string, number> = {};
    for (const x of of('walcache'))
      for (const [k, v] of Object.entries(x.events)) events[k] = (events[k] ?? 0) + v;
    const named = Object.fromEntries(
      Object.entries(NAMED_EVENTS).map(([key, event]) => [
        `${s}_walcache_${key}`,
        events[event] ?? 0,
      ]),
    );
    const walStale = sum('walcache', (x) => x.stale ?? 0);
    const bentoStale = sum('bentocache', (x) => x.stale ?? 0);
    const gaveUp = sum('walcache', (x) => x.leaseGaveUp);
    Object.assign(out, {
      [`${s}_vs_bentocache`]: round(vsBento.median, 3),
      [`${s}_vs_direct`]: round(vsDirect.median, 3),
      [`${s}_stale_after_settle`]: walStale,
      [`${s}_bentocache_stale_after_settle`]: bentoStale,
      [`${s}_walcache_reads_s`]: Math.round(med('walcache', (x) => x.readsPerS)),
      [`${s}_bentocache_reads_s`]: Math.round(med('bentocache', (x) => x.readsPerS)),
      [`${s}_direct_reads_s`]: Math.round(med('direct', (x) => x.readsPerS)),
      [`${s}_walcache_p99_ms`]: round(
        med('walcache', (x) => x.p99),
        2,
      ),
      [`${s}_bentocache_p99_ms`]: round(
        med('bentocache', (x) => x.p99),
        2,
      ),
      [`${s}_direct_p99_ms`]: round(
        med('direct', (x) => x.p99),
        2,
      ),
      [`${s}_writes_s`]: {
        walcache: Math.round(med('walcache', (x) => x.writesPerS)),
        bentocache: Math.round(med('bentocache', (x) => x.writesPerS)),
        direct: Math.round(med('direct', (x) => x.writesPerS)),
      },
      [`${s}_walcache_reads`]: sum('walcache', (x) => x.reads),
      ...named,
      [`${s}_walcache_lease_waits_gave_up`]: gaveUp,
      [`${s}_bentocache_loads`]: sum('bentocache', (x) => x.loads),
      [`${s}_walcache_events`]: events,
      [`${s}_reads_s_rounds`]: Object.fromEntries(
        CONTENDERS.map((name) => [
          name,
          [...of(name)].sort((a, b) => a.round - b.round).map((x) => Math.round(x.readsPerS)),
        ]),
      ),
      [`${s}_vs_bentocache_rounds`]: vsBento.all.map((x) => round(x, 3)),
      [`${s}_vs_direct_rounds`]: vsDirect.all.map((x) => round(x, 3)),
      [`${s}_errors`]: {
        walcache: sum('walcache', (x) => x.errors),
        bentocache: sum('bentocache', (x) => x.errors),
        direct: sum('direct', (x) => x.errors),
      },
    });
    log(
      `  ${s.padEnd(8)} ${fmt(med('walcache', (x) => x.readsPerS)).padStart(9)} ${fmt(med('bentocache', (x) => x.readsPerS)).padStart(11)} ` +
        `${fmt(med('direct', (x) => x.readsPerS)).padStart(9)} ${fmt(vsBento.median, 2).padStart(8)}× ${fmt(vsDirect.median, 2).padStart(8)}×  ` +
        `${`${walStale}/${bentoStale}`.padStart(9)}  ${`${fmt(med('walcache', (x) => x.writesPerS))}/${fmt(med('bentocache', (x) => x.writesPerS))}/${fmt(med('direct', (x) => x.writesPerS))}`.padStart(15)} ` +
        `${fmt(events.load ?? 0).padStart(8)} ${fmt(events.fill ?? 0).padStart(6)} ${fmt(events['fill-rejected'] ?? 0).padStart(9)} ` +
        `${`${fmt(events['lease-wait'] ?? 0)} (${fmt(gaveUp)})`.padStart(22)} ${fmt(events.coalesced ?? 0).padStart(10)}`,
    );
  }
  out.stale_after_settle = SETTINGS.reduce(
    (a, s) => a + (out[`${s.name}_stale_after_settle`] as number),
    0,
  );
  out.load_avg_start = round(loadStart, 2);
  out.load_avg_end = round(loadavg()[0] ?? 0, 2);
  out.total_s = round((performance.now() - startedAt) / 1000, 1);
  return out;
}

main()
  .then(async (result) => {
    await cleanup();
    log(`cleanup done (schema ${SCHEMA}, slot ${SLOT}, Redis ${KEY_PREFIX}*)`);
    console.log(JSON.stringify(result));
  })
  .catch(async (error: unknown) => {
    console.error(error);
    await cleanup().catch(() => {});
    console.log(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }));
    process.exitCode = 1;
  });
