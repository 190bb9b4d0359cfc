import { canonicalText } from '../keys/canonical.js';
import {
  columnTag,
  encodeKeyPart,
  keyValue,
  tableResetTag,
  tableTag,
  uniqueKey,
} from '../keys/redis-keys.js';
import type { ChangeEvent, DecodedTransaction } from './change-event.js';
import { type ChangeModel, findTable, type TableModel } from './table-model.js';

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
  const tableModel = findTable(model, change.schema, change.table);
  if (!tableModel) {
    const table = `${change.schema}.${change.table}`;
    into.unknownTables.set(table, (into.unknownTables.get(table) ?? 0) + 1);
    return;
  }
  const table = tableModel.table;
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
  // Per row, per key: no closure, no intermediate array (this runs for every change the
  // worker maps; see bench:cdc).
  let problem: string | null = null;
  const isOld = row === change.oldRow;
  for (const entity of model.entities) {
    const columns = entity.keyColumns;
    let key = encodeKeyPart(entity.name);
    let complete = true;
    for (const column of columns) {
      const value = row[column];
      if (value === undefined || value === null) {
        // An UPDATE's old image under DEFAULT identity may be absent or partial: the new
        // image carries the key then (the key did not change, or it would be there).
        if (!(isOld && change.op === 'U'))
          problem = `${entity.name}: key column \`${column}\` missing from the ${isOld ? 'old' : 'new'} row`;
        complete = false;
        break;
      }
      const canonical = textOf(model, column, value);
      if (canonical instanceof Error) {
        problem = `${model.table}.${column}: ${canonical.message}`;
        complete = false;
        break;
      }
      key += `:${encodeKeyPart(keyValue(canonical))}`;
    }
    if (complete) addKey(into, key, xid);
    for (const column of entity.uniqueColumns) {
      const canonical = presentText(row, column, model);
      if (canonical instanceof Error) problem = `${model.table}.${column}: ${canonical.message}`;
      else if (canonical !== undefined)
        addKey(into, uniqueKey(entity.name, column, canonical), xid);
    }
  }
  for (const column of model.tagColumns) {
    const canonical = presentText(row, column, model);
    if (canonical instanceof Error) problem = `${model.table}.${column}: ${canonical.message}`;
    else if (canonical !== undefined) addTag(into, columnTag(model.table, column, canonical), xid);
  }
  return problem;
}

/**
 * The value as readers name it: canonical text for the column's type (the value as it
 * came when the catalog was not read). An Error when it has no canonical text: the
 * caller falls back to the table's reset tag.
 */
function textOf(model: TableModel, column: string, value: unknown): unknown {
  const kind = model.kinds.get(column);
  if (kind === undefined) return value;
  try {
    return canonicalText(kind, value);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/**
 * {@link textOf} of a column of the row, or undefined when it is absent: either an
 * unchanged TOAST column (so the other image has it) or an old image without it (refused
 * at start: REPLICA IDENTITY FULL is required then).
 */
function presentText(
  row: Readonly<Record<string, unknown>>,
  column: string,
  model: TableModel,
): unknown {
  const value = row[column];
  if (value === undefined || value === null) return undefined;
  return textOf(model, column, value);
}
