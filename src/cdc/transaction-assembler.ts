/**
 * Groups decoded records into committed transactions, so evictions are applied at commit
 * (never before: an eviction ahead of the commit lets a reader refill the old row) and the
 * commit LSN is acknowledged once, after them.
 */
import type {
  ChangeEvent,
  DecodedRecord,
  DecodedTransaction,
  LogicalMessage,
} from '../model/change-event.js';

/** Options of {@link TransactionAssembler}. */
export interface TransactionAssemblerOptions {
  /** ChangeEvents kept per transaction; past it only the tables touched are kept. */
  readonly rowCap: number;
  /**
   * Receives non-transactional messages (`pg_logical_emit_message(false, ...)`). They come
   * outside any begin/commit, carry nothing to acknowledge, and are never part of a
   * transaction. Without a handler they are only counted.
   */
  readonly onMessage?: (message: LogicalMessage) => void;
}

/** Counters for metrics; every oddity of the stream shows up here rather than as a crash. */
export interface AssemblerStats {
  transactions: number;
  /** Transactions that went past the row cap. */
  collapsedTransactions: number;
  /** Begins that arrived while a transaction was still open (its records were carried on). */
  unterminatedTransactions: number;
  /** Commits that arrived with no begin before them. */
  commitsWithoutBegin: number;
  /** Changes or transactional messages that arrived with no transaction open. */
  recordsOutsideTransaction: number;
  nonTransactionalMessages: number;
  /** Transactional messages past the row cap (not kept). */
  droppedMessages: number;
  skipped: number;
}

interface OpenTransaction {
  xid: number;
  /** Opened by a change or message, not by a begin. */
  implicit: boolean;
  changes: ChangeEvent[];
  collapsed: Set<string>;
  rowCount: number;
  messages: LogicalMessage[];
}

/**
 * Buffers the records of one transaction between begin and commit.
 *
 * Odd streams never throw and never lose a change:
 * - a change or transactional message with no transaction open opens an implicit one;
 * - a begin while a transaction is open carries the open one's records into the new one
 *   (applying them late, at the next commit, is safe; dropping them is not);
 * - a commit with no begin returns what was buffered (possibly nothing) with the commit's
 *   xid, or 0 when the plugin does not repeat it, so the worker can still acknowledge it.
 * After a reconnect, call {@link TransactionAssembler.reset}: the server resends every
 * unacknowledged transaction whole.
 */
export class TransactionAssembler {
  readonly stats: AssemblerStats = {
    transactions: 0,
    collapsedTransactions: 0,
    unterminatedTransactions: 0,
    commitsWithoutBegin: 0,
    recordsOutsideTransaction: 0,
    nonTransactionalMessages: 0,
    droppedMessages: 0,
    skipped: 0,
  };
  readonly #rowCap: number;
  readonly #onMessage: ((message: LogicalMessage) => void) | undefined;
  #open: OpenTransaction | null = null;

  constructor(options: TransactionAssemblerOptions) {
    if (!Number.isSafeInteger(options.rowCap) || options.rowCap < 1) {
      throw new RangeError(`rowCap must be a positive integer (got ${String(options.rowCap)})`);
    }
    this.#rowCap = options.rowCap;
    this.#onMessage = options.onMessage;
  }

  /** true between a begin (or a stray change) and its commit. */
  get inTransaction(): boolean {
    return this.#open !== null;
  }

  /** Drops a partly received transaction (after a reconnect the server sends it again). */
  reset(): void {
    this.#open = null;
  }

  /**
   * Feeds one record.
   * @returns the whole transaction at its commit record, else null.
   */
  push(record: DecodedRecord): DecodedTransaction | null {
    switch (record.kind) {
      case 'begin': {
        const previous = this.#open;
        if (previous !== null && !previous.implicit) this.stats.unterminatedTransactions++;
        this.#open = previous ?? newTransaction(record.xid, false);
        this.#open.xid = record.xid;
        this.#open.implicit = false;
        return null;
      }
      case 'change': {
        const tx = this.#current();
        tx.rowCount++;
        if (tx.changes.length < this.#rowCap) tx.changes.push(record.event);
        else tx.collapsed.add(`${record.event.schema}.${record.event.table}`);
        return null;
      }
      case 'message': {
        if (!record.message.transactional) {
          this.stats.nonTransactionalMessages++;
          this.#onMessage?.(record.message);
          return null;
        }
        const tx = this.#current();
        if (tx.messages.length < this.#rowCap) tx.messages.push(record.message);
        else this.stats.droppedMessages++;
        return null;
      }
      case 'commit': {
        const tx = this.#open;
        this.#open = null;
        if (tx === null || tx.implicit) this.stats.commitsWithoutBegin++;
        if (tx !== null && tx.collapsed.size > 0) this.stats.collapsedTransactions++;
        this.stats.transactions++;
        return {
          xid: tx === null || tx.implicit ? (record.xid ?? 0) : tx.xid,
          commitLsn: record.lsn,
          commitTime: record.commitTime,
          changes: tx?.changes ?? [],
          collapsedTables: tx === null ? [] : [...tx.collapsed],
          rowCount: tx?.rowCount ?? 0,
          messages: tx?.messages ?? [],
        };
      }
      default:
        this.stats.skipped++;
        return null;
    }
  }

  #current(): OpenTransaction {
    if (this.#open === null) {
      this.stats.recordsOutsideTransaction++;
      this.#open = newTransaction(0, true);
    }
    return this.#open;
  }
}

function newTransaction(xid: number, implicit: boolean): OpenTransaction {
  return { xid, implicit, changes: [], collapsed: new Set(), rowCount: 0, messages: [] };
}
