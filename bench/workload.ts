/**
 * Workload benchmark: a read-heavy Zipf workload against walcache, direct Kysely,
 * bentocache and cache-manager, with the invalidation worker running and writes made
 * through plain SQL; cold start and steady state measured apart.
 *
 *   node --import tsx bench/workload.ts        (npm run bench:workload)
 *
 * Data: schema `walcache_bench` (dropped and recreated at the start), `users` with
 * BENCH_WORKLOAD_ROWS rows (default 100,000) and `orders`, 5 per user, index on
 * orders(user_id), REPLICA IDENTITY FULL on both. The service's pool finds the tables
 * through search_path, as an application finds its tables in `public` (no withSchema).
 *
 * Operations: a sequence drawn once from a seeded PRNG, the same for every contender:
 * user ids Zipf (s = 1.0) over all rows (ranks mapped to ids by a fixed random
 * permutation, so hot rows are spread over the table); 95 % reads, half the user row by
 * id, half the aggregate (the user with the count and sum of its orders: users LEFT JOIN
 * orders, GROUP BY); 5 % writes through plain SQL on the shared pool (never through a
 * cache API): half rename a user, half insert an order for one.
 *
 * Contenders (same pg.Pool of BENCH_WORKLOAD_POOL connections, same
 * BENCH_WORKLOAD_CONCURRENCY async loops taking the next operation of the sequence,
 * same Redis):
 * - kysely: every read runs its query.
 * - bentocache 1.6: memory L1 (10,000 items, as walcache's L1) + Redis L2 + Redis bus,
 *   TTL 60 s, getOrSet for both reads; after each write the invalidation a bentocache
 *   user writes by hand: a rename deletes the user's row key and aggregate key, an order
 *   insert the user's aggregate key (deleteMany/delete: L1, L2 and the bus).
 * - cache-manager 7: the two tiers its docs describe, a Keyv over cacheable's
 *   CacheableMemory (LRU of 10,000, TTL 60 s) in front of a Keyv over @keyv/redis, `wrap`
 *   for both reads; the same hand-written deletes as bentocache (`mdel`/`del`, every
 *   store; it has no bus, and needs none in one process).
 * - walcache: `repo.users.findById` and `repo.cached(aggregate)` (tags narrowed to
 *   users:id=X and orders:user_id=X); no invalidation in the service: the
 *   InvalidationWorker runs in a child process (bench/workload-worker.ts), so its CPU
 *   is where it is in production.
 *
 * Rounds: BENCH_WORKLOAD_ROUNDS rounds (default 3), each running every contender once,
 * the order rotated per round. Per contender round: the orders inserted by earlier rounds
 * are deleted (every round starts from the seeded data), the caches start empty (a fresh
 * Redis key prefix and fresh cache instances), and one continuing operation stream runs
 * through two measured windows:
 * - cold start: the first BENCH_WORKLOAD_COLD_S seconds (default 6; the old
 *   BENCH_WORKLOAD_WARMUP_S is read too) from empty caches;
 * - steady state: BENCH_WORKLOAD_SECONDS measured seconds (default 8), from when the
 *   steady rule holds, and never before the cold window ends. The rule, the same for
 *   every contender: each second, the share of reads served without a database load over
 *   that second (1 - loads/reads: loader or factory runs, counted alike for every cache)
 *   is taken; the hit rate has stopped rising when the least-squares slope of the last
 *   BENCH_WORKLOAD_STEADY_WINDOWS (5) of them is under BENCH_WORKLOAD_STEADY_SLOPE (0.5)
 *   points per second. A slope, not the change between two windows: one window's share
 *   has ~0.7 points of sampling noise at this load. If the rule has not held
 *   BENCH_WORKLOAD_STEADY_MAX_WAIT_S (30) seconds after the cold window, the steady window
 *   starts then, and the round is listed in `steady_rule_not_met`. Direct Kysely's share
 *   is always 0: its steady window starts once the cold window is over.
 * The worker runs only during walcache rounds (started with the round's prefix, caught up
 * on the backlog before the round), so the baselines never pay for it. Figures are
 * medians over rounds; the ratios are medians of the per-round ratios.
 *
 * Hit rate: reads answered from a cache tier / reads (walcache: engine 'hit' events,
 * bentocache: 'cache:hit' events; cache-manager names no tier: 1 - loads/reads); db
 * loads: loader/factory runs per read.
 *
 * stale_after_settle: after the last walcache round's writes stop, the slot's
 * confirmed_flush_lsn is awaited up to pg_current_wal_lsn() taken after the last write
 * (plus 100 ms for the bus message to reach this process); then every user id written in
 * the walcache rounds and the 1,000 hottest ids are read through walcache (findById and
 * the cached aggregate) and compared with the database. The same for bentocache and
 * cache-manager after their last rounds (bentocache_stale_after_settle,
 * cache_manager_stale_after_settle).
 *
 * Also: the hit-path cost of access-log sampling, `await repo.users.findById(hotId)` on an
 * L1 hit with sampleRate 0 vs 0.01 (two repositories, one prefix), in palindromic rounds.
 *
 * CPU: per measured window (cold and steady), cores used by this process, the worker child, redis-server,
 * all postgres processes, and the rest of the machine (from /proc; Linux only). A round
 * where the rest took more than 0.3 cores (another job on the shared machine) is flagged
 * (`disturbed_rounds`); medians over rounds and interleaving absorb one such round.
 *
 * Needs PostgreSQL with wal2json (wal_level logical) at DATABASE_URL and Redis at
 * REDIS_URL. Drops its schema and slot and deletes its Redis keys at the end, also on
 * failure and Ctrl-C. Human-readable lines first; the last line of stdout is one JSON
 * object: steady_vs_kysely, steady_vs_bentocache, steady_vs_cache_manager, cold_vs_kysely,
 * cold_vs_bentocache, cold_vs_cache_manager (and their _rounds); per contender (walcache,
 * kysely, bentocache, cache_manager) and window (steady, cold) `<window>_<contender>_`
 * ops_per_s, p50_ms, p99_ms, read_p99_ms, hit_rate, db_loads_per_read (l1_share for
 * walcache and bentocache); stale_after_settle, bentocache_stale_after_settle,
 * cache_manager_stale_after_settle; steady_from_s, steady_rule_not_met; goals.
 */
