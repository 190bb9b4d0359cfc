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
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { hrtime } from 'node:process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import KeyvRedis from '@keyv/redis';
import { type Cache as CacheManager, createCache } from 'cache-manager';
import { CacheableMemory } from 'cacheable';
import { Redis } from 'ioredis';
import { Keyv } from 'keyv';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createRepository } from '../src/index.js';
import { type BentoBaseline, bentocacheBaseline } from './bentocache-baseline.js';
import { call, once, percentiles, round, sleep } from './cdc-common.js';
import { forkChild, stopChild } from './children.js';
import { currentLsn, dropSlot, waitConfirmed } from './slot.js';
import { quantile } from './stats.js';
import {
  benchConfig,
  DATABASE_URL,
  type Database,
  KEY_PREFIX,
  REDIS_URL,
  SCHEMA,
  SLOT,
} from './workload-common.js';

// --- parameters -------------------------------------------------------------------

const ROWS = Number(process.env.BENCH_WORKLOAD_ROWS ?? 100_000);
const ORDERS_PER_USER = 5;
const ROUNDS = Math.max(1, Number(process.env.BENCH_WORKLOAD_ROUNDS ?? 3));
/** The steady window, measured once the steady rule holds. */
const MEASURE_MS = 1000 * Number(process.env.BENCH_WORKLOAD_SECONDS ?? 8);
/** The cold window: the first seconds from empty caches (BENCH_WORKLOAD_WARMUP_S: its old name). */
const COLD_MS =
  1000 * Number(process.env.BENCH_WORKLOAD_COLD_S ?? process.env.BENCH_WORKLOAD_WARMUP_S ?? 6);
/** The steady rule: the hit rate's least-squares slope over this many 1 s windows... */
const STEADY_WINDOWS = Math.max(2, Number(process.env.BENCH_WORKLOAD_STEADY_WINDOWS ?? 5));
/** ...is under this many points per second. */
const STEADY_SLOPE = Number(process.env.BENCH_WORKLOAD_STEADY_SLOPE ?? 0.5);
/** The steady window starts this long after the cold window at the latest (flagged). */
const STEADY_MAX_WAIT_MS = 1000 * Number(process.env.BENCH_WORKLOAD_STEADY_MAX_WAIT_S ?? 30);
const CONCURRENCY = Number(process.env.BENCH_WORKLOAD_CONCURRENCY ?? 32);
const POOL_SIZE = Number(process.env.BENCH_WORKLOAD_POOL ?? 10);
const ZIPF_S = 1.0;
const TTL_MS = 60_000;
/** A round where other processes took more than this many cores is flagged as disturbed. */
const DISTURBED_CORES = 0.3;
const L1_MAX = 10_000; // walcache's default l1.maxEntries; bentocache and cache-manager get the same
const HOT_CHECK = 1_000; // hottest ids always included in the stale check
const SEQ_LEN = 1 << 21; // operations in the precomputed sequence (wraps around)
const SEED = 0x5eed_2026;
const HITPATH_ROUNDS = 9;
const HITPATH_OPS = 200_000; // per repository and round

const OP_READ_USER = 0;
const OP_READ_AGG = 1;
const OP_RENAME = 2;
const OP_INSERT_ORDER = 3;

type Name = 'walcache' | 'kysely' | 'bentocache' | 'cache-manager';
const ALL_CONTENDERS: readonly Name[] = ['walcache', 'kysely', 'bentocache', 'cache-manager'];
/** A contender's name in JSON keys: cache_manager. */
const jsonName = (name: Name) => name.replace('-', '_');
/** BENCH_WORKLOAD_ONLY=walcache,kysely: a subset (for profiling; ratios need all four). */
const CONTENDERS: readonly Name[] = process.env.BENCH_WORKLOAD_ONLY
  ? ALL_CONTENDERS.filter((n) => (process.env.BENCH_WORKLOAD_ONLY as string).split(',').includes(n))
  : ALL_CONTENDERS;
/** Engine events tallied per walcache round (diagnostics). */
const TALLIED_EVENTS = [
  'miss',
  'coalesced',
  'load',
  'fill',
  'fill-rejected',
  'lease-wait',
  'refresh',
  'l2-error',
  'breaker-open',
  'bus-down',
  'l1-reset',
  'bus-invalidate',
  'corrupt-entry',
] as const;

