import { sql } from 'kysely';
import type { CacheEngine, LoadOptions } from '../cache/cache-engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { InvalidKeyError, InvalidWriteError } from '../errors/typed-errors.js';
import { assertLogicalKey } from '../keys/redis-keys.js';
import type { DynamicDb } from '../model/dynamic-db.js';
import {
  type EntityModel,
  type KeyPart,
  keyParts,
  matchedByText,
  rowKey,
  rowKeyOf,
  stripDenied,
  uniqueRowKey,
  whereKey,
} from '../model/entity-model.js';
import { fenceStatuses, resolveRecord } from '../write-behind/write-behind-record.js';
import type { WriteBehindStore } from '../write-behind/write-behind-store.js';
import type { AccessLogSampler } from './access-log.js';
import { BatchLoader } from './batch-loader.js';
import { afterWrite, loadOptions, type ReadOptions } from './read-options.js';
import type { WorkerPosition, WriteReceipt } from './read-your-writes.js';
import type { EntityTypes } from './types.js';
import type { EntityWriter } from './writes.js';

type AnyRow = Record<string, unknown>;

/** What an entity repository shares with its repository. */
export interface RepositoryContext {
  readonly engine: CacheEngine;
  readonly db: DynamicDb;
  readonly config: ResolvedConfig;
  readonly position: WorkerPosition;
  readonly sampler: AccessLogSampler | undefined;
  /** The database's snapshot, fencing fills (`LoadOptions.snapshot`, SnapshotSource). */
  readonly snapshot: () => Promise<string | undefined>;
  /** Pending write-behind records (opened on first use). */
  writeBehindStore(): WriteBehindStore;
  /** The table's columns, read once from the catalog. */
  columns(model: EntityModel): Promise<ReadonlySet<string>>;
  /** null once the column types are read (keys are canonical); else the wait for them. */
  typed(): Promise<void> | null;
  /** A write-behind patch was accepted; `pending` rows of the entity wait for a flush. */
  writeBehindAccepted(entity: string, pending: number): void;
  /** Runs `fn` with this entity's writer in a repository transaction. */
  write<T>(
    entity: string,
    fn: (writer: EntityWriter<unknown, unknown, unknown, unknown>) => Promise<T>,
  ): Promise<{ value: T; receipt: WriteReceipt }>;
}

/** `findMany`'s answer: rows in the order of the ids asked (undefined where none), and the ids not found. */
export interface FindManyResult<Row, Id> {
  readonly rows: Array<Row | undefined>;
  readonly missing: Id[];
}

/** What a warm batch did: rows loaded and cached, entries already fresh, ids with no row, failures. */
export interface WarmResult {
  readonly loaded: number;
  readonly skipped: number;
  readonly missing: number;
  readonly failed: number;
}

/** A committed write: the rows as written (denied columns removed) and its receipt. */
export interface WriteResult<Row> {
  readonly rows: Row[];
  readonly receipt: WriteReceipt;
}

/**
 * Reads and writes of one entity. Every read goes through the engine's lease-protected
 * fill; every entry depends on its key (tombstoned by the worker from the old and the new
 * row) and on the table's reset tag (TRUNCATE), plus the entity's derived tags.
 */
export class EntityRepository<T extends EntityTypes = EntityTypes> {
  readonly name: string;
  /** How long this entity's entries are fresh, and served stale while refreshing (for HTTP caching). */
  readonly freshness: { readonly ttlMs: number; readonly staleWhileRevalidateMs: number };
  readonly #model: EntityModel;
  readonly #ctx: RepositoryContext;
  readonly #defaults: LoadOptions;
  /** The table's columns, once read (write-behind patches are checked against them). */
  #columns: ReadonlySet<string> | undefined;
  /** The misses of `findById` asked in one turn of the event loop, loaded by one query. */
  // Typed without T: the repository's row type stays covariant.
  readonly #byKey: BatchLoader<readonly KeyPart[], unknown> | undefined;
  /** The same for `findBy`, one batcher per unique column. */
  readonly #byUnique = new Map<string, BatchLoader<unknown, unknown>>();

