import type { ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../errors/typed-errors.js';
import type { ColumnKind } from '../keys/canonical.js';

/** What the worker needs to know of one table: which keys and tags a row change touches. */
export interface TableModel {
  /** `schema.table` */
  readonly table: string;
  readonly entities: ReadonlyArray<{
    readonly name: string;
    readonly keyColumns: readonly string[];
    readonly uniqueColumns: readonly string[];
  }>;
  /** Columns whose values narrow query tags (`invalidateBy`). */
  readonly tagColumns: readonly string[];
  /** Every column the mapping reads: the only ones the worker decodes. */
  readonly columns: ReadonlySet<string>;
  /**
   * The kind of each of `columns`, from the catalog (`applyCatalog`): key and tag values
   * are then named by their canonical text, as readers name them. Empty until the
   * catalog is read (values are then used as they come).
   */
  readonly kinds: Map<string, ColumnKind>;
  /**
   * Of `columns`, those whose old values an UPDATE or DELETE must carry (all but the
   * primary key's or identity index's), from the catalog. An old image that lacks one
   * (the identity was reset to DEFAULT while the worker runs) cannot be mapped precisely.
   */
  readonly oldNeeded: Set<string>;
}

/** Tables by `schema.table`, built once from the config shared by services and the worker. */
export type ChangeModel = ReadonlyMap<string, TableModel>;

export function qualify(table: string, defaultSchema: string): string {
  return table.includes('.') ? table : `${defaultSchema}.${table}`;
}

const NO_COLUMNS: ReadonlySet<string> = new Set();

/** The wal2json decoder's `columnsWanted` for a model: unknown tables decode no column at all. */
export function columnsWantedBy(
  model: ChangeModel,
): (schema: string, table: string) => ReadonlySet<string> {
  return (schema, table) => findTable(model, schema, table)?.columns ?? NO_COLUMNS;
}

/** Found tables by schema, then table: no `schema.table` string built per change. */
const found = new WeakMap<ChangeModel, Map<string, Map<string, TableModel>>>();

/**
 * `model.get(`${schema}.${table}`)`, for every change the worker decodes and maps. Only
 * tables found are remembered (a model is not changed once built).
 */
export function findTable(
  model: ChangeModel,
  schema: string,
  table: string,
): TableModel | undefined {
  let schemas = found.get(model);
  if (schemas === undefined) {
    schemas = new Map();
    found.set(model, schemas);
  }
  const hit = schemas.get(schema)?.get(table);
  if (hit !== undefined) return hit;
  const tableModel = model.get(`${schema}.${table}`);
  if (tableModel !== undefined) {
    let tables = schemas.get(schema);
    if (tables === undefined) {
      tables = new Map();
      schemas.set(schema, tables);
    }
    tables.set(table, tableModel);
  }
  return tableModel;
}

export function buildChangeModel(
  config: Pick<ResolvedConfig, 'entities' | 'invalidateBy' | 'defaultSchema'>,
): ChangeModel {
  const building = new Map<
    string,
    { entities: TableModel['entities'][number][]; tagColumns: Set<string>; keyColumns: Set<string> }
  >();
  const slot = (table: string) => {
    const name = qualify(table, config.defaultSchema);
    const existing = building.get(name);
    if (existing) return existing;
    const entry = { entities: [], tagColumns: new Set<string>(), keyColumns: new Set<string>() };
    building.set(name, entry);
    return entry;
  };
  for (const [name, entity] of Object.entries(config.entities)) {
    const keyColumns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
    for (const column of [...entity.unique]) {
      if (keyColumns.includes(column))
        throw new ConfigError(
          `entities.${name}.unique`,
          entity.unique,
          `\`${column}\` is already the key`,
        );
    }
    for (const column of entity.deny) {
      if (keyColumns.includes(column) || entity.unique.includes(column)) {
        throw new ConfigError(
          `entities.${name}.deny`,
          entity.deny,
          `\`${column}\` is a key or unique column and must be cached`,
        );
      }
    }
    const entry = slot(entity.table);
    entry.entities.push({ name, keyColumns, uniqueColumns: [...entity.unique] });
    for (const k of keyColumns) entry.keyColumns.add(k);
  }
  for (const [table, columns] of Object.entries(config.invalidateBy)) {
    const entry = slot(table);
    for (const c of columns) entry.tagColumns.add(c);
  }
  const model = new Map<string, TableModel>();
  for (const [table, entry] of building) {
    model.set(table, {
      table,
      entities: entry.entities,
      tagColumns: [...entry.tagColumns],
      columns: new Set([
        ...entry.keyColumns,
        ...entry.tagColumns,
        ...entry.entities.flatMap((e) => e.uniqueColumns),
      ]),
      kinds: new Map(),
      oldNeeded: new Set(),
    });
  }
  return model;
}
