import pg from 'pg';
import type { CacheEngine } from '../cache/cache-engine.js';
import { parseHeartbeat } from '../cache/heartbeat.js';
import type { RedisClient } from '../cache/redis-client.js';
import { type ResolvedConfig, writeBehindEntities } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import { cacheEndpoint } from '../config/redis-endpoint.js';
import { assertSlotName, readSlot } from '../database/slot.js';
import {
  createQueues,
  QUEUE_NAMES,
  queueConnection,
  queueRedisUrl,
  type WalcacheQueues,
} from '../queues/walcache-queues.js';
import { type WriteBehindStats, WriteBehindStore } from '../write-behind/write-behind-store.js';
import { errorMessage } from './doctor-check.js';
import { connectRedis, detachedEngine, lastRedisError, openRedis } from './redis-probe.js';

export interface StatsOptions {
  /** Replication slot whose retained WAL is reported. @default 'walcache' */
  readonly slot?: string;
  /**
   * `/metrics` of a running walcache process (an application, `walcache jobs`): hit
   * rates are read from its Prometheus counters. Without it there is no hit rate: the
   * rate lives in the processes that read, not in Redis.
   */
  readonly metricsUrl?: string;
  /** Bound on each read (Postgres, Redis, the metrics endpoint). @default 5000 */
  readonly timeoutMs?: number;
}

/** Cache counters of one process, since it started (`walcache_cache_*`). */
export interface HitRate {
  readonly l1Hits: number;
  readonly l2Hits: number;
  readonly staleServed: number;
  readonly misses: number;
  /** (hits + stale served) / reads; null before any read. */
  readonly ratio: number | null;
}

export interface WalcacheStats {
  /** When it was read (ms since epoch). */
  readonly at: number;
  /** Only with `metricsUrl`. */
  readonly hitRate?: HitRate;
  /**
   * How far behind the worker is: 0 when it is caught up (`caughtUp`), else now − commit
   * time of the last transaction it applied (the worker's heartbeats are transactions, so
   * that is an upper bound); null without a heartbeat, or before the worker applied a commit.
   */
  readonly workerLagMs: number | null;
  /** Now − when the worker last wrote its heartbeat; null without one. */
  readonly heartbeatAgeMs: number | null;
  /**
   * The slot confirmed all the WAL written before this reading (a worker that keeps up
   * confirms within milliseconds: it gets up to a second); false when WAL is left that it
   * has not confirmed; null when the slot could not be read (or does not exist).
   */
  readonly caughtUp: boolean | null;
  /** Bytes of WAL written before this reading that the slot has not confirmed; null as `caughtUp`. */
  readonly unconfirmedWalBytes: number | null;
  /** The slot; null when it does not exist (or could not be read: see `errors`). */
  readonly slot: {
    readonly name: string;
    readonly retainedBytes: number;
    readonly active: boolean;
    readonly walStatus: string | null;
  } | null;
  /** BullMQ job counts per queue (waiting, active, delayed, failed). */
  readonly queues: Record<string, Record<string, number>>;
  /** Per write-behind entity. */
  readonly writeBehind: Record<string, WriteBehindStats>;
  /** What could not be read, one line each. Empty when everything was. */
  readonly errors: readonly string[];
}

export interface StatsReader {
  read(): Promise<WalcacheStats>;
  /** Closes every connection. Idempotent. */
  close(): Promise<void>;
}

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;
/** How long a slot with a worker attached gets to confirm the WAL written before a reading. */
const CATCH_UP_WAIT_MS = 1_000;

/**
 * Bytes of the WAL flushed before this call that `slot` has not confirmed (0: caught up),
 * waiting up to `waitMs` for them to be. An idle worker confirms WAL that holds nothing for
 * it too (the server's keepalives move it on), so only a worker that is behind, or gone,
 * leaves any. Null when the slot has no confirmed position.
 */
