/**
 * The decoder-neutral shape of what the invalidation worker consumes. Both decoders
 * (wal2json format 2, pgoutput) produce these, so the mapping to keys and tags is written
 * once and cannot drift between plugins.
 */

/** Insert, update, delete, truncate. */
export type ChangeOp = 'I' | 'U' | 'D' | 'T';

/** One row change (or, for `T`, one truncated table) of a committed transaction. */
export interface ChangeEvent {
  readonly schema: string;
  readonly table: string;
  readonly op: ChangeOp;
  /**
   * New row image (I, U), values converted as a `pg` client would return them (int8 and
   * numeric as strings, int4 as number, jsonb parsed...). Columns left out by TOAST
   * (unchanged) are absent; see `unchangedToast`. null for D and T.
   */
  readonly newRow: Readonly<Record<string, unknown>> | null;
  /**
   * Old image (U, D): the replica identity columns (the old key), or the whole old row under
   * REPLICA IDENTITY FULL. null when the server sent none (pgoutput: an UPDATE not touching
   * the key under DEFAULT identity; any table with identity NOTHING).
   */
  readonly oldRow: Readonly<Record<string, unknown>> | null;
  /**
   * true when `oldRow` holds the full old row (REPLICA IDENTITY FULL) rather than only key
   * columns, as far as the plugin lets us know; else false.
   */
  readonly oldRowIsFull: boolean;
  /** Columns whose value did not change and was not sent (out-of-line TOAST). */
  readonly unchangedToast: readonly string[];
  /** Primary-key column names when the plugin reports them, else null. */
  readonly keyColumns: readonly string[] | null;
}

/** A logical decoding message (`pg_logical_emit_message`). */
export interface LogicalMessage {
  readonly prefix: string;
  /** Content decoded as UTF-8. */
  readonly content: string;
  readonly transactional: boolean;
  /** LSN of the message record when the plugin reports it. */
  readonly lsn: string | null;
}

/** One committed transaction, ready to be turned into evictions and acknowledged. */
export interface DecodedTransaction {
  /** Transaction id; 0 when the commit arrived without a begin and carried no xid. */
  readonly xid: number;
  /** End LSN of the commit record, 'X/Y': the position to acknowledge once applied. */
  readonly commitLsn: string;
  readonly commitTime: Date;
  /** The first `rowCap` changes, in commit order. */
  readonly changes: readonly ChangeEvent[];
  /**
   * 'schema.table' of every change past the row cap (those changes were not kept): bump
   * the table's tag instead of evicting keys. Empty when the cap was not reached.
   */
  readonly collapsedTables: readonly string[];
  /** Every change the transaction carried, kept or collapsed. */
  readonly rowCount: number;
  /** Transactional messages, in order (the worker's heartbeats among them). */
  readonly messages: readonly LogicalMessage[];
}

/** What a decoder makes of one plugin message. */
export type DecodedRecord =
  | {
      readonly kind: 'begin';
      readonly xid: number;
      /** The transaction's final LSN (start of its commit record), when reported. */
      readonly lsn: string | null;
      readonly commitTime: Date | null;
    }
  | { readonly kind: 'change'; readonly event: ChangeEvent }
  | {
      readonly kind: 'commit';
      /** null when the plugin does not repeat it at commit (pgoutput). */
      readonly xid: number | null;
      /** End LSN of the commit record: what to acknowledge. */
      readonly lsn: string;
      readonly commitTime: Date;
    }
  | { readonly kind: 'message'; readonly message: LogicalMessage }
  | { readonly kind: 'skip'; readonly reason: string };
