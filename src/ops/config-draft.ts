import type { SchemaTable } from '../database/schema-tables.js';
import { isUnsupported, unkeyableReason } from '../keys/canonical.js';
import { RESERVED_NAMES } from '../model/entity-model.js';

/**
 * The config `walcache init` proposes for a schema, before it is written as text: one
 * entity per table with a usable primary key, its single-column unique indexes as
 * `unique`, columns that look secret in `deny`, and foreign-key columns in
 * `invalidateBy`. `notes` explain each choice the reader may want to revisit.
 */
export interface ConfigDraft {
  readonly schema: string;
  readonly entities: readonly DraftEntity[];
  readonly invalidateBy: readonly DraftInvalidateBy[];
  /** Tables that are not entities, with the reason. */
  readonly skipped: ReadonlyArray<{ readonly table: string; readonly reason: string }>;
}

export interface DraftEntity {
  /** Entity name, the first part of its cache keys: the table's, unless the repository uses that name. */
  readonly name: string;
  /** As the config names it: unqualified in `public`, `schema.table` elsewhere. */
  readonly table: string;
  readonly key: string | readonly string[];
  readonly unique: readonly string[];
  /** Columns that look secret (by name): never cached. */
  readonly deny: readonly string[];
  readonly notes: readonly string[];
}

export interface DraftInvalidateBy {
  readonly table: string;
  readonly columns: readonly string[];
  /** The tables the columns reference, for the comment. */
  readonly references: readonly string[];
}

/** What the config accepts as an entity name or column (a plain SQL identifier). */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/**
 * Column names that usually hold secrets or credentials. A match is a suggestion: it
 * lands in `deny` with a comment, and the reader removes it if the column is harmless.
 */
export const SECRET_COLUMN =
  /passw(or)?d|pwd|secret|token|api_?key|private_?key|credential|salt|totp|otp_|recovery_code/i;

/** Drafts the config of `schema` from its tables (a pure function of the catalog). */
export function draftConfig(schema: string, tables: readonly SchemaTable[]): ConfigDraft {
  const entities: DraftEntity[] = [];
  const invalidateBy: DraftInvalidateBy[] = [];
  const skipped: Array<{ table: string; reason: string }> = [];
  const names = new Set(tables.map((t) => t.name));
  for (const table of tables) {
    const qualified = `${schema}.${table.name}`;
    const refusal = whyNotAnEntity(table);
    if (refusal !== null) {
      skipped.push({ table: qualified, reason: refusal });
      continue;
    }
    const named = schema === 'public' ? table.name : qualified;
    entities.push(draftEntity(table, named, entityName(table.name, names)));
    const fk = draftInvalidateBy(table, named);
    if (fk !== null) invalidateBy.push(fk);
  }
  return { schema, entities, invalidateBy, skipped };
}

function whyNotAnEntity(table: SchemaTable): string | null {
  if (!IDENTIFIER.test(table.name))
    return 'its name is not a plain identifier (the config names tables unquoted)';
  if (table.relkind === 'p')
    return "a partitioned table: its changes reach the worker under its partitions' names (they are entities)";
  if (table.primaryKey.length === 0) return 'no primary key (an entity is read by its key)';
  for (const column of table.primaryKey) {
    if (!IDENTIFIER.test(column)) return `key column "${column}" is not a plain identifier`;
    const reason = unkeyableReason(kindOf(table, column));
    if (reason !== null) return `key column ${column} is ${reason}`;
  }
  return null;
}

/**
 * The table's name, unless the repository uses it itself (`repo.config`, `repo.ready`; `q`
 * names cached queries' keys): then `<table>_table`, numbered past the schema's other names.
 */
function entityName(table: string, taken: Set<string>): { name: string; note?: string } {
  const why = RESERVED_NAMES.has(table)
    ? `\`${table}\` is a repository method`
    : table === 'q'
      ? '`q` is the namespace of cached query keys'
      : null;
  if (why === null) return { name: table };
  let name = `${table}_table`;
  for (let n = 2; taken.has(name); n++) name = `${table}_table${n}`;
  taken.add(name);
  return { name, note: `table ${table}: ${why}` };
}

function draftEntity(
  table: SchemaTable,
  named: string,
  entity: { name: string; note?: string },
): DraftEntity {
  const notes: string[] = entity.note === undefined ? [] : [entity.note];
  const key = table.primaryKey.length === 1 ? (table.primaryKey[0] as string) : table.primaryKey;
  const keyColumns = new Set(table.primaryKey);
  const unique: string[] = [];
  for (const index of table.uniques) {
    const [column, ...rest] = index.columns;
    if (column === undefined) continue;
    if (rest.length > 0) {
      notes.push(
        `unique (${index.columns.join(', ')}) spans ${index.columns.length} columns: \`unique\` takes single columns`,
      );
      continue;
    }
    if (keyColumns.has(column) || unique.includes(column)) continue;
    const reason = IDENTIFIER.test(column)
      ? unkeyableReason(kindOf(table, column))
      : 'not a plain identifier';
    if (reason !== null) {
      notes.push(`unique ${column} left out: ${reason}`);
      continue;
    }
    unique.push(column);
  }
  const deny: string[] = [];
  for (const column of table.columns) {
    if (!SECRET_COLUMN.test(column.name) || !IDENTIFIER.test(column.name)) continue;
    if (keyColumns.has(column.name) || unique.includes(column.name)) {
      notes.push(
        `${column.name} looks secret but is a key or unique column: its values are cached and appear in Redis key names (drop the entity or the lookup if they must not)`,
      );
      continue;
    }
    deny.push(column.name);
  }
  return { name: entity.name, table: named, key, unique, deny, notes };
}

/**
 * A table's foreign-key columns: a cached query that pins one (`orders.user_id = 7`)
 * then depends on that value's rows only, and a write elsewhere leaves it cached.
 */
function draftInvalidateBy(table: SchemaTable, named: string): DraftInvalidateBy | null {
  const columns: string[] = [];
  const references = new Set<string>();
  for (const fk of table.foreignKeys) {
    for (const column of fk.columns) {
      if (columns.includes(column) || !IDENTIFIER.test(column)) continue;
      if (isUnsupported(kindOf(table, column))) continue;
      columns.push(column);
      references.add(fk.references);
    }
  }
  return columns.length === 0 ? null : { table: named, columns, references: [...references] };
}

function kindOf(table: SchemaTable, column: string) {
  return table.columns.find((c) => c.name === column)?.kind ?? 'opaque';
}
