import { sql } from 'kysely';
import type { CacheEngine } from '../cache/cache-engine.js';
import { InvalidWriteError } from '../errors/typed-errors.js';
import type { ChangeEvent, ChangeOp } from '../model/change-event.js';
import { emptyInvalidation, mapChange } from '../model/change-mapper.js';
import type { DynamicDb, DynamicTransaction } from '../model/dynamic-db.js';
import {
  type EntityModel,
  type KeyPart,
  keyParts,
  rowKey,
  stripDenied,
  whereKey,
} from '../model/entity-model.js';
import type { ChangeModel } from '../model/table-model.js';
import type { WriteReceipt } from './read-your-writes.js';
import type { PendingWriteOrder } from './write-behind-writes.js';

type AnyRow = Record<string, unknown>;

/**
 * The row changes a transaction made through the repository, mapped after commit with
 * the worker's own mapping (`mapChange`), so the writing process evicts exactly what the
 * worker will: entity keys and unique keys of the old and new rows, column tags of both,
 * the table tag.
 */
export class WriteSet {
  readonly #changes: ChangeEvent[] = [];
  readonly #orders = new Map<string, PendingWriteOrder>();
  readonly #newOrder:
    | ((model: EntityModel, trx: DynamicTransaction) => PendingWriteOrder)
    | undefined;

  /** `newOrder` orders writes of write-behind entities with their pending writes. */
  constructor(newOrder?: (model: EntityModel, trx: DynamicTransaction) => PendingWriteOrder) {
    this.#newOrder = newOrder;
  }

  /** The transaction's ordering of a write-behind entity's writes (one per entity). */
  order(model: EntityModel, trx: DynamicTransaction): PendingWriteOrder | undefined {
    if (!model.writeBehind || this.#newOrder === undefined) return undefined;
    let order = this.#orders.get(model.name);
    if (order === undefined) {
      order = this.#newOrder(model, trx);
      this.#orders.set(model.name, order);
    }
    return order;
  }

  /** Inside the transaction, after the caller's function: what must commit with it. */
  async beforeCommit(): Promise<void> {
    for (const order of this.#orders.values()) await order.beforeCommit();
  }

  /**
   * After a rollback. Best effort: a fence left behind names a transaction that did not
   * commit, and counts for nothing.
   */
  async rolledBack(): Promise<void> {
    await Promise.all([...this.#orders.values()].map((o) => o.abandoned().catch(() => {})));
  }

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
    // After the evictions: a reader between the two finds the fence, asks PostgreSQL, and
    // skips the spent writes; the row it then reads is the committed one. A failure here
    // leaves the fence, which readers and flushes resolve the same way.
    await Promise.all([...this.#orders.values()].map((o) => o.settled().catch(() => {})));
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

  /**
   * Inserts one row or several; returns them as inserted. Pending write-behind writes of
   * a row inserted here were for a row that did not exist: the insert supersedes them.
   */
  async insert(values: Insert | readonly Insert[]): Promise<Row[]> {
    const list = (Array.isArray(values) ? values : [values]) as AnyRow[];
    if (list.length === 0) return [];
    for (const row of list) this.#checkPatch(row, 'insert');
    const order = this.#order();
    await order?.begin();
    const rows = (await this.#table()
      .insertInto(this.#model.tableName)
      .values(list)
      .returningAll()
      .execute()) as AnyRow[];
    for (const row of rows) this.#writes.add(this.#model.table, 'I', null, row);
    await order?.claim(rows.map((row) => this.#rowKey(row)));
    return rows.map((r) => stripDenied(this.#model, { ...r }) as Row);
  }

  /**
   * Updates the row with this id; returns it as updated (empty when there is none). On a
   * write-behind entity, the row's pending writes are applied first, under this patch.
   */
  async update(id: Id, patch: Update): Promise<Row[]> {
    const parts = keyParts(this.#model, id);
    this.#checkPatch(patch as AnyRow, 'update');
    if (Object.keys(patch as AnyRow).length === 0)
      throw new InvalidWriteError(this.#model.name, 'an update needs at least one column');
    const order = this.#order();
    await order?.begin();
    // The old image first (locked), so keys and tags of the row's old values are evicted too.
    const old = (await whereKey(
      this.#table().selectFrom(this.#model.tableName).selectAll(),
      this.#model,
      parts,
    )
      .forUpdate()
      .executeTakeFirst()) as AnyRow | undefined;
    if (old === undefined) return [];
    const pending = order ? await this.#claim(order, parts, old) : undefined;
    const rows = (await whereKey(
      this.#table()
        .updateTable(this.#model.tableName)
        .set(pending ? { ...pending, ...(patch as AnyRow) } : (patch as AnyRow)),
      this.#model,
      parts,
    )
      .returningAll()
      .execute()) as AnyRow[];
    for (const row of rows) this.#writes.add(this.#model.table, 'U', old, row);
    return rows.map((r) => stripDenied(this.#model, { ...r }) as Row);
  }

  /**
   * Deletes the row with this id; returns it as it was (empty when there was none). On a
   * write-behind entity, the row's pending writes are dropped with it.
   */
  async delete(id: Id): Promise<Row[]> {
    const parts = keyParts(this.#model, id);
    const order = this.#order();
    await order?.begin();
    const rows = (await whereKey(
      this.#table().deleteFrom(this.#model.tableName),
      this.#model,
      parts,
    )
      .returningAll()
      .execute()) as AnyRow[];
    for (const row of rows) {
      this.#writes.add(this.#model.table, 'D', row, null);
      if (order) await this.#claim(order, parts, row);
    }
    return rows.map((r) => stripDenied(this.#model, { ...r }) as Row);
  }

  /**
   * Records a change made with plain Kysely inside the transaction (`tx.db`), so it is
   * evicted at commit like the helpers' own.
   */
  touched(op: 'I' | 'U' | 'D', oldRow: AnyRow | null, newRow: AnyRow | null): void {
    this.#writes.add(this.#model.table, op, oldRow, newRow);
  }

  #order(): PendingWriteOrder | undefined {
    return this.#writes.order(this.#model, this.#trx);
  }

  /**
   * Claims the pending writes of a locked row, queued under the id as given or as the
   * row's own key values spell it; returns what they still change.
   */
  #claim(order: PendingWriteOrder, parts: readonly KeyPart[], row: AnyRow) {
    return order.claim([...new Set([rowKey(this.#model, parts), this.#rowKey(row)])]);
  }

  #rowKey(row: AnyRow): string {
    return rowKey(
      this.#model,
      this.#model.keyColumns.map((c) => row[c] as KeyPart),
    );
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
