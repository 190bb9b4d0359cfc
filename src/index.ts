/**
 * walcache: the public API. Nothing outside this file is part of it.
 */

export type { BusMessage } from './cache/bus.js';
export { CacheEngine, type EngineOptions, type LoadOptions } from './cache/cache-engine.js';
export { type CacheEventMap, CacheEvents, type Tier } from './cache/cache-events.js';
export type { BreakerState } from './cache/circuit-breaker.js';
export { type Heartbeat, parseHeartbeat } from './cache/heartbeat.js';
export { InvalidationWorker, type WorkerOptions } from './cdc/invalidation-worker.js';
export {
  createPgoutputDecoder,
  decodePgoutput,
  pgoutputPluginOptions,
} from './cdc/pgoutput-decoder.js';
export { type AssemblerStats, TransactionAssembler } from './cdc/transaction-assembler.js';
export {
  decodeWal2json,
  parseWal2json,
  WAL2JSON_OPTIONS,
  wal2jsonSqlOptions,
} from './cdc/wal2json-decoder.js';
export { type WorkerEventMap, WorkerEvents, type WorkerRole } from './cdc/worker-events.js';
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
  createMigrator,
  DEFAULT_WALCACHE_SCHEMA,
  type MigrationOptions,
  type MigrationRun,
  type MigrationTarget,
  type PendingMigration,
  pendingMigrations,
  runMigrations,
  SqlFileMigrationProvider,
  type SqlMigration,
} from './database/migrations.js';
export {
  type SetupOptions,
  type SetupReport,
  type SetupStatus,
  type SetupStep,
  type SetupStepName,
  setup,
} from './database/setup.js';
export { DatabaseUnavailableError } from './errors/database-unavailable-error.js';
export {
  ClosedError,
  ConfigError,
  CorruptEntryError,
  EncryptionKeyError,
  EvictionPolicyError,
  InvalidKeyError,
  InvalidQueryError,
  InvalidWriteError,
  MissingRowError,
  RedisUnavailableError,
  SerializationError,
  SetupError,
  UnknownEntityError,
  ValueTooLargeError,
} from './errors/typed-errors.js';
export { WalcacheError, type WalcacheErrorCode } from './errors/walcache-error.js';
export { JobsRunner, type JobsRunnerOptions } from './jobs/jobs-runner.js';
export {
  type RunWarmerOptions,
  runWarmer,
  WarmerSqlError,
  type WarmProgress,
  type WarmSummary,
  type WarmTarget,
} from './jobs/warm.js';
export {
  columnTag,
  encodeKeyPart,
  entityKey,
  Keys,
  key,
  keyValue,
  MAX_KEY_LENGTH,
  parseEntityKey,
  tableResetTag,
  tableTag,
  tag,
  uniqueKey,
} from './keys/redis-keys.js';
export { collectEngineMetrics } from './metrics/prometheus.js';
export { recordVerifyMetrics } from './metrics/verify-metrics.js';
export {
  type ChangeEvent,
  type ChangeOp,
  compareLsn,
  type DecodedRecord,
  type DecodedTransaction,
  DecodeError,
  type LogicalMessage,
  normalizeLsn,
} from './model/change-event.js';
export { emptyInvalidation, type Invalidation, mapTransaction } from './model/change-mapper.js';
export { buildChangeModel, type ChangeModel, type TableModel } from './model/table-model.js';
export {
  type DoctorCheck,
  type DoctorOptions,
  type DoctorReport,
  type DoctorStatus,
  doctor,
  HEARTBEAT_MAX_AGE_MS,
  RETAINED_WAL_WARN_BYTES,
  WORKER_LAG_WARN_MS,
  WRITE_BEHIND_OLDEST_WARN_MS,
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
export {
  ACCESS_LOG_QUEUE,
  type AccessLogJobData,
  createQueues,
  enqueueFlush,
  enqueueWarm,
  FLUSH_QUEUE,
  type FlushJobData,
  QUEUE_NAMES,
  type QueueName,
  queueConnection,
  queuePrefix,
  queuesReady,
  WARM_QUEUE,
  type WalcacheQueues,
  type WarmJobData,
} from './queues/walcache-queues.js';
export {
  type AccessLogFlushResult,
  AccessLogSampler,
  type FlushAccessLogOptions,
  flushAccessLog,
  type HotKey,
  hottestKeys,
} from './repository/access-log.js';
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
export {
  type FlushOptions,
  type FlushResult,
  flushWriteBehind,
} from './write-behind/write-behind-flush.js';
export type {
  Fence,
  PendingRecord,
  PendingWrite,
} from './write-behind/write-behind-record.js';
export {
  type DeadLetter,
  type WriteBehindStats,
  WriteBehindStore,
} from './write-behind/write-behind-store.js';
