import { type RawBuilder, sql } from 'kysely';
import pg from 'pg';
import { MissingRowError } from '../errors/typed-errors.js';
import type { DynamicTransaction } from '../model/dynamic-db.js';
import type { EntityModel, KeyPart } from '../model/entity-model.js';
import { rowKey } from '../model/entity-model.js';
import { merge, type PendingWrite } from './write-behind-record.js';

type Row = Record<string, unknown>;

/** One row's writes to apply: its key values as queued, and the writes. */
export interface RowPatch<T> {
  readonly item: T;
  /** Key values in the order of the key columns, as text (`['01']`). */
  readonly parts: readonly string[];
  /** Merged in sequence order with the writes of every other item that names the same row. */
  readonly writes: readonly PendingWrite[];
}

/** What a batch did: the items written, with the row's cache key as reads build it; the items refused, with why. */
export interface UpdateOutcome<T> {
  readonly written: Array<{ item: T; rowKey: string }>;
  readonly refused: Array<{ item: T; error: unknown }>;
}

/**
 * Applies patches to existing rows in a few statements, whatever the batch's size:
 *
 * 1. The key values are compared as PostgreSQL compares them: one query ranks them by
 *    the key columns' types (`'01'` and `1` of an int key are one row), and the patches
 *    of one row are merged in the order given (the later wins per column). A key that is
 *    not a value of its column's type is refused.
 * 2. Rows with the same set of columns are updated by one `UPDATE ... FROM unnest(...)`
 *    (each column a text array, cast to the column's type: the same conversion a query
 *    parameter gets). An UPDATE never creates a row: a patch whose row does not exist is
 *    refused (`MissingRowError`), so a flush cannot bring back a deleted row.
 * 3. When a statement fails for something about the rows (any error but the server's:
 *    see `isServerError`), it is retried in halves under savepoints until the refused
 *    rows are alone; the others are written. The server's errors are thrown: the caller's
 *    transaction is lost and nothing is refused for them.
 *
 * The caller's transaction commits or rolls back the lot.
 */
export async function updateRows<T>(
  trx: DynamicTransaction,
  model: EntityModel,
  patches: ReadonlyArray<RowPatch<T>>,
): Promise<UpdateOutcome<T>> {
  const refused: Array<{ item: T; error: unknown }> = [];
  if (patches.length === 0) return { written: [], refused };
  const types = await columnTypes(trx, model);
  const rows = await groupByRow(trx, model, types, patches, refused);
  const bySet = new Map<string, PendingRow<T>[]>();
  for (const row of rows) {
    const columns = Object.keys(row.patch).sort().join(',');
    const list = bySet.get(columns);
    if (list) list.push(row);
    else bySet.set(columns, [row]);
  }
  const written: Array<{ item: T; rowKey: string }> = [];
  for (const group of bySet.values()) {
    const updated = new Map<PendingRow<T>, string>();
    const failed = new Map<PendingRow<T>, unknown>();
    await isolate(
      trx,
      group,
      async (list) => {
        for (const [row, key] of await updateGroup(trx, model, types, list)) updated.set(row, key);
      },
      (row, error) => failed.set(row, error),
    );
    for (const row of group) {
      const key = updated.get(row);
      const error = failed.has(row)
        ? failed.get(row)
        : key === undefined
          ? new MissingRowError(model.name, rowKey(model, row.parts))
          : undefined;
      for (const item of row.items)
        if (key !== undefined) written.push({ item, rowKey: key });
        else refused.push({ item, error });
    }
  }
  return { written, refused };
}

/**
 * The server's own trouble, not the rows': no SQLSTATE (the connection broke), a
 * connection exception (08), a serialization failure or deadlock (40), insufficient
 * resources (53), a cancel or shutdown (57), a system or internal error (58, XX), a
 * read-only transaction (25006: a standby after failover) or a lock timeout (55P03).
 * Everything else is about what was written, and stays with those rows.
 */
export function isServerError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return /^(08|40|53|57|58|XX)/.test(code) || code === '25006' || code === '55P03';
}

/** The writes of one row (several items when its key was queued under several spellings). */
interface PendingRow<T> {
  readonly items: T[];
  readonly parts: readonly string[];
  readonly writes: PendingWrite[];
  patch: Row;
}

/** Column -> type name without its modifier (a cast to `varchar(20)` would truncate; the assignment checks it). */
async function columnTypes(
  trx: DynamicTransaction,
  model: EntityModel,
): Promise<Map<string, string>> {
  const table = `${pg.escapeIdentifier(model.schema)}.${pg.escapeIdentifier(model.tableName)}`;
  const { rows } = await sql<{ name: string; type: string }>`
    SELECT attname AS name, format_type(atttypid, NULL) AS type FROM pg_attribute
     WHERE attrelid = to_regclass(${table}) AND attnum > 0 AND NOT attisdropped`.execute(trx);
  return new Map(rows.map((r) => [r.name, r.type]));
}

/** A column's type for a cast; text for a column the table lacks (the statement then says so). */
function typeOf(types: ReadonlyMap<string, string>, column: string): RawBuilder<unknown> {
  return sql.raw(types.get(column) ?? 'text');
}

