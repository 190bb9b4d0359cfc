import { type Kysely, sql } from 'kysely';
import type { RedisClient } from '../cache/redis-client.js';
import { DEFAULT_WALCACHE_SCHEMA } from '../database/migrations.js';
import { ConfigError, RedisUnavailableError, SetupError } from '../errors/typed-errors.js';
import { type Keys, MAX_KEY_LENGTH } from '../keys/redis-keys.js';

/**
 * Access-log sampling: the repository calls `AccessLogSampler.record` on every read; a
 * sampled read is counted in process, pushed to Redis every `flushIntervalMs` (one hash
 * per time bucket, `Keys.accessLogBucket`), and `flushAccessLog` moves the hashes into
 * `<schema>.access_log`, where `hottestKeys` finds what warmers should load.
 *
 * Counts are estimates: a bucket's `hits` is the number of samples divided by the
 * sampling rate (rounded per key and push), and a crash at the wrong moment can count a
 * batch twice or lose it. Good enough to rank keys, not to bill anyone.
 */

/** The sampler's settings: `ResolvedConfig['accessLog']` fits as is. */
export interface AccessLogOptions {
  /** Fraction of `record` calls counted, 0 to 1. 0 disables the sampler (no timer, no RedisClient). */
  readonly sampleRate: number;
  /** How often counts are pushed to Redis. */
  readonly flushIntervalMs: number;
  /** Width of one time bucket. */
  readonly bucketMs: number;
  /** Called with the error of a push the timer (or `close`) started; a failed push keeps its counts. */
  readonly onError?: (error: unknown) => void;
}

/** What one `flushAccessLog` moved into Postgres. */
export interface AccessLogFlushResult {
  /** Redis hashes moved (a crashed flush's leftover copy counts as one more). */
  readonly buckets: number;
  /** Rows upserted (one per key and bucket). */
  readonly rows: number;
}

/** A key and its estimated hits, from `hottestKeys`. */
export interface HotKey {
  readonly key: string;
  readonly entity: string | null;
  readonly hits: number;
}

/** Distinct (bucket, entity, key) counts a sampler holds before it drops new ones. */
export const MAX_PENDING_ENTRIES = 100_000;
/**
 * Estimated bytes of those counts (`pendingBytes`) a sampler holds before it drops new
 * ones: the entry bound alone would let 100,000 keys of 1,000 characters take 100 MB
 * while Redis is down.
 */
export const MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** What one held count costs besides its key's characters (map slot, number, string header). */
const ENTRY_BYTES = 64;

/** Separates the entity from the key in a bucket hash's field names. */
const FIELD_SEPARATOR = '\u0000';
const DEFAULT_BUCKET_MS = 3_600_000;
const DEFAULT_SINCE_MS = 24 * 3_600_000;
const DEFAULT_LIMIT = 1_000;
/** Rows per INSERT statement (all of a bucket's statements share one transaction). */
const UPSERT_CHUNK = 5_000;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
/** Longest gap between two samples (reached only with absurd rates or `random`s). */
const MAX_GAP = 2 ** 40;

/** The start (ms since epoch) of the bucket holding `now`. */
export function accessLogBucketStart(now: number, bucketMs: number): number {
  return Math.floor(now / bucketMs) * bucketMs;
}

/** Raw sample counts of one bucket: entity (`''` for none) -> key -> samples. */
type BucketCounts = Map<string, Map<string, number>>;

function noop(): void {}

/**
 * Samples reads in process and pushes the counts to Redis. One per process, sharing the
 * engine's Redis client (which it never closes).
 *
 * Each sample is kept as a raw count per bucket, entity and key; a push adds
 * `round(samples / sampleRate)` to the key's field in the bucket hash, so Redis and
 * Postgres hold estimated hits and the rate is stored nowhere. A failed push puts its
 * counts back, so nothing is lost while Redis is briefly down; beyond
 * `MAX_PENDING_ENTRIES` distinct entries or `MAX_PENDING_BYTES` of them, new ones are
 * dropped and counted in `dropped` (as is a key or entity over `MAX_KEY_LENGTH`, which no
 * repository key is and the flush would skip).
 */
