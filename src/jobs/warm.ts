import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { CompiledQuery, type Kysely } from 'kysely';
import type { CacheEngine } from '../cache/cache-engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError, RedisUnavailableError, WarmerSqlError } from '../errors/typed-errors.js';
import { parseEntityKey } from '../keys/redis-keys.js';
import type { WarmResult } from '../repository/entity-repository.js';
import { readWarmerSql } from './warmer-sql.js';

/**
 * Warmers: a SQL query names the keys worth having hot (usually the access log's
 * hottest), and they are loaded in batches through the repository's lease-protected
 * fill (`EntityRepository.warm`), so a warm never overwrites a fresher value and never
 * stores a row that a concurrent write invalidated.
 */

/** Where a warm run is, after each batch. */
export interface WarmProgress {
  /** Keys handled so far (batches done). */
  readonly done: number;
  /** Keys to warm in this run. */
  readonly total: number;
  readonly loaded: number;
  readonly skipped: number;
  readonly missing: number;
  readonly failed: number;
}

/** What a warm run did. */
export interface WarmSummary {
  readonly warmer: string;
  readonly entity: string;
  /** Distinct keys of the entity the SQL returned (what was warmed). */
  readonly keys: number;
  /** Rows loaded from Postgres and cached. */
  readonly loaded: number;
  /** Keys already cached and fresh: nothing loaded. */
  readonly skipped: number;
  /** Keys with no row in Postgres. */
  readonly missing: number;
  /** Keys whose load or fill failed. */
  readonly failed: number;
  /** Rows of the SQL that name no key of the entity (another entity's key, a unique-column key, no `key`/`id`, bad encoding). */
  readonly ignored: number;
  readonly durationMs: number;
}

/** The part of a repository a warmer uses (a `Repository` fits). */
export interface WarmTarget {
  entity(name: string): { warm(ids: readonly unknown[]): Promise<WarmResult> };
  readonly engine: Pick<CacheEngine, 'ready'>;
  // biome-ignore lint/suspicious/noExplicitAny: the warmer's SQL names its own tables
  readonly db: Kysely<any>;
}