import type { ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { call, once, percentiles, round, sleep } from './cdc-common.js';
import { forkChild, stopChild } from './children.js';
import { gc } from './gc.js';
import { type CpuShares, redisServerPid, settleMachine, watchProcesses } from './proc-cpu.js';
import { deleteRedisKeys } from './redis-keys.js';
import { currentLsn, dropSlot, waitConfirmed } from './slot.js';
import { median } from './stats.js';
import { DATABASE_URL, KEY_PREFIX, REDIS_URL, SCHEMA, SLOT } from './workload-common.js';
import {
  BentoContender,
  CacheManagerContender,
  type Contender,
  KyselyContender,
  WalcacheContender,
} from './workload-contenders.js';
import { admin, db, resetOrders, setupDatabase } from './workload-database.js';
import { drive, type RoundResult, stopDriving, type WindowResult } from './workload-measure.js';
import {
  ALL_CONTENDERS,
  COLD_MS,
  CONCURRENCY,
  CONTENDERS,
  DISTURBED_CORES,
  HOT_CHECK,
  jsonName,
  MEASURE_MS,
  type Name,
  ORDERS_PER_USER,
  POOL_SIZE,
  ROUNDS,
  ROWS,
  STEADY_MAX_WAIT_MS,
  STEADY_SLOPE,
  STEADY_WINDOWS,
} from './workload-params.js';
import {
  HITPATH_OPS,
  HITPATH_ROUNDS,
  samplingChecksum,
  samplingCost,
} from './workload-sampling.js';
import { buildWorkload, SEQ_LEN, ZIPF_S } from './workload-sequence.js';
import { type StaleReport, staleCheck } from './workload-stale.js';

const log = (line = '') => console.log(line);
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : String(n);

// --- child process --------------------------------------------------------------------------

let worker: ChildProcess | null = null;

function spawnWorker(): ChildProcess {
  return forkChild(new URL('./workload-worker.ts', import.meta.url));
}

// --- cleanup ----------------------------------------------------------------------------------

const openContenders = new Set<Contender>();

let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of openContenders) await c.close().catch(() => {});
    openContenders.clear();
    await stopChild(worker, { type: 'exit' });
    worker = null;
    await db.destroy().catch(() => {}); // ends `pool`
    // Retries for a while: the server may be restarting (a shared machine).
    const deadline = performance.now() + 45_000;
    for (;;) {
      const p = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 1 });
      p.on('error', () => {});
      try {
        await dropSlot(p, SLOT);
        await p.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
        break;
      } catch (error) {
        if (performance.now() > deadline) {
          console.error(
            `cleanup: could not drop the slot ${SLOT} / schema ${SCHEMA} (${error instanceof Error ? error.message : String(error)}): drop them by hand`,
          );
          break;
        }
        await sleep(1_000);
      } finally {
        await p.end().catch(() => {});
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
    stopDriving();
    const forced = setTimeout(() => process.exit(130), 30_000);
    forced.unref();
    void cleanup().finally(() => process.exit(130));
  });
}