  constructor(model: EntityModel, ctx: RepositoryContext) {
    this.name = model.name;
    this.freshness = Object.freeze({
      ttlMs: model.ttlMs ?? ctx.config.cache.ttlMs,
      staleWhileRevalidateMs: ctx.config.cache.staleWhileRevalidateMs,
    });
    this.#model = model;
    this.#ctx = ctx;
    this.#defaults = Object.freeze({
      ...(model.ttlMs !== undefined && { ttlMs: model.ttlMs }),
      ...(model.sliding !== undefined && { sliding: model.sliding }),
      tags: Object.freeze([model.resetTag]),
      ...(model.tagsOf !== undefined && { tagsOf: model.tagsOf }),
      // A flushed write clears its pending record right after tombstoning the row's L2
      // entry; an L1 copy would only be dropped when the bus message arrives, so a reader
      // could see the row older than a moment before. Write-behind entities skip L1.
      ...(model.writeBehind && { skipL1: true }),
      ...(model.encrypt && { encrypt: true }),
      // Fills fenced by the database's snapshot: an invalidation of a commit the load
      // already saw does not refuse them (docs/consistency.md).
      snapshot: ctx.snapshot,
    });
    if (ctx.config.repository.coalesceMisses)
      this.#byKey = BatchLoader.perTick<readonly KeyPart[], unknown>(
        (list) => this.#loadMany(list),
        this.#maxBatch(),
      );
  }

  /** The cache key of a row: `users:42`. */
  key(id: T['id']): string {
    return rowKey(this.#model, keyParts(this.#model, id));
  }

  /**
   * One row by its key, or undefined.
   *
   * @throws {InvalidKeyError} for an id of the wrong type or arity.
   * @example
   * const user = await repo.users.findById(42);
   */
  findById(id: T['id'], options?: ReadOptions): Promise<T['row'] | undefined> {
    const wait = this.#ctx.typed();
    if (wait !== null) return wait.then(() => this.findById(id, options));
    let parts: KeyPart[];
    try {
      parts = keyParts(this.#model, id);
    } catch (error) {
      return Promise.reject(error); // a bad id rejects, as every other failure does
    }
    const key = rowKey(this.#model, parts);
    this.#ctx.sampler?.record(this.name, key);
    if (this.#model.writeBehind) return this.#readWithPending(key, parts, options);
    return this.#read(key, () => this.#loadById(key, parts), options);
  }

  /**
   * One row by a secondary unique column (`unique` in the config), or undefined.
   *
   * @example
   * const user = await repo.users.findBy('email', 'ada@example.com');
   */
  findBy(
    column: T['unique'],
    value: unknown,
    options?: ReadOptions,
  ): Promise<T['row'] | undefined> {
    const wait = this.#ctx.typed();
    if (wait !== null) return wait.then(() => this.findBy(column, value, options));
    let key: string;
    try {
      key = uniqueRowKey(this.#model, column, value);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#ctx.sampler?.record(this.name, key);
    if (this.#model.writeBehind) return this.#findByWithPending(key, column, value, options);
    return this.#read(key, () => this.#loadByUnique(key, column, value), options);
  }

  /**
   * Many rows by key: one L2 round trip for all of them, one SQL query for all the
   * misses (split past `repository.maxBatch` ids). Results come in the order asked,
   * duplicates included; ids not found are `undefined` there and listed in `missing`.
   */
  async findMany(
    ids: readonly T['id'][],
    options?: ReadOptions,
  ): Promise<FindManyResult<T['row'], T['id']>> {
    if (!Array.isArray(ids)) throw new InvalidKeyError(ids, 'findMany takes an array of ids');
    await this.#ctx.typed();
    const keys: string[] = new Array(ids.length);
    const unique = new Map<string, KeyPart[]>();
    for (let i = 0; i < ids.length; i++) {
      const parts = keyParts(this.#model, ids[i]);
      const key = rowKey(this.#model, parts);
      keys[i] = key;
      if (!unique.has(key)) {
        unique.set(key, parts);
        this.#ctx.sampler?.record(this.name, key);
      }
    }
    const pending = this.#model.writeBehind ? await this.#pending([...unique.keys()]) : undefined;
    const found = await this.#readMany(unique, options);
    if (pending) {
      let i = 0;
      for (const key of unique.keys()) found.set(key, overlay(found.get(key), pending[i++]));
    }
    const rows = keys.map((k) => found.get(k));
    const missing = ids.filter((_, i) => rows[i] === undefined);
    return { rows, missing };
  }

  /**
   * Loads rows into the cache through the same lease-protected fill as reads (a warmer's
   * batch): entries already fresh are skipped, a fill never overwrites a newer value, and
   * concurrent readers wait on the lease instead of loading too. One SQL query for the
   * misses. Never throws for one row: failures are counted.
   */
  async warm(ids: readonly T['id'][]): Promise<WarmResult> {
    await this.#ctx.typed();
    const unique = new Map<string, KeyPart[]>();
    let failed = 0;
    for (const id of ids) {
      try {
        const parts = keyParts(this.#model, id);
        unique.set(rowKey(this.#model, parts), parts);
      } catch {
        failed++;
      }
    }
    const loadedKeys = new Set<string>();
    const outcomes = await this.#throughCache(unique, this.#defaults, (key) => loadedKeys.add(key));
    let missing = 0;
    let rejected = 0;
    for (const [i, key] of [...unique.keys()].entries()) {
      const outcome = outcomes[i] as PromiseSettledResult<T['row'] | undefined>;
      if (outcome.status === 'rejected') rejected++;
      else if (outcome.value === undefined && loadedKeys.has(key)) missing++;
    }
    return {
      loaded: Math.max(0, loadedKeys.size - missing - rejected),
      skipped: unique.size - loadedKeys.size,
      missing,
      failed: failed + rejected,
    };
  }

  /**
   * Write-behind: queues `patch` as the row's next pending write in Redis (the jobs Redis:
   * one script) and resolves once Redis has it; the jobs runner applies it to the row in
   * Postgres soon after (`walcache jobs`). Reads of this entity see the pending values
   * until then. A later `update`/`delete`/`insert` of the row through the repository
   * applies or supersedes it in its own transaction, so the flush never undoes them.
   * Write-behind updates existing rows: a patch whose row does not exist when it is
   * flushed is dead-lettered (`E_MISSING_ROW`), never inserted. Durable as far as the
   * jobs Redis is: run it with AOF (`appendonly yes`).
   *
   * Refused before anything is queued: an id of the wrong shape or longer than a key may
   * be (`InvalidKeyError`); an entity without `writeBehind: true`, an empty patch, an
   * unknown, denied, key or unique column, an `undefined` value (`InvalidWriteError`);
   * values the codec cannot encode (`SerializationError`); a jobs Redis whose
   * `maxmemory-policy` may evict pending writes (`EvictionPolicyError`).
   */
  async writeBehind(id: T['id'], patch: T['update']): Promise<{ seq: number; pending: number }> {
    if (!this.#model.writeBehind)
      throw new InvalidWriteError(
        this.name,
        'write-behind is not enabled for this entity (set `writeBehind: true` in its config)',
      );
    await this.#ctx.typed();
    const parts = keyParts(this.#model, id);
    const key = rowKey(this.#model, parts);
    assertLogicalKey(key);
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch))
      throw new InvalidWriteError(this.name, 'a write-behind patch is an object of columns', {
        patch,
      });
    const entries = Object.entries(patch as Record<string, unknown>);
    if (entries.length === 0) throw new InvalidWriteError(this.name, 'the patch is empty');
    // Read once; later writes check without a turn of the event loop.
    this.#columns ??= await this.#ctx.columns(this.#model);
    const columns = this.#columns;
    for (const [column, value] of entries) {
      const refuse = (why: string) =>
        new InvalidWriteError(this.name, `\`${column}\` ${why}`, { column });
      if (!columns.has(column)) throw refuse(`is not a column of ${this.#model.table}`);
      if (this.#model.deny.includes(column)) throw refuse('is denied: it must never reach Redis');
      if (this.#model.keyColumns.includes(column)) throw refuse('is a key column');
      if (this.#model.uniqueColumns.includes(column))
        throw refuse('is a unique column (change it with update())');
      if (value === undefined) throw refuse('is undefined');
    }
    const result = await this.#ctx
      .writeBehindStore()
      .put(this.name, key, patch as Record<string, unknown>);
    this.#ctx.writeBehindAccepted(this.name, result.pending);
    return result;
  }

  /** Inserts one row or several and evicts what they change; see `Repository.transaction`. */
  async insert(values: T['insert'] | readonly T['insert'][]): Promise<WriteResult<T['row']>> {
    const { value, receipt } = await this.#ctx.write(this.name, (w) => w.insert(values));
    return { rows: value as T['row'][], receipt };
  }

  /** Updates the row with this id and evicts its old and new keys and tags at once. */
  async update(id: T['id'], patch: T['update']): Promise<WriteResult<T['row']>> {
    await this.#ctx.typed();
    keyParts(this.#model, id);
    const { value, receipt } = await this.#ctx.write(this.name, (w) => w.update(id, patch));
    return { rows: value as T['row'][], receipt };
  }

  /** Deletes the row with this id and evicts its keys and tags at once. */
  async delete(id: T['id']): Promise<WriteResult<T['row']>> {
    await this.#ctx.typed();
    keyParts(this.#model, id);
    const { value, receipt } = await this.#ctx.write(this.name, (w) => w.delete(id));
    return { rows: value as T['row'][], receipt };
  }

  /** Evicts rows by id in every process (tombstones), without touching the database. */
  async evict(ids: readonly T['id'][]): Promise<void> {
    await this.#ctx.typed();
    await this.#ctx.engine.delete(ids.map((id) => this.key(id)));
  }

  // --- reads ---------------------------------------------------------------------

  #read(
    key: string,
    loader: () => Promise<T['row'] | undefined>,
    options: ReadOptions | undefined,
  ): Promise<T['row'] | undefined> {
    if (options?.readYourWrites !== undefined) return this.#readAfterWrite(key, loader, options);
    return this.#ctx.engine.getOrLoad(key, loader, loadOptions(this.#defaults, options));
  }

  async #readAfterWrite(
    key: string,
    loader: () => Promise<T['row'] | undefined>,
    options: ReadOptions,
  ): Promise<T['row'] | undefined> {
    const reached = await this.#ctx.position.readAfter(
      options.readYourWrites as WriteReceipt | string,
      key,
      this.#ctx.config.repository.readYourWritesTimeoutMs,
    );
    if (reached)
      return this.#ctx.engine.getOrLoad(
        key,
        loader,
        afterWrite(loadOptions(this.#defaults, options)),
      );
    return loader();
  }

  async #readMany(
    unique: Map<string, KeyPart[]>,
    options: ReadOptions | undefined,
  ): Promise<Map<string, T['row'] | undefined>> {
    const found = new Map<string, T['row'] | undefined>();
    if (unique.size === 0) return found;
    let load = loadOptions(this.#defaults, options);
    if (options?.readYourWrites !== undefined) {
      load = afterWrite(load);
      const reached = await this.#ctx.position.readAfter(
        options.readYourWrites,
        this.name,
        this.#ctx.config.repository.readYourWritesTimeoutMs,
      );
      if (!reached) {
        const loaded = await this.#loadMany([...unique.values()]);
        for (const key of unique.keys()) found.set(key, loaded.get(key));
        return found;
      }
    }
    const outcomes = await this.#throughCache(unique, load);
    let i = 0;
    for (const key of unique.keys()) {
      const outcome = outcomes[i++] as PromiseSettledResult<T['row'] | undefined>;
      if (outcome.status === 'rejected') throw outcome.reason;
      found.set(key, outcome.value);
    }
    return found;
  }

  /**
   * Reads every key through the engine (each fill under its own lease) and loads the
   * misses in one batch (`#loadMany`); `onLoad` hears of each key the loader ran for.
   * Settles per key, in the order of `unique`.
   */
  #throughCache(
    unique: ReadonlyMap<string, KeyPart[]>,
    load: LoadOptions,
    onLoad?: (key: string) => void,
  ): Promise<Array<PromiseSettledResult<T['row'] | undefined>>> {
    const batch = new BatchLoader<KeyPart[], T['row']>(unique.keys(), (list) =>
      this.#loadMany(list),
    );
    load = { ...load, onWait: (key) => batch.parked(key) };
    // One fence snapshot for the whole call, so its loads are asked for together.
    if (load.snapshot !== undefined) {
      const read = load.snapshot;
      let taken: Promise<string | undefined> | undefined;
      load = { ...load, snapshot: () => (taken ??= read()) };
    }
    return Promise.allSettled(
      [...unique].map(([key, parts]) =>
        this.#ctx.engine
          .getOrLoad(
            key,
            () => {
              onLoad?.(key);
              return batch.load(key, parts);
            },
            load,
          )
          .finally(() => batch.settled(key)),
      ),
    );
  }

  /**
   * A write-behind entity's row: the pending writes first, then the row (L2, else the
   * database). In that order, a flush (or a repository write) that cleared them has
   * already tombstoned the row's entry, so the row read after it is at least as new.
   */
  async #readWithPending(
    key: string,
    parts: readonly KeyPart[],
    options: ReadOptions | undefined,
  ): Promise<T['row'] | undefined> {
    const [patch] = await this.#pending([key]);
    const row = await this.#read(key, () => this.#loadById(key, parts), options);
    return overlay(row, patch);
  }

  /**
   * What the rows' pending writes still change, merged in order: writes a committed
   * repository transaction applied or superseded (its fence) are left out.
   */
  async #pending(keys: readonly string[]): Promise<Array<Record<string, unknown> | undefined>> {
    const records = await this.#ctx.writeBehindStore().read(this.name, keys);
    const statuses = await fenceStatuses(this.#ctx.db, records);
    return records.map((record) =>
      record === undefined
        ? undefined
        : resolveRecord(record, statuses, { inProgress: 'show' }).patch,
    );
  }

  async #findByWithPending(
    key: string,
    column: string,
    value: unknown,
    options: ReadOptions | undefined,
  ): Promise<T['row'] | undefined> {
    // Unique columns are not written behind: the unique lookup finds the row's id, and
    // the row is then read as findById reads it.
    const found = await this.#read(key, () => this.#loadByUnique(key, column, value), options);
    if (found === undefined) return undefined;
    const parts = this.#model.keyColumns.map(
      (c) => (found as Record<string, unknown>)[c] as KeyPart,
    );
    return this.#readWithPending(rowKey(this.#model, parts), parts, options);
  }

  // --- the database ----------------------------------------------------------------

  #from() {
    return this.#ctx.db
      .withSchema(this.#model.schema)
      .selectFrom(this.#model.tableName)
      .selectAll();
  }

  #maxBatch(): number {
    return this.#ctx.config.repository.maxBatch;
  }

  /**
   * The loader of a `findById` miss: joins the misses asked in the same turn of the event
   * loop (`repository.coalesceMisses`), each caller matched to its row by the canonical
   * text of the key. Keys of a type with no canonical text (or not read from the catalog
   * yet) cannot be matched that way and load alone.
   */
  #loadById(key: string, parts: readonly KeyPart[]): Promise<T['row'] | undefined> {
    if (this.#byKey === undefined || !matchedByText(this.#model, this.#model.keyColumns))
      return this.#loadOne(parts);
    return this.#byKey.load(key, parts) as Promise<T['row'] | undefined>;
  }

  /** The loader of a `findBy` miss: batched per unique column as `#loadById` is. */
  #loadByUnique(key: string, column: string, value: unknown): Promise<T['row'] | undefined> {
    if (!this.#ctx.config.repository.coalesceMisses || !matchedByText(this.#model, [column]))
      return this.#loadBy(column, value);
    let batch = this.#byUnique.get(column);
    if (batch === undefined) {
      batch = BatchLoader.perTick<unknown, unknown>(
        (values) => this.#loadManyBy(column, values),
        this.#maxBatch(),
      );
      this.#byUnique.set(column, batch);
    }
    return batch.load(key, value) as Promise<T['row'] | undefined>;
  }

  async #loadOne(parts: readonly KeyPart[]): Promise<T['row'] | undefined> {
    const row = (await whereKey(this.#from(), this.#model, parts).executeTakeFirst()) as
      | AnyRow
      | undefined;
    return row === undefined ? undefined : (stripDenied(this.#model, row) as T['row']);
  }

  async #loadBy(column: string, value: unknown): Promise<T['row'] | undefined> {
    const row = (await this.#from().where(column, '=', value).limit(1).executeTakeFirst()) as
      | AnyRow
      | undefined;
    return row === undefined ? undefined : (stripDenied(this.#model, row) as T['row']);
  }

  /**
   * Loads the rows whose unique `column` has one of these values (one query; the batch
   * of `#loadByUnique` holds at most `maxBatch`), by the cache key each value names.
   */
  async #loadManyBy(column: string, values: readonly unknown[]): Promise<Map<string, T['row']>> {
    const out = new Map<string, T['row']>();
    const rows = (await this.#from()
      .where(sql<boolean>`${sql.ref(column)} = any(${values})`)
      .execute()) as AnyRow[];
    for (const row of rows) {
      const key = uniqueRowKey(this.#model, column, row[column]);
      // A column declared unique but not so in the database: one row, as `limit 1` takes.
      if (!out.has(key)) out.set(key, stripDenied(this.#model, row) as T['row']);
    }
    return out;
  }

  /**
   * Loads rows by key in as few queries as `maxBatch` allows; returns them by cache key
   * (the canonical text of the row's key values, as the ids asked are named).
   */
  async #loadMany(list: ReadonlyArray<readonly KeyPart[]>): Promise<Map<string, T['row']>> {
    const out = new Map<string, T['row']>();
    const columns = this.#model.keyColumns;
    const max = this.#maxBatch();
    for (let start = 0; start < list.length; start += max) {
      const chunk = list.slice(start, start + max);
      const where =
        columns.length === 1
          ? sql<boolean>`${sql.ref(columns[0] as string)} = any(${chunk.map((p) => p[0])})`
          : sql<boolean>`(${sql.join(columns.map((c) => sql.ref(c)))}) in (${sql.join(
              chunk.map((p) => sql`(${sql.join(p)})`),
            )})`;
      const rows = (await this.#from().where(where).execute()) as AnyRow[];
      for (const row of rows) {
        out.set(rowKeyOf(this.#model, row), stripDenied(this.#model, row) as T['row']);
      }
    }
    return out;
  }
}

/**
 * A row with its pending writes over it. Write-behind never creates a row, so a row that
 * does not exist stays undefined, whatever is pending for it.
 */
function overlay<R>(row: R | undefined, patch: Record<string, unknown> | undefined): R | undefined {
  return row === undefined || patch === undefined ? row : { ...row, ...patch };
}