export class AccessLogSampler {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #rate: number;
  readonly #bucketMs: number;
  readonly #random: () => number;
  readonly #onError: ((error: unknown) => void) | undefined;
  /** `ln(1 - sampleRate)`, for drawing the gap to the next sample. */
  readonly #logKeep: number;
  /** Reads left until the next sample (this one included); Infinity once closed. */
  #countdown: number;
  /** Bucket start -> its raw sample counts. */
  #buckets = new Map<number, BucketCounts>();
  /** The counts of the bucket `record` last wrote to, valid in [#currentStart, #currentEnd). */
  #current: BucketCounts | null = null;
  #currentStart = 0;
  #currentEnd = 0;
  #entries = 0;
  #bytes = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | null = null;
  #inFlight: Promise<void> | null = null;
  #closing: Promise<void> | null = null;

  /**
   * @param random source of the sampling decisions, uniform in [0, 1). It is called once
   *   per sample, not per read: with `u = random()` the next `1 + floor(ln(1 - u) /
   *   ln(1 - sampleRate))` reads go by before the next sample (the last of them sampled),
   *   the same distribution as a draw per read. @default Math.random
   * @throws {ConfigError} on a rate outside [0, 1] or a non-positive interval or bucket.
   */
  constructor(
    redis: RedisClient,
    keys: Keys,
    options: AccessLogOptions,
    random: () => number = Math.random,
  ) {
    const { sampleRate, flushIntervalMs, bucketMs } = options;
    if (typeof sampleRate !== 'number' || !(sampleRate >= 0 && sampleRate <= 1))
      throw new ConfigError('accessLog.sampleRate', sampleRate, 'must be a number from 0 to 1');
    if (!Number.isSafeInteger(flushIntervalMs) || flushIntervalMs <= 0)
      throw new ConfigError(
        'accessLog.flushIntervalMs',
        flushIntervalMs,
        'must be a positive integer',
      );
    if (!Number.isSafeInteger(bucketMs) || bucketMs <= 0)
      throw new ConfigError('accessLog.bucketMs', bucketMs, 'must be a positive integer');
    this.#redis = redis;
    this.#keys = keys;
    this.#rate = sampleRate;
    this.#bucketMs = bucketMs;
    this.#random = random;
    this.#logKeep = Math.log1p(-sampleRate);
    this.#countdown = sampleRate > 0 ? this.#gap() : Number.POSITIVE_INFINITY;
    this.#onError = options.onError;
    this.record = sampleRate > 0 ? this.#record : noop;
    if (sampleRate > 0) {
      this.#timer = setInterval(this.#tick, flushIntervalMs);
      this.#timer.unref();
    }
  }

  /** Samples dropped because `MAX_PENDING_ENTRIES` distinct entries were already waiting. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Distinct (bucket, entity, key) counts waiting for the next push. */
  get pending(): number {
    return this.#entries;
  }

  /** Estimated bytes those counts take (at most `MAX_PENDING_BYTES`). */
  get pendingBytes(): number {
    return this.#bytes;
  }

  /**
   * Counts a read, with probability `sampleRate`. The hit path: when the read is not
   * sampled this is one decrement and one comparison (no allocation, no I/O, no random
   * draw); a sample increments an in-process counter (two Map lookups, no string built).
   * An empty function with rate 0, a no-op after `close`. A null entity is stored as `''`.
   */
  readonly record: (entity: string | null, key: string) => void;

  readonly #record = (entity: string | null, key: string): void => {
    if (--this.#countdown > 0) return;
    this.#countdown = this.#gap();
    this.#sample(entity ?? '', key);
  };

  /**
   * Reads from one sample to the next: 1 + a geometric number of skipped reads, which is
   * exactly the spacing of independent per-read draws at `sampleRate`, for one `random()`
   * per sample instead of one per read.
   */
  #gap(): number {
    if (this.#rate >= 1) return 1;
    const skipped = Math.floor(Math.log(1 - this.#random()) / this.#logKeep);
    return skipped >= 0 ? 1 + Math.min(skipped, MAX_GAP) : 1;
  }

  #sample(entity: string, key: string): void {
    if (key.length > MAX_KEY_LENGTH || entity.length > MAX_KEY_LENGTH) {
      this.#dropped += 1;
      return;
    }
    const now = Date.now();
    let counts = this.#current;
    if (counts === null || now >= this.#currentEnd || now < this.#currentStart) {
      const start = accessLogBucketStart(now, this.#bucketMs);
      counts = this.#bucketCounts(start);
      this.#current = counts;
      this.#currentStart = start;
      this.#currentEnd = start + this.#bucketMs;
    }
    let byKey = counts.get(entity);
    if (byKey === undefined) {
      byKey = new Map();
      counts.set(entity, byKey);
    }
    this.#add(byKey, key, 1);
  }

  #bucketCounts(start: number): BucketCounts {
    let counts = this.#buckets.get(start);
    if (counts === undefined) {
      counts = new Map();
      this.#buckets.set(start, counts);
    }
    return counts;
  }

  #add(byKey: Map<string, number>, key: string, samples: number): void {
    const n = byKey.get(key);
    const cost = ENTRY_BYTES + key.length;
    if (n !== undefined) {
      byKey.set(key, n + samples);
    } else if (this.#entries < MAX_PENDING_ENTRIES && this.#bytes + cost <= MAX_PENDING_BYTES) {
      byKey.set(key, samples);
      this.#entries += 1;
      this.#bytes += cost;
    } else {
      this.#dropped += samples;
    }
  }

