import { Queue } from 'bullmq';
import { CompiledQuery, type Kysely, sql, type Transaction } from 'kysely';
import { CacheEngine } from '../cache/cache-engine.js';
import type { WalcacheLogger } from '../cache/outage-log.js';
import type { RedisClient } from '../cache/redis-client.js';
import { Keyring } from '../codec/keyring.js';
import { type ResolvedConfig, resolveConfig } from '../config/config.js';
import type { WalcacheConfigInput } from '../config/schema.js';
import {
  applyCatalog,
  checkModel,
  type ModelProblem,
  searchPathProblems,
} from '../database/model-check.js';
import { type QueryRows, readCatalog } from '../database/table-catalog.js';
import {
  ClosedError,
  ConfigError,
  EncryptionKeyError,
  SetupError,
  UnknownEntityError,
} from '../errors/typed-errors.js';
import { WalcacheError } from '../errors/walcache-error.js';
import type { DynamicDb, DynamicTransaction } from '../model/dynamic-db.js';
import { buildEntityModels, type EntityModel } from '../model/entity-model.js';
import { buildChangeModel, type ChangeModel, qualify } from '../model/table-model.js';
import {
  enqueueFlush,
  FLUSH_QUEUE,
  type FlushJobData,
  flushJobOptions,
  queueConnection,
  queuePrefix,
} from '../queues/walcache-queues.js';
import { flushWriteBehind } from '../write-behind/write-behind-flush.js';
import { WriteBehindStore } from '../write-behind/write-behind-store.js';
import { AccessLogSampler } from './access-log.js';
import { EntityRepository, type RepositoryContext } from './entity-repository.js';
import { type CacheableQuery, type CachedQueryOptions, QueryCache } from './query-cache.js';
import { WorkerPosition, type WriteReceipt } from './read-your-writes.js';
import { SnapshotSource } from './snapshot-source.js';
import type { EntitiesOf, EntityTypesOf } from './types.js';
import { PendingWriteOrder } from './write-behind-writes.js';
import { EntityWriter, WriteSet } from './writes.js';

export interface RepositoryOptions<DB, C extends WalcacheConfigInput> {
  /** The service's Kysely instance. The repository never closes it. */
  readonly db: Kysely<DB>;
  /** The config shared with the worker (`defineConfig`); its literal types give the row types. */
  readonly config: C;
  /** Share an engine (built from the same config); else the repository opens (and closes) its own. */
  readonly cache?: CacheEngine;
  /**
   * Where the repository's own engine logs a cache Redis outage (pino, or anything with
   * `error` and `info`): once when reads start going to the database, once when Redis
   * answers again. With `cache`, give it to that engine instead (`ConfigError` here).
   */
  readonly logger?: WalcacheLogger;
}

/** A transaction's handle: `db` is the Kysely transaction, each entity its writer. */
export type RepositoryTransaction<DB, C> = {
  readonly db: Transaction<DB>;
  /**
   * Reports a row change made with plain Kysely (`tx.db`) to any table the worker
   * follows, so it is evicted at commit like the entity helpers' own: pass the old and
   * the new row as far as known (`returningAll()` gives them).
   */
  touched(
    table: Extract<keyof DB, string>,
    op: 'I' | 'U' | 'D',
    oldRow: Record<string, unknown> | null,
    newRow: Record<string, unknown> | null,
  ): void;
} & {
  readonly [N in keyof EntitiesOf<C> & string]: EntityWriter<
    EntityTypesOf<DB, EntitiesOf<C>[N]>['row'],
    EntityTypesOf<DB, EntitiesOf<C>[N]>['id'],
    EntityTypesOf<DB, EntitiesOf<C>[N]>['insert'],
    EntityTypesOf<DB, EntitiesOf<C>[N]>['update']
  >;
};

/** The repository: one `EntityRepository` per entity, plus query caching and transactions. */
export type Repository<DB, C> = RepositoryCore<DB, C> & {
  readonly [N in keyof EntitiesOf<C> & string]: EntityRepository<
    EntityTypesOf<DB, EntitiesOf<C>[N]>
  >;
};

