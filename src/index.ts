/**
 * walcache: the public API. Nothing outside this file is part of it: what a service, a
 * worker process or an operations script composes. Decoders, queue plumbing, migration
 * internals and the write-behind store are internal (their modules may change).
 */

// Reading through the cache: the Kysely repository, and the engine under it
export { CacheEngine, type EngineOptions, type LoadOptions } from './cache/cache-engine.js';
export { type CacheEventMap, CacheEvents, type Tier } from './cache/cache-events.js';
export type { BreakerState } from './cache/circuit-breaker.js';
// The invalidation worker, and the database set-up it needs
export { InvalidationWorker, type WorkerOptions } from './cdc/invalidation-worker.js';
export { type WorkerEventMap, WorkerEvents, type WorkerRole } from './cdc/worker-events.js';
// Configuration
export {
  DEFAULT_DATABASE_URL,
  DEFAULT_REDIS_URL,
  type ResolvedConfig,
  resolveConfig,
} from './config/config.js';
export { pgConfig } from './config/database.js';
export { defineConfig } from './config/define-config.js';
export type { DecoderName, WalcacheConfigInput } from './config/schema.js';
export {
  DEFAULT_WALCACHE_SCHEMA,
  type MigrationOptions,
  type MigrationRun,
  type MigrationTarget,
  type PendingMigration,
  pendingMigrations,
  runMigrations,
} from './database/migrations.js';
export {
  type SetupOptions,
  type SetupReport,
  type SetupStatus,
  type SetupStep,
  type SetupStepName,
  setup,
} from './database/setup.js';
// Errors: each extends WalcacheError and has a stable `code`; `errors` holds them all
export { DatabaseUnavailableError } from './errors/database-unavailable-error.js';
export { errors } from './errors/error-map.js';
export { InitError, type InitErrorReason } from './errors/init-error.js';
export { InvalidArgumentError } from './errors/invalid-argument-error.js';
export * from './errors/typed-errors.js';
export { WalcacheError, type WalcacheErrorCode } from './errors/walcache-error.js';
// Jobs: warming and write-behind flushing
export { JobsRunner, type JobsRunnerOptions } from './jobs/jobs-runner.js';
export {
  type RunWarmerOptions,
  runWarmer,
  type WarmProgress,
  type WarmSummary,
  type WarmTarget,
} from './jobs/warm.js';
// Keys and tags (for `invalidate`, and to read what the repository caches)
export {
  columnTag,
  entityKey,
  key,
  tableTag,
  tag,
  uniqueKey,
} from './keys/redis-keys.js';
// Operations and metrics
export { collectEngineMetrics } from './metrics/prometheus.js';
export { recordVerifyMetrics } from './metrics/verify-metrics.js';
export { collectWorkerMetrics } from './metrics/worker-metrics.js';
export {
  type DoctorCheck,
  type DoctorOptions,
  type DoctorReport,
  type DoctorStatus,
  doctor,
} from './ops/doctor.js';
export {
  type HitRate,
  openStats,
  type StatsOptions,
  type StatsReader,
  stats,
  type WalcacheStats,
} from './ops/stats.js';
export {
  type StaleEntry,
  type VerifyOptions,
  type VerifyReport,
  type VerifySkipped,
  verify,
} from './ops/verify.js';
export type {
  EntityRepository,
  FindManyResult,
  WarmResult,
  WriteResult,
} from './repository/entity-repository.js';
export {
  type CacheControlOptions,
  type CacheHeaders,
  cacheControl,
  cacheHeaders,
  etag,
  type Freshness,
  isNotModified,
  sendCached,
} from './repository/http.js';
export type { CacheableQuery, CachedQueryOptions } from './repository/query-cache.js';
export {
  type QueryDependencies,
  queryDependencies,
  type TableDependency,
} from './repository/query-tags.js';
export type { ReadOptions } from './repository/read-options.js';
export type { WriteReceipt } from './repository/read-your-writes.js';
export {
  createRepository,
  type Repository,
  type RepositoryCore,
  type RepositoryOptions,
  type RepositoryTransaction,
} from './repository/repository.js';
export type { EntityTypes, EntityTypesOf } from './repository/types.js';
export type { EntityWriter } from './repository/writes.js';