  /**
   * Pushes the counts to Redis: per bucket, one MULTI of HINCRBYs on its hash (one key, so
   * one Cluster slot), then one SADD of the bucket starts to the index. Counts leave the
   * process before the first await; what Redis did not take is merged back. (Should the
   * HINCRBYs land and the SADD fail, the bucket is found again once a later push to it
   * indexes it.) Pushes run one at a time: a call during a push waits for it, then pushes.
   *
   * @throws {RedisUnavailableError} when Redis did not take some of the counts (kept for
   *   the next push).
   */
  flush(): Promise<void> {
    const previous = this.#inFlight;
    const run =
      previous === null
        ? this.#push()
        : previous.then(
            () => this.#push(),
            () => this.#push(),
          );
    const tracked: Promise<void> = run.finally(() => {
      if (this.#inFlight === tracked) this.#inFlight = null;
    });
    this.#inFlight = tracked;
    return tracked;
  }

  async #push(): Promise<void> {
    if (this.#entries === 0) return;
    const taken = this.#buckets;
    this.#buckets = new Map();
    this.#current = null;
    this.#entries = 0;
    this.#bytes = 0;

    const starts: number[] = [];
    const writes: Array<Promise<unknown>> = [];
    for (const [start, counts] of taken) {
      if (![...counts.values()].some((byKey) => byKey.size > 0)) continue;
      const hash = this.#keys.accessLogBucket(start);
      const multi = this.#redis.multi();
      for (const [entity, byKey] of counts) {
        for (const [key, samples] of byKey)
          multi.hincrby(hash, entity + FIELD_SEPARATOR + key, this.#hits(samples));
      }
      starts.push(start);
      writes.push(multi.exec().then(throwFirst));
    }
    if (starts.length === 0) return;
    // After the counts: a flusher that drops a bucket from the index re-checks its hash
    // afterwards, so a bucket written now is either seen there or re-added here.
    const indexed = this.#redis.sadd(this.#keys.accessLogIndex(), ...starts.map(String));

    const [indexResult, ...results] = await Promise.allSettled([indexed, ...writes]);
    let failure: unknown = indexResult?.status === 'rejected' ? indexResult.reason : undefined;
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') return;
      failure = result.reason;
      const start = starts[i] as number;
      const into = this.#bucketCounts(start);
      for (const [entity, byKey] of taken.get(start) as BucketCounts) {
        let intoByKey = into.get(entity);
        if (intoByKey === undefined) {
          intoByKey = new Map();
          into.set(entity, intoByKey);
        }
        for (const [key, samples] of byKey) this.#add(intoByKey, key, samples);
      }
    });
    if (failure !== undefined) throw new RedisUnavailableError('access-log push', failure);
  }

