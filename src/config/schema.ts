import { z } from 'zod';

/** The output plugins the worker decodes. */
export const DECODER_NAMES = ['wal2json', 'pgoutput'] as const;

/**
 * The one place defaults live. Every option of the engine, with its default; the
 * configuration reference (docs/configuration.md) is generated from this file's TSDoc by
 * `npm run docs:config`, so every option needs a description here.
 */
const ms = () => z.number().int().nonnegative();
const positiveInt = () => z.number().int().positive();

/** TLS to a Redis reached by a `rediss://` URL. */
export const tlsSchema = z
  .object({
    /** CA certificate(s) trusted for the server: PEM text, or the path of a PEM file. @default the system's CAs */
    ca: z.string().min(1).optional(),
    /** Client certificate for mutual TLS: PEM text or a path; goes with `key`. */
    cert: z.string().min(1).optional(),
    /** The client certificate's private key: PEM text or a path. A secret: errors never show it. */
    key: z.string().min(1).optional(),
    /** Host name the server certificate must carry. @default the URL's host */
    servername: z.string().min(1).optional(),
    /** Verify the server certificate. Turn off only to test. @default true */
    rejectUnauthorized: z.boolean().default(true),
  })
  .strict();

/** A Redis node: `host:port`, or a `redis://` / `rediss://` URL of one. */
export const NODE_ADDRESS = /^(rediss?:\/\/)?(\[[0-9A-Fa-f:.]+\]|[^\s/:@]+):\d{1,5}\/?$/;
const nodeAddress = () =>
  z.string().regex(NODE_ADDRESS, 'a node address like "10.0.0.5:6379" or "redis://10.0.0.5:6379"');

/** A Redis Cluster, found from any of its nodes (ioredis discovers the rest). */
export const clusterSchema = z
  .object({
    /** Seed nodes: one reachable node is enough, list a few. Credentials and TLS come from the enclosing options. */
    nodes: z.array(nodeAddress()).min(1),
  })
  .strict();

/** A Redis watched by Sentinel: the master is asked of the sentinels, and followed on failover. */
export const sentinelSchema = z
  .object({
    /** The sentinels: `host:port` each. */
    sentinels: z.array(nodeAddress()).min(1),
    /** The monitored master's name (`sentinel monitor <name> …`). */
    name: z.string().min(1),
    /** ACL user of the sentinels, when they have one (the data nodes use `username`). */
    sentinelUsername: z.string().min(1).optional(),
    /** Password of the sentinels (`requirepass` in sentinel.conf). */
    sentinelPassword: z.string().min(1).optional(),
  })
  .strict();

/** The cache's Redis: L2 entries, tags, the epoch, the worker's heartbeat and the bus. */
export const redisSchema = z
  .object({
    /**
     * Redis for the cache (L2, tags, bus): `redis://` or, for TLS, `rediss://`; an ACL user
     * and password may be in it (`rediss://walcache:secret@host:6380`).
     * @default process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
     */
    url: z.string().url().optional(),
    /**
     * A Redis Cluster instead of one server (`url`): `{ nodes: ['10.0.0.5:6379', …] }`.
     * docs/redis-cluster.md. @default process.env.REDIS_CLUSTER_NODES (comma-separated), when set
     */
    cluster: clusterSchema.optional(),
    /** A Sentinel-managed Redis instead of one server (`url`). docs/redis-cluster.md. */
    sentinel: sentinelSchema.optional(),
    /** ACL user, instead of the URL's (docs/security.md lists what it must be allowed). */
    username: z.string().min(1).optional(),
    /** Password of the ACL user (or of `requirepass`), instead of the URL's. */
    password: z.string().min(1).optional(),
    /** TLS options; the URL must be `rediss://`. */
    tls: tlsSchema.optional(),
    /** Upper bound on any single cache command; a slower Redis counts as a failure. @default 250 */
    commandTimeoutMs: positiveInt().default(250),
    /** Upper bound on opening a connection to Redis; a slower connect counts as a failure. @default 1000 */
    connectTimeoutMs: positiveInt().default(1000),
    /** ioredis auto-pipelining: batches commands issued in one tick. @default true */
    autoPipelining: z.boolean().default(true),
  })
  .strict();