// --- main ----------------------------------------------------------------------------------

async function main(): Promise<Record<string, unknown>> {
  const startedAt = performance.now();
  const loadStart = loadavg()[0] ?? 0;
  log(
    `walcache workload bench: node ${process.version}, ${ROWS} users × ${ORDERS_PER_USER} orders, ` +
      `Zipf s=${ZIPF_S}, 95 % reads, ${ROUNDS} rounds × (${COLD_MS / 1000} s cold + steady rule + ${MEASURE_MS / 1000} s steady) per contender, ` +
      `${CONCURRENCY} in flight, pool ${POOL_SIZE}, load avg ${loadStart.toFixed(2)}`,
  );

  // --- setup -----------------------------------------------------------------------------
  worker = spawnWorker();
  watchProcesses({ worker: worker.pid ?? 0 });
  const workerReady = once(worker, 'ready', 60_000);
  watchProcesses({ redis: await redisServerPid(REDIS_URL) });
  await deleteRedisKeys(REDIS_URL, `${KEY_PREFIX}*`);
  const seedMs = await setupDatabase();
  const wl = buildWorkload();
  await workerReady;
  const quiet = await settleMachine(15_000);
  log(
    `setup: seeded in ${fmt(seedMs / 1000, 1)} s; operation sequence of ${fmt(SEQ_LEN)} built; machine at ${fmt(quiet, 2)} cores busy`,
  );
  const hottest = Array.from(wl.rankToId.subarray(0, HOT_CHECK));
  const w = worker;

  // --- rounds ---------------------------------------------------------------------------
  const results: RoundResult[] = [];
  const written = new Map<Name, Set<number>>(ALL_CONTENDERS.map((n) => [n, new Set<number>()]));
  const stale = new Map<Name, StaleReport>();
  let settleMs = Number.NaN;
  const workerApplied: Array<{ rows: number; groups: number; lagP50: number; lagP99: number }> = [];
  let workerErrors = 0;
  let workerCatchUpMs = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const order = CONTENDERS.map((_, i) => CONTENDERS[(i + r) % CONTENDERS.length] as Name);
    // Every contender of a round replays the same stretch of the sequence.
    const offset = (r * 700_001) % SEQ_LEN;
    for (const name of order) {
      await resetOrders();
      const prefix = `${KEY_PREFIX}-${name}-r${r}`;
      let c: Contender;
      if (name === 'walcache') {
        // The worker comes up with this round's prefix and catches up on the backlog
        // (the other rounds' writes, the reset) before the cache is created.
        const t = performance.now();
        await call(w, { type: 'start', prefix }, 60_000);
        const caughtUp = await waitConfirmed(admin, SLOT, await currentLsn(admin), 60_000);
        if (caughtUp < 0) throw new Error('the worker did not catch up within 60 s');
        workerCatchUpMs = Math.max(workerCatchUpMs, performance.now() - t);
        await call(w, { type: 'stats', reset: true });
        const wc = new WalcacheContender(prefix);
        openContenders.add(wc);
        await wc.ready();
        c = wc;
      } else if (name === 'bentocache') {
        const bc = new BentoContender(prefix);
        openContenders.add(bc);
        await bc.ready();
        c = bc;
      } else if (name === 'cache-manager') {
        const cm = new CacheManagerContender(prefix);
        openContenders.add(cm);
        await cm.ready();
        c = cm;
      } else {
        c = new KyselyContender();
        openContenders.add(c);
      }
      gc(); // a full GC between contender rounds, so none pays for another's garbage
      const result = await drive(c, wl, offset, r, written.get(name) as Set<number>);
      results.push(result);
      const lastOfKind = r === ROUNDS - 1;
      const ids = () => [...new Set([...(written.get(name) as Set<number>), ...hottest])];
      if (name === 'walcache') {
        const stats = await call(w, { type: 'stats', reset: true });
        const lags = percentiles(stats.lags as number[]);
        workerApplied.push({
          rows: Number(stats.rows),
          groups: Number(stats.groups),
          lagP50: lags.p50,
          lagP99: lags.p99,
        });
        workerErrors = Number(stats.errors);
        if (lastOfKind) {
          const target = await currentLsn(admin);
          settleMs = await waitConfirmed(admin, SLOT, target, 30_000);
          await sleep(100); // the worker's bus message reaching this process
          stale.set(name, await staleCheck(c, ids()));
        }
        await call(w, { type: 'stop' }, 30_000);
      } else if (name !== 'kysely' && lastOfKind) {
        await sleep(100); // bentocache's bus messages (deletes published by this process itself)
        stale.set(name, await staleCheck(c, ids()));
      }
      await c.close();
      openContenders.delete(c);
      await deleteRedisKeys(REDIS_URL, `${prefix}*`);
      const line = (label: string, x: WindowResult) =>
        `${label} ${fmt(x.opsPerS).padStart(8)} ops/s  p50 ${fmt(x.p50, 2)} ms  p99 ${fmt(x.p99, 2)} ms  ` +
        `hit ${name === 'kysely' ? '  -  ' : `${fmt(100 * x.hitRate, 1)} %`}  ` +
        `cpu: bench ${fmt(x.cpu.bench, 2)} worker ${fmt(x.cpu.worker, 2)} pg ${fmt(x.cpu.postgres, 2)} redis ${fmt(x.cpu.redis, 2)} other ${fmt(x.cpu.other, 2)} (machine ${fmt(x.cpu.machine, 2)})` +
        (x.cpu.other > DISTURBED_CORES ? '  [disturbed: other processes]' : '') +
        (Object.keys(x.events).length > 0
          ? `\n        events: ${Object.entries(x.events)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')}`
          : '');
      log(
        `  round ${r + 1} ${name.padEnd(13)} ${line('cold  ', result.cold)}\n` +
          `  ${' '.repeat(String(r + 1).length + 20)} ${line('steady', result.steady)}\n` +
          `  ${' '.repeat(String(r + 1).length + 20)} steady from ${fmt(result.steadyAtS, 1)} s${result.steadyReached ? '' : ' (rule not met: time limit)'}` +
          (result.errors > 0 ? `  ERRORS ${result.errors}: ${result.firstError}` : ''),
      );
    }
  }

  // --- hit path ------------------------------------------------------------------------
  const sampling = await samplingCost(hottest[0] as number);

  // --- summary --------------------------------------------------------------------------
  const of = (name: Name) => results.filter((x) => x.name === name);
  type Phase = 'cold' | 'steady';
  const med = (name: Name, phase: Phase, f: (x: WindowResult) => number) =>
    median(of(name).map((x) => f(x[phase])));
  const pairedRatio = (phase: Phase, a: Name, b: Name) => {
    const ratios: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const x = results.find((y) => y.name === a && y.round === r);
      const y = results.find((z) => z.name === b && z.round === r);
      if (x && y) ratios.push(x[phase].opsPerS / y[phase].opsPerS);
    }
    return { median: median(ratios), all: ratios };
  };
  const cpuMed = (name: Name, phase: Phase): CpuShares => ({
    machine: med(name, phase, (x) => x.cpu.machine),
    bench: med(name, phase, (x) => x.cpu.bench),
    worker: med(name, phase, (x) => x.cpu.worker),
    redis: med(name, phase, (x) => x.cpu.redis),
    postgres: med(name, phase, (x) => x.cpu.postgres),
    other: med(name, phase, (x) => x.cpu.other),
  });

  const header = [
    'contender',
    'ops/s',
    'p50 ms',
    'p99 ms',
    'read p50',
    'read p99',
    'write p50',
    'write p99',
    'hit rate',
    'L1 share',
    'db loads/read',
    'cores: bench',
    'worker',
    'pg',
    'redis',
    'other',
  ];
  const table = (phase: Phase) => {
    const rows = CONTENDERS.map((name) => {
      const cpu = cpuMed(name, phase);
      const m = (f: (x: WindowResult) => number) => med(name, phase, f);
      return [
        name,
        fmt(m((x) => x.opsPerS)),
        fmt(
          m((x) => x.p50),
          3,
        ),
        fmt(
          m((x) => x.p99),
          2,
        ),
        fmt(
          m((x) => x.readP50),
          3,
        ),
        fmt(
          m((x) => x.readP99),
          2,
        ),
        fmt(
          m((x) => x.writeP50),
          2,
        ),
        fmt(
          m((x) => x.writeP99),
          2,
        ),
        name === 'kysely' ? '-' : `${fmt(100 * m((x) => x.hitRate), 1)} %`,
        name === 'kysely' || name === 'cache-manager'
          ? '-'
          : `${fmt(100 * m((x) => x.l1Share), 1)} %`,
        fmt(
          m((x) => x.loadsPerRead),
          3,
        ),
        fmt(cpu.bench, 2),
        fmt(cpu.worker, 2),
        fmt(cpu.postgres, 2),
        fmt(cpu.redis, 2),
        fmt(cpu.other, 2),
      ];
    });
    const widths = header.map((h, i) =>
      Math.max(h.length, ...rows.map((r) => (r[i] as string).length)),
    );
    const line = (cells: string[]) =>
      `  ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ')}`;
    log(line(header));
    for (const r of rows) log(line(r));
  };

  const ratios = {
    steady_vs_kysely: pairedRatio('steady', 'walcache', 'kysely'),
    steady_vs_bentocache: pairedRatio('steady', 'walcache', 'bentocache'),
    steady_vs_cache_manager: pairedRatio('steady', 'walcache', 'cache-manager'),
    cold_vs_kysely: pairedRatio('cold', 'walcache', 'kysely'),
    cold_vs_bentocache: pairedRatio('cold', 'walcache', 'bentocache'),
    cold_vs_cache_manager: pairedRatio('cold', 'walcache', 'cache-manager'),
  };
  log('');
  log(
    `cold start: the first ${COLD_MS / 1000} s from empty caches; medians over ${ROUNDS} rounds (${CONCURRENCY} in flight, pool ${POOL_SIZE}; latency per operation, writes included):`,
  );
  table('cold');
  log('');
  log(
    `steady state: ${MEASURE_MS / 1000} s from when the share of reads served without a db load, per 1 s window, ` +
      `rose less than ${STEADY_SLOPE} points/s over the last ${STEADY_WINDOWS} windows (least squares), at most ${STEADY_MAX_WAIT_MS / 1000} s after the cold window:`,
  );
  table('steady');
  log(
    `  steady from (s after the start, median): ${CONTENDERS.map((n) => `${n} ${fmt(median(of(n).map((x) => x.steadyAtS)), 1)}`).join(', ')}` +
      (results.some((x) => !x.steadyReached)
        ? `; rule not met in time: ${results
            .filter((x) => !x.steadyReached)
            .map((x) => `r${x.round + 1} ${x.name}`)
            .join(', ')}`
        : ''),
  );
  log('');
  for (const [key, v] of Object.entries(ratios))
    log(`${key} ${fmt(v.median, 2)}× (per round ${v.all.map((x) => fmt(x, 2)).join(', ')})`);
  const wa = workerApplied;
  log(
    `worker (walcache rounds): ${wa.map((x) => `${fmt(x.rows)} rows in ${fmt(x.groups)} groups, commit→applied p50 ${fmt(x.lagP50, 1)} / p99 ${fmt(x.lagP99, 1)} ms`).join('; ')}; errors ${workerErrors}; start + catch-up ≤ ${fmt(workerCatchUpMs)} ms`,
  );
  for (const [name, report] of stale)
    log(
      `stale after settle, ${name}: ${report.stale} of ${fmt(report.checkedIds)} ids × 2 reads ` +
        `(${report.cachedReads} answered by the cache; users ${report.staleUsers}, aggregates ${report.staleAggregates})` +
        (name === 'walcache' ? `; worker confirmed the last write after ${fmt(settleMs)} ms` : '') +
        (report.examples.length ? `\n    ${report.examples.join('\n    ')}` : ''),
    );
  const offNs = median(sampling.off);
  const onNs = median(sampling.on);
  log(
    `findById L1 hit (await, ${HITPATH_ROUNDS} rounds × ${fmt(HITPATH_OPS)} ops): sampling off ${fmt(offNs)} ns/op, ` +
      `sampleRate 0.01 ${fmt(onNs)} ns/op (per round off ${sampling.off.map((x) => fmt(x)).join('/')}, on ${sampling.on.map((x) => fmt(x)).join('/')})`,
  );

  const perContender: Record<string, number | null> = {};
  for (const phase of ['steady', 'cold'] as const)
    for (const name of CONTENDERS) {
      const k = `${phase}_${jsonName(name)}`;
      perContender[`${k}_ops_per_s`] = Math.round(med(name, phase, (x) => x.opsPerS));
      perContender[`${k}_p50_ms`] = round(
        med(name, phase, (x) => x.p50),
        3,
      );
      perContender[`${k}_p99_ms`] = round(
        med(name, phase, (x) => x.p99),
        2,
      );
      perContender[`${k}_read_p99_ms`] = round(
        med(name, phase, (x) => x.readP99),
        2,
      );
      perContender[`${k}_hit_rate`] =
        name === 'kysely'
          ? null
          : round(
              med(name, phase, (x) => x.hitRate),
              4,
            );
      perContender[`${k}_db_loads_per_read`] = round(
        med(name, phase, (x) => x.loadsPerRead),
        4,
      );
      if (name === 'walcache' || name === 'bentocache')
        perContender[`${k}_l1_share`] = round(
          med(name, phase, (x) => x.l1Share),
          3,
        );
    }
  const steadyP99 = (name: Name) => med(name, 'steady', (x) => x.p99);
  const errors = Object.fromEntries(
    CONTENDERS.map((n) => [jsonName(n), of(n).reduce((a, x) => a + x.errors, 0)]),
  );
  const cpu = Object.fromEntries(
    (['steady', 'cold'] as const).map((phase) => [
      phase,
      Object.fromEntries(
        CONTENDERS.map((n) => {
          const s = cpuMed(n, phase);
          return [
            jsonName(n),
            Object.fromEntries(Object.entries(s).map(([k, v]) => [k, round(v, 2)])),
          ];
        }),
      ),
    ]),
  );
  const walStale = stale.get('walcache');
  const vsKysely = ratios.steady_vs_kysely.median;
  const vsBento = ratios.steady_vs_bentocache.median;
  return {
    ...Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, round(v.median, 2)])),
    ...perContender,
    stale_after_settle: walStale?.stale ?? null,
    stale_checked_ids: walStale?.checkedIds ?? null,
    stale_check_cached_reads: walStale?.cachedReads ?? null,
    settle_ms: round(settleMs, 0),
    bentocache_stale_after_settle: stale.get('bentocache')?.stale ?? null,
    cache_manager_stale_after_settle: stale.get('cache-manager')?.stale ?? null,
    steady_from_s: Object.fromEntries(
      CONTENDERS.map((n) => [jsonName(n), round(median(of(n).map((x) => x.steadyAtS)), 1)]),
    ),
    steady_rule_not_met: results
      .filter((x) => !x.steadyReached)
      .map((x) => `r${x.round + 1} ${x.name}`),
    findbyid_hit_ns_sampling_off: Math.round(offNs),
    findbyid_hit_ns_sampling_001: Math.round(onNs),
    ...Object.fromEntries(
      Object.entries(ratios).map(([k, v]) => [`${k}_rounds`, v.all.map((x) => round(x, 2))]),
    ),
    cpu_cores: cpu,
    worker_lag_p99_ms: round(median(workerApplied.map((x) => x.lagP99)), 1),
    worker_errors: workerErrors,
    disturbed_rounds: results.flatMap((x) =>
      (['cold', 'steady'] as const)
        .filter((phase) => x[phase].cpu.other > DISTURBED_CORES)
        .map((phase) => `r${x.round + 1} ${x.name} ${phase}`),
    ),
    errors,
    goals: {
      steady_vs_kysely_ge_5: vsKysely >= 5,
      steady_vs_bentocache_ge_1_5: vsBento >= 1.5,
      steady_p99_lowest: CONTENDERS.every(
        (n) => n === 'walcache' || steadyP99('walcache') < steadyP99(n),
      ),
      stale_after_settle_0: walStale?.stale === 0,
    },
    rounds: ROUNDS,
    warmup_policy:
      'empty caches per contender round (fresh prefix); cold = the first seconds; steady = after the steady rule',
    steady_rule: `least-squares slope of the per-second share of reads without a db load over the last ${STEADY_WINDOWS} windows < ${STEADY_SLOPE} points/s, not before the cold window ends, at most ${STEADY_MAX_WAIT_MS / 1000} s after it`,
    cold_s: COLD_MS / 1000,
    measure_s: MEASURE_MS / 1000,
    concurrency: CONCURRENCY,
    pool: POOL_SIZE,
    rows: ROWS,
    load_avg_start: round(loadStart, 2),
    load_avg_end: round(loadavg()[0] ?? 0, 2),
    total_s: round((performance.now() - startedAt) / 1000, 1),
    checksum: samplingChecksum(),
  };
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
