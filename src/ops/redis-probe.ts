import { CacheEngine } from '../cache/cache-engine.js';
import { createRedisClient, type RedisClient } from '../cache/redis-client.js';
import type { ResolvedConfig } from '../config/config.js';
import type { RedisEndpoint } from '../config/redis-endpoint.js';

// Redis clients for the operator commands (doctor, stats, verify): connected once, their
// last error kept for the report, and an engine that reads without joining the bus.

/**
 * A plain ioredis client for operator commands: not connected until `connect()`.
 * `retry: false` gives up after the first failed connection (doctor); `true` keeps
 * reconnecting (stats --watch).
 */
export function openRedis(
  endpoint: RedisEndpoint,
  name: string,
  connectTimeoutMs: number,
  retry: boolean,
): RedisClient {
  const client = createRedisClient(endpoint, {
    connectionName: name,
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    commandTimeout: 5_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: retry
      ? (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 3_000)
      : () => null,
  });
  // ioredis reports the cause (ECONNREFUSED, auth) as an event and rejects commands with
  // "Connection is closed.": keep the cause for the error message.
  client.on('error', (error: Error) => lastErrors.set(client, error));
  // A cluster reports a seed it could not reach this way.
  client.on('node error', (error: Error) => lastErrors.set(client, error));
  return client;
}

const lastErrors = new WeakMap<RedisClient, Error>();

/** The last connection error of a client from `openRedis`. */
export function lastRedisError(client: RedisClient): Error | undefined {
  return lastErrors.get(client);
}

/** Connects a client from `openRedis`; a failure throws the cause, not "Connection is closed". */
export async function connectRedis(client: RedisClient): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    throw lastErrors.get(client) ?? error;
  }
}

/**
 * An engine over a client the caller owns, without L1 or the bus (no subscription): for
 * reading the cache's own keys (the worker's heartbeat). `close()` leaves the client open.
 */
export function detachedEngine(config: ResolvedConfig, redis: RedisClient): CacheEngine {
  return new CacheEngine({
    // It reads write-behind state, never an entry: it needs no encryption keys.
    config: {
      ...config,
      l1: { ...config.l1, enabled: false },
      bus: { ...config.bus, enabled: false },
      encryption: { ...config.encryption, all: false },
    },
    redis,
  });
}
