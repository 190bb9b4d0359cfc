import calculateSlot from 'cluster-key-slot';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { endpointOptions, nodeHostPort, type RedisEndpoint } from '../config/redis-endpoint.js';

/** A connection to the cache's (or the queues') Redis: one server, Sentinel-managed, or a Cluster. */
export type RedisClient = Redis | Cluster;

/** The connection settings walcache chooses per use; the endpoint supplies where and as whom. */
export type ClientOptions = Omit<
  RedisOptions,
  'host' | 'port' | 'path' | 'sentinels' | 'name' | 'username' | 'password' | 'tls'
>;

/**
 * Opens a client for an endpoint: a `Redis` for one server (its URL) or a Sentinel-managed
 * one (ioredis asks the sentinels for the master and follows failovers), a `Cluster` for a
 * cluster (seeded with its nodes; commands go to each key's master). Credentials and TLS
 * apply to every node. `options` are the per-use settings (timeouts, queueing, retries);
 * on a cluster they apply to each node's connection, and the queueing and retry settings
 * to the cluster too.
 */
export function createRedisClient(
  endpoint: RedisEndpoint,
  options: ClientOptions,
  /** Cluster settings of this use (the cache fails fast: fewer, quicker redirections). */
  clusterOverrides: Partial<ClusterOptions> = {},
): RedisClient {
  const { url, options: auth } = endpointOptions(endpoint);
  if (endpoint.cluster !== undefined) {
    const { retryStrategy, enableOfflineQueue, enableAutoPipelining, lazyConnect, ...node } =
      options;
    const clusterOptions: ClusterOptions = {
      redisOptions: { ...node, ...auth },
      scaleReads: 'master',
      slotsRefreshTimeout: Math.max(1_000, options.connectTimeout ?? 1_000),
      // ioredis's default waits for a failover (100 ms per retry, up to maxRedirections)
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      // The caller's strategy as given: one returning null (stop) stops the cluster too.
      clusterRetryStrategy: retryStrategy ?? ((times) => Math.min(100 * times, 2_000)),
      ...(enableOfflineQueue !== undefined && { enableOfflineQueue }),
      ...(enableAutoPipelining !== undefined && { enableAutoPipelining }),
      ...(lazyConnect !== undefined && { lazyConnect }),
      ...clusterOverrides,
    };
    return new Cluster(endpoint.cluster.nodes.map(nodeHostPort), clusterOptions);
  }
  if (endpoint.sentinel !== undefined) {
    const { sentinels, name, sentinelUsername, sentinelPassword } = endpoint.sentinel;
    return new Redis({
      ...options,
      ...auth,
      sentinels: sentinels.map(nodeHostPort),
      name,
      ...(sentinelUsername !== undefined && { sentinelUsername }),
      ...(sentinelPassword !== undefined && { sentinelPassword }),
      ...(auth.tls !== undefined && { enableTLSForSentinelMode: true }),
    });
  }
  return new Redis(url, { ...options, ...auth });
}

/** How long a closing client waits for Redis to answer its QUIT before dropping the socket. */
export const QUIT_TIMEOUT_MS = 1_000;

/**
 * Closes a client: QUIT when it is connected (the server sees a clean goodbye), at most
 * `timeoutMs`, then a disconnect. A server that stopped answering (paused, partitioned)
 * never answers the QUIT, and a close that awaited it would never return. Never rejects.
 */
export async function closeClient(
  client: RedisClient,
  timeoutMs: number = QUIT_TIMEOUT_MS,
): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const quit = client.quit().then(
    () => true,
    () => false,
  );
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    if (!(await Promise.race([quit, late]))) client.disconnect();
  } finally {
    clearTimeout(timer);
  }
}

/** Is this client a cluster? */
export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/**
 * The masters of a client, one `Redis` each (the client itself when it is one server):
 * for the commands that act per node (SCAN, INFO, CONFIG GET, FLUSHDB in tests).
 */
export function masters(client: RedisClient): Redis[] {
  return isCluster(client) ? client.nodes('master') : [client];
}

/** A pipeline of any client (custom script commands are added by the caller's types). */
export type AnyPipeline = ReturnType<Redis['pipeline']>;

/** One command of `execByNode`: the key that routes it, and how to add it to a pipeline. */
export interface KeyedCommand {
  readonly key: string;
  add(pipeline: AnyPipeline): void;
}

/**
 * Runs commands in the fewest round trips the topology allows: one pipeline on one
 * server; on a cluster one pipeline per master (a cluster pipeline must stay on one
 * node), all sent at once. Results come back in the order of `commands`; a command that
 * failed has its error in its slot, as `pipeline.exec()` gives them.
 */
export async function execByNode(
  client: RedisClient,
  commands: readonly KeyedCommand[],
): Promise<Array<[Error | null, unknown]>> {
  if (commands.length === 0) return [];
  if (!isCluster(client)) {
    const pipeline = client.pipeline();
    for (const command of commands) command.add(pipeline);
    return (await pipeline.exec()) ?? [];
  }
  const groups = new Map<string, number[]>();
  for (const [i, command] of commands.entries()) {
    const node = client.slots[calculateSlot(command.key)]?.[0] ?? '';
    const group = groups.get(node);
    if (group === undefined) groups.set(node, [i]);
    else group.push(i);
  }
  const results = new Array<[Error | null, unknown]>(commands.length);
  await Promise.all(
    [...groups.values()].map(async (indexes) => {
      const pipeline = client.pipeline() as unknown as AnyPipeline;
      for (const i of indexes) (commands[i] as KeyedCommand).add(pipeline);
      let replies: Array<[Error | null, unknown]>;
      try {
        replies = (await pipeline.exec()) ?? [];
      } catch (error) {
        replies = indexes.map(() => [error as Error, null]);
      }
      // A node that failed may be gone (a failover): grouping by a stale slot table would
      // send every retry there, so ask the cluster for the current one.
      if (replies.some(([error]) => error !== null)) client.refreshSlotsCache();
      for (const [j, i] of indexes.entries()) results[i] = replies[j] ?? [null, null];
    }),
  );
  return results;
}

/**
 * SCAN over every master (a cluster's keys are spread over them), one batch of names at
 * a time. A key may appear twice (SCAN's own guarantee); callers dedupe if it matters.
 */
export async function* scanKeys(
  client: RedisClient,
  match: string,
  count: number,
): AsyncGenerator<string[]> {
  for (const node of masters(client)) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', count);
      cursor = next;
      if (batch.length > 0) yield batch;
    } while (cursor !== '0');
  }
}

/** GET of many keys: one MGET on one server; on a cluster, a GET each (keys of many slots). */
export async function getMany(
  client: RedisClient,
  keys: readonly string[],
): Promise<Array<Buffer | null>> {
  if (keys.length === 0) return [];
  if (!isCluster(client)) return client.mgetBuffer(...keys);
  return Promise.all(keys.map((k) => client.getBuffer(k)));
}