const log = (line = '') => console.log(line);
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : String(n);

// A full GC between contender rounds, so none pays for another's garbage.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

// --- the operation sequence -------------------------------------------------------------

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Workload {
  readonly kinds: Uint8Array;
  readonly ids: Uint32Array;
  /** ids by popularity rank (rankToId[0] is the hottest). */
  readonly rankToId: Uint32Array;
}

function buildWorkload(): Workload {
  const random = prng(SEED);
  // Zipf CDF over ranks 1..ROWS, weight 1 / k^s.
  const cdf = new Float64Array(ROWS);
  let sum = 0;
  for (let k = 1; k <= ROWS; k++) {
    sum += 1 / k ** ZIPF_S;
    cdf[k - 1] = sum;
  }
  for (let i = 0; i < ROWS; i++) cdf[i] = (cdf[i] as number) / sum;
  // Ranks to ids: a fixed random permutation (Fisher-Yates), so the hot rows are spread.
  const rankToId = new Uint32Array(ROWS);
  for (let i = 0; i < ROWS; i++) rankToId[i] = i + 1;
  for (let i = ROWS - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = rankToId[i] as number;
    rankToId[i] = rankToId[j] as number;
    rankToId[j] = t;
  }
  const kinds = new Uint8Array(SEQ_LEN);
  const ids = new Uint32Array(SEQ_LEN);
  for (let i = 0; i < SEQ_LEN; i++) {
    const u = random();
    let lo = 0;
    let hi = ROWS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    ids[i] = rankToId[lo] as number;
    const k = random();
    kinds[i] =
      k < 0.475 ? OP_READ_USER : k < 0.95 ? OP_READ_AGG : k < 0.975 ? OP_RENAME : OP_INSERT_ORDER;
  }
  return { kinds, ids, rankToId };
}

// --- database -------------------------------------------------------------------------

const admin = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 2, application_name: 'wl-admin' });
admin.on('error', () => {});
// The service's pool: its tables are found through search_path, as an application's
// tables in `public` are (no per-query withSchema).
const pool = new pg.Pool({
  ...pgConfig(DATABASE_URL, { options: `-c search_path=${SCHEMA}` }),
  max: POOL_SIZE,
  application_name: 'wl-bench',
});
pool.on('error', () => {});
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });

let seededMaxOrderId = '0';

