import { performance } from 'node:perf_hooks';
import type { Kysely } from 'kysely';
import type { CacheEngine } from '../cache/cache-engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError, CorruptEntryError } from '../errors/typed-errors.js';
import { parseEntityKey } from '../keys/redis-keys.js';
import type { DynamicDatabase, DynamicTransaction } from '../model/dynamic-db.js';
import { buildEntityModels, type EntityModel } from '../model/entity-model.js';
import { lockEntity, markOrdered } from './write-behind-order.js';
import {
  fenceStatuses,
  type PendingRecord,
  type Resolved,
  resolveRecord,
} from './write-behind-record.js';
import { type Settlement, WriteBehindStore } from './write-behind-store.js';
import { updateRows } from './write-behind-update.js';

export interface FlushResult {
  /** Rows written to Postgres. */
  readonly rows: number;
  /** Records that failed this time (retried by later flushes). */
  readonly failed: number;
  /** Records whose failed writes moved to the dead-letter list in this flush. */
  readonly dead: number;
  /** Rows still pending after it (a next flush should run at once when > 0). */
  readonly remaining: number;
  readonly durationMs: number;
}

export interface FlushOptions {
  /** The cache: flushed rows' entries are tombstoned there. */
  readonly engine: CacheEngine;
  /** Any Kysely on the database (its table types do not matter). */
  readonly db: Kysely<DynamicDatabase>;
  readonly config: ResolvedConfig;
  readonly entity: string;
  /** The pending writes; else a store is opened on the jobs Redis for this flush and closed after it. */
  readonly store?: WriteBehindStore;
}

/**
 * Flushes one entity's pending writes to Postgres:
 *
 * 1. One transaction takes the entity's advisory lock exclusively (repository writes of
 *    the entity share it), then the rows whose writes have waited longest (at most
 *    `writeBehind.maxFlushRows`). Flushes of an entity are serialised, and each reads the
 *    records after every earlier flush and repository write committed, so nothing older
 *    is committed over something newer.
 * 2. Writes a repository transaction has already applied or superseded (a committed
 *    fence: see write-behind-record.ts) are dropped, not written again.
 * 3. The rest are merged per row and applied with `updateRows`: a few `UPDATE ... FROM
 *    unnest(...)` statements, keys compared as PostgreSQL compares them, existing rows
 *    only. A row PostgreSQL refuses (any error but the server's) is isolated and the
 *    others commit; the server's errors (connection, serialization, shutdown...) fail the
 *    flush with nothing cleared, and the job retries.
 * 4. After the commit, the rows' cache entries are tombstoned (no reader falls back to a
 *    copy older than the flush), then exactly the writes flushed are cleared: a write
 *    that arrived meanwhile stays pending. A crash anywhere before that leaves them
 *    pending: the next flush writes the same values again.
 * 5. A refused record counts an attempt; past `writeBehind.maxAttempts` its writes move
 *    to the dead-letter list with the error, and its key is tombstoned: readers see the
 *    database.
 */
export async function flushWriteBehind(options: FlushOptions): Promise<FlushResult> {
  const started = performance.now();
  const { engine, db, config } = options;
  const model = writeBehindEntity(config, options.entity);
  const store = options.store ?? new WriteBehindStore(config);
  try {
    const { maxFlushRows, maxAttempts } = config.writeBehind;
    let takenAt = Date.now();
    let resolved: Array<{ record: PendingRecord; resolved: Resolved }> = [];
    let outcome: Awaited<ReturnType<typeof updateRows<PendingRecord>>> = {
      written: [],
      refused: [],
    };
    await db.transaction().execute(async (trx) => {
      await lockEntity(trx as DynamicTransaction, config.prefix, model.name, 'flush');
      takenAt = Date.now();
      const taken = await store.take(model.name, maxFlushRows);
      if (taken.length === 0) return;
      const statuses = await fenceStatuses(trx as DynamicTransaction, taken);
      resolved = taken.map((record) => ({
        record,
        resolved: resolveRecord(record, statuses, { inProgress: 'hold' }),
      }));
      const patches = [];
      const corrupt = [];
      for (const { record, resolved: r } of resolved) {
        if (r.patch === undefined) continue;
        const parts = parseEntityKey(model.name, model.keyColumns.length, record.key);
        if (parts === null)
          corrupt.push({
            item: record,
            error: new CorruptEntryError(record.key, `not a key of \`${model.name}\``),
          });
        else patches.push({ item: record, parts, writes: r.writes });
      }
      const updated = await updateRows(trx as DynamicTransaction, model, patches);
      outcome = { written: updated.written, refused: [...corrupt, ...updated.refused] };
      if (outcome.written.length > 0)
        await markOrdered(trx as DynamicTransaction, { entity: model.name, keys: 'all' });
    });
    const written = new Set(outcome.written.map((w) => w.item));
    if (outcome.written.length > 0)
      await engine.delete([...new Set(outcome.written.flatMap((w) => [w.item.key, w.rowKey]))]);
    const settlements: Settlement[] = resolved.map(({ record, resolved: r }) =>
      written.has(record)
        ? {
            key: record.key,
            seqs: [...r.seqs, ...r.spent],
            fences: r.closed,
            attempts: record.attempts > 0,
          }
        : { key: record.key, seqs: r.spent, fences: r.closed },
    );
    await store.settle(model.name, settlements, takenAt);
    let dead = 0;
    const seqsOf = new Map(resolved.map((r) => [r.record, r.resolved.seqs]));
    for (const { item: record, error } of outcome.refused) {
      const seqs = seqsOf.get(record) ?? [];
      if (seqs.length === 0) continue;
      if (await store.fail(model.name, record.key, seqs, error, maxAttempts)) {
        dead++;
        await engine.delete(record.key);
      }
    }
    const { pending } = await store.stats(model.name);
    return {
      rows: outcome.written.length,
      failed: outcome.refused.length,
      dead,
      remaining: pending,
      durationMs: performance.now() - started,
    };
  } finally {
    if (options.store === undefined) await store.close();
  }
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
