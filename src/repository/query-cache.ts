import { createHash } from 'node:crypto';
import type { CompiledQuery, OperationNode } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { CacheEngine, LoadOptions } from '../cache/cache-engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError, InvalidQueryError } from '../errors/typed-errors.js';
import { encodeKeyPart, valuePart } from '../keys/redis-keys.js';
import type { EntityModel } from '../model/entity-model.js';
import type { ChangeModel } from '../model/table-model.js';
import type { AccessLogSampler } from './access-log.js';
import { assertNoDeniedOutput, stripDenied } from './query-deny.js';
import { queryDependencies } from './query-tags.js';
import { afterWrite, loadOptions, type ReadOptions } from './read-options.js';
import type { WorkerPosition, WriteReceipt } from './read-your-writes.js';

/** A Kysely query `cached()` accepts: built from a Kysely instance (so it can execute). */
export interface CacheableQuery<R> {
  toOperationNode(): OperationNode;
  compile(): CompiledQuery;
  execute(): Promise<R[]>;
}

export interface CachedQueryOptions extends Omit<ReadOptions, 'readYourWrites'> {
  /** A readable name put in the key (`q:<name>:<hash>`) and the access log. */
  readonly name?: string;
  /** Extra tags the result depends on, besides those derived from the query. */
  readonly tags?: readonly string[];
  /**
   * Tables read by raw SQL fragments walcache cannot see into (`sql\`... from t\``);
   * the result depends on each of them as a whole. Required when such a fragment is used.
   */
  readonly tables?: readonly string[];
  /** See `ReadOptions.readYourWrites`. */
  readonly readYourWrites?: WriteReceipt | string;
}

interface Plan {
  readonly tags: readonly string[];
  /** Columns never cached, by the tables the query reads (the entities' `deny`); null: none. */
  readonly deny: ReadonlySet<string> | null;
  /** It reads the table of an encrypted entity, so its result is encrypted too. */
  readonly encrypt: boolean;
}

/**
 * Query-result caching: the key is a hash of the compiled SQL and its parameters; the
 * tags come from the query tree (`queryDependencies`): each table read, narrowed to
 * `table:column=value` where the WHERE pins a column of `invalidateBy`. Derivations are
 * memoised per key, so a hit costs a compile and a hash.
 */
export class QueryCache {
  readonly #engine: CacheEngine;
  readonly #model: ChangeModel;
  readonly #config: ResolvedConfig;
  readonly #denyByTable: ReadonlyMap<string, readonly string[]>;
  readonly #encryptedTables: ReadonlySet<string>;
  readonly #position: WorkerPosition;
  readonly #sampler: AccessLogSampler | undefined;
  readonly #snapshot: (() => Promise<string | undefined>) | undefined;
  readonly #plans = new LRUCache<string, Plan>({ max: 50_000 });
  readonly #prepared = new Set<string>();

  constructor(options: {
    engine: CacheEngine;
    model: ChangeModel;
    config: ResolvedConfig;
    entities: ReadonlyMap<string, EntityModel>;
    position: WorkerPosition;
    sampler: AccessLogSampler | undefined;
    /** The database's snapshot, fencing fills (`LoadOptions.snapshot`). */
    snapshot?: () => Promise<string | undefined>;
  }) {
    this.#engine = options.engine;
    this.#snapshot = options.snapshot;
    this.#model = options.model;
    this.#config = options.config;
    this.#position = options.position;
    this.#sampler = options.sampler;
    const deny = new Map<string, string[]>();
    const encrypted = new Set<string>();
    for (const entity of options.entities.values()) {
      if (entity.encrypt) encrypted.add(entity.table);
      if (entity.deny.length === 0) continue;
      deny.set(entity.table, [...(deny.get(entity.table) ?? []), ...entity.deny]);
    }
    this.#denyByTable = deny;
    this.#encryptedTables = encrypted;
  }

  /**
   * The cache key of a query: `q:<hash>` or `q:<name>:<hash>`. Extra `tags` and `tables`
   * are part of the hash: the same SQL with other dependencies is another entry (one
   * filled without a tag must not answer a read that depends on it).
   */
  key(
    query: CacheableQuery<unknown>,
    name?: string,
    options: Pick<CachedQueryOptions, 'tags' | 'tables'> = {},
  ): string {
    const compiled = query.compile();
    const hash = createHash('sha256')
      .update(compiled.sql)
      .update('\0')
      .update(stringifyParameters(compiled.parameters));
    if (options.tags !== undefined) hash.update(`\0tags\0${[...options.tags].sort().join('\0')}`);
    if (options.tables !== undefined)
      hash.update(`\0tables\0${[...options.tables].sort().join('\0')}`);
    return this.#named(name, hash.digest('base64url').slice(0, 27));
  }

