import type { RedisEndpoint } from '../config/redis-endpoint.js';
import {
  type ClientOptions,
  createRedisClient,
  isCluster,
  type RedisClient,
} from './redis-client.js';

/** The cache's connection: where (`RedisEndpoint`: URL, ACL user, TLS) and how. */
export interface CacheRedisOptions extends RedisEndpoint {
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly autoPipelining: boolean;
}

/**
 * A cache connection that fails fast: no offline queue (a command while disconnected
 * errors at once), a per-command timeout, one attempt per request. The circuit breaker
 * above it decides when to stop trying; ioredis keeps reconnecting in the background.
 */
export function createCacheRedis(options: CacheRedisOptions, name: string): RedisClient {
  const clientOptions: ClientOptions = {
    connectionName: name,
    enableOfflineQueue: false,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: options.connectTimeoutMs,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: options.autoPipelining,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    lazyConnect: false,
  };
  // On a cluster, a command to a master that just died is retried while the cluster
  // fails over (ioredis's default: up to 16 times, 100 ms apart, 1.6 s). A cache read
  // would rather fail and let the loader answer: 4 tries, 50 ms apart (bounded stall
  // ~200 ms plus the command timeout; test/redis-cluster-failover.test.ts).
  const client = createRedisClient(options, clientOptions, {
    maxRedirections: 4,
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50,
  });
  // ioredis emits 'error' on every failed reconnect; the breaker and the bus report
  // availability, so an unhandled 'error' must not crash the process.
  client.on('error', () => {});
  return client;
}

/**
 * Waits until a client is ready, or the timeout passes. Resolves true when ready. A
 * cluster is ready once it knows the slot table and every master's connection is up
 * (ioredis calls the cluster ready before it connects to the masters it did not ask).
 */
export async function waitReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  if (!(await readyEvent(client, timeoutMs))) return false;
  if (!isCluster(client)) return true;
  const masters = client.nodes('master');
  for (const node of masters) if (node.status === 'wait') node.connect().catch(() => {});
  const up = await Promise.all(
    masters.map((node) => readyEvent(node, Math.max(0, deadline - Date.now()))),
  );
  return up.every(Boolean);
}

function readyEvent(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    client.on('ready', onReady);
  });
}

/**
 * Settles when a new client's first connection attempt is over: true once it is ready
 * (`waitReady`), false when the attempt fails (refused, closed: an outage, not worth
 * waiting for) or after `timeoutMs`.
 */
export function firstConnection(client: RedisClient, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const failed = () => done(false);
    const done = (ok: boolean) => {
      client.off('error', failed);
      client.off('close', failed);
      resolve(ok);
    };
    client.on('error', failed);
    client.on('close', failed);
    void waitReady(client, timeoutMs).then(done);
  });
}