/** Lifetimes and sizes of cached entries, shared by the engine and the repository. */
export const cacheSchema = z
  .object({
    /** Time an entry is fresh. @default 60000 */
    ttlMs: positiveInt().default(60_000),
    /** Fraction of the TTL randomly added or removed per fill, so keys filled together do not expire together. @default 0.1 */
    jitter: z.number().min(0).max(0.9).default(0.1),
    /** Grace after expiry in which a stale value is served while one refresh runs. 0 disables. @default 0 */
    staleWhileRevalidateMs: ms().default(0),
    /**
     * Opt-in grace while the database is unreachable: a read whose loader fails with a
     * connection error (a PostgreSQL restart) gets the last value this process loaded for
     * the key if it is at most this old, with a `grace-served` event, instead of the
     * error. That value may be stale (it is served because no fresher one can be read);
     * 0 turns grace off. @default 0
     */
    graceMs: ms().default(0),
    /** XFetch beta: > 0 refreshes early with growing probability near expiry; 0 disables. @default 1 */
    earlyRefreshBeta: z.number().min(0).max(10).default(1),
    /** TTL of a cached "not found" (loader returned undefined). 0 disables negative caching. @default 0 */
    negativeTtlMs: ms().default(0),
    /**
     * Values whose encoding (before compression) is larger are refused with
     * ValueTooLargeError; an L2 payload is never inflated or decoded past it. @default 1048576
     */
    maxValueBytes: positiveInt().default(1024 * 1024),
    /** Values whose encoding exceeds this are deflated. 0 disables. @default 16384 */
    compressThresholdBytes: ms().default(16 * 1024),
  })
  .strict();

/** The in-process tier (L1): trusted only while the bus is healthy. */
export const l1Schema = z
  .object({
    /** Keep an in-process copy of entries; off, every read goes to Redis. @default true */
    enabled: z.boolean().default(true),
    /** Most entries L1 holds; the least recently used are dropped first. @default 10000 */
    maxEntries: positiveInt().default(10_000),
    /** Bound on the estimated heap size of all L1 entries (values as held, not as stored). @default 67108864 */
    maxBytes: positiveInt().default(64 * 1024 * 1024),
    /** L1 keeps an entry at most this long (never longer than its L2 TTL). @default 10000 */
    ttlMs: positiveInt().default(10_000),
  })
  .strict();

/** Fill leases: the L2 state that lets only the reader who took it fill a key. */
export const leaseSchema = z
  .object({
    /** How long a fill lease lives: longer than a normal load. @default 5000 */
    ttlMs: positiveInt().default(5_000),
    /** How long a reader that finds another's lease waits for its fill before loading itself. @default 250 */
    waitMs: ms().default(250),
  })
  .strict();

/** The circuit breaker that skips Redis while it keeps failing. */
export const breakerSchema = z
  .object({
    /** Consecutive Redis failures that open the breaker. @default 5 */
    failureThreshold: positiveInt().default(5),
    /** Time the breaker stays open before one probe is let through. @default 2000 */
    cooldownMs: positiveInt().default(2_000),
  })
  .strict();