  #named(name: string | undefined, hash: string): string {
    return name === undefined ? `q:${hash}` : `q:${encodeKeyPart(name)}:${hash}`;
  }

  async run<R>(query: CacheableQuery<R>, options: CachedQueryOptions = {}): Promise<R[]> {
    if (query === null || typeof query !== 'object' || typeof query.toOperationNode !== 'function')
      throw new InvalidQueryError('expected a Kysely query builder', { got: typeof query });
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name === ''))
      throw new ConfigError('name', options.name, 'a query name is a non-empty string');
    const key = this.key(query, options.name, options);
    if (options.name !== undefined) this.#sampler?.record(`query:${options.name}`, key);
    return this.#run(key, query, options);
  }

  /**
   * A named query whose key comes from its arguments, not its SQL: a hit costs building a
   * short key and one L1 lookup; the query is built (and its tags derived) only when L1
   * does not answer. The arguments must determine the query (they are its key).
   */
  prepare<A extends readonly unknown[], R>(
    name: string,
    build: (...args: A) => CacheableQuery<R>,
    options: Omit<CachedQueryOptions, 'name' | 'readYourWrites'> = {},
  ): (...args: A) => Promise<R[]> {
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw new ConfigError(
        'name',
        name,
        'a prepared query name: letters, digits, "_", "." and "-"',
      );
    if (this.#prepared.has(name))
      throw new ConfigError('name', name, 'a prepared query of this name already exists');
    if (typeof build !== 'function') throw new ConfigError('build', build, 'expected a function');
    this.#prepared.add(name);
    const entity = `query:${name}`;
    // The one-lookup hit path is a plain L1 read: options that ask for more (a bound on
    // staleness, a fresh read) go the whole way, as in cached().
    const fastPath = options.maxStalenessMs === undefined && options.forceFresh !== true;
    return (...args: A) => {
      const key = preparedKey(name, args);
      this.#sampler?.record(entity, key);
      if (fastPath) {
        const hit = this.#engine.peek<R[]>(key);
        if (hit !== undefined) return Promise.resolve(hit);
      }
      return this.#run(key, build(...args), options);
    };
  }

  async #run<R>(key: string, query: CacheableQuery<R>, options: CachedQueryOptions): Promise<R[]> {
    const plan = this.#plan(key, query, options);
    const loader = async () => {
      const rows = await query.execute();
      if (plan.deny !== null) stripDenied(rows, plan.deny);
      return rows;
    };
    const load: LoadOptions = loadOptions(
      {
        tags: plan.tags,
        ...(plan.encrypt && { encrypt: true }),
        ...(this.#snapshot !== undefined && { snapshot: this.#snapshot }),
      },
      options,
    );
    if (options.readYourWrites !== undefined) {
      const reached = await this.#position.readAfter(
        options.readYourWrites,
        key,
        this.#config.repository.readYourWritesTimeoutMs,
      );
      if (!reached) return loader();
      return this.#engine.getOrLoad(key, loader, afterWrite(load));
    }
    return this.#engine.getOrLoad(key, loader, load);
  }

  #plan(key: string, query: CacheableQuery<unknown>, options: CachedQueryOptions): Plan {
    const known =
      options.tags === undefined && options.tables === undefined ? this.#plans.get(key) : undefined;
    if (known) return known;
    const node = query.toOperationNode();
    const { defaultSchema } = this.#config;
    const deps = queryDependencies(node, this.#model, {
      defaultSchema,
      ...(options.tables !== undefined && { rawTables: options.tables }),
    });
    const columns = new Set<string>();
    const tables = new Set<string>();
    for (const t of deps.tables) {
      const denied = this.#denyByTable.get(t.table);
      if (denied === undefined) continue;
      tables.add(t.table);
      for (const c of denied) columns.add(c);
    }
    assertNoDeniedOutput(node, { columns, tables, defaultSchema });
    const plan: Plan = {
      tags: options.tags ? [...new Set([...deps.tags, ...options.tags])] : deps.tags,
      deny: columns.size > 0 ? columns : null,
      encrypt:
        this.#config.encryption.all || deps.tables.some((t) => this.#encryptedTables.has(t.table)),
    };
    if (options.tags === undefined && options.tables === undefined) this.#plans.set(key, plan);
    return plan;
  }
}

/**
 * `q:<name>:<arg>:<arg>`: key values as they are (long ones hashed, `valuePart`),
 * anything else by a hash of its JSON.
 */
function preparedKey(name: string, args: readonly unknown[]): string {
  let out = `q:${name}`;
  for (const arg of args) {
    let part: string;
    try {
      part = valuePart(arg);
    } catch {
      part = `~${createHash('sha256')
        .update(stringifyParameters([arg]))
        .digest('base64url')
        .slice(0, 22)}`;
    }
    out += `:${part}`;
  }
  return out;
}

/** A stable string of query parameters (bigints, Dates, Buffers included). */
function stringifyParameters(parameters: readonly unknown[]): string {
  return JSON.stringify(parameters, (_k, v: unknown) =>
    typeof v === 'bigint' ? `${v}n` : v === undefined ? null : v,
  );
}
