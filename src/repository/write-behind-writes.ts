import { sql } from 'kysely';
import type { DynamicTransaction } from '../model/dynamic-db.js';
import type { EntityModel } from '../model/entity-model.js';
import { lockEntity, markOrdered } from '../write-behind/write-behind-order.js';
import {
  fenceStatuses,
  merge,
  type PendingRecord,
  type PendingWrite,
  resolveRecord,
} from '../write-behind/write-behind-record.js';
import type { Settlement, WriteBehindStore } from '../write-behind/write-behind-store.js';

type Row = Record<string, unknown>;

/**
 * Orders one repository transaction's writes of a write-behind entity with the rows'
 * pending writes, which were accepted before it and must not be applied after it:
 *
 * 1. Before its first write of the entity, the transaction shares the entity's advisory
 *    lock (a flush takes it exclusively, so none runs until this one ends).
 * 2. With the row locked (`claim` runs after the statement that locks it), the row's
 *    pending writes are read and fenced: `x:<xid>` in the record says this transaction
 *    applied or superseded everything up to the last one read. An update applies them
 *    first, under its own patch; a delete or an insert supersedes them (they were for the
 *    row that is gone, or for one that did not exist).
 * 3. Before the commit, a `walcache.wb` message names the rows (the worker does not
 *    report them as writes made outside walcache).
 * 4. After the commit, the writes read and the fence are cleared (`settled`); after a
 *    rollback only the fence (`abandoned`). Neither is needed for correctness: a process
 *    killed in between leaves the fence, and readers and flushes ask PostgreSQL whether
 *    its transaction committed. Writes accepted meanwhile carry higher sequence numbers
 *    and stay pending, newer than this transaction.
 */
export class PendingWriteOrder {
  readonly #model: EntityModel;
  readonly #trx: DynamicTransaction;
  readonly #store: WriteBehindStore;
  readonly #prefix: string;
  #xid: Promise<string> | undefined;
  #takenAt = 0;
  readonly #rows = new Set<string>();
  readonly #settlements = new Map<string, { seqs: Set<number>; fences: Set<string> }>();

  constructor(
    model: EntityModel,
    trx: DynamicTransaction,
    store: WriteBehindStore,
    prefix: string,
  ) {
    this.#model = model;
    this.#trx = trx;
    this.#store = store;
    this.#prefix = prefix;
  }

  /** Shares the entity's lock; resolves the transaction's id. Call before the first write. */
  begin(): Promise<string> {
    this.#xid ??= (async () => {
      await lockEntity(this.#trx, this.#prefix, this.#model.name, 'write');
      const { rows } = await sql<{ xid: string }>`SELECT pg_current_xact_id()::text AS xid`.execute(
        this.#trx,
      );
      return (rows[0] as { xid: string }).xid;
    })();
    return this.#xid;
  }

  /**
   * Takes over the pending writes of rows this transaction has locked and is writing
   * (`keys`: a row under every spelling it may have been queued with; the rows an insert
   * made); returns the patch they still make, merged in sequence order (undefined: none),
   * for an update to apply first.
   */
  async claim(keys: readonly string[]): Promise<Row | undefined> {
    const xid = await this.begin();
    this.#takenAt ||= Date.now();
    for (const key of keys) this.#rows.add(key);
    const records = (await this.#store.read(this.#model.name, keys)).filter(
      (r): r is PendingRecord => r !== undefined,
    );
    if (records.length === 0) return undefined;
    const statuses = await fenceStatuses(this.#trx, records);
    const writes: PendingWrite[] = [];
    await Promise.all(
      records.map(async (record) => {
        const resolved = resolveRecord(record, statuses, { inProgress: 'show', ownXid: xid });
        writes.push(...resolved.writes);
        const last = record.writes.at(-1)?.seq ?? 0;
        await this.#store.fence(this.#model.name, record.key, xid, last);
        let settlement = this.#settlements.get(record.key);
        if (settlement === undefined) {
          settlement = { seqs: new Set(), fences: new Set([xid]) };
          this.#settlements.set(record.key, settlement);
        }
        for (const write of record.writes) settlement.seqs.add(write.seq);
        for (const fence of resolved.closed) settlement.fences.add(fence);
      }),
    );
    return merge(writes);
  }

  /** Inside the transaction, last: tells the worker which rows walcache wrote in order. */
  async beforeCommit(): Promise<void> {
    if (this.#rows.size > 0)
      await markOrdered(this.#trx, { entity: this.#model.name, keys: [...this.#rows] });
  }

  /** After the commit: the writes it applied or superseded leave the record. */
  settled(): Promise<void> {
    return this.#store.settle(
      this.#model.name,
      [...this.#settlements].map(
        ([key, s]): Settlement => ({ key, seqs: [...s.seqs], fences: [...s.fences] }),
      ),
      this.#takenAt,
    );
  }

  /** After a rollback: only its fences go; the writes stay pending. */
  abandoned(): Promise<void> {
    return this.#xid === undefined
      ? Promise.resolve()
      : this.#xid.then((xid) =>
          this.#store.settle(
            this.#model.name,
            [...this.#settlements.keys()].map((key) => ({ key, fences: [xid] })),
          ),
        );
  }
}