async function unconfirmedWal(pool: pg.Pool, slot: string, waitMs: number): Promise<number | null> {
  const { rows } = await pool.query<{ lsn: string }>(
    'SELECT pg_current_wal_flush_lsn()::text AS lsn',
  );
  const target = rows[0]?.lsn;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const { rows: slots } = await pool.query<{ behind: string | null }>(
      `SELECT GREATEST(pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn), 0)::text AS behind
         FROM pg_replication_slots WHERE slot_name = $2`,
      [target, slot],
    );
    const behind = slots[0]?.behind;
    if (behind === null || behind === undefined) return null;
    if (Number(behind) === 0 || Date.now() >= deadline) return Number(behind);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Opens the connections `stats` reads through, for repeated reads (`--watch`). Nothing
 * connects until the first `read()`; a source that cannot be read is reported in
 * `errors` and read again next time.
 */
export function openStats(config: ResolvedConfig, options: StatsOptions = {}): StatsReader {
  const slotName = options.slot ?? config.worker.slot;
  assertSlotName(slotName);
  const timeoutMs = options.timeoutMs ?? 5_000;
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl, {
      application_name: 'walcache-stats',
      connectionTimeoutMillis: timeoutMs,
      statement_timeout: timeoutMs,
    }),
    max: 1,
    idleTimeoutMillis: 0,
  });
  pool.on('error', () => {});
  const redis: RedisClient = openRedis(
    cacheEndpoint(config),
    `walcache:${config.prefix}:stats`,
    config.redis.connectTimeoutMs,
    true,
  );
  const engine: CacheEngine = detachedEngine(config, redis);
  const writeBehind = writeBehindEntities(config);
  let queues: { connection: RedisClient; queues: WalcacheQueues } | undefined;
  let queueError: Error | undefined;
  let store: WriteBehindStore | undefined;
  let closing: Promise<void> | undefined;

  const within = <T>(what: string, promise: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: no answer in ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  };

  // The first read connects; later ones wait for ioredis's own reconnects.
  let connecting: Promise<void> | undefined;
  const ensureRedis = async () => {
    if (redis.status === 'ready') return;
    if (redis.status === 'wait' || redis.status === 'end') {
      connecting ??= connectRedis(redis).finally(() => {
        connecting = undefined;
      });
      await connecting;
    } else {
      await engine.ready(timeoutMs);
    }
    const status: string = redis.status;
    if (status !== 'ready')
      throw new Error(`not connected (${lastRedisError(redis)?.message ?? status})`);
  };

  return {
    async read() {
      if (closing) throw new Error('stats reader is closed');
      const errors: string[] = [];
      const attempt = async <T>(what: string, run: () => Promise<T>): Promise<T | undefined> => {
        try {
          return await within(what, run());
        } catch (error) {
          errors.push(`${what}: ${errorMessage(error)}`);
          return undefined;
        }
      };

      const [hitRate, beat, slot, queueCounts, wb] = await Promise.all([
        options.metricsUrl === undefined
          ? Promise.resolve(undefined)
          : attempt(`metrics ${options.metricsUrl}`, () =>
              readHitRate(options.metricsUrl as string),
            ),
        attempt(`cache Redis ${redactUrl(config.redis.url)}`, async () => {
          await ensureRedis();
          return { raw: await redis.get(engine.keys.heartbeat()) };
        }),
        attempt(`PostgreSQL ${redactUrl(config.databaseUrl)}`, async () => {
          const info = await readSlot(pool, slotName);
          if (info === null) return null;
          const waitMs = info.active ? Math.min(CATCH_UP_WAIT_MS, timeoutMs / 2) : 0;
          return { info, unconfirmed: await unconfirmedWal(pool, slotName, waitMs) };
        }),
        attempt(`queues Redis ${redactUrl(queueRedisUrl(config))}`, async () => {
          if (queues === undefined) {
            const connection = queueConnection(config, { blocking: false });
            connection.on('error', (error: Error) => {
              queueError = error;
            });
            queues = { connection, queues: createQueues(config, connection) };
          }
          const counts: Record<string, Record<string, number>> = {};
          try {
            for (const name of QUEUE_NAMES) {
              const queue = queues.queues.byName.get(name);
              if (queue) counts[name] = await queue.getJobCounts(...JOB_STATES);
            }
          } catch (error) {
            // BullMQ says "Connection is closed."; the connection's last error says why.
            throw queues.connection.status === 'ready' ? error : (queueError ?? error);
          }
          queueError = undefined;
          return counts;
        }),
        writeBehind.length === 0
          ? Promise.resolve({})
          : attempt(`write-behind (queues Redis ${redactUrl(queueRedisUrl(config))})`, async () => {
              store ??= new WriteBehindStore(config);
              const out: Record<string, WriteBehindStats> = {};
              for (const entity of writeBehind) out[entity] = await store.stats(entity);
              return out;
            }),
      ]);

      const now = Date.now();
      const heartbeat = beat === undefined ? null : parseHeartbeat(beat.raw);
      const unconfirmed = slot?.unconfirmed ?? null;
      const caughtUp = unconfirmed === null ? null : unconfirmed === 0;
      return {
        at: now,
        ...(hitRate !== undefined && { hitRate }),
        workerLagMs:
          heartbeat === null
            ? null
            : caughtUp
              ? 0
              : heartbeat.commitTime > 0 // 0: no commit applied yet
                ? Math.max(0, now - heartbeat.commitTime)
                : null,
        heartbeatAgeMs: heartbeat === null ? null : Math.max(0, now - heartbeat.appliedAt),
        caughtUp,
        unconfirmedWalBytes: unconfirmed,
        slot:
          slot === undefined || slot === null
            ? null
            : {
                name: slotName,
                retainedBytes: slot.info.retainedBytes,
                active: slot.info.active,
                walStatus: slot.info.walStatus,
              },
        queues: queueCounts ?? {},
        writeBehind: wb ?? {},
        errors,
      };
    },
    close() {
      closing ??= (async () => {
        await engine.close().catch(() => {});
        await store?.close();
        redis.disconnect();
        if (queues) {
          await queues.queues.close().catch(() => {});
          queues.connection.disconnect();
        }
        await pool.end().catch(() => {});
      })();
      return closing;
    },
  };
}