/**
 * What a service imports: cached reads of its entities, cached queries, and writes that
 * evict at once in the writing process.
 *
 * @example
 * const config = defineConfig({
 *   entities: { users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] } },
 *   invalidateBy: { orders: ['user_id'] },
 * });
 * const repo = createRepository({ db, config, logger });  // logger: optional (pino or alike)
 * await repo.ready(); // catalog read and checked, Redis connected (false: reads go to the database)
 * const user = await repo.users.findById(42);          // row type from your Database type
 * const orders = await repo.cached(db.selectFrom('orders').selectAll().where('user_id', '=', 42));
 */
export function createRepository<DB, const C extends WalcacheConfigInput>(
  options: RepositoryOptions<DB, C>,
): Repository<DB, C> {
  return new RepositoryCore(options) as Repository<DB, C>;
}

export class RepositoryCore<DB, C> {
  readonly db: Kysely<DB>;
  readonly engine: CacheEngine;
  readonly config: ResolvedConfig;
  /** Sampled reads for warmers; undefined when `accessLog.sampleRate` is 0. */
  readonly accessLog: AccessLogSampler | undefined;
  readonly #ownsEngine: boolean;
  readonly #changeModel: ChangeModel;
  readonly #entities: ReadonlyMap<string, EntityModel>;
  readonly #repositories = new Map<string, EntityRepository>();
  readonly #queries: QueryCache;
  readonly #position: WorkerPosition;
  #closing: Promise<void> | undefined;
  #writeBehind: WriteBehindStore | undefined;
  readonly #writtenBehind = new Set<string>();
  readonly #tableColumns = new Map<string, Promise<ReadonlySet<string>>>();
  #flushQueue: { queue: Queue<FlushJobData>; connection: RedisClient } | undefined;
  readonly #lastTrigger = new Map<string, number>();
  #catalog: Promise<void> | undefined;
  #catalogRead = false;

