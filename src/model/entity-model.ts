import type { ResolvedConfig } from '../config/config.js';
import { ConfigError, InvalidKeyError } from '../errors/typed-errors.js';
import { type ColumnKind, canonicalText, pgValue } from '../keys/canonical.js';
import { entityKey, tableResetTag, uniqueKey } from '../keys/redis-keys.js';
import { buildChangeModel, type ChangeModel, qualify } from './table-model.js';

/** One entity of the config, resolved once for the repository. */
export interface EntityModel {
  readonly name: string;
  /** `schema.table`, as the worker names it. */
  readonly table: string;
  readonly schema: string;
  /** The table name without its schema. */
  readonly tableName: string;
  readonly keyColumns: readonly string[];
  readonly uniqueColumns: readonly string[];
  readonly deny: readonly string[];
  readonly ttlMs: number | undefined;
  /** Sliding expiration (`entities.<name>.sliding`); undefined when entries do not slide. */
  readonly sliding: { readonly maxAgeMs: number } | undefined;
  /** The tag every entry of the entity depends on besides its key (TRUNCATE and other resets). */
  readonly resetTag: string;
  readonly tagsOf: ((row: Record<string, unknown>) => readonly string[]) | undefined;
  /** Accepts `writeBehind` patches; its reads overlay pending writes and skip L1. */
  readonly writeBehind: boolean;
  /**
   * Column kinds from the catalog (shared with the change model's table): ids and unique
   * values are named by their canonical text once it is read (see src/keys/canonical.ts).
   */
  readonly kinds: ReadonlyMap<string, ColumnKind>;
  /** Its entries (and cached queries reading its table) are encrypted in Redis. */
  readonly encrypt: boolean;
}

/** Names a repository uses itself: an entity cannot be called one of these. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'cached',
  'close',
  'config',
  'ready',
  'db',
  'engine',
  'entity',
  'entities',
  'accessLog',
  'transaction',
  'waitForWorker',
  'queryKey',
  'prepare',
  'touched',
  'writeBehind',
  'then',
  'constructor',
]);

export function buildEntityModels(
  config: ResolvedConfig,
  changeModel: ChangeModel = buildChangeModel(config),
): ReadonlyMap<string, EntityModel> {
  const models = new Map<string, EntityModel>();
  for (const [name, entity] of Object.entries(config.entities)) {
    if (RESERVED_NAMES.has(name))
      throw new ConfigError(`entities.${name}`, name, 'this name is a repository method');
    // Entity keys are `<entity>:<id>`, query keys `q:<hash>`: an entity `q` would share them.
    if (name === 'q')
      throw new ConfigError(`entities.${name}`, name, '`q` is the namespace of cached query keys');
    const table = qualify(entity.table, config.defaultSchema);
    const dot = table.indexOf('.');
    const keyColumns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
    for (const column of entity.deny) {
      if (keyColumns.includes(column) || entity.unique.includes(column))
        throw new ConfigError(
          `entities.${name}.deny`,
          entity.deny,
          `\`${column}\` is a key or unique column and must be cached`,
        );
    }
    if (entity.encrypt && entity.writeBehind)
      throw new ConfigError(
        `entities.${name}.encrypt`,
        true,
        'an entity with writeBehind cannot be encrypted: its pending writes wait in Redis unencrypted',
      );
    models.set(name, {
      name,
      table,
      schema: table.slice(0, dot),
      tableName: table.slice(dot + 1),
      keyColumns,
      uniqueColumns: [...entity.unique],
      deny: [...entity.deny],
      ttlMs: entity.ttlMs,
      sliding: entity.sliding,
      resetTag: tableResetTag(table),
      tagsOf: entity.tags as EntityModel['tagsOf'],
      writeBehind: entity.writeBehind,
      kinds: changeModel.get(table)?.kinds ?? new Map(),
      encrypt: entity.encrypt || config.encryption.all,
    });
  }
  return models;
}

export type KeyPart = string | number | bigint;

/**
 * Checks an id against the entity's key columns and returns its parts, each in its
 * canonical text once the catalog gave the columns' types (`'042'` -> `'42'`).
 *
 * @throws {InvalidKeyError} for the wrong arity or type, or a value the column cannot hold.
 */
