import { randomBytes } from 'node:crypto';
import { type Job, type Queue, UnrecoverableError, Worker } from 'bullmq';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { CacheEngine } from '../cache/cache-engine.js';
import type { RedisClient } from '../cache/redis-client.js';
import { type ResolvedConfig, resolveConfig, writeBehindEntities } from '../config/config.js';
import { pgConfig } from '../config/database.js';
import { cacheEndpoint, queuesEndpoint, redactedEndpoint } from '../config/redis-endpoint.js';
import type { WalcacheConfigInput } from '../config/schema.js';
import { DEFAULT_WALCACHE_SCHEMA } from '../database/migrations.js';
import {
  ACCESS_LOG_JOB,
  ACCESS_LOG_QUEUE,
  type AccessLogJobData,
  accessLogJobOptions,
  createQueues,
  enqueueFlush,
  FLUSH_JOB,
  FLUSH_QUEUE,
  type FlushJobData,
  KEEP_COMPLETED,
  KEEP_FAILED,
  type QueueName,
  queueConnection,
  queuePrefix,
  queuesReady,
  WARM_JOB,
  WARM_QUEUE,
  type WalcacheQueues,
  type WarmJobData,
  warmJobOptions,
} from '../queues/walcache-queues.js';
import { type AccessLogFlushResult, flushAccessLog } from '../repository/access-log.js';
import { createRepository, type RepositoryCore } from '../repository/repository.js';
import { type FlushResult, flushWriteBehind } from '../write-behind/write-behind-flush.js';
import { WriteBehindStore } from '../write-behind/write-behind-store.js';
import { createJobsMetrics, type JobsMetrics, WARM_OUTCOMES } from './jobs-metrics.js';
import { resolveWarmerSql, runWarmer, type WarmSummary } from './warm.js';
import { readWarmerSql } from './warmer-sql.js';
import { within } from './within.js';

export interface JobsRunnerOptions {
  /** The shared config (resolved, or input to resolve). */
  readonly config: ResolvedConfig | WalcacheConfigInput;
  /** Postgres for warmers, flushes and the access log; else a pool on `databaseUrl` (closed with the runner). */
  // biome-ignore lint/suspicious/noExplicitAny: walcache's jobs name their tables at run time
  readonly db?: Kysely<any>;
  readonly logger?: Logger;
  /** Where the runner's metrics go. @default a registry of its own (`runner.registry`) */
  readonly registry?: Registry;
  /** Schema of the access log table (`walcache setup`'s schema). @default 'walcache' */
  readonly accessLogSchema?: string;
  /** How often the access log moves from Redis to Postgres. @default 60000 */
  readonly accessLogFlushMs?: number;
  /** Upsert (and prune) the job schedulers at start. @default true */
  readonly schedule?: boolean;
}

/** Scheduler ids: one per warmer, one flush per write-behind entity, one access-log flush. */
export const warmSchedulerId = (warmer: string): string => `warm:${warmer}`;
export const flushSchedulerId = (entity: string): string => `flush:${entity}`;
export const ACCESS_LOG_SCHEDULER_ID = 'access-log';

const DEFAULT_ACCESS_LOG_FLUSH_MS = 60_000;
/** The scheduler lock outlives any sane upsert; a crashed holder frees it after this. */
const SCHEDULER_LOCK_TTL_MS = 30_000;
/** Longest wait for another replica's upsert. */
const SCHEDULER_LOCK_WAIT_MS = 60_000;
/** Longest wait for a (force) close of BullMQ's workers or queues: they can hang while Redis is away. */
const FORCE_CLOSE_MS = 3_000;
/** After cancelling running jobs at the shutdown deadline, the time they get to record it. */
const CANCEL_GRACE_MS = 1_000;