  constructor(options: RepositoryOptions<DB, WalcacheConfigInput>) {
    this.db = options.db;
    // Everything that can refuse the config runs before a connection is opened.
    this.config = resolveConfig(options.config);
    if (options.cache && options.cache.config.prefix !== this.config.prefix)
      throw new ConfigError(
        'cache',
        options.cache.config.prefix,
        `the engine was built from another config (prefix \`${options.cache.config.prefix}\`, this config's is \`${this.config.prefix}\`)`,
      );
    if (options.cache && options.logger)
      throw new ConfigError(
        'logger',
        undefined,
        'the repository logs through its own engine only; with `cache`, give the logger to that engine (`new CacheEngine({ config, logger })`)',
      );
    this.#changeModel = buildChangeModel(this.config);
    this.#entities = buildEntityModels(this.config, this.#changeModel);
    // Encrypted entities need keys: in the engine given, or (before one is opened) in the
    // environment the repository's own engine will read them from.
    const encrypted = [...this.#entities.values()].filter((e) => e.encrypt).map((e) => e.name);
    const keysEnv = this.config.encryption.keysEnv;
    const hasKeys = options.cache
      ? options.cache.encryptionKeyId !== null
      : Keyring.fromEnv(keysEnv, process.env) !== null;
    if (encrypted.length > 0 && !hasKeys)
      throw new EncryptionKeyError(
        keysEnv,
        `${keysEnv} is not set, and ${encrypted.map((e) => `\`${e}\``).join(', ')} ${encrypted.length > 1 ? 'are' : 'is'} encrypted (entities.<name>.encrypt)`,
      );
    this.#ownsEngine = options.cache === undefined;
    this.engine =
      options.cache ??
      new CacheEngine({
        config: this.config,
        ...(options.logger !== undefined && { logger: options.logger }),
      });
    this.#position = new WorkerPosition(this.engine);
    const { sampleRate } = this.config.accessLog;
    this.accessLog =
      sampleRate > 0
        ? new AccessLogSampler(this.engine.redis, this.engine.keys, this.config.accessLog)
        : undefined;
    const snapshots = new SnapshotSource(this.db as DynamicDb);
    const ctx: RepositoryContext = {
      engine: this.engine,
      db: this.db as DynamicDb,
      config: this.config,
      position: this.#position,
      sampler: this.accessLog,
      snapshot: snapshots.read,
      writeBehindStore: () => this.#writeBehindStore(),
      columns: (model) => this.#columns(model),
      typed: () => this.#typed(),
      writeBehindAccepted: (entity, pending) => this.#writeBehindAccepted(entity, pending),
      write: (entity, fn) =>
        this.#transaction((tx) =>
          fn(
            (tx as Record<string, EntityWriter<unknown, unknown, unknown, unknown>>)[
              entity
            ] as EntityWriter<unknown, unknown, unknown, unknown>,
          ),
        ),
    };
    for (const [name, model] of this.#entities) {
      const repository = new EntityRepository(model, ctx);
      this.#repositories.set(name, repository);
      Object.defineProperty(this, name, { value: repository, enumerable: true });
    }
    this.#queries = new QueryCache({
      engine: this.engine,
      model: this.#changeModel,
      config: this.config,
      entities: this.#entities,
      position: this.#position,
      sampler: this.accessLog,
      snapshot: snapshots.read,
    });
  }

  /**
   * Waits until the repository is ready to serve from the cache; await it at start, so a
   * service fails fast on a config the database refutes and its first reads find Redis
   * connected. Both steps run at once:
   *
   * 1. The database's catalog is read, once: the type of every key, unique and tag column
   *    (ids and WHERE values are then named by their canonical text, as the worker names
   *    them: `'042'` and `42` are one entry), and the config is checked against it.
   * 2. The cache Redis connection (every master of a cluster) and, when `bus.enabled`,
   *    the bus subscription are waited for, at most `timeoutMs`.
   *
   * Not awaiting it is safe: the first reads read the catalog themselves, and reads made
   * before Redis is connected wait for the connection (at most `redis.connectTimeoutMs`)
   * rather than count it as an outage.
   *
   * @param timeoutMs how long to wait for Redis. The catalog read is bounded by the
   *   database pool's own timeouts, not by this. @default 5000
   * @returns true once the catalog is read and Redis is connected; false when Redis is not
   *   connected within `timeoutMs`. It does not reject for Redis: the repository works
   *   without it (reads go to the database, uncached, until Redis answers; a `logger`
   *   logs the outage once), and the connection keeps being retried.
   * @throws {SetupError} when the config cannot work with the database: a key or tag
   *   column of a type that cannot be one (arrays, json, floats...), a view or partitioned
   *   table, or an unqualified table name that this connection's search_path resolves to
   *   another schema than `defaultSchema`.
   * @throws the database's own error when the catalog cannot be read (the database is
   *   unreachable); calling it again tries again.
   * @example
   * const repo = createRepository({ db, config, logger });
   * if (!(await repo.ready())) logger.warn('the cache Redis is not connected yet: reading from the database');
   */
  async ready(timeoutMs = 5_000): Promise<boolean> {
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0)
      throw new ConfigError(
        'ready(timeoutMs)',
        timeoutMs,
        'expected a finite number of milliseconds >= 0, for example `repo.ready(5_000)`',
      );
    const connected = this.engine.ready(timeoutMs);
    await this.#catalogReady();
    return connected;
  }

  /** Reads the catalog once (`ready`, step 1); a failed read is tried again by the next call. */
  #catalogReady(): Promise<void> {
    if (this.#catalogRead) return Promise.resolve();
    this.#catalog ??= this.#readCatalog().then(
      () => {
        this.#catalogRead = true;
      },
      (error: unknown) => {
        this.#catalog = undefined;
        throw error;
      },
    );
    return this.#catalog;
  }

  /**
   * null once the catalog is read (the common, synchronous path); else the wait for it.
   * With the database unreachable, a read goes on with ids as given (it may still hit
   * the cache) and the next one tries again; a config the database refutes is an error.
   */
  #typed(): Promise<void> | null {
    if (this.#catalogRead) return null;
    return this.#catalogReady().catch((error: unknown) => {
      if (error instanceof WalcacheError) throw error;
    });
  }

  async #readCatalog(): Promise<void> {
    const query: QueryRows = async (text, values) =>
      (await this.db.executeQuery(CompiledQuery.raw(text, [...values]))).rows as Record<
        string,
        unknown
      >[];
    const catalog = await readCatalog(query, [...this.#changeModel.keys()]);
    // Identity and missing tables are the worker's and setup's to report; these would
    // make the repository itself name entries wrongly.
    const problems: Array<Pick<ModelProblem, 'detail' | 'fix'>> = checkModel(
      this.#changeModel,
      catalog,
    ).filter((p) => p.kind === 'type' || p.kind === 'not-a-table' || p.kind === 'partitioned');
    problems.push(...(await searchPathProblems(query, this.config)));
    if (problems.length > 0)
      throw new SetupError(
        `the config does not match the database: ${problems.map((p) => p.detail).join('; ')}`,
        problems.map((p) => p.fix).join('; '),
      );
    applyCatalog(this.#changeModel, catalog);
  }

  /**
   * An entity's repository by name, for names known only at run time.
   *
   * @throws {UnknownEntityError} when the config does not declare it.
   */
  entity<N extends keyof EntitiesOf<C> & string>(
    name: N,
  ): EntityRepository<EntityTypesOf<DB, EntitiesOf<C>[N]>> {
    const repository = this.#repositories.get(name);
    if (repository === undefined)
      throw new UnknownEntityError(String(name), [...this.#entities.keys()]);
    return repository as EntityRepository<EntityTypesOf<DB, EntitiesOf<C>[N]>>;
  }

  /**
   * Caches the result of any Kysely SELECT (lists, joins, aggregates). The key is the
   * compiled SQL and parameters; the tags come from the tables it reads, narrowed to
   * `table:column=value` where its WHERE pins a column of `invalidateBy`.
   *
   * @throws {InvalidQueryError} for a non-SELECT, or a query reading a table the worker does not follow.
   * @example
   * const open = await repo.cached(db.selectFrom('orders').selectAll().where('user_id', '=', 7));
   */
  cached<R>(query: CacheableQuery<R>, options?: CachedQueryOptions): Promise<R[]> {
    if (this.#closing) return Promise.reject(new ClosedError('Repository'));
    const wait = this.#typed();
    if (wait !== null) return wait.then(() => this.#queries.run(query, options));
    return this.#queries.run(query, options);
  }

  /**
   * A named, parameterised cached query: `build` makes the Kysely SELECT from the
   * arguments, which are also its cache key (`q:<name>:<args>`). A hit is one L1 lookup,
   * without building or compiling the query; on a miss it runs as `cached()` does, with
   * the same tags derived from its tree.
   *
   * @throws {ConfigError} for a bad or duplicate name.
   * @example
   * const userStats = repo.prepare('user-stats', (id: number) =>
   *   db.selectFrom('orders').select((eb) => eb.fn.countAll().as('n')).where('user_id', '=', id));
   * const [stats] = await userStats(7);
   */
  prepare<A extends readonly unknown[], R>(
    name: string,
    build: (...args: A) => CacheableQuery<R>,
    options?: Omit<CachedQueryOptions, 'name' | 'readYourWrites'>,
  ): (...args: A) => Promise<R[]> {
    return this.#queries.prepare(name, build, options);
  }

  /** The cache key `cached()` would use for a query (with these extra `tags` / `tables`). */
  queryKey(
    query: CacheableQuery<unknown>,
    name?: string,
    options?: Pick<CachedQueryOptions, 'tags' | 'tables'>,
  ): string {
    return this.#queries.key(query, name, options);
  }

  /**
   * Runs `fn` in a database transaction. Writes made through `tx.<entity>` (or reported
   * with `tx.<entity>.touched`) are evicted after the commit, in this process at once
   * (read-your-own-writes here); other processes are invalidated by the worker. The
   * receipt lets them read their writes too (`readYourWrites`).
   */
  transaction<T>(
    fn: (tx: RepositoryTransaction<DB, C>) => Promise<T>,
  ): Promise<{ value: T; receipt: WriteReceipt }> {
    return this.#transaction(fn as (tx: unknown) => Promise<T>);
  }

  /** Resolves true once the worker has applied this write (or LSN), false after `timeoutMs`. */
  waitForWorker(
    receipt: WriteReceipt | string,
    timeoutMs = this.config.repository.readYourWritesTimeoutMs,
  ): Promise<boolean> {
    return this.#position.waitFor(receipt, timeoutMs);
  }

  /**
   * Drains: flushes the write-behind entities this repository wrote to (until nothing is
   * pending or `jobs.shutdownTimeoutMs` passed; what is left stays pending in Redis for the
   * jobs runner), pushes the access log, then closes the engine if the repository opened
   * it. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#position.close();
      await this.#drainWriteBehind();
      if (this.#flushQueue) {
        await this.#flushQueue.queue.close().catch(() => {});
        this.#flushQueue.connection.disconnect();
      }
      await this.accessLog?.close();
      await this.#writeBehind?.close();
      if (this.#ownsEngine) await this.engine.close();
    })();
    return this.#closing;
  }

  async #drainWriteBehind(): Promise<void> {
    const deadline = Date.now() + this.config.jobs.shutdownTimeoutMs;
    for (const entity of this.#writtenBehind) {
      for (;;) {
        let remaining: number;
        try {
          ({ remaining } = await flushWriteBehind({
            engine: this.engine,
            db: this.db as DynamicDb,
            config: this.config,
            entity,
            ...(this.#writeBehind && { store: this.#writeBehind }),
          }));
        } catch {
          break; // left pending in Redis: the jobs runner flushes it
        }
        if (remaining === 0 || Date.now() > deadline) break;
      }
    }
  }

  /** The pending writes, on the jobs Redis; opened on first use. */
  #writeBehindStore(): WriteBehindStore {
    this.#writeBehind ??= new WriteBehindStore(this.config);
    return this.#writeBehind;
  }

  /** The table's columns, from the catalog, once per table. */
  #columns(model: EntityModel): Promise<ReadonlySet<string>> {
    let found = this.#tableColumns.get(model.table);
    if (found === undefined) {
      found = sql<{ name: string }>`SELECT attname AS name FROM pg_attribute
        WHERE attrelid = to_regclass(${`${quoteIdent(model.schema)}.${quoteIdent(model.tableName)}`})
          AND attnum > 0 AND NOT attisdropped`
        .execute(this.db as DynamicDb)
        .then((r) => new Set(r.rows.map((row) => row.name)));
      found.catch(() => this.#tableColumns.delete(model.table));
      this.#tableColumns.set(model.table, found);
    }
    return found;
  }

  /** Past `writeBehind.batchSize` pending rows, asks for a flush now (deduplicated by BullMQ). */
  #writeBehindAccepted(entity: string, pending: number): void {
    this.#writtenBehind.add(entity);
    if (pending < this.config.writeBehind.batchSize) return;
    const now = Date.now();
    if (now - (this.#lastTrigger.get(entity) ?? 0) < 100) return;
    this.#lastTrigger.set(entity, now);
    if (this.#flushQueue === undefined) {
      const connection = queueConnection(this.config, { blocking: false });
      this.#flushQueue = {
        connection,
        queue: new Queue<FlushJobData>(FLUSH_QUEUE, {
          connection,
          prefix: queuePrefix(this.config),
          defaultJobOptions: flushJobOptions(this.config),
        }),
      };
      this.#flushQueue.queue.on('error', () => {});
    }
    // The interval scheduler flushes anyway: a failed trigger only delays.
    void enqueueFlush(this.#flushQueue.queue, entity).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #transaction<T>(
    fn: (tx: unknown) => Promise<T>,
  ): Promise<{ value: T; receipt: WriteReceipt }> {
    if (this.#closing) throw new ClosedError('Repository');
    await this.#typed();
    const writes = new WriteSet(
      (model, trx) =>
        new PendingWriteOrder(model, trx, this.#writeBehindStore(), this.config.prefix),
    );
    const value = await this.#inTransaction(writes, fn);
    const receipt = await writes.commit(this.engine, this.#changeModel, this.db as DynamicDb);
    return { value, receipt };
  }

  async #inTransaction<T>(writes: WriteSet, fn: (tx: unknown) => Promise<T>): Promise<T> {
    try {
      return await this.db.transaction().execute(async (trx) => {
        const handle: Record<string, unknown> = {
          db: trx,
          touched: (
            table: string,
            op: 'I' | 'U' | 'D',
            oldRow: Record<string, unknown> | null,
            newRow: Record<string, unknown> | null,
          ) => writes.add(qualify(table, this.config.defaultSchema), op, oldRow, newRow),
        };
        for (const [name, model] of this.#entities)
          handle[name] = new EntityWriter(model, trx as DynamicTransaction, writes);
        const value = await fn(handle);
        await writes.beforeCommit();
        return value;
      });
    } catch (error) {
      await writes.rolledBack();
      throw error;
    }
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
