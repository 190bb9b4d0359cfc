import { sql } from 'kysely';
import type { DynamicTransaction } from '../model/dynamic-db.js';

/**
 * How writes of a write-behind entity are ordered in PostgreSQL, shared by the flush,
 * the repository's writes and the invalidation worker:
 *
 * - One advisory lock per entity: a flush takes it exclusively, a repository transaction
 *   that writes the entity's rows shares it. So no flush runs while a repository write
 *   reads the pending writes of its row and applies them (or supersedes them); each flush
 *   takes its records after the previous writers committed.
 * - A logical decoding message in those transactions (`walcache.wb`) names the rows
 *   walcache wrote in order: the worker reports every other change to a row with pending
 *   writes as a write made outside walcache.
 */
export const WRITE_BEHIND_MESSAGE_PREFIX = 'walcache.wb';

/** Takes the entity's lock for the transaction: `'flush'` exclusive, `'write'` shared. */
export async function lockEntity(
  trx: DynamicTransaction,
  prefix: string,
  entity: string,
  mode: 'flush' | 'write',
): Promise<void> {
  const name = `walcache:${prefix}:wb:${entity}`;
  await (mode === 'flush'
    ? sql`SELECT pg_advisory_xact_lock(hashtext(${name}))`
    : sql`SELECT pg_advisory_xact_lock_shared(hashtext(${name}))`
  ).execute(trx);
}

/** What one `walcache.wb` message says: the rows of `entity` walcache wrote in order (`'all'`: every row the transaction changed). */
export interface OrderedWrites {
  readonly entity: string;
  readonly keys: readonly string[] | 'all';
}

/** Records in the transaction's WAL that walcache wrote these rows in order. */
export async function markOrdered(trx: DynamicTransaction, writes: OrderedWrites): Promise<void> {
  const content = JSON.stringify(
    writes.keys === 'all' ? { e: writes.entity, all: true } : { e: writes.entity, k: writes.keys },
  );
  await sql`SELECT pg_logical_emit_message(true, ${WRITE_BEHIND_MESSAGE_PREFIX}, ${content})`.execute(
    trx,
  );
}

/** The message's content, or null when it is not one of ours. */
export function parseOrdered(content: string): OrderedWrites | null {
  try {
    const m = JSON.parse(content) as { e?: unknown; k?: unknown; all?: unknown };
    if (typeof m.e !== 'string') return null;
    if (m.all === true) return { entity: m.e, keys: 'all' };
    if (Array.isArray(m.k) && m.k.every((k) => typeof k === 'string'))
      return { entity: m.e, keys: m.k };
    return null;
  } catch {
    return null;
  }
}
