import { performance } from 'node:perf_hooks';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { CacheEngine } from '../cache/engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError, CorruptEntryError } from '../errors/errors.js';
import { parseEntityKey } from '../keys/keys.js';
import { buildEntityModels, type EntityModel, keyRow } from '../repository/entity-model.js';
import type { DynamicDatabase } from '../repository/types.js';
import {
  type PendingRecord,
  type WriteBehindStats,
  WriteBehindStore,
} from './write-behind-store.js';

type Row = Record<string, unknown>;

export interface FlushResult {
  /** Rows upserted into Postgres. */
  readonly rows: number;
  /** Records that failed this time (retried by later flushes). */
  readonly failed: number;
  /** Records moved to the dead-letter list by this flush. */
  readonly dead: number;
  /** Rows still pending after it (a next flush should run at once when > 0). */
  readonly remaining: number;
  readonly durationMs: number;
}

export interface FlushOptions {
  readonly engine: CacheEngine;
  /** Any Kysely on the database (its table types do not matter). */
  readonly db: Kysely<DynamicDatabase>;
  readonly config: ResolvedConfig;
  readonly entity: string;
  readonly store?: WriteBehindStore;
}

/**
 * Flushes one entity's pending writes to Postgres:
 *
 * 1. In one transaction, an advisory lock per entity first: flushes of one entity run one
 *    at a time, and each takes its records *after* the previous one committed, so no
 *    flush can commit older values over newer ones.
 * 2. Up to `writeBehind.maxFlushRows` of the oldest records are taken, coalesced already
 *    (one merged patch per row), and upserted (`INSERT ... ON CONFLICT (key) DO UPDATE`,
 *    one statement per set of columns).
 * 3. A record the database refuses (a constraint, a bad value, a trigger's RAISE: SQLSTATE
 *    classes 22, 23, 44, P0001) is isolated with savepoints; the others commit. Other errors (the
 *    connection, a deadlock) abort the flush: nothing is cleared, the job retries.
 * 4. After the commit, the rows' cache entries are tombstoned (so no reader falls back to
 *    a copy older than the flush), then exactly the flushed records are cleared: a write
 *    that arrived meanwhile stays pending. A crash anywhere before that leaves the
 *    records pending: the next flush writes the same values again (idempotent).
 * 5. A refused record counts an attempt; past `writeBehind.maxAttempts` it moves to the
 *    dead-letter list with the error, and its key is tombstoned: readers see the database.
 */
export async function flushWriteBehind(options: FlushOptions): Promise<FlushResult> {
  const started = performance.now();
  const { engine, db, config } = options;
  const model = writeBehindEntity(config, options.entity);
  const store = options.store ?? new WriteBehindStore(engine);
  const { maxFlushRows, maxAttempts } = config.writeBehind;
  let taken: PendingRecord[] = [];
  let refused: Array<{ record: PendingRecord; error: unknown }> = [];
  await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`walcache:${config.prefix}:wb:${model.name}`}))`.execute(
      trx,
    );
    taken = await store.take(model.name, maxFlushRows);
    if (taken.length === 0) return;
    refused = await upsert(trx, model, taken);
  });
  const refusedSet = new Set(refused.map((r) => r.record));
  const written = taken.filter((r) => !refusedSet.has(r));
  if (written.length > 0) {
    await engine.delete(written.map((r) => r.key));
    await store.ack(model.name, written);
  }
  let dead = 0;
  for (const { record, error } of refused) {
    if (await store.fail(model.name, record, error, maxAttempts)) {
      dead++;
      await engine.delete(record.key);
    }
  }
  const { pending } = await store.stats(model.name);
  return {
    rows: written.length,
    failed: refused.length,
    dead,
    remaining: pending,
    durationMs: performance.now() - started,
  };
}

/** Pending rows, oldest age and dead letters of one entity. */
export function writeBehindStats(engine: CacheEngine, entity: string): Promise<WriteBehindStats> {
  return new WriteBehindStore(engine).stats(entity);
}

/** The entity model of a write-behind entity, or a ConfigError saying why not. */
export function writeBehindEntity(config: ResolvedConfig, entity: string): EntityModel {
  const model = buildEntityModels(config).get(entity);
  if (model === undefined || !config.entities[entity]?.writeBehind)
    throw new ConfigError(
      `entities.${entity}.writeBehind`,
      config.entities[entity]?.writeBehind,
      model === undefined ? 'no such entity' : 'write-behind is not enabled for this entity',
    );
  return model;
}

/** Upserts the records; returns those the database refused (the rest are written). */
async function upsert(
  trx: Transaction<DynamicDatabase>,
  model: EntityModel,
  records: readonly PendingRecord[],
): Promise<Array<{ record: PendingRecord; error: unknown }>> {
  const groups = new Map<string, PendingRecord[]>();
  for (const record of records) {
    const columns = Object.keys(record.values).sort().join(',');
    const group = groups.get(columns);
    if (group) group.push(record);
    else groups.set(columns, [record]);
  }
  await sql`SAVEPOINT walcache_flush`.execute(trx);
  try {
    for (const group of groups.values()) await upsertGroup(trx, model, group);
    await sql`RELEASE SAVEPOINT walcache_flush`.execute(trx);
    return [];
  } catch (error) {
    if (!isRecordError(error)) throw error;
    await sql`ROLLBACK TO SAVEPOINT walcache_flush`.execute(trx);
  }
  // Some record is refused: find which, one savepoint each.
  const refused: Array<{ record: PendingRecord; error: unknown }> = [];
  for (const record of records) {
    await sql`SAVEPOINT walcache_row`.execute(trx);
    try {
      await upsertGroup(trx, model, [record]);
      await sql`RELEASE SAVEPOINT walcache_row`.execute(trx);
    } catch (error) {
      if (!isRecordError(error)) throw error;
      await sql`ROLLBACK TO SAVEPOINT walcache_row`.execute(trx);
      refused.push({ record, error });
    }
  }
  return refused;
}

const MAX_PARAMETERS = 30_000;

async function upsertGroup(
  trx: Transaction<DynamicDatabase>,
  model: EntityModel,
  records: readonly PendingRecord[],
): Promise<void> {
  const columns = Object.keys((records[0] as PendingRecord).values);
  const perRow = columns.length + model.keyColumns.length;
  const chunk = Math.max(1, Math.floor(MAX_PARAMETERS / perRow));
  for (let i = 0; i < records.length; i += chunk) {
    const rows: Row[] = records.slice(i, i + chunk).map((r) => ({
      ...keyValues(model, r.key),
      ...r.values,
    }));
    await trx
      .withSchema(model.schema)
      .insertInto(model.tableName)
      .values(rows)
      .onConflict((oc) =>
        oc
          .columns(model.keyColumns as string[])
          .doUpdateSet(Object.fromEntries(columns.map((c) => [c, sql.ref(`excluded.${c}`)]))),
      )
      .execute();
  }
}

/** The key column values of a row from its cache key (`users:42`, `lines:7:3`). */
export function keyValues(model: EntityModel, key: string): Row {
  const parts = parseEntityKey(model.name, model.keyColumns.length, key);
  if (parts === null)
    throw new CorruptEntryError(key, `not a key of \`${model.name}\` in the write-behind queue`);
  return keyRow(model, parts);
}

/**
 * Errors that belong to one record's values: data exceptions (22), integrity violations
 * (23), check option violations (44) and a trigger's RAISE (P0001). Anything else (the
 * connection, a missing table or privilege, a deadlock) is the database's, not the
 * record's: the flush fails and is retried, and no record is dead-lettered for it.
 */
function isRecordError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23|44|P0001)/.test(code);
}