  #hits(samples: number): number {
    return Math.max(1, Math.round(samples / this.#rate));
  }

  readonly #tick = (): void => {
    if (this.#inFlight !== null || this.#entries === 0) return;
    this.flush().catch(this.#report);
  };

  readonly #report = (error: unknown): void => {
    this.#onError?.(error);
  };

  /**
   * Stops sampling (`record` becomes a no-op) and the timer, then pushes what is left once;
   * a failure goes to `onError`, never to the caller. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#countdown = Number.POSITIVE_INFINITY;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush().catch(this.#report);
  }
}

/** ioredis resolves a MULTI with per-command errors; any of them fails the whole push. */
function throwFirst(results: Array<[Error | null, unknown]> | null): void {
  if (results === null) throw new Error('MULTI aborted');
  for (const [error] of results) if (error) throw error;
}

/** Options of `flushAccessLog`. */
export interface FlushAccessLogOptions {
  readonly redis: RedisClient;
  readonly keys: Keys;
  // biome-ignore lint/suspicious/noExplicitAny: walcache's own table, whatever the app's schema
  readonly db: Kysely<any>;
  /** Schema of `access_log` (where `runMigrations` created it). @default 'walcache' */
  readonly schema?: string;
  /** The current time (ms): buckets before the current one leave the index once empty. @default Date.now() */
  readonly now?: number;
  /** The samplers' `accessLog.bucketMs`, to tell the current bucket. @default 3600000 */
  readonly bucketMs?: number;
}

/**
 * Moves the access-log counts from Redis into `<schema>.access_log`, adding to the hits
 * already there (`hits = access_log.hits + excluded.hits`).
 *
 * Per bucket in the index: a `:flushing` copy left by a crashed flush is moved first;
 * then the bucket hash is RENAMENX'd to its `:flushing` copy (atomic, so samplers go on
 * counting in a fresh hash), read with HGETALL, upserted in one Postgres transaction
 * (unnest arrays, a few statements per bucket at most) and deleted. Buckets before the
 * current one leave the index once both hashes are gone.
 *
 * Flushes of one prefix and schema run one at a time (a Postgres session advisory lock,
 * released if the process dies), so a `:flushing` copy seen under the lock is a crashed
 * flush's. A crash between the Postgres commit and the DEL counts that batch twice; these
 * are samples, approximate by nature. Rows with a key over `MAX_KEY_LENGTH` characters or
 * containing NUL (no repository key does) are skipped, so one bad field cannot block a bucket.
 *
 * @throws {RedisUnavailableError} when Redis fails; what was not moved stays in Redis.
 */
export async function flushAccessLog(
  options: FlushAccessLogOptions,
): Promise<AccessLogFlushResult> {
  const { redis, keys, db } = options;
  const table = accessLogTable(options.schema);
  const bucketMs = options.bucketMs ?? DEFAULT_BUCKET_MS;
  if (!Number.isSafeInteger(bucketMs) || bucketMs <= 0)
    throw new ConfigError('accessLog.bucketMs', bucketMs, 'must be a positive integer');
  const current = accessLogBucketStart(options.now ?? Date.now(), bucketMs);
  const lockName = `walcache.access_log:${options.schema ?? DEFAULT_WALCACHE_SCHEMA}:${keys.prefix}`;
  const index = keys.accessLogIndex();

  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(hashtextextended(${lockName}, 0))`.execute(conn);
    let failed = true;
    try {
      let buckets = 0;
      let rows = 0;
      const move = async (start: number, flushing: string): Promise<void> => {
        const fields = await call('hgetall', redis.hgetall(flushing));
        rows += await upsertBucket(conn, table, start, fields);
        await call('del', redis.del(flushing));
        buckets += 1;
      };
      const members = await call('smembers', redis.smembers(index));
      const starts = members
        .map(Number)
        .filter((n) => Number.isSafeInteger(n) && n >= 0)
        .sort((a, b) => a - b);
      for (const start of starts) {
        const live = keys.accessLogBucket(start);
        const flushing = keys.accessLogFlushing(start);
        if ((await call('exists', redis.exists(flushing))) > 0) await move(start, flushing);
        if (await renamed(redis, live, flushing)) await move(start, flushing);
        if (start < current) {
          // Drop, then look again: a sampler that wrote meanwhile SADDs after its HINCRBYs.
          await call('srem', redis.srem(index, String(start)));
          if ((await call('exists', redis.exists(live, flushing))) > 0)
            await call('sadd', redis.sadd(index, String(start)));
        }
      }
      failed = false;
      return { buckets, rows };
    } finally {
      const unlock = sql`SELECT pg_advisory_unlock(hashtextextended(${lockName}, 0))`.execute(conn);
      // After a failure the connection may be gone, and the lock with it: keep that error.
      if (failed) await unlock.catch(() => {});
      else await unlock;
    }
  });
}

async function call<T>(operation: string, command: Promise<T>): Promise<T> {
  try {
    return await command;
  } catch (error) {
    throw new RedisUnavailableError(`access-log flush (${operation})`, error);
  }
}

/** RENAMENX live -> flushing; false when there is no live hash (or a copy already exists). */
async function renamed(redis: RedisClient, live: string, flushing: string): Promise<boolean> {
  try {
    return (await redis.renamenx(live, flushing)) === 1;
  } catch (error) {
    if (error instanceof Error && /no such key/i.test(error.message)) return false;
    throw new RedisUnavailableError('access-log flush (renamenx)', error);
  }
}

async function upsertBucket(
  // biome-ignore lint/suspicious/noExplicitAny: see FlushAccessLogOptions.db
  db: Kysely<any>,
  table: string,
  start: number,
  fields: Record<string, string>,
): Promise<number> {
  // One row per key: the primary key is (key, bucket), and ON CONFLICT cannot touch a
  // row twice in one statement. A key seen under two entities keeps the first non-null.
  const byKey = new Map<string, { entity: string | null; hits: number }>();
  for (const [field, value] of Object.entries(fields)) {
    const sep = field.indexOf(FIELD_SEPARATOR);
    const entity = sep > 0 ? field.slice(0, sep) : null;
    const key = sep >= 0 ? field.slice(sep + 1) : field;
    const hits = Number(value);
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || key.includes(FIELD_SEPARATOR)) continue;
    if (!Number.isSafeInteger(hits) || hits <= 0) continue;
    const row = byKey.get(key);
    if (row === undefined) byKey.set(key, { entity, hits });
    else {
      row.hits += hits;
      row.entity ??= entity;
    }
  }
  if (byKey.size === 0) return 0;
  const rows = [...byKey];
  const bucket = new Date(start).toISOString();
  await db.transaction().execute(async (trx) => {
    for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
      const chunk = rows.slice(i, i + UPSERT_CHUNK);
      await sql`
        INSERT INTO ${sql.table(table)} AS a (key, entity, hits, bucket)
        SELECT k, e, h, ${bucket}::timestamptz
        FROM unnest(
          ${chunk.map(([k]) => k)}::text[],
          ${chunk.map(([, r]) => r.entity)}::text[],
          ${chunk.map(([, r]) => r.hits)}::bigint[]
        ) AS t(k, e, h)
        ON CONFLICT (key, bucket) DO UPDATE
        SET hits = a.hits + excluded.hits, entity = COALESCE(excluded.entity, a.entity)
      `.execute(trx);
    }
  });
  return rows.length;
}

/**
 * The hottest keys: estimated hits summed over the buckets that start at most `sinceMs`
 * ago, per key and entity, most hits first (ties by key).
 *
 * @param options.entity only this entity's keys (`null`: keys read without an entity).
 */
export async function hottestKeys(
  // biome-ignore lint/suspicious/noExplicitAny: see FlushAccessLogOptions.db
  db: Kysely<any>,
  options: {
    /** @default 86400000 (24 h) */
    readonly sinceMs?: number;
    /** @default 1000 */
    readonly limit?: number;
    readonly entity?: string | null;
    /** @default 'walcache' */
    readonly schema?: string;
  } = {},
): Promise<HotKey[]> {
  const table = accessLogTable(options.schema);
  const sinceMs = options.sinceMs ?? DEFAULT_SINCE_MS;
  const limit = options.limit ?? DEFAULT_LIMIT;
  if (typeof sinceMs !== 'number' || !(sinceMs >= 0))
    throw new ConfigError('sinceMs', sinceMs, 'must be a non-negative number of milliseconds');
  if (!Number.isSafeInteger(limit) || limit <= 0)
    throw new ConfigError('limit', limit, 'must be a positive integer');
  const since = new Date(Date.now() - sinceMs).toISOString();
  const entity =
    options.entity === undefined
      ? sql``
      : options.entity === null
        ? sql`AND entity IS NULL`
        : sql`AND entity = ${options.entity}`;
  const { rows } = await sql<{ key: string; entity: string | null; hits: string }>`
    SELECT key, entity, sum(hits)::text AS hits
    FROM ${sql.table(table)}
    WHERE bucket >= ${since}::timestamptz ${entity}
    GROUP BY key, entity
    ORDER BY sum(hits) DESC, key
    LIMIT ${limit}
  `.execute(db);
  return rows.map((r) => ({ key: r.key, entity: r.entity, hits: Number(r.hits) }));
}

function accessLogTable(schema: string = DEFAULT_WALCACHE_SCHEMA): string {
  if (!IDENTIFIER.test(schema)) {
    throw new SetupError(
      `Invalid walcache schema name ${JSON.stringify(schema)}`,
      'use letters, digits, "_" and "$" (at most 63, not starting with a digit)',
    );
  }
  return `${schema}.access_log`;
}