/**
 * One reading of walcache's state: worker lag (its heartbeat), the slot's retained WAL,
 * BullMQ queue depths, the write-behind backlog, and with `metricsUrl` the hit rate of
 * the process behind it. Sources that cannot be read are listed in `errors`.
 *
 * @example
 * const s = await stats(config, { metricsUrl: 'http://127.0.0.1:9465/metrics' });
 */
export async function stats(
  config: ResolvedConfig,
  options: StatsOptions = {},
): Promise<WalcacheStats> {
  const reader = openStats(config, options);
  try {
    return await reader.read();
  } finally {
    await reader.close();
  }
}

/** Reads the `walcache_cache_*` counters from a Prometheus text endpoint. */
export async function readHitRate(url: string): Promise<HitRate> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return parseHitRate(await response.text());
}

/** The hit counters of a Prometheus text exposition; throws when it has none. */
export function parseHitRate(text: string): HitRate {
  const sum = (metric: string, label?: string): number | undefined => {
    let total: number | undefined;
    for (const line of text.split('\n')) {
      if (!line.startsWith(metric)) continue;
      const match = /^([a-z_]+)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!match || match[1] !== metric) continue;
      if (label !== undefined && !(match[2] ?? '').includes(label)) continue;
      total = (total ?? 0) + Number(match[3]);
    }
    return total;
  };
  const misses = sum('walcache_cache_misses_total');
  if (misses === undefined)
    throw new Error(
      'no walcache_cache_* metrics there (is it the /metrics of a process that reads the cache?)',
    );
  const l1Hits = sum('walcache_cache_hits_total', 'tier="l1"') ?? 0;
  const l2Hits = sum('walcache_cache_hits_total', 'tier="l2"') ?? 0;
  const staleServed = sum('walcache_cache_stale_served_total') ?? 0;
  const answered = l1Hits + l2Hits + staleServed;
  const reads = answered + misses;
  return { l1Hits, l2Hits, staleServed, misses, ratio: reads === 0 ? null : answered / reads };
}
