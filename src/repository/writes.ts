import { sql } from 'kysely';
import type { CacheEngine } from '../cache/engine.js';
import type { ChangeEvent, ChangeOp } from '../cdc/change-event.js';
import { emptyInvalidation, mapChange } from '../cdc/change-mapper.js';
import type { ChangeModel } from '../cdc/table-model.js';
import { InvalidWriteError } from '../errors/errors.js';
import { type EntityModel, keyParts, stripDenied, whereKey } from './entity-model.js';
import type { WriteReceipt } from './read-your-writes.js';
import type { DynamicDb, DynamicTransaction } from './types.js';

type AnyRow = Record<string, unknown>;

/**
 * The row changes a transaction made through the repository, mapped after commit with
 * the worker's own mapping (`mapChange`), so the writing process evicts exactly what the
 * worker will: entity keys and unique keys of the old and new rows, column tags of both,
 * the table tag.
 */
export class WriteSet {
  readonly #changes: ChangeEvent[] = [];

  add(table: string, op: ChangeOp, oldRow: AnyRow | null, newRow: AnyRow | null): void {
    const dot = table.indexOf('.');
    this.#changes.push({
      schema: table.slice(0, dot),
      table: table.slice(dot + 1),
      op,
      oldRow,
      newRow,
      oldRowIsFull: oldRow !== null,
      unchangedToast: [],
      keyColumns: null,
    });
  }

  get size(): number {
    return this.#changes.length;
  }

  /**
   * Evicts in this process and in Redis (tombstones, tag bumps, a bus message), then
   * reads the WAL position the receipt carries. A failed eviction is reported, not
   * thrown: the write is committed, and the worker invalidates from the log anyway.
   */
  async commit(engine: CacheEngine, model: ChangeModel, db: DynamicDb): Promise<WriteReceipt> {
    const invalidation = emptyInvalidation();
    for (const change of this.#changes) mapChange(change, model, invalidation);
    const keys = [...invalidation.keys];
    const tags = [...invalidation.tags];
    const [, position] = await Promise.all([
      Promise.all([
        keys.length > 0 ? engine.delete(keys) : undefined,
        tags.length > 0 ? engine.invalidateTags(tags) : undefined,
      ]).catch((error: unknown) =>
        engine.events.emit('evict-failed', keys.length, tags.length, error),
      ),
      sql<{ lsn: string }>`SELECT pg_current_wal_lsn()::text AS lsn`.execute(db),
    ]);
    return { lsn: (position.rows[0] as { lsn: string }).lsn, keys, tags };
  }
}

/**
 * An entity's writes inside a repository transaction. Each returns the rows as cached
 * (denied columns removed) and records the old and new images for eviction at commit.
 */
export class EntityWriter<Row, Id, Insert, Update> {
  readonly #model: EntityModel;
  readonly #trx: DynamicTransaction;
  readonly #writes: WriteSet;

  constructor(model: EntityModel, trx: DynamicTransaction, writes: WriteSet) {
    this.#model = model;
    this.#trx = trx;
    this.#writes = writes;
  }

  /** Inserts one row or several; returns them as inserted. */
  async insert(values: Insert | readonly Insert[]): Promise<Row[]> {
    const list = (Array.isArray(values) ? values : [values]) as AnyRow[];
    if (list.length === 0) return [];
    for (const row of list) this.#checkPatch(row, 'insert');
    const rows = (await this.#table()
      .insertInto(this.#model.tableName)
      .values(list)
      .returningAll()
      .execute()) as AnyRow[];
    for (const row of rows) this.#writes.add(this.#model.table, 'I', null, row);
    return rows.map((r) => stripDenied(this.#model, { ...r }) as Row);
  }

  /** Updates the row with this id; returns it as updated (empty when there is none). */
  async update(id: Id, patch: Update): Promise<Row[]> {
    const parts = keyParts(this.#model, id);
    this.#checkPatch(patch as AnyRow, 'update');
    if (Object.keys(patch as AnyRow).length === 0)
      throw new InvalidWriteError(this.#model.name, 'an update needs at least one column');
    // The old image first (locked), so keys and tags of the row's old values are evicted too.
    const old = (await whereKey(
      this.#table().selectFrom(this.#model.tableName).selectAll(),
      this.#model,
      parts,
    )
      .forUpdate()
      .executeTakeFirst()) as AnyRow | undefined;
    if (old === undefined) return [];
    const rows = (await whereKey(
      this.#table()
        .updateTable(this.#model.tableName)
        .set(patch as AnyRow),
      this.#model,
      parts,
    )
      .returningAll()
      .execute()) as AnyRow[];
    for (const row of rows) this.#writes.add(this.#model.table, 'U', old, row);
    return rows.map((r) => stripDenied(this.#model, { ...r }) as Row);
  }

  /** Deletes the row with this id; returns it as it was (empty when there was none). */
  async delete(id: Id): Promise<Row[]> {
    const parts = keyParts(this.#model, id);
    const rows = (await whereKey(
      this.#table().deleteFrom(this.#model.tableName),
      this.#model,
      parts,
    )
      .returningAll()
      .execute()) as AnyRow[];
    for (const row of rows) this.#writes.add(this.#model.table, 'D', row, null);
    return rows.map((r) => stripDenied(this.#model, { ...r }) as Row);
  }

  /**
   * Records a change made with plain Kysely inside the transaction (`tx.db`), so it is
   * evicted at commit like the helpers' own.
   */
  touched(op: 'I' | 'U' | 'D', oldRow: AnyRow | null, newRow: AnyRow | null): void {
    this.#writes.add(this.#model.table, op, oldRow, newRow);
  }

  #table(): DynamicTransaction {
    return this.#trx.withSchema(this.#model.schema) as DynamicTransaction;
  }

  #checkPatch(row: AnyRow, what: string): void {
    if (row === null || typeof row !== 'object' || Array.isArray(row))
      throw new InvalidWriteError(this.#model.name, `an ${what} takes an object of columns`, {
        row,
      });
  }
}