export function keyParts(model: EntityModel, id: unknown): KeyPart[] {
  if (model.keyColumns.length === 1) {
    if (Array.isArray(id) && id.length === 1) return [checkPart(model, id[0], 0)];
    return [checkPart(model, id, 0)];
  }
  if (!Array.isArray(id) || id.length !== model.keyColumns.length)
    throw new InvalidKeyError(
      id,
      `\`${model.name}\` has a composite key (${model.keyColumns.join(', ')}): pass an array of ${model.keyColumns.length} values`,
    );
  return id.map((part, i) => checkPart(model, part, i));
}

function checkPart(model: EntityModel, part: unknown, index: number): KeyPart {
  const column = model.keyColumns[index] as string;
  if (
    typeof part !== 'string' &&
    typeof part !== 'bigint' &&
    !(typeof part === 'number' && Number.isFinite(part))
  )
    throw new InvalidKeyError(
      part,
      `\`${model.name}.${column}\` takes a string, a finite number or a bigint`,
    );
  return canonical(model, column, part) as KeyPart;
}

/** A value of a key or unique column in its canonical text (as given until the catalog is read). */
function canonical(model: EntityModel, column: string, value: unknown): unknown {
  const kind = model.kinds.get(column);
  if (kind === undefined) return value;
  try {
    return canonicalText(kind, value);
  } catch (error) {
    if (error instanceof InvalidKeyError)
      throw new InvalidKeyError(value, `\`${model.name}.${column}\`: ${error.reason}`);
    throw error;
  }
}

/** Narrows a query to the row with these key values (`key column = value` per column). */
export function whereKey<Q extends { where(column: string, op: '=', value: unknown): Q }>(
  query: Q,
  model: EntityModel,
  parts: readonly unknown[],
): Q {
  let narrowed = query;
  model.keyColumns.forEach((column, i) => {
    narrowed = narrowed.where(column, '=', parts[i]);
  });
  return narrowed;
}

/** The key columns of a row as an object, in the form pg returns them: `{ id: 42 }`. */
export function keyRow(model: EntityModel, parts: readonly unknown[]): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  model.keyColumns.forEach((column, i) => {
    const part = parts[i];
    row[column] = typeof part === 'string' ? pgValue(model.kinds.get(column), part) : part;
  });
  return row;
}

/** The cache key of an entity row by its key values. */
export function rowKey(model: EntityModel, parts: readonly KeyPart[]): string {
  return entityKey(model.name, parts);
}

/**
 * The cache key of a row pg returned: its key values in their canonical text, as an id
 * naming the row is (a numeric key pg returns as `2.50` is the entry `prices:2.5`).
 */
export function rowKeyOf(model: EntityModel, row: Readonly<Record<string, unknown>>): string {
  return entityKey(
    model.name,
    model.keyColumns.map((c) => canonical(model, c, row[c])),
  );
}

/**
 * Whether a row pg returns names the same entry as the id that found it, for these
 * columns: each has a kind with a canonical text (read from the catalog, not `opaque`).
 * Loads of many ids in one query match rows back to ids that way.
 */
export function matchedByText(model: EntityModel, columns: readonly string[]): boolean {
  for (const column of columns) {
    const kind = model.kinds.get(column);
    if (kind === undefined || kind === 'opaque' || typeof kind === 'object') return false;
  }
  return true;
}

/** The cache key of a row found by a unique column. */
export function uniqueRowKey(model: EntityModel, column: string, value: unknown): string {
  if (!model.uniqueColumns.includes(column))
    throw new InvalidKeyError(
      column,
      `\`${model.name}\` has no unique column \`${column}\` (declared: ${model.uniqueColumns.join(', ') || 'none'})`,
    );
  if (
    value === null ||
    value === undefined ||
    (typeof value === 'number' && !Number.isFinite(value))
  )
    throw new InvalidKeyError(value, `\`${model.name}.${column}\` needs a value`);
  return uniqueKey(model.name, column, canonical(model, column, value));
}

/** Removes the denied columns from a row in place (they must never reach Redis). */
export function stripDenied<R extends Record<string, unknown>>(model: EntityModel, row: R): R {
  for (const column of model.deny) delete row[column];
  return row;
}
