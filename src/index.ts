/**
 * walcache: the public API. Nothing outside this file is part of it.
 */

export type { BusMessage } from './cache/bus.js';
export type { BreakerState } from './cache/circuit-breaker.js';
export { CacheEngine, type EngineOptions, type LoadOptions } from './cache/engine.js';
export {
  DEFAULT_DATABASE_URL,
  DEFAULT_REDIS_URL,
  type ResolvedConfig,
  resolveConfig,
} from './config/config.js';
export type { WalcacheConfigInput } from './config/schema.js';
export {
  ClosedError,
  ConfigError,
  CorruptEntryError,
  InvalidKeyError,
  RedisUnavailableError,
  SerializationError,
  ValueTooLargeError,
} from './errors/errors.js';
export { WalcacheError, type WalcacheErrorCode } from './errors/walcache-error.js';
export { encodeKeyPart, Keys, key, MAX_KEY_LENGTH, tag } from './keys/keys.js';
export { type CacheEventMap, CacheEvents, type Tier } from './metrics/events.js';
export { collectEngineMetrics } from './metrics/prometheus.js';
