import type { ResolvedConfig } from '../config/config.js';
import { closestName } from '../config/suggest.js';
import { isUnsupported, unkeyableReason } from '../keys/canonical.js';
import type { ChangeModel, TableModel } from '../model/table-model.js';
import type { Catalog, QueryRows, TableCatalog } from './table-catalog.js';

/** A gap between the config and the database that would leave entries stale. */
export interface ModelProblem {
  readonly table: string;
  readonly kind: 'missing' | 'not-a-table' | 'partitioned' | 'column' | 'type' | 'identity';
  /** One line: what is wrong and what it would cost. */
  readonly detail: string;
  /** What to run or change. */
  readonly fix: string;
}

/** `"schema"."table"` */
export function quoteTable(table: string): string {
  const dot = table.indexOf('.');
  const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
  return `${q(table.slice(0, dot))}.${q(table.slice(dot + 1))}`;
}

/**
 * Columns whose OLD values the worker needs (key, unique and tag columns) that only
 * REPLICA IDENTITY FULL carries: all but the primary key's (or identity index's). A key
 * that is not the identity (`key: 'slug'` with primary key `id`) needs FULL as much as a tag.
 */
export function oldValuesNeeded(model: TableModel, table: TableCatalog): string[] {
  // A column the table lacks is reported as such (`checkModel`), not as a need for FULL.
  return [...model.columns]
    .filter((c) => table.columns.has(c) && !table.keyIndexColumns.has(c))
    .sort();
}

/** Of {@link oldValuesNeeded}, those the table's current replica identity does not carry. */
export function oldValuesMissing(model: TableModel, table: TableCatalog): string[] {
  if (table.replicaIdentity === 'f') return [];
  return oldValuesNeeded(model, table);
}

/**
 * Checks the config's tables against the catalog: each exists and is a plain table (the
 * worker sees changes of tables only: a view or a partitioned table would never be
 * invalidated), has the columns the config names, with types that can be keys or tags,
 * and a replica identity that carries the old values the worker needs.
 */
export function checkModel(model: ChangeModel, catalog: Catalog): ModelProblem[] {
  const problems: ModelProblem[] = [];
  for (const [name, table] of model) {
    const found = catalog.get(name);
    if (found === undefined) {
      problems.push({
        table: name,
        kind: 'missing',
        detail: `${name} does not exist (named in the config's entities or invalidateBy)`,
        fix: `create ${name} (run the application's migrations), or fix the table name in the config`,
      });
      continue;
    }
    if (found.relkind === 'p') {
      problems.push({
        table: name,
        kind: 'partitioned',
        detail: `${name} is a partitioned table: its changes reach the worker under each partition's name, so entries of it would never be invalidated`,
        fix: `name its partitions in the config instead (each an entity or an invalidateBy table of its own), or cache reads of ${name} with \`cached(query, { tables: [...] })\` listing the partitions`,
      });
      continue;
    }
    if (found.relkind !== 'r') {
      const what =
        found.relkind === 'v'
          ? 'a view'
          : found.relkind === 'm'
            ? 'a materialized view'
            : found.relkind === 'f'
              ? 'a foreign table'
              : `not a table (relkind ${found.relkind})`;
      problems.push({
        table: name,
        kind: 'not-a-table',
        detail: `${name} is ${what}: the worker sees changes of tables only, so entries of it would never be invalidated`,
        fix: `follow its base tables instead: put them in invalidateBy, and pass \`tables: [...]\` (the base tables) to \`cached()\` for queries that read ${name}`,
      });
      continue;
    }
    const keyColumns = new Set([
      ...table.entities.flatMap((e) => [...e.keyColumns, ...e.uniqueColumns]),
    ]);
    for (const column of table.columns) {
      const info = found.columns.get(column);
      if (info === undefined) {
        problems.push(missingColumn(name, table, found, column));
        continue;
      }
      const why = keyColumns.has(column)
        ? unkeyableReason(info.kind)
        : isUnsupported(info.kind)
          ? info.kind.unsupported
          : null;
      if (why !== null)
        problems.push({
          table: name,
          kind: 'type',
          detail: `${name}.${column} is ${why} (${info.type}): it cannot be a ${keyColumns.has(column) ? 'key or unique column' : 'tag column'}`,
          fix: keyColumns.has(column)
            ? `key the entity by another column (its primary key), or leave ${column} out of unique`
            : `leave ${column} out of invalidateBy.${name.slice(name.indexOf('.') + 1)}: queries on it then depend on the whole table`,
        });
    }
    const missing = oldValuesMissing(table, found);
    if (missing.length > 0)
      problems.push({
        table: name,
        kind: 'identity',
        detail: `${name} needs REPLICA IDENTITY FULL: the worker needs the old values of ${missing.join(', ')}, which UPDATE and DELETE do not carry under ${IDENTITIES[found.replicaIdentity] ?? found.replicaIdentity}`,
        fix: `ALTER TABLE ${quoteTable(name)} REPLICA IDENTITY FULL;  (or run walcache setup, which sets it)`,
      });
  }
  return problems;
}