async function setupDatabase(): Promise<number> {
  const started = performance.now();
  const { rows } = await admin.query<{ active_pid: number | null }>(
    'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
    [SLOT],
  );
  if (rows[0]?.active_pid != null)
    throw new Error(`slot ${SLOT} is in use (pid ${rows[0].active_pid}): is another run going?`);
  await dropSlot(admin, SLOT);
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await admin.query(`CREATE SCHEMA ${SCHEMA}`);
  await admin.query(
    `CREATE TABLE ${SCHEMA}.users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL, tenant_id int NOT NULL, password_hash text NOT NULL)`,
  );
  await admin.query(
    `CREATE TABLE ${SCHEMA}.orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
  );
  await admin.query(
    `INSERT INTO ${SCHEMA}.users SELECT i, 'user' || i || '@example.com', 'User ' || i, i % 100, md5(i::text) FROM generate_series(1, $1::int) i`,
    [ROWS],
  );
  await admin.query(
    `INSERT INTO ${SCHEMA}.orders (user_id, status, total, created_at)
     SELECT (i % $1::int) + 1, (ARRAY['new','paid','shipped'])[1 + i % 3], ((i * 37) % 100000) / 100.0,
            now() - make_interval(mins => i)
     FROM generate_series(0, $1::int * $2::int - 1) i`,
    [ROWS, ORDERS_PER_USER],
  );
  await admin.query(`CREATE INDEX ON ${SCHEMA}.orders (user_id)`);
  await admin.query(`ALTER TABLE ${SCHEMA}.users REPLICA IDENTITY FULL`);
  await admin.query(`ALTER TABLE ${SCHEMA}.orders REPLICA IDENTITY FULL`);
  await admin.query(`VACUUM ANALYZE ${SCHEMA}.users`);
  await admin.query(`VACUUM ANALYZE ${SCHEMA}.orders`);
  // Flush the load's dirty pages now, not in the first measured round.
  await admin.query('CHECKPOINT').catch(() => {});
  seededMaxOrderId = (
    await admin.query<{ m: string }>(`SELECT max(id)::text AS m FROM ${SCHEMA}.orders`)
  ).rows[0]?.m as string;
  return performance.now() - started;
}

/** Every contender round starts from the seeded data: orders inserted since are deleted. */
async function resetOrders(): Promise<void> {
  await admin.query(`DELETE FROM ${SCHEMA}.orders WHERE id > $1`, [seededMaxOrderId]);
}

/**
 * Waits (at most `maxMs`) until the machine is quiet: under 0.25 cores busy over half a
 * second, so the kernel's writeback of the seed does not land in the first round.
 */
async function settleMachine(maxMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const a = cpuSnapshot();
    await sleep(500);
    const b = cpuSnapshot();
    const busy = cpuShares(a, b).machine;
    if (busy < 0.25 || performance.now() - started > maxMs) return busy;
  }
}

// --- the queries (the same for every contender) ----------------------------------------

const userQuery = (id: number) =>
  db.selectFrom('users').select(['id', 'email', 'name', 'tenant_id']).where('id', '=', String(id));

/** A user with the count and total of its orders. */
const aggregateQuery = (id: number) =>
  db
    .selectFrom('users')
    .leftJoin('orders', 'orders.user_id', 'users.id')
    .select((eb) => [
      'users.id',
      'users.name',
      eb.fn.count<string>('orders.id').as('order_count'),
      eb.fn.coalesce(eb.fn.sum<string>('orders.total'), eb.lit(0)).as('total'),
    ])
    .where('users.id', '=', String(id))
    .groupBy(['users.id', 'users.name']);

const RENAME_SQL = `UPDATE ${SCHEMA}.users SET name = $2 WHERE id = $1`;
const INSERT_ORDER_SQL = `INSERT INTO ${SCHEMA}.orders (user_id, status, total) VALUES ($1, 'new', $2)`;

async function rename(id: number, seq: number): Promise<void> {
  await pool.query(RENAME_SQL, [id, `User ${id} #${seq}`]);
}

async function insertOrder(id: number, seq: number): Promise<void> {
  await pool.query(INSERT_ORDER_SQL, [id, ((seq % 100_000) / 100).toFixed(2)]);
}

// --- contenders -------------------------------------------------------------------------

interface Counters {
  l1: number;
  l2: number;
  misses: number;
  loads: number;
}

const zeroCounters = (): Counters => ({ l1: 0, l2: 0, misses: 0, loads: 0 });

interface Contender {
  readonly name: Name;
  readonly counters: Counters;
  /** Other events by name (walcache's engine events), reset with the counters. */
  readonly tally: Map<string, number>;
  readUser(id: number): Promise<unknown>;
  readAggregate(id: number): Promise<unknown>;
  rename(id: number, seq: number): Promise<void>;
  insertOrder(id: number, seq: number): Promise<void>;
  close(): Promise<void>;
}

class KyselyContender implements Contender {
  readonly name = 'kysely' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readUser(id: number): Promise<unknown> {
    this.counters.loads++;
    return userQuery(id).executeTakeFirst();
  }
  readAggregate(id: number): Promise<unknown> {
    this.counters.loads++;
    return aggregateQuery(id).execute();
  }
  rename(id: number, seq: number): Promise<void> {
    return rename(id, seq);
  }
  insertOrder(id: number, seq: number): Promise<void> {
    return insertOrder(id, seq);
  }
  async close(): Promise<void> {}
}

class BentoContender implements Contender {
  readonly name = 'bentocache' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readonly prefix: string;
  readonly #conn: Redis;
  readonly #bento: BentoBaseline;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.#conn = new Redis(REDIS_URL, { connectionName: `${prefix}:l2`, lazyConnect: false });
    this.#conn.on('error', () => {});
    this.#bento = bentocacheBaseline({
      prefix,
      ttlMs: TTL_MS,
      l1MaxItems: L1_MAX,
      connection: this.#conn,
      redisUrl: REDIS_URL,
    });

    this.#bento.on('cache:hit', (e: { layer?: string }) => {
      if (e.layer === 'l2') this.counters.l2++;
      else this.counters.l1++;
    });
    this.#bento.on('cache:miss', () => {
      this.counters.misses++;
    });
  }

  async ready(): Promise<void> {
    if (this.#conn.status !== 'ready')
      await new Promise<void>((resolve) => this.#conn.once('ready', () => resolve()));
    // One round trip through every layer (and the bus subscription), then clean.
    await this.#bento.getOrSet({ key: 'ready', factory: () => 1 });
    await this.#bento.delete({ key: 'ready' });
  }

  readUser(id: number): Promise<unknown> {
    return this.#bento.getOrSet({
      key: `user:${id}`,
      factory: () => {
        this.counters.loads++;
        return userQuery(id).executeTakeFirst();
      },
    });
  }

  readAggregate(id: number): Promise<unknown> {
    return this.#bento.getOrSet({
      key: `user-agg:${id}`,
      factory: () => {
        this.counters.loads++;
        return aggregateQuery(id).execute();
      },
    });
  }

  /** The hand-written invalidation: the row and the aggregate show the name. */
  async rename(id: number, seq: number): Promise<void> {
    await rename(id, seq);
    await this.#bento.deleteMany({ keys: [`user:${id}`, `user-agg:${id}`] });
  }

  /** The hand-written invalidation: only the aggregate counts orders. */
  async insertOrder(id: number, seq: number): Promise<void> {
    await insertOrder(id, seq);
    await this.#bento.delete({ key: `user-agg:${id}` });
  }

  async close(): Promise<void> {
    await this.#bento.disconnectAll().catch(() => {});
    await this.#conn.quit().catch(() => this.#conn.disconnect());
  }
}

