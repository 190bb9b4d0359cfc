import { type ColumnKind, columnKind } from '../keys/canonical.js';
import { COLUMNS_SQL, pgArray, type QueryRows } from './table-catalog.js';

/**
 * What `walcache init` needs to know of every table of one schema: its columns (with
 * the kind that decides whether one can be a key), its primary key, its unique indexes
 * and its foreign keys, each with its columns in index order.
 */
export interface SchemaTable {
  /** The table's name, unqualified. */
  readonly name: string;
  /** `pg_class.relkind`: r table, p partitioned table. */
  readonly relkind: string;
  /** Columns in table order. */
  readonly columns: ReadonlyArray<{ readonly name: string; readonly kind: ColumnKind }>;
  /** Primary key columns in key order; empty without a primary key. */
  readonly primaryKey: readonly string[];
  /**
   * Unique indexes other than the primary key, columns in index order. Partial and
   * expression indexes are left out: neither names a row by plain column values.
   */
  readonly uniques: ReadonlyArray<{ readonly name: string; readonly columns: readonly string[] }>;
  /** Foreign keys: the referencing columns and the `schema.table` they point at. */
  readonly foreignKeys: ReadonlyArray<{
    readonly name: string;
    readonly columns: readonly string[];
    readonly references: string;
  }>;
}

const SCHEMA_SQL = 'SELECT 1 FROM pg_namespace WHERE nspname = $1';

// Tables, partitions included (the worker sees changes under a partition's name), and
// partitioned tables (to say why they are left out).
const TABLES_SQL = `
SELECT c.oid::text AS oid, c.relname AS name, c.relkind::text AS relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
 ORDER BY c.relname`;

// indkey holds 0 for an expression column; ordinality keeps the index's column order.
const INDEXES_SQL = `
SELECT i.indrelid::text AS oid, ic.relname AS name, i.indisprimary AS primary,
       array_agg(a.attname::text ORDER BY k.ord) AS columns,
       bool_or(k.attnum = 0) AS expression, i.indpred IS NOT NULL AS partial
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = ANY ($1::oid[]) AND (i.indisunique OR i.indisprimary)
 GROUP BY i.indexrelid, i.indrelid, ic.relname, i.indisprimary, (i.indpred IS NOT NULL)
 ORDER BY ic.relname`;

const FOREIGN_KEYS_SQL = `
SELECT c.conrelid::text AS oid, c.conname AS name,
       array_agg(a.attname::text ORDER BY k.ord) AS columns,
       rn.nspname || '.' || r.relname AS target
  FROM pg_constraint c
  JOIN pg_class r ON r.oid = c.confrelid
  JOIN pg_namespace rn ON rn.oid = r.relnamespace
  CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
 WHERE c.conrelid = ANY ($1::oid[]) AND c.contype = 'f'
 GROUP BY c.conrelid, c.conname, rn.nspname, r.relname
 ORDER BY c.conname`;

/** Whether the schema exists. */
export async function schemaExists(query: QueryRows, schema: string): Promise<boolean> {
  return (await query(SCHEMA_SQL, [schema])).length > 0;
}

/** The tables of `schema` (four queries, whatever their number); empty when it has none. */
export async function readSchemaTables(query: QueryRows, schema: string): Promise<SchemaTable[]> {
  const tables = await query(TABLES_SQL, [schema]);
  if (tables.length === 0) return [];
  const oids = tables.map((t) => String(t.oid));
  const [columns, indexes, foreignKeys] = await Promise.all([
    query(COLUMNS_SQL, [oids]),
    query(INDEXES_SQL, [oids]),
    query(FOREIGN_KEYS_SQL, [oids]),
  ]);
  const of = <T>(
    rows: ReadonlyArray<Record<string, unknown>>,
    map: (r: Record<string, unknown>) => T,
  ) => {
    const by = new Map<string, T[]>();
    for (const r of rows) {
      const list = by.get(String(r.oid)) ?? [];
      list.push(map(r));
      by.set(String(r.oid), list);
    }
    return by;
  };
  const columnsOf = of(columns, (c) => ({
    name: String(c.name),
    kind: columnKind({
      name: String(c.base),
      typtype: String(c.typtype),
      category: String(c.category),
    }),
  }));
  const indexesOf = of(indexes, (i) => ({
    name: String(i.name),
    primary: i.primary === true,
    columns: pgArray(i.columns),
    plain: i.expression !== true && i.partial !== true,
  }));
  const foreignKeysOf = of(foreignKeys, (f) => ({
    name: String(f.name),
    columns: pgArray(f.columns),
    references: String(f.target),
  }));
  return tables.map((t) => {
    const oid = String(t.oid);
    const tableIndexes = indexesOf.get(oid) ?? [];
    return {
      name: String(t.name),
      relkind: String(t.relkind),
      columns: columnsOf.get(oid) ?? [],
      primaryKey: tableIndexes.find((i) => i.primary)?.columns ?? [],
      uniques: tableIndexes
        .filter((i) => !i.primary && i.plain)
        .map((i) => ({ name: i.name, columns: i.columns })),
      foreignKeys: foreignKeysOf.get(oid) ?? [],
    };
  });
}
