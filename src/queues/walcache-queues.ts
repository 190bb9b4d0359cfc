import { type JobsOptions, Queue } from 'bullmq';
import { createRedisClient, type RedisClient } from '../cache/redis-client.js';
import type { ResolvedConfig } from '../config/config.js';
import { describeEndpoint, queuesEndpoint } from '../config/redis-endpoint.js';

/**
 * The BullMQ queues of walcache, and the one place their names, connections and job
 * options are decided. The jobs runner (`walcache jobs`) consumes them; services and the
 * CLI only add jobs.
 *
 * - `warm`: `{ warmer }`, runs one warmer (job schedulers `warm:<name>`).
 * - `write-behind`: `{ entity }`, flushes an entity's pending writes (schedulers
 *   `flush:<entity>`, plus deduplicated jobs from `enqueueFlush`).
 * - `access-log`: `{}`, moves the sampled access log from Redis into Postgres
 *   (scheduler `access-log`).
 */
export const WARM_QUEUE = 'warm';
export const FLUSH_QUEUE = 'write-behind';
export const ACCESS_LOG_QUEUE = 'access-log';
export const QUEUE_NAMES = [WARM_QUEUE, FLUSH_QUEUE, ACCESS_LOG_QUEUE] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** Job names inside the queues (BullMQ wants one; walcache uses one per queue). */
export const WARM_JOB = 'warm';
export const FLUSH_JOB = 'flush';
export const ACCESS_LOG_JOB = 'access-log';

export interface WarmJobData {
  readonly warmer: string;
}
export interface FlushJobData {
  readonly entity: string;
}
export type AccessLogJobData = Record<string, never>;

/** Job-level attempts of a flush job (transient errors: Postgres or Redis down). */
export const FLUSH_JOB_ATTEMPTS = 10;
/** Finished jobs kept for inspection, per queue. */
export const KEEP_COMPLETED = { count: 100, age: 24 * 3600 } as const;
export const KEEP_FAILED = { count: 1000, age: 7 * 24 * 3600 } as const;

/**
 * BullMQ's key prefix: `jobs.queuePrefix`, else `{<prefix>}`. The braces are a Redis
 * Cluster hash tag, so every key of every queue lands in one slot (BullMQ's scripts
 * touch several keys of a queue at once).
 */
export function queuePrefix(config: ResolvedConfig): string {
  return config.jobs.queuePrefix ?? `{${config.prefix}}`;
}

/** The Redis URL of the queues: `jobs.redisUrl`, else the cache's `redis.url`. */
export function queueRedisUrl(config: ResolvedConfig): string {
  return queuesEndpoint(config).url;
}

/**
 * An ioredis client for BullMQ. `blocking: true` is for Workers: `maxRetriesPerRequest:
 * null` (BullMQ throws otherwise) and commands wait while Redis is away; BullMQ
 * duplicates the client it is given into its own connections, so this one never
 * connects itself (`lazyConnect`). `blocking: false` is for Queues (adding jobs,
 * counts, schedulers): a command fails after one reconnect instead of hanging.
 * No ioredis `keyPrefix` (BullMQ refuses it; `queuePrefix` namespaces the keys).
 * The caller closes the client (`disconnect()`).
 */
export function queueConnection(
  config: ResolvedConfig,
  options: { blocking: boolean },
): RedisClient {
  const client = createRedisClient(queuesEndpoint(config), {
    connectionName: `walcache:${config.prefix}:jobs${options.blocking ? ':worker' : ''}`,
    maxRetriesPerRequest: options.blocking ? null : 1,
    enableOfflineQueue: true,
    lazyConnect: true,
    connectTimeout: config.redis.connectTimeoutMs,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 3_000),
  });
  // Reconnect errors are reported by BullMQ (the Worker's 'error' event) and by the
  // commands that fail; an unhandled 'error' must not crash the process.
  client.on('error', () => {});
  return client;
}

/**
 * Waits until the queues' Redis answers. BullMQ connects the lazy client itself.
 *
 * @throws {Error} naming the server (without credentials) when it cannot be reached.
 */