/**
 * cache-manager 7 as its docs set up two tiers: a Keyv over cacheable's CacheableMemory
 * (LRU of 10,000, TTL 60 s) in front of a Keyv over @keyv/redis, `wrap` for reads (it
 * coalesces concurrent calls per key in the process). No bus: one process here, so the
 * hand-written deletes (`del`/`mdel`: every store) reach its only L1.
 */
class CacheManagerContender implements Contender {
  readonly name = 'cache-manager' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readonly prefix: string;
  readonly #cache: CacheManager;

  constructor(prefix: string) {
    this.prefix = prefix;
    const redis = new KeyvRedis(REDIS_URL);
    redis.on('error', () => {});
    this.#cache = createCache({
      ttl: TTL_MS,
      stores: [
        new Keyv({ store: new CacheableMemory({ ttl: TTL_MS, lruSize: L1_MAX }) }),
        new Keyv({ store: redis, namespace: prefix }),
      ],
    });
  }

  async ready(): Promise<void> {
    await this.#cache.wrap('ready', async () => 1);
    await this.#cache.del('ready');
  }

  readUser(id: number): Promise<unknown> {
    return this.#cache.wrap(`user:${id}`, () => {
      this.counters.loads++;
      return userQuery(id).executeTakeFirst();
    });
  }

  readAggregate(id: number): Promise<unknown> {
    return this.#cache.wrap(`user-agg:${id}`, () => {
      this.counters.loads++;
      return aggregateQuery(id).execute();
    });
  }

  /** The hand-written invalidation: the row and the aggregate show the name. */
  async rename(id: number, seq: number): Promise<void> {
    await rename(id, seq);
    await this.#cache.mdel([`user:${id}`, `user-agg:${id}`]);
  }

  /** The hand-written invalidation: only the aggregate counts orders. */
  async insertOrder(id: number, seq: number): Promise<void> {
    await insertOrder(id, seq);
    await this.#cache.del(`user-agg:${id}`);
  }

  async close(): Promise<void> {
    await this.#cache.disconnect().catch(() => {});
  }
}

function newRepository(prefix: string, sampleRate = 0.01) {
  return createRepository({ db, config: benchConfig(prefix, sampleRate) });
}
type Repo = ReturnType<typeof newRepository>;