const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`;

/**
 * `walcache jobs`: BullMQ workers for the three queues (warm, write-behind, access-log),
 * the job schedulers that feed them, Prometheus metrics and a graceful shutdown.
 *
 * Several replicas may run: each takes jobs; the scheduler upserts are serialized by a
 * Redis lock (`<queuePrefix>:schedulers-lock`, BullMQ has open bugs with concurrent
 * upserts) and are idempotent, so a restart or a second replica adds no duplicates.
 *
 * @example
 * const runner = new JobsRunner({ config, logger });
 * await runner.start();
 * process.once('SIGTERM', () => runner.close());
 */
export class JobsRunner {
  readonly config: ResolvedConfig;
  readonly registry: Registry;
  readonly #options: JobsRunnerOptions;
  readonly #log: Logger | undefined;
  // biome-ignore lint/suspicious/noExplicitAny: see JobsRunnerOptions.db
  readonly #db: Kysely<any>;
  readonly #ownsDb: boolean;
  readonly #metrics: JobsMetrics;
  readonly #active = new Set<Promise<unknown>>();
  /** Flushes of one entity run one at a time in this process. */
  readonly #flushChains = new Map<string, Promise<unknown>>();
  #engine: CacheEngine | undefined;
  /** Pending write-behind writes (the jobs Redis), when the config has write-behind entities. */
  #store: WriteBehindStore | undefined;
  // biome-ignore lint/suspicious/noExplicitAny: entities are named by the config at run time
  #repo: RepositoryCore<any, any> | undefined;
  #client: RedisClient | undefined;
  #workerClient: RedisClient | undefined;
  #queues: WalcacheQueues | undefined;
  #workers: Worker[] = [];
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #started = false;

  constructor(options: JobsRunnerOptions) {
    this.#options = options;
    this.config = isResolved(options.config) ? options.config : resolveConfig(options.config);
    this.#log = options.logger;
    this.registry = options.registry ?? new Registry();
    this.#ownsDb = options.db === undefined;
    this.#db =
      options.db ??
      new Kysely({
        dialect: new PostgresDialect({
          pool: (() => {
            const pool = new pg.Pool({
              ...pgConfig(this.config.databaseUrl, { application_name: 'walcache-jobs' }),
              max: Math.max(2, this.config.jobs.concurrency + 1),
            });
            pool.on('error', (error) => this.#log?.warn({ err: error }, 'postgres pool error'));
            return pool;
          })(),
        }),
      });
    this.#metrics = createJobsMetrics(this);
  }

  /** The queues (after `start`): for adding jobs and reading their state. */
  get queues(): WalcacheQueues {
    if (this.#queues === undefined) throw new Error('JobsRunner: call start() first');
    return this.#queues;
  }

  /** The repository the jobs fill through (after `start`). */
  // biome-ignore lint/suspicious/noExplicitAny: see #repo
  get repository(): RepositoryCore<any, any> {
    if (this.#repo === undefined) throw new Error('JobsRunner: call start() first');
    return this.#repo;
  }

  /** For `/readyz`: started, not closing, and the queues' Redis connected. */
  status(): { ready: boolean; started: boolean; closing: boolean; redis: string } {
    const redis = this.#client?.status ?? 'none';
    return {
      ready: this.#started && this.#closing === undefined && redis === 'ready',
      started: this.#started,
      closing: this.#closing !== undefined,
      redis,
    };
  }

  /**
   * Opens the repository, the queues and the workers, and upserts the job schedulers.
   * Resolves once the workers are taking jobs. Idempotent.
   *
   * @throws {ConfigError} (`warmers.<name>.sql`) before anything opens, for a warmer whose
   *   SQL file cannot be read or uses a parameter the warmer does not send.
   */
  start(): Promise<void> {
    if (this.#closing) return Promise.reject(new Error('JobsRunner is closed'));
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    const { config } = this;
    // A warmer's SQL that could only fail when its schedule fires fails the start instead.
    for (const [name, warmer] of Object.entries(config.warmers))
      await readWarmerSql(name, warmer.sql, resolveWarmerSql(warmer.sql));
    if (writeBehindEntities(config).length > 0) {
      // Refused before anything runs: pending writes on a server that may evict them
      // would be acknowledged writes lost.
      this.#store = new WriteBehindStore(config);
      await this.#store.ready();
    }
    this.#engine = new CacheEngine({ config, ...(this.#log && { logger: this.#log }) });
    this.#repo = createRepository({
      db: this.#db,
      config: config as WalcacheConfigInput,
      cache: this.#engine,
    }) as unknown as RepositoryCore<unknown, unknown>;
    this.#client = queueConnection(config, { blocking: false });
    this.#workerClient = queueConnection(config, { blocking: true });
    this.#queues = createQueues(config, this.#client);
    // A Redis that is down fails the start here.
    await queuesReady(config, this.#queues);
    if (this.#options.schedule !== false) await this.upsertSchedulers();
    if (!(await this.#engine.ready(Math.max(5_000, config.redis.connectTimeoutMs))))
      this.#log?.warn(
        { redis: redactedEndpoint(cacheEndpoint(config)) },
        `the cache Redis ${redactedEndpoint(cacheEndpoint(config))} is not connected yet: warm jobs fail until it is`,
      );

    const prefix = queuePrefix(config);
    const workerOptions = {
      connection: this.#workerClient,
      prefix,
      concurrency: config.jobs.concurrency,
    };
    this.#workers = [
      new Worker<WarmJobData, WarmSummary>(
        WARM_QUEUE,
        this.#instrument(WARM_QUEUE, (job, signal) => this.#warm(job, signal)),
        { ...workerOptions, name: 'walcache-warm' },
      ),
      new Worker<FlushJobData, FlushResult>(
        FLUSH_QUEUE,
        this.#instrument(FLUSH_QUEUE, (job) => this.#flush(job)),
        { ...workerOptions, name: 'walcache-write-behind' },
      ),
      new Worker<AccessLogJobData, AccessLogFlushResult>(
        ACCESS_LOG_QUEUE,
        this.#instrument(ACCESS_LOG_QUEUE, () => this.#flushAccessLog()),
        // One flush at a time is all Postgres' advisory lock lets through anyway.
        { ...workerOptions, concurrency: 1, name: 'walcache-access-log' },
      ),
    ] as Worker[];
    for (const worker of this.#workers) this.#listen(worker);
    await Promise.all(this.#workers.map((w) => w.waitUntilReady()));
    this.#started = true;
    this.#log?.info(
      {
        queues: [WARM_QUEUE, FLUSH_QUEUE, ACCESS_LOG_QUEUE],
        prefix,
        concurrency: config.jobs.concurrency,
        warmers: Object.keys(config.warmers),
        writeBehind: writeBehindEntities(config),
      },
      'jobs runner started',
    );
  }

  /**
   * Makes the job schedulers match the config: one per warmer (`warm:<name>`), one flush
   * per write-behind entity (`flush:<entity>`, every `writeBehind.flushIntervalMs`), one
   * access-log flush; removes the ones the config no longer names. Under the scheduler
   * lock, so replicas starting together upsert one after the other. `start` calls it.
   */
  async upsertSchedulers(): Promise<void> {
    const client = this.#client;
    const queues = this.#queues;
    if (client === undefined || queues === undefined) throw new Error('JobsRunner: not started');
    const { config } = this;
    await withLock(client, `${queuePrefix(config)}:schedulers-lock`, async () => {
      const warmers = new Map<string, () => Promise<unknown>>();
      for (const [name, warmer] of Object.entries(config.warmers)) {
        const repeat =
          'every' in warmer.schedule
            ? { every: warmer.schedule.every }
            : { pattern: warmer.schedule.cron };
        warmers.set(warmSchedulerId(name), () =>
          queues.warm.upsertJobScheduler(warmSchedulerId(name), repeat, {
            name: WARM_JOB,
            data: { warmer: name },
            opts: warmJobOptions(),
          }),
        );
      }
      const flushes = new Map<string, () => Promise<unknown>>();
      for (const entity of writeBehindEntities(config)) {
        flushes.set(flushSchedulerId(entity), () =>
          queues.flush.upsertJobScheduler(
            flushSchedulerId(entity),
            { every: config.writeBehind.flushIntervalMs },
            {
              name: FLUSH_JOB,
              data: { entity },
              // The next tick is the retry of a scheduled flush; `enqueueFlush` jobs retry.
              opts: { attempts: 1, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
            },
          ),
        );
      }
      const accessLog = new Map<string, () => Promise<unknown>>([
        [
          ACCESS_LOG_SCHEDULER_ID,
          () =>
            queues.accessLog.upsertJobScheduler(
              ACCESS_LOG_SCHEDULER_ID,
              { every: this.#options.accessLogFlushMs ?? DEFAULT_ACCESS_LOG_FLUSH_MS },
              { name: ACCESS_LOG_JOB, data: {}, opts: accessLogJobOptions() },
            ),
        ],
      ]);
      const plan: Array<[Queue, Map<string, () => Promise<unknown>>]> = [
        [queues.warm as Queue, warmers],
        [queues.flush as Queue, flushes],
        [queues.accessLog as Queue, accessLog],
      ];
      for (const [queue, wanted] of plan) {
        for (const upsert of wanted.values()) await upsert();
        for (const existing of await queue.getJobSchedulers(0, -1)) {
          const id = existing.id ?? existing.key;
          if (!wanted.has(id)) {
            await queue.removeJobScheduler(id);
            this.#log?.info({ queue: queue.name, scheduler: id }, 'job scheduler removed');
          }
        }
      }
      this.#log?.debug(
        { warm: [...warmers.keys()], flush: [...flushes.keys()] },
        'job schedulers upserted',
      );
    });
  }

  /**
   * Stops taking jobs, waits up to `jobs.shutdownTimeoutMs` for the running ones, then
   * cancels what is left (a warm stops between batches; BullMQ puts a job whose worker
   * went away back on its queue) and closes workers, queues, repository and connections.
   * Each BullMQ close is raced with a timer: it can hang while Redis is unreachable.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    await this.#starting?.catch(() => {});
    const workers = this.#workers;
    // close() without force stops fetching and waits for every job the worker took,
    // including one BullMQ has moved to active but not yet handed to its processor (a
    // snapshot of #active would miss that one, and a forced close abandon it mid-run).
    const closing = Promise.allSettled(workers.map((w) => w.close()));
    const drained = await within(closing, this.config.jobs.shutdownTimeoutMs);
    if (!drained.settled) {
      this.#log?.warn(
        { running: this.#active.size, timeoutMs: this.config.jobs.shutdownTimeoutMs },
        'shutdown timeout: cancelling running jobs',
      );
      // Still tracked until the close gets past its wait: a warm stops between batches.
      for (const worker of workers) worker.cancelAllJobs('walcache jobs runner shutting down');
      const closed = await within(closing, CANCEL_GRACE_MS + FORCE_CLOSE_MS);
      if (!closed.settled) {
        const where = redactedEndpoint(queuesEndpoint(this.config));
        this.#log?.warn(
          { redis: where },
          `workers did not close in time (the queues Redis ${where} unreachable?); disconnecting`,
        );
      }
    }
    await within(this.#queues?.close() ?? Promise.resolve(), FORCE_CLOSE_MS);
    await this.#repo?.close().catch(() => {});
    await this.#store?.close();
    await this.#engine?.close().catch(() => {});
    if (this.#ownsDb) await this.#db.destroy().catch(() => {});
    this.#client?.disconnect();
    this.#workerClient?.disconnect();
    this.#started = false;
    this.#log?.info('jobs runner stopped');
  }

  /** Wraps a processor: duration, failures, the set of running jobs (for the shutdown). */
  #instrument<D, R>(
    queue: QueueName,
    run: (job: Job<D, R>, signal: AbortSignal | undefined) => Promise<R>,
  ): (job: Job<D, R>, token: string | undefined, signal: AbortSignal | undefined) => Promise<R> {
    // Three declared parameters: BullMQ passes the AbortSignal only to processors that take it.
    return async (job, _token, signal) => {
      const end = this.#metrics.duration.startTimer({ queue });
      const running = run(job, signal);
      this.#active.add(running);
      try {
        return await running;
      } catch (error) {
        this.#metrics.failures.inc({ queue });
        throw error;
      } finally {
        end();
        this.#active.delete(running);
      }
    };
  }

  async #warm(job: Job<WarmJobData, WarmSummary>, signal: AbortSignal | undefined) {
    const warmer = job.data?.warmer;
    if (typeof warmer !== 'string' || !Object.hasOwn(this.config.warmers, warmer))
      throw new UnrecoverableError(
        `warm job ${job.id}: no warmer ${JSON.stringify(warmer)} in the config (known: ${Object.keys(this.config.warmers).join(', ') || 'none'})`,
      );
    const summary = await runWarmer({
      name: warmer,
      config: this.config,
      repo: this.repository,
      db: this.#db,
      ...(signal !== undefined && { signal }),
      onProgress: (progress) => job.updateProgress({ ...progress }),
    });
    for (const outcome of WARM_OUTCOMES)
      if (summary[outcome] > 0) this.#metrics.warmKeys.inc({ warmer, outcome }, summary[outcome]);
    return summary;
  }

  async #flush(job: Job<FlushJobData, FlushResult>): Promise<FlushResult> {
    const entity = job.data?.entity;
    if (typeof entity !== 'string' || this.config.entities[entity]?.writeBehind !== true)
      throw new UnrecoverableError(
        `flush job ${job.id}: ${JSON.stringify(entity)} is not a write-behind entity of the config`,
      );
    const previous = this.#flushChains.get(entity) ?? Promise.resolve();
    const flushing = previous
      .catch(() => {})
      .then(() =>
        flushWriteBehind({
          engine: this.repository.engine,
          db: this.#db,
          config: this.config,
          entity,
          ...(this.#store && { store: this.#store }),
        }),
      );
    this.#flushChains.set(entity, flushing);
    try {
      const result = await flushing;
      if (result.rows > 0) this.#metrics.flushedRows.inc({ entity }, result.rows);
      if (result.failed > 0) this.#metrics.flushFailedRows.inc({ entity }, result.failed);
      // More than one flush takes: go on at once rather than at the next tick (only after
      // progress: records the database refused stay pending and wait for the tick).
      if (result.remaining > 0 && result.rows > 0 && this.#closing === undefined)
        await enqueueFlush(this.queues.flush, entity);
      return result;
    } finally {
      if (this.#flushChains.get(entity) === flushing) this.#flushChains.delete(entity);
    }
  }

  #flushAccessLog(): Promise<AccessLogFlushResult> {
    const engine = this.repository.engine;
    return flushAccessLog({
      redis: engine.redis,
      keys: engine.keys,
      db: this.#db,
      schema: this.#options.accessLogSchema ?? DEFAULT_WALCACHE_SCHEMA,
      bucketMs: this.config.accessLog.bucketMs,
    });
  }

  #listen(worker: Worker): void {
    const queue = worker.name;
    worker.on('completed', (job, result) => {
      const quiet =
        (queue === FLUSH_QUEUE && (result as FlushResult | undefined)?.rows === 0) ||
        (queue === ACCESS_LOG_QUEUE && (result as AccessLogFlushResult | undefined)?.rows === 0);
      const entry = { queue, job: job.id, name: job.name, data: job.data, result };
      if (quiet) this.#log?.debug(entry, 'job completed');
      else this.#log?.info(entry, 'job completed');
    });
    worker.on('failed', (job, error) => {
      this.#log?.error(
        {
          queue,
          job: job?.id,
          name: job?.name,
          data: job?.data,
          attemptsMade: job?.attemptsMade,
          err: error,
        },
        'job failed',
      );
    });
    worker.on('error', (error) => this.#log?.warn({ queue, err: error }, 'worker error'));
  }

  /** For the metrics: job counts per queue (undefined before start). */
  async jobCounts(): Promise<Map<QueueName, Record<string, number>> | undefined> {
    const queues = this.#queues;
    if (queues === undefined || this.#closing) return undefined;
    const counts = new Map<QueueName, Record<string, number>>();
    for (const [name, queue] of queues.byName)
      counts.set(name, await queue.getJobCounts('waiting', 'active', 'delayed', 'failed'));
    return counts;
  }

  /** For the metrics: write-behind state per entity (undefined before start). */
  async writeBehindState(): Promise<
    Map<string, { pending: number; oldestAgeMs: number; dead: number }> | undefined
  > {
    const store = this.#store;
    if (store === undefined || this.#closing) return undefined;
    const state = new Map<string, { pending: number; oldestAgeMs: number; dead: number }>();
    for (const entity of writeBehindEntities(this.config))
      state.set(entity, await store.stats(entity));
    return state;
  }
}

/** Runs `fn` holding `SET key token NX PX`; waits for another holder, releases only its own token. */
async function withLock<T>(redis: RedisClient, key: string, fn: () => Promise<T>): Promise<T> {
  const token = randomBytes(12).toString('hex');
  const deadline = Date.now() + SCHEDULER_LOCK_WAIT_MS;
  while ((await redis.set(key, token, 'PX', SCHEDULER_LOCK_TTL_MS, 'NX')) !== 'OK') {
    if (Date.now() > deadline)
      throw new Error(
        `could not take the job scheduler lock ${key} within ${SCHEDULER_LOCK_WAIT_MS} ms (another replica upserting?)`,
      );
    await sleep(100 + Math.floor(Math.random() * 100));
  }
  try {
    return await fn();
  } finally {
    await redis.eval(RELEASE_LOCK, 1, key, token).catch(() => {});
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isResolved(config: JobsRunnerOptions['config']): config is ResolvedConfig {
  return Object.isFrozen(config) && typeof (config as ResolvedConfig).prefix === 'string';
}
