import { type ColumnKind, columnKind } from '../keys/canonical.js';

/**
 * What PostgreSQL's catalog says about the tables a config follows: their kind, replica
 * identity (and so which columns an UPDATE or DELETE carries in its old image), and each
 * column's type. Read once by `walcache setup`, the worker at start, `walcache doctor`
 * and the repository, so they all check the config against the same facts, and so readers
 * and the worker canonicalise key and tag values by the same column types.
 */
export interface TableCatalog {
  /** `schema.table` */
  readonly name: string;
  /** `pg_class.relkind`: r table, p partitioned table, v view, m materialized view, f foreign table. */
  readonly relkind: string;
  /** `pg_class.relreplident`: d default, f full, i index, n nothing. */
  readonly replicaIdentity: string;
  /** Columns an UPDATE/DELETE's old image carries: all under FULL, the identity index's (or the primary key's) otherwise. */
  readonly identityColumns: ReadonlySet<string>;
  /** The columns of the identity index (USING INDEX) or the primary key, whatever the identity. */
  readonly keyIndexColumns: ReadonlySet<string>;
  readonly columns: ReadonlyMap<string, { readonly kind: ColumnKind; readonly type: string }>;
}

/** Tables by `schema.table`; a table that does not exist is absent. */
export type Catalog = ReadonlyMap<string, TableCatalog>;

/** Runs one SQL statement with parameters and returns its rows (a pg Pool or a Kysely instance behind it). */
export type QueryRows = (
  text: string,
  values: readonly unknown[],
) => Promise<ReadonlyArray<Record<string, unknown>>>;

const TABLES_SQL = `
SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
       c.relreplident::text AS identity,
       coalesce((SELECT array_agg(a.attname::text)
                   FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = c.oid
                    AND CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END),
                '{}') AS identity_columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`;

// Domains are described by their base type: a domain over int4 canonicalises as int4.
export const COLUMNS_SQL = `
SELECT a.attrelid::text AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       b.typname AS base, b.typtype::text AS typtype, b.typcategory::text AS category
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
 WHERE a.attrelid = ANY ($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum`;

/** Reads the catalog entries of `schema.table` names (two queries, whatever their number). */
export async function readCatalog(query: QueryRows, tables: readonly string[]): Promise<Catalog> {
  const out = new Map<string, TableCatalog>();
  if (tables.length === 0) return out;
  const split = tables.map((t) => {
    const dot = t.indexOf('.');
    return [t.slice(0, dot), t.slice(dot + 1)] as const;
  });
  const rows = await query(TABLES_SQL, [split.map((s) => s[0]), split.map((s) => s[1])]);
  if (rows.length === 0) return out;
  const columns = await query(COLUMNS_SQL, [rows.map((r) => r.oid)]);
  const byOid = new Map<string, Map<string, { kind: ColumnKind; type: string }>>();
  for (const c of columns) {
    const of = byOid.get(String(c.oid)) ?? new Map();
    of.set(String(c.name), {
      kind: columnKind({
        name: String(c.base),
        typtype: String(c.typtype),
        category: String(c.category),
      }),
      type: String(c.type),
    });
    byOid.set(String(c.oid), of);
  }
  for (const r of rows) {
    const name = `${r.schema}.${r.name}`;
    const cols = byOid.get(String(r.oid)) ?? new Map();
    const identity = String(r.identity);
    const keyIndex = pgArray(r.identity_columns);
    out.set(name, {
      name,
      relkind: String(r.relkind),
      replicaIdentity: identity,
      identityColumns: new Set(identity === 'f' ? cols.keys() : identity === 'n' ? [] : keyIndex),
      keyIndexColumns: new Set(keyIndex),
      columns: cols,
    });
  }
  return out;
}

/** pg returns `name[]`/`text[]` as an array, or as its text form for types it does not parse. */
export function pgArray(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'string' && value.startsWith('{') && value.length > 2)
    return value
      .slice(1, -1)
      .split(',')
      .map((s) => s.replace(/^"|"$/g, ''));
  return [];
}

/** A {@link QueryRows} over a pg Pool or Client. */
export function poolQuery(pool: {
  query(text: string, values: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}): QueryRows {
  return async (text, values) => (await pool.query(text, [...values])).rows;
}

/**
 * Of `tables`, those a pgoutput publication does not send (pg_publication_tables lists
 * what it publishes, FOR ALL TABLES and FOR TABLES IN SCHEMA included); null when the
 * publication does not exist.
 */
export async function unpublishedTables(
  query: QueryRows,
  publication: string,
  tables: readonly string[],
): Promise<string[] | null> {
  const exists = await query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  if (exists.length === 0) return null;
  const rows = await query(
    `SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables WHERE pubname = $1`,
    [publication],
  );
  const published = new Set(rows.map((r) => String(r.name)));
  return tables.filter((t) => !published.has(t));
}
