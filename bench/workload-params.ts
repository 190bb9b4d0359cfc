/**
 * The knobs of the workload benchmark (bench/workload.ts documents them), read once from
 * the environment, and the names of its contenders.
 */

export const ROWS = Number(process.env.BENCH_WORKLOAD_ROWS ?? 100_000);
export const ORDERS_PER_USER = 5;
export const ROUNDS = Math.max(1, Number(process.env.BENCH_WORKLOAD_ROUNDS ?? 3));
/** The steady window, measured once the steady rule holds. */
export const MEASURE_MS = 1000 * Number(process.env.BENCH_WORKLOAD_SECONDS ?? 8);
/** The cold window: the first seconds from empty caches (BENCH_WORKLOAD_WARMUP_S: its old name). */
export const COLD_MS =
  1000 * Number(process.env.BENCH_WORKLOAD_COLD_S ?? process.env.BENCH_WORKLOAD_WARMUP_S ?? 6);
/** The steady rule: the hit rate's least-squares slope over this many 1 s windows... */
export const STEADY_WINDOWS = Math.max(2, Number(process.env.BENCH_WORKLOAD_STEADY_WINDOWS ?? 5));
/** ...is under this many points per second. */
export const STEADY_SLOPE = Number(process.env.BENCH_WORKLOAD_STEADY_SLOPE ?? 0.5);
/** The steady window starts this long after the cold window at the latest (flagged). */
export const STEADY_MAX_WAIT_MS = 1000 * Number(process.env.BENCH_WORKLOAD_STEADY_MAX_WAIT_S ?? 30);
export const CONCURRENCY = Number(process.env.BENCH_WORKLOAD_CONCURRENCY ?? 32);
export const POOL_SIZE = Number(process.env.BENCH_WORKLOAD_POOL ?? 10);
/** A round where other processes took more than this many cores is flagged as disturbed. */
export const DISTURBED_CORES = 0.3;
export const HOT_CHECK = 1_000; // hottest ids always included in the stale check

export type Name = 'walcache' | 'kysely' | 'bentocache' | 'cache-manager';
export const ALL_CONTENDERS: readonly Name[] = [
  'walcache',
  'kysely',
  'bentocache',
  'cache-manager',
];
/** A contender's name in JSON keys: cache_manager. */
export const jsonName = (name: Name) => name.replace('-', '_');
/** BENCH_WORKLOAD_ONLY=walcache,kysely: a subset (for profiling; ratios need all four). */
export const CONTENDERS: readonly Name[] = process.env.BENCH_WORKLOAD_ONLY
  ? ALL_CONTENDERS.filter((n) => (process.env.BENCH_WORKLOAD_ONLY as string).split(',').includes(n))
  : ALL_CONTENDERS;