class WalcacheContender implements Contender {
  readonly name = 'walcache' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readonly prefix: string;
  readonly repo: Repo;
  /** The aggregate as a prepared query: keyed by the user id, built only on a miss. */
  readonly #aggregate: (id: number) => Promise<unknown[]>;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.repo = newRepository(prefix);
    this.#aggregate = this.repo.prepare('user-agg', aggregateQuery);
    const c = this.counters;
    this.repo.engine.events.on('hit', (tier) => {
      if (tier === 'l1') c.l1++;
      else c.l2++;
    });
    this.repo.engine.events.on('stale-served', (tier) => {
      if (tier === 'l1') c.l1++;
      else c.l2++;
    });
    this.repo.engine.events.on('miss', () => {
      c.misses++;
    });
    this.repo.engine.events.on('load', () => {
      c.loads++;
    });
    const events = this.repo.engine.events as unknown as NodeJS.EventEmitter;
    for (const name of TALLIED_EVENTS)
      events.on(name, () => this.tally.set(name, (this.tally.get(name) ?? 0) + 1));
  }

  async ready(): Promise<void> {
    if (!(await this.repo.engine.ready(10_000)))
      throw new Error(`walcache engine not ready (Redis at ${REDIS_URL})`);
  }

  readUser(id: number): Promise<unknown> {
    return this.repo.users.findById(id);
  }

  readAggregate(id: number): Promise<unknown> {
    return this.#aggregate(id);
  }

  rename(id: number, seq: number): Promise<void> {
    return rename(id, seq);
  }

  insertOrder(id: number, seq: number): Promise<void> {
    return insertOrder(id, seq);
  }

  async close(): Promise<void> {
    await this.repo.close();
  }
}

// --- CPU accounting (Linux /proc) ---------------------------------------------------------

const CLK_TCK = 100;

interface CpuSnapshot {
  at: number;
  /** Machine-wide busy and total jiffies. */
  busy: number;
  total: number;
  self: number;
  worker: number;
  redis: number;
  postgres: Map<number, number>;
}

let redisPid = 0;
let workerPid = 0;

function procTicks(pid: number): number {
  if (pid <= 0) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return 0;
  }
}

/** CPU ticks of every postgres process, by pid. */
function postgresTicks(): Map<number, number> {
  const out = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'postgres')
        out.set(Number(entry), procTicks(Number(entry)));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Ticks used between two per-pid snapshots: a new process counts whole, a gone one not at all. */
function ticksBetween(a: Map<number, number>, b: Map<number, number>): number {
  let sum = 0;
  for (const [pid, ticks] of b) sum += Math.max(0, ticks - (a.get(pid) ?? 0));
  return sum;
}

function cpuSnapshot(): CpuSnapshot {
  let busy = 0;
  let total = 0;
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    busy = total - (v[3] ?? 0) - (v[4] ?? 0);
  } catch {
    // not Linux
  }
  const u = process.cpuUsage();
  return {
    at: performance.now(),
    busy,
    total,
    self: ((u.user + u.system) / 1e6) * CLK_TCK,
    worker: procTicks(workerPid),
    redis: procTicks(redisPid),
    postgres: postgresTicks(),
  };
}

interface CpuShares {
  /** Cores in use, machine-wide, and by each part. */
  machine: number;
  bench: number;
  worker: number;
  redis: number;
  postgres: number;
  other: number;
}

function cpuShares(a: CpuSnapshot, b: CpuSnapshot): CpuShares {
  const s = (b.at - a.at) / 1000;
  const cores = (ticks: number) => ticks / CLK_TCK / s;
  const machine = cores(b.busy - a.busy);
  const bench = cores(b.self - a.self);
  const worker = cores(b.worker - a.worker);
  const redis = cores(b.redis - a.redis);
  const postgres = cores(ticksBetween(a.postgres, b.postgres));
  return {
    machine,
    bench,
    worker,
    redis,
    postgres,
    other: Math.max(0, machine - bench - worker - redis - postgres),
  };
}

// --- the driver -----------------------------------------------------------------------------

/** What one measured window (cold or steady) of a contender round counted. */
interface WindowResult {
  ops: number;
  opsPerS: number;
  reads: number;
  writes: number;
  p50: number;
  p99: number;
  readP50: number;
  readP99: number;
  writeP50: number;
  writeP99: number;
  /**
   * Reads answered from a cache tier / reads (walcache: engine `hit` events, bentocache:
   * `cache:hit`); cache-manager reports no tier, so its is `loadFreeRate`.
   */
  hitRate: number;
  /** 1 - db loads / reads: the rate the steady rule watches, the same for every contender. */
  loadFreeRate: number;
  l1Share: number;
  loadsPerRead: number;
  cpu: CpuShares;
  events: Record<string, number>;
}