async function groupByRow<T>(
  trx: DynamicTransaction,
  model: EntityModel,
  types: ReadonlyMap<string, string>,
  patches: ReadonlyArray<RowPatch<T>>,
  refused: Array<{ item: T; error: unknown }>,
): Promise<PendingRow<T>[]> {
  const ranks = new Map<RowPatch<T>, number>();
  const rank = async (list: readonly RowPatch<T>[]) => {
    const { rows } = await sql<{ rank: string }>`
        SELECT dense_rank() OVER (ORDER BY ${sql.join(
          model.keyColumns.map((column, i) => sql`x.${sql.ref(`k${i}`)}::${typeOf(types, column)}`),
        )}) AS rank
          FROM unnest(${sql.join(
            model.keyColumns.map((_, i) => sql`${list.map((p) => p.parts[i])}::text[]`),
          )}) WITH ORDINALITY AS x(${sql.join(model.keyColumns.map((_, i) => sql.ref(`k${i}`)))}, i)
         ORDER BY x.i`.execute(trx);
    ranks.clear();
    for (const [i, p] of list.entries()) ranks.set(p, Number(rows[i]?.rank));
  };
  const bad = new Set<RowPatch<T>>();
  await isolate(trx, patches, rank, (p, error) => {
    bad.add(p);
    refused.push({ item: p.item, error });
  });
  // Ranks compare only within one query: rank the good keys together again.
  if (bad.size > 0) {
    const good = patches.filter((p) => !bad.has(p));
    ranks.clear();
    if (good.length > 0) await isolate(trx, good, rank, () => {});
  }
  const rows = new Map<number, PendingRow<T>>();
  for (const p of patches) {
    const rank = ranks.get(p);
    if (rank === undefined) continue;
    const row = rows.get(rank);
    if (row === undefined)
      rows.set(rank, { items: [p.item], parts: p.parts, writes: [...p.writes], patch: {} });
    else {
      row.items.push(p.item);
      row.writes.push(...p.writes);
    }
  }
  for (const row of rows.values()) row.patch = merge(row.writes) ?? {};
  return [...rows.values()];
}

/** One UPDATE for rows with the same columns; returns the rows it found, with their cache keys. */
async function updateGroup<T>(
  trx: DynamicTransaction,
  model: EntityModel,
  types: ReadonlyMap<string, string>,
  rows: readonly PendingRow<T>[],
): Promise<Map<PendingRow<T>, string>> {
  const columns = Object.keys((rows[0] as PendingRow<T>).patch);
  const keys = model.keyColumns;
  const arrays = [
    ...keys.map((_, i) => rows.map((r) => r.parts[i] as string)),
    ...columns.map((c) => rows.map((r) => toText(r.patch[c]))),
  ];
  const names = [...keys.map((_, i) => `k${i}`), ...columns.map((_, i) => `v${i}`), 'n'];
  const { rows: found } = await sql<Row & { n: string }>`
    UPDATE ${sql.table(`${model.schema}.${model.tableName}`)} AS t
       SET ${sql.join(columns.map((c, i) => sql`${sql.ref(c)} = x.${sql.ref(`v${i}`)}::${typeOf(types, c)}`))}
      FROM unnest(${sql.join(arrays.map((a) => sql`${a}::text[]`))}) WITH ORDINALITY
           AS x(${sql.join(names.map((n) => sql.ref(n)))})
     WHERE ${sql.join(
       keys.map((k, i) => sql`t.${sql.ref(k)} = x.${sql.ref(`k${i}`)}::${typeOf(types, k)}`),
       sql` AND `,
     )}
    RETURNING x.n, ${sql.join(keys.map((k) => sql`t.${sql.ref(k)}`))}`.execute(trx);
  const out = new Map<PendingRow<T>, string>();
  for (const row of found) {
    const pending = rows[Number(row.n) - 1] as PendingRow<T>;
    out.set(
      pending,
      rowKey(
        model,
        keys.map((k) => row[k] as KeyPart),
      ),
    );
  }
  return out;
}

/**
 * A value as the text PostgreSQL parses for its column: what `pg` sends for a query
 * parameter (Dates in its time-zone convention, arrays as array literals, objects as
 * JSON), with Buffers as bytea hex.
 */
function toText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  const prepared = prepareValue(value);
  if (prepared === null || prepared === undefined) return null;
  return Buffer.isBuffer(prepared) ? `\\x${prepared.toString('hex')}` : String(prepared);
}

const prepareValue = (pg as unknown as { utils: { prepareValue(value: unknown): unknown } }).utils
  .prepareValue;

/**
 * Runs `run` on all the items under a savepoint; when it fails for something about the
 * rows, on each half, down to single items, which `refuse` gets with their error.
 * The server's errors are thrown.
 */
async function isolate<T>(
  trx: DynamicTransaction,
  items: readonly T[],
  run: (items: readonly T[]) => Promise<void>,
  refuse: (item: T, error: unknown) => void,
): Promise<void> {
  await sql`SAVEPOINT walcache_flush`.execute(trx);
  try {
    await run(items);
    await sql`RELEASE SAVEPOINT walcache_flush`.execute(trx);
    return;
  } catch (error) {
    if (isServerError(error)) throw error;
    await sql`ROLLBACK TO SAVEPOINT walcache_flush`.execute(trx);
    await sql`RELEASE SAVEPOINT walcache_flush`.execute(trx);
    if (items.length === 1) {
      refuse(items[0] as T, error);
      return;
    }
  }
  const half = Math.ceil(items.length / 2);
  await isolate(trx, items.slice(0, half), run, refuse);
  await isolate(trx, items.slice(half), run, refuse);
}