/** The invalidation bus: Redis pub/sub that drops L1 entries in every process. */
export const busSchema = z
  .object({
    /** L1 coherence over Redis pub/sub. Without it L1 cannot be invalidated by other processes. @default true */
    enabled: z.boolean().default(true),
    /**
     * Liveness check of the bus connection: a PING this often. A frozen or partitioned
     * Redis keeps its socket open; without the check L1 would be trusted while no
     * invalidation can arrive. 0 disables it. @default 250
     */
    pingIntervalMs: z.number().int().min(0).default(250),
    /**
     * A PING unanswered this long marks the bus down: L1 and in-memory tag versions are
     * bypassed until Redis answers again (then L1 restarts empty). With the defaults, a
     * frozen Redis stops L1 within 750 ms. @default 500
     */
    pingTimeoutMs: positiveInt().default(500),
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

/** Sliding expiration of an entity's entries (`entities.<name>.sliding`). */
export const slidingSchema = z
  .object({
    /** Longest an entry lives after it was loaded, however often it is read (ms). */
    maxAgeMs: positiveInt(),
  })
  .strict();

/** A cached entity: a table read by key through the repository. */
export const entitySchema = z
  .object({
    /** The table the entity reads. */
    table: tableName(),
    /** Key column(s): `findById` takes these; cache keys are `<entity>:<key values>`. */
    key: z.union([identifier(), z.array(identifier()).min(1)]),
    /** Fresh lifetime of this entity's entries. @default cache.ttlMs */
    ttlMs: positiveInt().optional(),
    /**
     * Sliding expiration: a read that finds an entry with less than half its TTL left
     * extends it to now + TTL, never past `maxAgeMs` after it was loaded (a hot row is
     * still reloaded that often). Invalidation is unaffected. At least the entity's TTL.
     * @default none (entries expire their TTL after they were loaded)
     */
    sliding: slidingSchema.optional(),
    /** Secondary unique columns, each readable with `findBy`; cached under `<entity>:by:<column>:<value>`. */
    unique: z.array(identifier()).default([]),
    /** Columns never cached (never reach Redis), e.g. `password_hash`. */
    deny: z.array(identifier()).default([]),
    /**
     * Encrypt this entity's entries in Redis (AES-256-GCM, keys from `encryption.keysEnv`),
     * and the cached queries that read its table. Keys and tags stay readable (see
     * docs/security.md). Not with `writeBehind` (pending writes are not encrypted).
     * @default false
     */
    encrypt: z.boolean().default(false),
    /**
     * Enables `writeBehind(id, patch)` for this entity: writes are accepted into the jobs
     * Redis (`jobs.redisUrl`, which must not evict them) and applied to existing rows by
     * the jobs runner; reads overlay pending writes. @default false
     */
    writeBehind: z.boolean().default(false),
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

/** The repository's sampled access log, the default warmer's input. */
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

/** Encryption at rest of cached values (docs/security.md). */
export const encryptionSchema = z
  .object({
    /**
     * Environment variable holding the keys: `<id>:<base64 of 32 bytes>` pairs,
     * comma-separated; the first encrypts, all decrypt (rotation). Read by every process that
     * reads or fills encrypted entries, never stored in the config.
     * @default 'WALCACHE_ENCRYPTION_KEYS'
     */
    keysEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'an environment variable name')
      .default('WALCACHE_ENCRYPTION_KEYS'),
    /** Encrypt every entry the engine writes (not only encrypted entities'). @default false */
    all: z.boolean().default(false),
  })
  .strict();

/** The Kysely repository's reads. */
export const repositorySchema = z
  .object({
    /** Longest a `readYourWrites` read waits for the worker before reading the database directly. @default 2000 */
    readYourWritesTimeoutMs: ms().default(2_000),
    /** Most ids one `findMany` (or coalesced misses') SQL query asks for; more are split into several queries. @default 5000 */
    maxBatch: positiveInt().default(5_000),
    /**
     * Misses of `findById` (and of `findBy`, per column) asked in one turn of the event
     * loop load with one `= any($1)` query per entity instead of one query each (at most
     * `maxBatch` ids a query); each fill keeps its own lease. Off: one query per miss.
     * @default true
     */
    coalesceMisses: z.boolean().default(true),
  })
  .strict();

/** Write-behind: pending writes kept in the jobs Redis and flushed by `walcache jobs`. */
export const writeBehindSchema = z
  .object({
    /** Pending writes of one entity that trigger a flush job at once. @default 500 */
    batchSize: positiveInt().default(500),
    /** A flush job runs at least this often while writes are pending. @default 1000 */
    flushIntervalMs: positiveInt().default(1_000),
    /** Most rows one flush writes (one Postgres transaction). @default 5000 */
    maxFlushRows: positiveInt().default(5_000),
    /** Flushes of a record PostgreSQL refuses (for anything but the server's own trouble) before its writes go to the dead-letter list. @default 5 */
    maxAttempts: positiveInt().default(5),
    /** First retry delay of a failed flush job; doubles each attempt. @default 200 */
    backoffMs: positiveInt().default(200),
    /**
     * Replicas that must hold a write before it is acknowledged (Redis `WAIT`): a failover
     * to an asynchronous replica then cannot lose an acknowledged write. A write the
     * replicas do not confirm within `replicaTimeoutMs` is refused (E_REDIS_UNAVAILABLE)
     * and may be retried. @default 1 on a cluster or Sentinel set-up, 0 on one server
     */
    replicas: z.number().int().min(0).max(16).optional(),
    /** How long a write waits for its replicas. @default 1000 */
    replicaTimeoutMs: positiveInt().default(1_000),
  })
  .strict();

const scheduleSchema = z.union([
  z.object({ every: positiveInt() }).strict(),
  z.object({ cron: z.string().min(1) }).strict(),
]);

/** A cache warmer: a SQL query naming keys to load, run on a schedule. */
export const warmerSchema = z
  .object({
    /** When it runs: `{ every: ms }` or `{ cron: '0 * * * *' }` (a BullMQ job scheduler). */
    schedule: scheduleSchema,
    /**
     * SQL returning the keys to warm (a `key` column with cache keys like `users:42`, or an
     * `id` column). A file name in the package's `sql/` folder or a path. Parameters: $1 the
     * entity name, $2 the limit, each optional, but $2 only with $1 (checked before it runs:
     * docs/jobs.md). @default 'hot-keys.sql' (the access log's hottest keys of the last 24 h)
     */
    sql: z.string().min(1).default('hot-keys.sql'),
    /** The entity whose rows are loaded. */
    entity: z.string().min(1),
    /** Keys loaded per batch (one `findMany`). @default 100 */
    batchSize: positiveInt().default(100),
    /** Most keys one run warms ($2 of the SQL). @default 1000 */
    limit: positiveInt().default(1_000),
  })
  .strict();

/** The BullMQ jobs runner (`walcache jobs`) and the Redis its queues live on. */
export const jobsSchema = z
  .object({
    /**
     * Redis for BullMQ queues and pending write-behind writes. Both need `maxmemory-policy`
     * noeviction (write-behind is refused where it may be evicted), a cache an LRU policy:
     * point it at another server in production. @default `redis.url`
     */
    redisUrl: z.string().url().optional(),
    /** The queues on a Redis Cluster instead (`{ nodes }`; queuePrefix keeps them in one slot). */
    redisCluster: clusterSchema.optional(),
    /** The queues on a Sentinel-managed Redis instead. */
    redisSentinel: sentinelSchema.optional(),
    /**
     * TLS options of the queues' Redis (`rediss://`). @default `redis.tls` when the queues
     * use the cache's Redis (no `redisUrl`); none otherwise
     */
    redisTls: tlsSchema.optional(),
    /** BullMQ key prefix; keep the hash tag so queues work on Redis Cluster. @default `{<prefix>}` */
    queuePrefix: z
      .string()
      .regex(/^\{[A-Za-z0-9_.:-]{1,64}\}$/, 'a hash tag like "{walcache}"')
      .optional(),
    /** Jobs one worker runs at once, per queue. @default 1 */
    concurrency: positiveInt().default(1),
    /** Port of `/metrics`, `/healthz`, `/readyz` of `walcache jobs`; 0 disables. @default 9465 */
    metricsPort: z.number().int().min(0).max(65535).default(9465),
    /** Time `walcache jobs` waits for running jobs on SIGTERM before releasing them. @default 10000 */
    shutdownTimeoutMs: positiveInt().default(10_000),
  })
  .strict();

/** Where the invalidation worker reads: shared by `walcache setup`, `worker`, `doctor` and `stats`. */
export const workerSchema = z
  .object({
    /** Logical replication slot (created by `walcache setup`, or `walcache worker --create-slot`). @default 'walcache' */
    slot: z
      .string()
      .regex(/^[a-z0-9_]{1,63}$/, 'a slot name: lower-case letters, digits and "_" (at most 63)')
      .default('walcache'),
    /** Publication the pgoutput decoder reads. @default 'walcache' */
    publication: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'a SQL identifier')
      .default('walcache'),
    /** Output plugin of the slot. @default 'wal2json' */
    decoder: z.enum(DECODER_NAMES).default('wal2json'),
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
    encryption: encryptionSchema.prefault({}),
    repository: repositorySchema.prefault({}),
    writeBehind: writeBehindSchema.prefault({}),
    jobs: jobsSchema.prefault({}),
    worker: workerSchema.prefault({}),
    /** Cache warmers by name, run by `walcache jobs` on their schedule, or `walcache warm <name> --now`. */
    warmers: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), warmerSchema).default({}),
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

/** The logical decoding output plugin the worker reads (`worker.decoder`). */
export type DecoderName = (typeof DECODER_NAMES)[number];