interface RoundResult {
  name: Name;
  round: number;
  cold: WindowResult;
  steady: WindowResult;
  /** Seconds from the round's start (empty caches) to the steady window's start. */
  steadyAtS: number;
  /** false: the rule did not hold within STEADY_MAX_WAIT_MS after the cold window. */
  steadyReached: boolean;
  errors: number;
  firstError: string;
}

/** Latencies of one window's operations (fixed buffers, reused every round). */
class Latencies {
  readonly all = new Float64Array(1 << 21);
  readonly reads = new Float64Array(1 << 21);
  readonly writes = new Float64Array(1 << 19);
  n = 0;
  nr = 0;
  nw = 0;

  reset(): void {
    this.n = 0;
    this.nr = 0;
    this.nw = 0;
  }

  add(dt: number, read: boolean): void {
    if (this.n < this.all.length) this.all[this.n] = dt;
    this.n++;
    if (read) {
      if (this.nr < this.reads.length) this.reads[this.nr] = dt;
      this.nr++;
    } else {
      if (this.nw < this.writes.length) this.writes[this.nw] = dt;
      this.nw++;
    }
  }
}

const coldLatency = new Latencies();
const steadyLatency = new Latencies();

function sortedPrefix(a: Float64Array, n: number): number[] {
  return Array.from(a.subarray(0, Math.min(n, a.length)).sort());
}

/** Counters, events and CPU at one instant, to subtract. */
interface Mark {
  at: number;
  counters: Counters;
  tally: Map<string, number>;
  cpu: CpuSnapshot;
}

function mark(c: Contender): Mark {
  return {
    at: performance.now(),
    counters: { ...c.counters },
    tally: new Map(c.tally),
    cpu: cpuSnapshot(),
  };
}

function windowResult(c: Contender, lat: Latencies, from: Mark, to: Mark): WindowResult {
  const seconds = (to.at - from.at) / 1000;
  const d = {
    l1: to.counters.l1 - from.counters.l1,
    l2: to.counters.l2 - from.counters.l2,
    loads: to.counters.loads - from.counters.loads,
  };
  const all = sortedPrefix(lat.all, lat.n);
  const reads = sortedPrefix(lat.reads, lat.nr);
  const writes = sortedPrefix(lat.writes, lat.nw);
  const hits = d.l1 + d.l2;
  const loadFreeRate = c.name === 'kysely' ? 0 : Math.max(0, 1 - d.loads / Math.max(1, lat.nr));
  const events: Record<string, number> = {};
  for (const [k, v] of to.tally)
    if (v - (from.tally.get(k) ?? 0) > 0) events[k] = v - (from.tally.get(k) ?? 0);
  return {
    ops: lat.n,
    opsPerS: lat.n / seconds,
    reads: lat.nr,
    writes: lat.nw,
    p50: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    readP50: quantile(reads, 0.5),
    readP99: quantile(reads, 0.99),
    writeP50: quantile(writes, 0.5),
    writeP99: quantile(writes, 0.99),
    hitRate:
      c.name === 'kysely'
        ? 0
        : c.name === 'cache-manager'
          ? loadFreeRate
          : hits / Math.max(1, lat.nr),
    loadFreeRate,
    l1Share: hits > 0 ? d.l1 / hits : 0,
    loadsPerRead: d.loads / Math.max(1, lat.nr),
    cpu: cpuShares(from.cpu, to.cpu),
    events,
  };
}

/** Least-squares slope of `ys` (one per second), in units per second. */
function slope(ys: readonly number[]): number {
  const n = ys.length;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, y) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (i - mx) * ((ys[i] as number) - my);
    den += (i - mx) ** 2;
  }
  return num / den;
}

/**
 * CONCURRENCY loops take the next operation of the sequence, from empty caches:
 * - the cold window: operations started in the first COLD_MS;
 * - then, every second, the share of reads served without a db load over that second;
 *   once the least-squares slope of the last STEADY_WINDOWS of them is under
 *   STEADY_SLOPE points per second (the hit rate stopped rising), and the cold window is
 *   over, the steady window starts: operations started in the next MEASURE_MS. If the
 *   rule does not hold within STEADY_MAX_WAIT_MS after the cold window, the steady
 *   window starts then (flagged).
 */