export interface RunWarmerOptions {
  /** The warmer's name in `config.warmers`. */
  readonly name: string;
  readonly config: ResolvedConfig;
  /** The repository whose entity is warmed (its engine and fill path). */
  readonly repo: WarmTarget;
  /** Where the warmer's SQL runs. @default repo.db */
  // biome-ignore lint/suspicious/noExplicitAny: the warmer's SQL names its own tables
  readonly db?: Kysely<any>;
  /** Called after each batch (a job reports it with `job.updateProgress`). */
  readonly onProgress?: (progress: WarmProgress) => void | Promise<void>;
  /** Stops between batches (the runner's shutdown); the run rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** How long a warm waits for the cache's Redis to connect. */
const READY_TIMEOUT_MS = 5_000;

/**
 * The package's `sql/` folder: `../../sql` from `src/jobs/` (running the sources),
 * `../../../sql` from `dist/src/jobs/` (the published build).
 */
export function sqlDirectory(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [join(here, '..', '..', 'sql'), join(here, '..', '..', '..', 'sql')];
  return (
    candidates.find((dir) => existsSync(join(dir, 'hot-keys.sql'))) ?? (candidates[0] as string)
  );
}

/**
 * Where a warmer's `sql` option points: a bare file name that exists in the package's
 * `sql/` folder is that file; anything else is a path, absolute or relative to `cwd`.
 */
export function resolveWarmerSql(file: string, cwd: string = process.cwd()): string {
  if (isAbsolute(file)) return file;
  if (!/[\\/]/.test(file)) {
    const packaged = join(sqlDirectory(), file);
    if (existsSync(packaged)) return packaged;
  }
  return resolve(cwd, file);
}

/**
 * Runs one warmer: reads its SQL, runs it with `$1` = the entity name and `$2` = the
 * warmer's `limit`, turns the rows into ids (a `key` column holding cache keys like
 * `users:42` or `memberships:7:3`, or an `id` column; another entity's keys are ignored),
 * and loads them `batchSize` at a time through `repo.entity(entity).warm(ids)`.
 *
 * Placeholders: the SQL is sent with as many parameters as the highest of `$1`/`$2` it
 * uses outside comments and literals (none, `$1`, or both); a parameter Postgres cannot
 * type needs a cast (`$1::text`).
 *
 * @throws {ConfigError} for an unknown warmer, an entity the config does not declare, a
 *   SQL file that does not exist, or one using `$2` without `$1`, or `$3` and up.
 * @throws {WarmerSqlError} when the SQL fails (nothing is loaded).
 * @throws {RedisUnavailableError} when the cache does not connect (nothing would be kept).
 * @example
 * const summary = await runWarmer({ name: 'hot-users', config: repo.config, repo });
 */
export async function runWarmer(options: RunWarmerOptions): Promise<WarmSummary> {
  const started = performance.now();
  const { name, config, repo, signal } = options;
  const warmer = warmerConfig(config, name);
  const entity = config.entities[warmer.entity];
  if (entity === undefined) {
    const known = Object.keys(config.entities);
    throw new ConfigError(
      `warmers.${name}.entity`,
      warmer.entity,
      `not an entity of the config (${known.length > 0 ? known.map((k) => `\`${k}\``).join(', ') : 'none declared'})`,
    );
  }
  const {
    file,
    text,
    parameters: count,
  } = await readWarmerSql(name, warmer.sql, resolveWarmerSql(warmer.sql));
  stopIfAborted(name, signal);

  const db = options.db ?? repo.db;
  const parameters = [warmer.entity, warmer.limit].slice(0, count);
  let rows: readonly Record<string, unknown>[];
  try {
    const result = await db.executeQuery<Record<string, unknown>>(
      CompiledQuery.raw(text, parameters),
    );
    rows = result.rows;
  } catch (error) {
    throw new WarmerSqlError(name, file, error);
  }

  const keyColumns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
  const parser = new KeyParser(warmer.entity, keyColumns.length, entity.unique);
  const ids = new Map<string, unknown>();
  let ignored = 0;
  for (const row of rows) {
    if (ids.size >= warmer.limit) break;
    const id = parser.id(row);
    if (id === undefined) ignored++;
    else {
      const dedupe = Array.isArray(id) ? JSON.stringify(id) : String(id);
      if (!ids.has(dedupe)) ids.set(dedupe, id);
    }
  }

  const list = [...ids.values()];
  const target = repo.entity(warmer.entity);
  // Without Redis every load would skip its fill: a warm that warms nothing.
  if (
    list.length > 0 &&
    !(await repo.engine.ready(Math.max(READY_TIMEOUT_MS, config.redis.connectTimeoutMs)))
  )
    throw new RedisUnavailableError(`warm of "${name}"`);
  const totals = { loaded: 0, skipped: 0, missing: 0, failed: 0 };
  for (let i = 0; i < list.length; i += warmer.batchSize) {
    stopIfAborted(name, signal);
    const batch = list.slice(i, i + warmer.batchSize);
    const result = await target.warm(batch);
    totals.loaded += result.loaded;
    totals.skipped += result.skipped;
    totals.missing += result.missing;
    totals.failed += result.failed;
    await options.onProgress?.({ done: i + batch.length, total: list.length, ...totals });
  }
  if (list.length === 0) await options.onProgress?.({ done: 0, total: 0, ...totals });
  return {
    warmer: name,
    entity: warmer.entity,
    keys: list.length,
    ...totals,
    ignored,
    durationMs: Math.round(performance.now() - started),
  };
}

/** A warmer's config by name. @throws {ConfigError} naming the known warmers. */
export function warmerConfig(
  config: ResolvedConfig,
  name: string,
): ResolvedConfig['warmers'][string] {
  const warmer = Object.hasOwn(config.warmers, name) ? config.warmers[name] : undefined;
  if (warmer === undefined) {
    const known = Object.keys(config.warmers);
    throw new ConfigError(
      `warmers.${name}`,
      name,
      `no such warmer; the config declares ${known.length > 0 ? known.map((k) => `\`${k}\``).join(', ') : 'none'}`,
    );
  }
  return warmer;
}

/** Throws an Error (an abort reason may be any value) when the signal has fired. */
function stopIfAborted(warmer: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted !== true) return;
  const reason: unknown = signal.reason;
  throw new Error(
    `Warmer "${warmer}" stopped: ${reason instanceof Error ? reason.message : String(reason)}`,
    { cause: reason },
  );
}

/** Turns a warmer row into an entity id: from `key` (a cache key) or `id`. */
class KeyParser {
  readonly #entity: string;
  readonly #arity: number;
  readonly #unique: ReadonlySet<string>;

  constructor(entity: string, arity: number, unique: readonly string[]) {
    this.#entity = entity;
    this.#arity = arity;
    this.#unique = new Set(unique);
  }

  id(row: Record<string, unknown>): unknown {
    const key = row.key;
    if (typeof key === 'string') return this.#fromKey(key);
    if (key !== undefined && key !== null) return undefined;
    return this.#fromId(row.id);
  }

  #fromKey(key: string): unknown {
    const parts = parseEntityKey(this.#entity, this.#arity, key);
    if (parts === null) return undefined;
    // `users:by:email:x` is a unique-column key; with a 3-column key it has the arity too.
    if (parts[0] === 'by' && parts.length === 3 && this.#unique.has(parts[1] as string))
      return undefined;
    return this.#arity === 1 ? parts[0] : parts;
  }

  #fromId(id: unknown): unknown {
    if (id === undefined || id === null) return undefined;
    if (this.#arity === 1) return Array.isArray(id) ? undefined : id;
    return Array.isArray(id) && id.length === this.#arity ? id : undefined;
  }
}
