import { sql } from 'kysely';
import type { DynamicDb, DynamicTransaction } from '../model/dynamic-db.js';

type Row = Record<string, unknown>;

/** One accepted write: its sequence number (per entity, increasing) and its patch. */
export interface PendingWrite {
  readonly seq: number;
  readonly patch: Row;
}

/**
 * A repository transaction (`xid`, a PostgreSQL `xid8`) applied or superseded every write
 * up to `seq` of the record inside it. It counts only once that transaction committed.
 */
export interface Fence {
  readonly xid: string;
  readonly seq: number;
}

/** One row's pending state, as read from Redis. */
export interface PendingRecord {
  /** The row's cache key (`users:42`), as the writes named it. */
  readonly key: string;
  /** In sequence order. */
  readonly writes: readonly PendingWrite[];
  readonly fences: readonly Fence[];
  /** Failed flushes counted toward dead-lettering. */
  readonly attempts: number;
  /** When the oldest write still pending arrived, ms (an upper bound on its wait). */
  readonly since: number;
}

/** `pg_xact_status` of a fence's transaction; null when PostgreSQL no longer knows it. */
export type FenceStatus = 'committed' | 'aborted' | 'in progress' | null;

/** What a record still asks of the database, once its fences are weighed. */
export interface Resolved {
  /** The writes still to apply, in sequence order. */
  readonly writes: readonly PendingWrite[];
  /** They, merged (undefined: none). */
  readonly patch: Row | undefined;
  /** Their sequence numbers. */
  readonly seqs: readonly number[];
  /** Writes a committed fence covers: already in the database, or overwritten by a later write. */
  readonly spent: readonly number[];
  /** Fences whose transaction is over (committed, aborted or forgotten): nothing more to say. */
  readonly closed: readonly string[];
}

/**
 * Weighs a record's fences. A committed fence spends the writes up to its sequence
 * number; an aborted one, and one PostgreSQL no longer remembers (its transaction is
 * older than the commit log kept: the writes are kept, re-applied rather than lost), is
 * closed. A fence still in progress is a repository transaction that has not committed:
 * `inProgress: 'show'` (a read) treats its writes as pending, `'hold'` (a flush) leaves
 * them alone for now. `ownXid` is the caller's own transaction, whose fences count as
 * committed inside it.
 */
export function resolveRecord(
  record: PendingRecord,
  statuses: ReadonlyMap<string, FenceStatus>,
  options: { inProgress: 'show' | 'hold'; ownXid?: string },
): Resolved {
  let spentUpTo = 0;
  let heldUpTo = 0;
  const closed: string[] = [];
  for (const fence of record.fences) {
    const status = fence.xid === options.ownXid ? 'committed' : statuses.get(fence.xid);
    if (status === 'committed') spentUpTo = Math.max(spentUpTo, fence.seq);
    if (status === 'in progress') {
      if (options.inProgress === 'hold') heldUpTo = Math.max(heldUpTo, fence.seq);
    } else if (fence.xid !== options.ownXid) closed.push(fence.xid);
  }
  const spent: number[] = [];
  const writes: PendingWrite[] = [];
  for (const write of record.writes) {
    if (write.seq <= spentUpTo) spent.push(write.seq);
    else if (write.seq > heldUpTo) writes.push(write);
  }
  return { writes, patch: merge(writes), seqs: writes.map((w) => w.seq), spent, closed };
}

/** Writes merged in sequence order, the later winning per column (undefined: none). */
export function merge(writes: readonly PendingWrite[]): Row | undefined {
  if (writes.length === 0) return undefined;
  const ordered = [...writes].sort((a, b) => a.seq - b.seq);
  return Object.assign({}, ...ordered.map((w) => w.patch));
}

/**
 * The status of every fence's transaction among `records` (no query when there are
 * none). A transaction whose commit is recorded but not yet visible to a new snapshot
 * (it is still leaving the process array) counts as in progress: a reader that dropped
 * its writes could then read the row from before it.
 */
export async function fenceStatuses(
  db: DynamicDb | DynamicTransaction,
  records: ReadonlyArray<PendingRecord | undefined>,
): Promise<Map<string, FenceStatus>> {
  const xids = new Set<string>();
  for (const record of records) for (const fence of record?.fences ?? []) xids.add(fence.xid);
  const statuses = new Map<string, FenceStatus>();
  if (xids.size === 0) return statuses;
  const { rows } = await sql<{ xid: string; status: FenceStatus }>`
    SELECT x AS xid,
           CASE WHEN pg_xact_status(x::xid8) = 'committed'
                 AND NOT pg_visible_in_snapshot(x::xid8, pg_current_snapshot())
                THEN 'in progress' ELSE pg_xact_status(x::xid8) END AS status
      FROM unnest(${[...xids]}::text[]) AS x`.execute(db);
  for (const row of rows) statuses.set(row.xid, row.status);
  return statuses;
}