async function drive(
  c: Contender,
  w: Workload,
  offset: number,
  roundNo: number,
  written: Set<number>,
): Promise<RoundResult> {
  let cursor = offset;
  coldLatency.reset();
  steadyLatency.reset();
  const start = mark(c);
  const t0 = start.at;
  const coldEnd = t0 + COLD_MS;
  let steadyFrom = Number.POSITIVE_INFINITY;
  let steadyTo = Number.POSITIVE_INFINITY;
  let steadyReached = false;
  let coldMark: Mark | null = null;
  let steadyMark: Mark | null = null;
  let endMark: Mark | null = null;
  let readsDone = 0;
  let errors = 0;
  let firstError = '';
  // The steady rule, checked every second.
  const rates: number[] = [];
  let last = { at: t0, reads: 0, loads: c.counters.loads };
  const coldTimer = setTimeout(() => {
    coldMark = mark(c);
  }, COLD_MS);
  const ticker = setInterval(() => {
    const now = performance.now();
    const reads = readsDone - last.reads;
    const loads = c.counters.loads - last.loads;
    last = { at: now, reads: readsDone, loads: c.counters.loads };
    rates.push(c.name === 'kysely' || reads === 0 ? 0 : 100 * Math.max(0, 1 - loads / reads));
    if (steadyFrom !== Number.POSITIVE_INFINITY || now < coldEnd) return;
    const flat =
      rates.length >= STEADY_WINDOWS && slope(rates.slice(-STEADY_WINDOWS)) < STEADY_SLOPE;
    if (flat || now >= coldEnd + STEADY_MAX_WAIT_MS) {
      steadyReached = flat;
      steadyMark = mark(c);
      steadyFrom = steadyMark.at;
      steadyTo = steadyFrom + MEASURE_MS;
      setTimeout(() => {
        endMark = mark(c);
      }, MEASURE_MS);
    }
  }, 1_000);
  const { kinds, ids } = w;
  const loop = async () => {
    for (;;) {
      const seq = cursor++;
      const i = seq & (SEQ_LEN - 1);
      const kind = kinds[i] as number;
      const id = ids[i] as number;
      const begun = performance.now();
      if (begun >= steadyTo) return;
      const read = kind <= OP_READ_AGG;
      try {
        if (kind === OP_READ_USER) await c.readUser(id);
        else if (kind === OP_READ_AGG) await c.readAggregate(id);
        else {
          written.add(id);
          if (kind === OP_RENAME) await c.rename(id, seq);
          else await c.insertOrder(id, seq);
        }
      } catch (error) {
        if (errors++ === 0) firstError = error instanceof Error ? error.message : String(error);
      }
      if (read) readsDone++;
      const dt = performance.now() - begun;
      if (begun < coldEnd) coldLatency.add(dt, read);
      else if (begun >= steadyFrom) steadyLatency.add(dt, read);
    }
  };
  const loops: Promise<void>[] = [];
  for (let k = 0; k < CONCURRENCY; k++) loops.push(loop());
  await Promise.all(loops);
  clearTimeout(coldTimer);
  clearInterval(ticker);
  const end: Mark = endMark ?? mark(c);
  return {
    name: c.name,
    round: roundNo,
    cold: windowResult(c, coldLatency, start, coldMark ?? end),
    steady: windowResult(c, steadyLatency, steadyMark ?? end, end),
    steadyAtS: (steadyFrom - t0) / 1000,
    steadyReached,
    errors,
    firstError,
  };
}

// --- the stale check ----------------------------------------------------------------------

/** JSON with sorted keys: rows compared by value, whatever the column order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `${v}n`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, o[k]]),
      );
    }
    return v;
  });
}

interface StaleReport {
  checkedIds: number;
  stale: number;
  staleUsers: number;
  staleAggregates: number;
  /** Reads of the check answered by the cache (what the check actually compared). */
  cachedReads: number;
  examples: string[];
}

/** Reads a contender answered from its cache so far (cache-manager: reads without a load). */
const cachedSoFar = (c: Contender, reads: number) =>
  c.name === 'cache-manager' ? reads - c.counters.loads : c.counters.l1 + c.counters.l2;

