import { z } from 'zod';

/**
 * The one place defaults live. Every option of the engine, with its default; the
 * README's configuration reference is written from this file.
 */
const ms = () => z.number().int().nonnegative();
const positiveInt = () => z.number().int().positive();

export const redisSchema = z
  .object({
    /** Redis for the cache (L2, tags, bus). @default process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' */
    url: z.string().url().optional(),
    /** Upper bound on any single cache command; a slower Redis counts as a failure. @default 250 */
    commandTimeoutMs: positiveInt().default(250),
    /** @default 1000 */
    connectTimeoutMs: positiveInt().default(1000),
    /** ioredis auto-pipelining: batches commands issued in one tick. @default true */
    autoPipelining: z.boolean().default(true),
  })
  .strict();

export const cacheSchema = z
  .object({
    /** Time an entry is fresh. @default 60000 */
    ttlMs: positiveInt().default(60_000),
    /** Fraction of the TTL randomly added or removed per fill, so keys filled together do not expire together. @default 0.1 */
    jitter: z.number().min(0).max(0.9).default(0.1),
    /** Grace after expiry in which a stale value is served while one refresh runs. 0 disables. @default 0 */
    staleWhileRevalidateMs: ms().default(0),
    /** XFetch beta: > 0 refreshes early with growing probability near expiry; 0 disables. @default 1 */
    earlyRefreshBeta: z.number().min(0).max(10).default(1),
    /** TTL of a cached "not found" (loader returned undefined). 0 disables negative caching. @default 0 */
    negativeTtlMs: ms().default(0),
    /** Encoded values above this are refused with ValueTooLargeError. @default 1048576 */
    maxValueBytes: positiveInt().default(1024 * 1024),
    /** Values whose encoding exceeds this are deflated. 0 disables. @default 16384 */
    compressThresholdBytes: ms().default(16 * 1024),
  })
  .strict();

export const l1Schema = z
  .object({
    /** @default true */
    enabled: z.boolean().default(true),
    /** @default 10000 */
    maxEntries: positiveInt().default(10_000),
    /** Bound on the encoded size of all L1 values. @default 67108864 */
    maxBytes: positiveInt().default(64 * 1024 * 1024),
    /** L1 keeps an entry at most this long (never longer than its L2 TTL). @default 10000 */
    ttlMs: positiveInt().default(10_000),
  })
  .strict();

export const leaseSchema = z
  .object({
    /** How long a fill lease lives: longer than a normal load. @default 5000 */
    ttlMs: positiveInt().default(5_000),
    /** How long a reader that finds another's lease waits for its fill before loading itself. @default 250 */
    waitMs: ms().default(250),
  })
  .strict();

export const breakerSchema = z
  .object({
    /** Consecutive Redis failures that open the breaker. @default 5 */
    failureThreshold: positiveInt().default(5),
    /** Time the breaker stays open before one probe is let through. @default 2000 */
    cooldownMs: positiveInt().default(2_000),
  })
  .strict();

export const busSchema = z
  .object({
    /** L1 coherence over Redis pub/sub. Without it L1 cannot be invalidated by other processes. @default true */
    enabled: z.boolean().default(true),
  })
  .strict();

const identifier = () =>
  z
    .string()
    .regex(
      /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/,
      'a SQL identifier (letters, digits, "_", "$"; not quoted)',
    );

/** A table name, optionally schema-qualified: `users` or `app.users`. */
const tableName = () =>
  z
    .string()
    .regex(
      /^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$/,
      'a table name, optionally schema-qualified',
    );

export const entitySchema = z
  .object({
    /** The table the entity reads. */
    table: tableName(),
    /** Key column(s): `findById` takes these; cache keys are `<entity>:<key values>`. */
    key: z.union([identifier(), z.array(identifier()).min(1)]),
    /** Fresh lifetime of this entity's entries. @default cache.ttlMs */
    ttlMs: positiveInt().optional(),
    /** Secondary unique columns, each readable with `findBy`; cached under `<entity>:by:<column>:<value>`. */
    unique: z.array(identifier()).default([]),
    /** Columns never cached (never reach Redis), e.g. `password_hash`. */
    deny: z.array(identifier()).default([]),
    /**
     * Tags derived from a row, for invalidation by hand (`invalidateTags(['tenant:5'])`):
     * the entry depends on them as well as on its key. A fill whose derived tags were not
     * known before the load reads them, then loads again (see docs/repository.md).
     */
    tags: z
      .custom<(row: Record<string, unknown>) => readonly string[]>(
        (v) => typeof v === 'function',
        'a function (row) => string[]',
      )
      .optional(),
  })
  .strict();

export const accessLogSchema = z
  .object({
    /** Fraction of repository reads counted in the access log (for warmers). 0 disables. @default 0.01 */
    sampleRate: z.number().min(0).max(1).default(0.01),
    /** How often a process pushes its sampled counts to Redis. @default 5000 */
    flushIntervalMs: positiveInt().default(5_000),
    /** Width of one access-log time bucket. @default 3600000 (one hour) */
    bucketMs: positiveInt().default(3_600_000),
  })
  .strict();

export const repositorySchema = z
  .object({
    /** Longest a `readYourWrites` read waits for the worker before reading the database directly. @default 2000 */
    readYourWritesTimeoutMs: ms().default(2_000),
    /** Most ids one `findMany` SQL query asks for; more are split into several queries. @default 5000 */
    maxBatch: positiveInt().default(5_000),
  })
  .strict();

export const configSchema = z
  .object({
    /** Namespace of every Redis key. @default process.env.WALCACHE_PREFIX ?? 'walcache' */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." and "-", 1 to 64 characters')
      .optional(),
    /** Postgres connection string. @default process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test' */
    databaseUrl: z.string().min(1).optional(),
    redis: redisSchema.prefault({}),
    cache: cacheSchema.prefault({}),
    l1: l1Schema.prefault({}),
    lease: leaseSchema.prefault({}),
    /** A tombstone must outlive the worst-case invalidation lag. @default 60000 */
    tombstoneTtlMs: positiveInt().default(60_000),
    breaker: breakerSchema.prefault({}),
    bus: busSchema.prefault({}),
    accessLog: accessLogSchema.prefault({}),
    repository: repositorySchema.prefault({}),
    /** Schema of unqualified table names. @default 'public' */
    defaultSchema: identifier().default('public'),
    /** Cached entities by name (the name is the first part of their keys). */
    entities: z.record(identifier(), entitySchema).default({}),
    /**
     * Columns that narrow query tags, per table: a cached query whose WHERE pins
     * `orders.user_id = 7` depends on the tag `public.orders:user_id=7` only, and the
     * worker bumps that tag from the old and the new row.
     */
    invalidateBy: z.record(tableName(), z.array(identifier())).default({}),
  })
  .strict();

export type WalcacheConfigInput = z.input<typeof configSchema>;