export async function queuesReady(config: ResolvedConfig, queues: WalcacheQueues): Promise<void> {
  try {
    await Promise.all([...queues.byName.values()].map((q) => q.waitUntilReady()));
  } catch (error) {
    throw new Error(
      `Cannot reach the Redis of the job queues at ${describeEndpoint(queuesEndpoint(config))} (jobs.redisUrl, jobs.redisCluster or jobs.redisSentinel, else redis.*): ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

/** The three queues, sharing one connection. */
export interface WalcacheQueues {
  readonly warm: Queue<WarmJobData>;
  readonly flush: Queue<FlushJobData>;
  readonly accessLog: Queue<AccessLogJobData>;
  /** By queue name. */
  readonly byName: ReadonlyMap<QueueName, Queue>;
  /** Closes the queues (not the connection they were given). */
  close(): Promise<void>;
}

/** Default options of a flush job: retried with exponential backoff from `writeBehind.backoffMs`. */
export function flushJobOptions(config: ResolvedConfig): JobsOptions {
  return {
    attempts: FLUSH_JOB_ATTEMPTS,
    backoff: { type: 'exponential', delay: config.writeBehind.backoffMs },
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
  };
}

/** Default options of a warm job: one attempt (its schedule is the retry). */
export function warmJobOptions(): JobsOptions {
  return { attempts: 1, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED };
}

/** Default options of an access-log flush: a few quick retries. */
export function accessLogJobOptions(): JobsOptions {
  return {
    attempts: 3,
    backoff: { type: 'exponential', delay: 1_000 },
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
  };
}

/**
 * Opens the queues on `connection` (a `queueConnection(config, { blocking: false })`
 * client, shared by the three and left open by `close`), with `queuePrefix(config)` and each queue's default job
 * options.
 */
export function createQueues(config: ResolvedConfig, connection: RedisClient): WalcacheQueues {
  const prefix = queuePrefix(config);
  const warm: Queue<WarmJobData> = new Queue(WARM_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: warmJobOptions(),
  });
  const flush: Queue<FlushJobData> = new Queue(FLUSH_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: flushJobOptions(config),
  });
  const accessLog: Queue<AccessLogJobData> = new Queue(ACCESS_LOG_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: accessLogJobOptions(),
  });
  const all = [warm, flush, accessLog] as Queue[];
  // A Queue re-emits its connection's errors; the commands that fail report them.
  for (const queue of all) queue.on('error', () => {});
  let closing: Promise<void> | undefined;
  return {
    warm,
    flush,
    accessLog,
    byName: new Map<QueueName, Queue>([
      [WARM_QUEUE, warm as Queue],
      [FLUSH_QUEUE, flush as Queue],
      [ACCESS_LOG_QUEUE, accessLog as Queue],
    ]),
    close() {
      closing ??= Promise.allSettled(all.map((q) => q.close())).then(() => {});
      return closing;
    },
  };
}

/**
 * Asks for a flush of one entity's pending writes. Deduplicated by `flush:<entity>`:
 * while one is waiting, more calls add nothing; while one is running, one more is kept
 * and starts when it finishes (BullMQ `keepLastIfActive`), so a write accepted during a
 * flush is never left for the next scheduled one. Attempts and backoff are the queue's
 * defaults (`createQueues`: 10 attempts, exponential from `writeBehind.backoffMs`).
 *
 * @returns the job id (the existing job's when deduplicated).
 */
export async function enqueueFlush(
  queue: Queue<FlushJobData>,
  entity: string,
  options: {
    /** Start no earlier than this. */
    delayMs?: number;
    /** First retry delay, for a queue not opened by `createQueues`. @default 200 */
    backoffMs?: number;
  } = {},
): Promise<string | undefined> {
  const defaults = queue.defaultJobOptions;
  const job = await queue.add(
    FLUSH_JOB,
    { entity },
    {
      deduplication: { id: `flush:${entity}`, keepLastIfActive: true },
      attempts: defaults.attempts ?? FLUSH_JOB_ATTEMPTS,
      backoff: defaults.backoff ?? { type: 'exponential', delay: options.backoffMs ?? 200 },
      ...(options.delayMs !== undefined && options.delayMs > 0 && { delay: options.delayMs }),
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    },
  );
  return job.id;
}

/** Adds a warm job for one warmer (what `walcache warm <name>` does without `--now`). */
export async function enqueueWarm(queue: Queue<WarmJobData>, warmer: string): Promise<string> {
  const job = await queue.add(WARM_JOB, { warmer }, warmJobOptions());
  return job.id as string;
}