async function staleCheck(c: Contender, ids: readonly number[]): Promise<StaleReport> {
  const before = cachedSoFar(c, 0);
  let staleUsers = 0;
  let staleAggregates = 0;
  const examples: string[] = [];
  let next = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= ids.length) return;
      const id = ids[i] as number;
      const [cu, ca] = [await c.readUser(id), await c.readAggregate(id)];
      const [du, da] = [await userQuery(id).executeTakeFirst(), await aggregateQuery(id).execute()];
      if (canonical(cu) !== canonical(du)) {
        staleUsers++;
        if (examples.length < 3)
          examples.push(`user ${id}: cached ${canonical(cu)} db ${canonical(du)}`);
      }
      if (canonical(ca) !== canonical(da)) {
        staleAggregates++;
        if (examples.length < 3)
          examples.push(`aggregate ${id}: cached ${canonical(ca)} db ${canonical(da)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, lane));
  return {
    checkedIds: ids.length,
    stale: staleUsers + staleAggregates,
    staleUsers,
    staleAggregates,
    cachedReads: cachedSoFar(c, 2 * ids.length) - before,
    examples,
  };
}

// --- the hit path: access-log sampling ----------------------------------------------------

let sink = 0;

async function findByIdLoop(repo: Repo, id: number, n: number): Promise<number> {
  let acc = 0;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const row = await repo.users.findById(id);
    if (row !== undefined) acc++;
  }
  const ns = Number(hrtime.bigint() - t0);
  sink += acc;
  return ns / n;
}

async function samplingCost(hotId: number): Promise<{ off: number[]; on: number[] }> {
  const prefix = `${KEY_PREFIX}-hitpath`;
  const off = newRepository(prefix, 0);
  const on = newRepository(prefix, 0.01);
  try {
    for (const r of [off, on]) {
      if (!(await r.engine.ready(10_000))) throw new Error('hit-path engine not ready');
    }
    const key = off.users.key(hotId);
    const out = { off: [] as number[], on: [] as number[] };
    for (let round = -2; round < HITPATH_ROUNDS; round++) {
      // Warm (L1 holds at most l1.ttlMs): a load or an L2 hit, then L1 hits only.
      for (const r of [off, on]) {
        await r.users.findById(hotId);
        await r.users.findById(hotId);
        if (r.engine.peek(key) === undefined) throw new Error('hot row not in L1');
      }
      gc();
      const half = HITPATH_OPS / 2;
      const [a, b] = round % 2 === 0 ? [off, on] : [on, off];
      const first = [await findByIdLoop(a, hotId, half), await findByIdLoop(b, hotId, half)];
      const second = [await findByIdLoop(b, hotId, half), await findByIdLoop(a, hotId, half)];
      const nsA = ((first[0] as number) + (second[1] as number)) / 2;
      const nsB = ((first[1] as number) + (second[0] as number)) / 2;
      if (round < 0) continue;
      out.off.push(a === off ? nsA : nsB);
      out.on.push(a === off ? nsB : nsA);
    }
    return out;
  } finally {
    await off.close();
    await on.close();
  }
}

// --- child process --------------------------------------------------------------------------

let worker: ChildProcess | null = null;

function spawnWorker(): ChildProcess {
  return forkChild(new URL('./workload-worker.ts', import.meta.url));
}

// --- cleanup ----------------------------------------------------------------------------------

const openContenders = new Set<Contender>();

async function deleteRedisKeys(pattern: string): Promise<number> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = nextCursor;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

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
    await deleteRedisKeys(`${KEY_PREFIX}*`).catch((error: unknown) =>
      console.error(`cleanup: Redis keys ${KEY_PREFIX}* not deleted: ${String(error)}`),
    );
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    const forced = setTimeout(() => process.exit(130), 30_000);
    forced.unref();
    void cleanup().finally(() => process.exit(130));
  });
}

// --- main ----------------------------------------------------------------------------------

const median = (values: readonly number[]): number =>
  quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );

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
  workerPid = worker.pid ?? 0;
  const workerReady = once(worker, 'ready', 60_000);
  const probe = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  probe.on('error', () => {});
  try {
    const info = await probe.info('server');
    redisPid = Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0);
    try {
      if (!readFileSync(`/proc/${redisPid}/comm`, 'utf8').startsWith('redis')) redisPid = 0;
    } catch {
      redisPid = 0; // another host or pid namespace: counted in "other"
    }
  } finally {
    probe.disconnect();
  }
  await deleteRedisKeys(`${KEY_PREFIX}*`);
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
      gc();
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
      await deleteRedisKeys(`${prefix}*`);
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
    checksum: sink,
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