/**
 * A column the config names that the table does not have: which options name it, the
 * column most likely meant, and the table's columns.
 */
function missingColumn(
  name: string,
  table: TableModel,
  found: TableCatalog,
  column: string,
): ModelProblem {
  const options = [
    ...table.entities.flatMap((e) => [
      ...(e.keyColumns.includes(column) ? [`entities.${e.name}.key`] : []),
      ...(e.uniqueColumns.includes(column) ? [`entities.${e.name}.unique`] : []),
    ]),
    ...(table.tagColumns.includes(column)
      ? [`invalidateBy.${name.slice(name.indexOf('.') + 1)}`]
      : []),
  ].join(' and ');
  const columns = [...found.columns.keys()];
  const meant = closestName(columns, column);
  const primaryKey =
    found.replicaIdentity !== 'i' && found.keyIndexColumns.size > 0
      ? ` (its primary key is ${[...found.keyIndexColumns].join(', ')})`
      : '';
  const isKey = table.entities.some((e) => e.keyColumns.includes(column));
  return {
    table: name,
    kind: 'column',
    detail: `${name} has no column \`${column}\`, named by ${options}${meant ? ` (did you mean \`${meant}\`?)` : ''}; its columns: ${columns.join(', ') || '(none)'}`,
    fix: meant
      ? `write \`${meant}\` for \`${column}\` in ${options}`
      : `name one of ${name}'s columns in ${options}${isKey ? primaryKey : ''}, or add the column \`${column}\` to ${name}`,
  };
}

export const IDENTITIES: Readonly<Record<string, string>> = {
  d: 'DEFAULT (the primary key)',
  f: 'FULL',
  i: 'USING INDEX',
  n: 'NOTHING',
};

/**
 * Gives the model the column kinds the catalog reports, so keys and tags are built from
 * canonical text (see src/keys/canonical.ts). Returns the model, now typed.
 */
export function applyCatalog(model: ChangeModel, catalog: Catalog): ChangeModel {
  for (const [name, table] of model) {
    const found = catalog.get(name);
    if (found === undefined) continue;
    for (const column of table.columns) {
      const info = found.columns.get(column);
      if (info !== undefined) table.kinds.set(column, info.kind);
      if (!found.keyIndexColumns.has(column)) table.oldNeeded.add(column);
    }
  }
  return model;
}

/**
 * A table named without its schema is tagged as `defaultSchema.table`, but queries run on
 * the connection's search_path: if that finds another table of the name first, its writes
 * would never invalidate them. Checked on the connection `query` runs on.
 */
export async function searchPathProblems(
  query: QueryRows,
  config: Pick<ResolvedConfig, 'entities' | 'invalidateBy' | 'defaultSchema'>,
): Promise<Array<Pick<ModelProblem, 'detail' | 'fix'>>> {
  const unqualified = [
    ...Object.values(config.entities).map((e) => e.table),
    ...Object.keys(config.invalidateBy),
  ].filter((t, i, all) => !t.includes('.') && all.indexOf(t) === i);
  if (unqualified.length === 0) return [];
  const rows = await query(
    `SELECT t.name, n.nspname AS schema
       FROM unnest($1::text[]) AS t(name)
       LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))
       LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`,
    [unqualified],
  );
  const wanted = config.defaultSchema;
  return rows
    .filter((r) => r.schema !== null && r.schema !== wanted)
    .map((r) => ({
      detail: `\`${r.name}\` resolves to ${r.schema}.${r.name} on this connection's search_path, but the config follows ${wanted}.${r.name}: writes to the table your queries read would never invalidate them`,
      fix: `set defaultSchema to '${r.schema}' in the config, or put ${wanted} first on the pool's search_path (options: '-c search_path=${wanted}'), or name the table with its schema`,
    }));
}
