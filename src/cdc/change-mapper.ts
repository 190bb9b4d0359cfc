import { canonicalText } from '../keys/canonical.js';
import { columnTag, entityKey, tableResetTag, tableTag, uniqueKey } from '../keys/keys.js';
import type { ChangeEvent, DecodedTransaction } from './change-event.js';
import type { ChangeModel, TableModel } from './table-model.js';

/**
 * Prefix of the transactional logical messages `walcache setup`'s event trigger emits
 * after ALTER TABLE; the content is the altered table's `schema.table`.
 */
export const DDL_MESSAGE_PREFIX = 'walcache-ddl';

/** What one or more transactions invalidate. */
export interface Invalidation {
  readonly keys: Set<string>;
  readonly tags: Set<string>;
  /** `schema.table` of changes the config does not know (counted, then skipped). */
  readonly unknownTables: Map<string, number>;
  /** Changes that could not be mapped; their tables' reset tags were bumped instead. */
  readonly problems: Array<{ table: string; reason: string }>;
  /**
   * The ids of the committed transactions that changed each key (0: unknown), so the
   * key's tombstone can fence fills that saw them (docs/consistency.md). A key absent
   * here has no known transaction.
   */
  readonly xids: Map<string, number[]>;
  /** The same for tags: a bumped version names the commits it stands for. */
  readonly tagXids: Map<string, number[]>;
}

export function emptyInvalidation(): Invalidation {
  return {
    keys: new Set(),
    tags: new Set(),
    unknownTables: new Map(),
    problems: [],
    xids: new Map(),
    tagXids: new Map(),
  };
}

/** Adds `key`, changed by transaction `xid` (0: unknown). */
function addKey(into: Invalidation, key: string, xid: number): void {
  into.keys.add(key);
  noteXid(into.xids, key, xid);
}

/** Adds `tag`, bumped for transaction `xid` (0: unknown). */
function addTag(into: Invalidation, tag: string, xid: number): void {
  into.tags.add(tag);
  noteXid(into.tagXids, tag, xid);
}

function noteXid(map: Map<string, number[]>, name: string, xid: number): void {
  const list = map.get(name);
  if (list === undefined) map.set(name, [xid]);
  else if (list[list.length - 1] !== xid && list.length <= 16) list.push(xid);
}

/**
 * Adds what a committed transaction invalidates: for each change, the entity keys and
 * unique keys of the old and the new row, the table tag, and the column tags of the old
 * and new values. A change that cannot be mapped precisely (TRUNCATE, a transaction
 * collapsed past the row cap, a row missing its key) falls back to the table's reset
 * tag, which every entry of that table depends on: coarser, never wrong.
 */
export function mapTransaction(
  tx: DecodedTransaction,
  model: ChangeModel,
  into: Invalidation = emptyInvalidation(),
): Invalidation {
  for (const change of tx.changes) {
    try {
      mapChange(change, model, into, tx.xid);
    } catch (error) {
      // A value no key can be built from (a config check would have refused its column:
      // the catalog changed since). The stream must not stop on it: reset the table.
      const table = `${change.schema}.${change.table}`;
      if (!model.has(table)) continue;
      addTag(into, tableTag(table), tx.xid);
      addTag(into, tableResetTag(table), tx.xid);
      into.problems.push({ table, reason: `unmappable change: ${(error as Error).message}` });
    }
  }
  // ALTER TABLE may rewrite every value with no row change in the WAL: reset the table.
  for (const message of tx.messages) {
    if (message.prefix !== DDL_MESSAGE_PREFIX || !model.has(message.content)) continue;
    addTag(into, tableTag(message.content), tx.xid);
    addTag(into, tableResetTag(message.content), tx.xid);
  }
  for (const table of tx.collapsedTables) {
    const tableModel = model.get(table);
    if (!tableModel) {
      into.unknownTables.set(table, (into.unknownTables.get(table) ?? 0) + 1);
      continue;
    }
    addTag(into, tableTag(table), tx.xid);
    addTag(into, tableResetTag(table), tx.xid);
  }
  return into;
}

export function mapChange(
  change: ChangeEvent,
  model: ChangeModel,
  into: Invalidation,
  /** The transaction's id; 0 when unknown (a write not yet committed, a commit without one). */
  xid = 0,
): void {
  const table = `${change.schema}.${change.table}`;
  const tableModel = model.get(table);
  if (!tableModel) {
    into.unknownTables.set(table, (into.unknownTables.get(table) ?? 0) + 1);
    return;
  }
  addTag(into, tableTag(table), xid);
  if (change.op === 'T') {
    addTag(into, tableResetTag(table), xid);
    return;
  }
  if (change.op !== 'I' && tableModel.oldNeeded.size > 0) {
    // An old image without a value the mapping needs (REPLICA IDENTITY reset to DEFAULT by
    // a migration while the worker runs): the old row's keys and tags are unknown.
    const old = change.oldRow;
    for (const column of tableModel.oldNeeded) {
      if (old === null || old[column] === undefined) {
        addTag(into, tableResetTag(table), xid);
        into.problems.push({
          table,
          reason: `${change.op === 'U' ? 'UPDATE' : 'DELETE'} without the old value of \`${column}\` (is REPLICA IDENTITY still FULL?)`,
        });
        break;
      }
    }
  }
  for (const row of [change.oldRow, change.newRow]) {
    if (row === null) continue;
    const missing = addRow(row, tableModel, into, change, xid);
    if (missing !== null) {
      addTag(into, tableResetTag(table), xid);
      into.problems.push({ table, reason: missing });
    }
  }
}

/** Returns null, or why this row image could not be mapped completely. */
function addRow(
  row: Readonly<Record<string, unknown>>,
  model: TableModel,
  into: Invalidation,
  change: ChangeEvent,
  xid: number,
): string | null {
  let problem: string | null = null;
  const isOld = row === change.oldRow;
  // The value as readers name it: canonical text for the column's type. A value with no
  // canonical text is a problem: the caller falls back to the table's reset tag.
  const text = (column: string, value: unknown): string | null => {
    const kind = model.kinds.get(column);
    if (kind === undefined) return value as string;
    try {
      return canonicalText(kind, value);
    } catch (error) {
      problem = `${model.table}.${column}: ${(error as Error).message}`;
      return null;
    }
  };
  for (const entity of model.entities) {
    const values: unknown[] = [];
    for (const column of entity.keyColumns) {
      const value = row[column];
      if (value === undefined || value === null) {
        // An UPDATE's old image under DEFAULT identity may be absent or partial: the new
        // image carries the key then (the key did not change, or it would be there).
        if (isOld && change.op === 'U') break;
        problem = `${entity.name}: key column \`${column}\` missing from the ${isOld ? 'old' : 'new'} row`;
        break;
      }
      const canonical = text(column, value);
      if (canonical === null) break;
      values.push(canonical);
    }
    if (values.length === entity.keyColumns.length)
      addKey(into, entityKey(entity.name, values), xid);
    for (const column of entity.uniqueColumns)
      addIfPresent(row, column, text, (v) => addKey(into, uniqueKey(entity.name, column, v), xid));
  }
  for (const column of model.tagColumns)
    addIfPresent(row, column, text, (v) => addTag(into, columnTag(model.table, column, v), xid));
  return problem;
}

function addIfPresent(
  row: Readonly<Record<string, unknown>>,
  column: string,
  text: (column: string, value: unknown) => string | null,
  add: (value: unknown) => void,
): void {
  const value = row[column];
  // An absent value is either an unchanged TOAST column (so the other image has it) or an
  // old image without it (refused at start: REPLICA IDENTITY FULL is required then).
  if (value === undefined || value === null) return;
  const canonical = text(column, value);
  if (canonical !== null) add(canonical);
}
