import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { type EntryState, PREFIX_LENGTH, parseEntry } from '../cache/envelope.js';
import { parseHeartbeat } from '../cache/heartbeat.js';
import { getMany, scanKeys } from '../cache/redis-client.js';
import { Codec } from '../codec/value-codec.js';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import { cacheEndpoint } from '../config/redis-endpoint.js';
import { DatabaseUnavailableError } from '../errors/database-unavailable-error.js';
import { ConfigError, RedisUnavailableError, UnknownEntityError } from '../errors/typed-errors.js';
import { encodeKeyPart, Keys, parseEntityKey } from '../keys/redis-keys.js';
import type { DynamicDb } from '../model/dynamic-db.js';
import {
  buildEntityModels,
  type EntityModel,
  stripDenied,
  whereKey,
} from '../model/entity-model.js';
import { lsnToBigInt } from '../protocol/lsn.js';
import { errorMessage } from './doctor-check.js';
import { connectRedis, lastRedisError, openRedis } from './redis-probe.js';
import { differingColumns } from './row-diff.js';

export interface VerifyOptions {
  /** How many entity entries to examine (SCAN order). @default 1000 */
  readonly sample?: number;
  /** Only this entity's entries. */
  readonly entity?: string;
  /**
   * How long to wait for the worker to apply the position read before the check (and,
   * for entries that differ, the position read after it). @default 15000
   */
  readonly waitMs?: number;
  /** Bound on each PostgreSQL statement and on connecting. @default 5000 */
  readonly timeoutMs?: number;
}

/** A cached entry that differs from its row although the worker applied every change the row shows. */
export interface StaleEntry {
  readonly key: string;
  readonly entity: string;
  /** `differs`: cached row ≠ row; `deleted`: cached row, no row; `exists`: cached "not found", a row. */
  readonly reason: 'differs' | 'deleted' | 'exists';
  /** With `differs`: the columns whose values differ. */
  readonly columns: readonly string[];
}

export interface VerifySkipped {
  /** Invalidated keys (the worker's or `delete`'s tombstones). */
  readonly tombstone: number;
  /** A load in progress. */
  readonly lease: number;
  /** Past its stale-while-revalidate grace: no read serves it. */
  readonly expired: number;
  /** Filled under an older epoch or tag version: every read takes it as a miss. */
  readonly invalidated: number;
  readonly corrupt: number;
  /** Gone between the SCAN and the GET (expired, evicted). */
  readonly gone: number;
  /** Differed at first, but was replaced or invalidated before it could be confirmed. */
  readonly changed: number;
  /** Cached query results: not verified (their entries do not carry the SQL that made them). */
  readonly queries: number;
  /** Keys under the prefix that no entity of the config names (values cached with `set`). */
  readonly foreign: number;
}

export interface VerifyReport {
  readonly at: number;
  readonly prefix: string;
  /** The WAL position read before the check, and whether the worker's heartbeat reached it. */
  readonly position: {
    readonly target: string;
    readonly reached: boolean;
    /** The worker's heartbeat position when the wait ended; null without a heartbeat. */
    readonly workerLsn: string | null;
    readonly waitedMs: number;
  };
  /** Entity entries examined (at most `sample`). */
  readonly examined: number;
  /** Entries a read would serve, compared with their rows. */
  readonly checked: number;
  /** Confirmed stale: the number to alert on. */
  readonly stale: number;
  readonly staleEntries: readonly StaleEntry[];
  /**
   * Differed, but the worker did not reach the position read after the check in time, so
   * the difference may only be its lag. Not counted in `stale`.
   */
  readonly unconfirmed: number;
  readonly unconfirmedEntries: readonly StaleEntry[];
  readonly skipped: VerifySkipped;
  readonly durationMs: number;
}

interface Candidate {
  readonly redisKey: string;
  readonly raw: Buffer;
  readonly entry: StaleEntry;
}

type Target =
  | { readonly model: EntityModel; readonly parts: readonly string[] }
  | { readonly model: EntityModel; readonly unique: string; readonly value: string };

const SCAN_COUNT = 500;
const CHUNK = 50;

/**
 * Samples cached entity entries from Redis and compares each with its row in PostgreSQL,
 * read once the invalidation worker has applied every change committed before the check.
 * An entry that differs is confirmed stale only if it is still served after the worker
 * has also applied the position read after the rows were read: the difference is then
 * not the worker's lag but an invalidation that was lost.
 *
 * Reads only: nothing is written to Redis or PostgreSQL. L1 copies live in the
 * application processes and are not seen here.
 *
 * @throws {ConfigError} for a `sample` that is not a whole number ≥ 1, or a bad `waitMs`.
 * @throws {UnknownEntityError} for an entity the config does not declare.
 * @throws {RedisUnavailableError | DatabaseUnavailableError} when either cannot be read.
 * @example
 * const report = await verify(config, { sample: 500 });
 * if (report.stale > 0) console.error(report.staleEntries.map((e) => e.key));
 */
export async function verify(
  config: ResolvedConfig,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const started = Date.now();
  const sample = options.sample ?? 1000;
  if (!Number.isSafeInteger(sample) || sample < 1)
    throw new ConfigError('sample', sample, 'expected a whole number of entries, 1 or more');
  const waitMs = options.waitMs ?? 15_000;
  if (!Number.isFinite(waitMs) || waitMs < 0)
    throw new ConfigError('waitMs', waitMs, 'expected a number of milliseconds, 0 or more');
  const timeoutMs = options.timeoutMs ?? 5_000;
  const models = buildEntityModels(config);
  if (options.entity !== undefined && !models.has(options.entity))
    throw new UnknownEntityError(options.entity, [...models.keys()]);

  const keys = new Keys(config.prefix);
  const codec = new Codec(config.cache);
  const redisUrl = redactUrl(config.redis.url);
  const dbUrl = redactUrl(config.databaseUrl);
  const redis = openRedis(
    cacheEndpoint(config),
    `walcache:${config.prefix}:verify`,
    config.redis.connectTimeoutMs,
    false,
  );
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl, {
      application_name: 'walcache-verify',
      connectionTimeoutMillis: timeoutMs,
      statement_timeout: timeoutMs,
    }),
    max: 4,
  });
  pool.on('error', () => {});
  const db = new Kysely<Record<string, never>>({
    dialect: new PostgresDialect({ pool }),
  }) as unknown as DynamicDb;

  const fromRedis = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      const cause = lastRedisError(redis) ?? error;
      throw new RedisUnavailableError(
        `verify's ${what} at ${redisUrl} (${errorMessage(cause)})`,
        cause,
      );
    }
  };
  const fromDb = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw new DatabaseUnavailableError(`verify's ${what}`, dbUrl, error);
    }
  };
  const currentLsn = () =>
    fromDb('read of pg_current_wal_lsn()', async () => {
      const { rows } = await pool.query<{ lsn: string }>(
        'SELECT pg_current_wal_lsn()::text AS lsn',
      );
      return (rows[0] as { lsn: string }).lsn;
    });
  const waitForWorker = async (target: string) => {
    const goal = lsnToBigInt(target);
    const begun = Date.now();
    for (;;) {
      const raw = await fromRedis('read of the worker heartbeat', () =>
        redis.get(keys.heartbeat()),
      );
      const workerLsn = parseHeartbeat(raw)?.lsn ?? null;
      const reached = workerLsn !== null && lsnToBigInt(workerLsn) >= goal;
      const waitedMs = Date.now() - begun;
      if (reached || waitedMs >= waitMs) return { target, reached, workerLsn, waitedMs };
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  /** Can a read serve this entry now (right epoch, tag versions unmoved, inside its grace)? */
  const served = async (state: EntryState): Promise<keyof VerifySkipped | 'data'> => {
    switch (state.kind) {
      case 'empty':
        return 'gone';
      case 'lease':
        return 'lease';
      case 'tombstone':
        return 'tombstone';
      case 'corrupt':
        return 'corrupt';
    }
    const { envelope } = state;
    if (Date.now() >= envelope.staleUntil) return 'expired';
    const tags = envelope.tags === null ? [] : Object.keys(envelope.tags);
    const [epoch, ...versions] = await fromRedis('read of the epoch and tag versions', () =>
      getMany(redis, [keys.epoch(), ...tags.map((t) => keys.tagVersion(t))]),
    ).then((values) => values.map((v) => v?.toString('utf8') ?? null));
    if (epoch !== envelope.epoch) return 'invalidated';
    for (let i = 0; i < tags.length; i++)
      if (versions[i] !== envelope.tags?.[tags[i] as string]) return 'invalidated';
    return 'data';
  };

  try {
    await fromRedis('connection', () => connectRedis(redis));
    const position = await waitForWorker(await currentLsn());

    const skipped: Record<keyof VerifySkipped, number> = {
      tombstone: 0,
      lease: 0,
      expired: 0,
      invalidated: 0,
      corrupt: 0,
      gone: 0,
      changed: 0,
      queries: 0,
      foreign: 0,
    };
    // 1. Sample entity entries (SCAN order is the hash order: a spread over the keyspace).
    const base = keys.entry('');
    const match =
      options.entity === undefined ? `${base}*` : `${keys.entry(encodeKeyPart(options.entity))}:*`;
    const sampled: Array<{ redisKey: string; target: Target; key: string }> = [];
    const scan = scanKeys(redis, match, SCAN_COUNT);
    while (sampled.length < sample) {
      const next = await fromRedis('SCAN', () => scan.next());
      if (next.done) break;
      const batch = next.value;
      for (const redisKey of batch) {
        if (sampled.length >= sample) break;
        const key = logicalKey(redisKey.slice(base.length));
        if (key === null) {
          skipped.foreign++;
          continue;
        }
        const target = entityTarget(models, key);
        if (target === 'query') skipped.queries++;
        else if (target === null) skipped.foreign++;
        else sampled.push({ redisKey, target, key });
      }
    }
    await scan.return(undefined);

    // 2. Compare each entry a read would serve with its row.
    let checked = 0;
    const candidates: Candidate[] = [];
    for (let start = 0; start < sampled.length; start += CHUNK) {
      const chunk = sampled.slice(start, start + CHUNK);
      const raws = await fromRedis('GET of entries', () =>
        getMany(
          redis,
          chunk.map((s) => s.redisKey),
        ),
      );
      await Promise.all(
        chunk.map(async ({ redisKey, target, key }, i) => {
          const raw = raws[i] ?? null;
          const state = parseEntry(raw);
          const verdict = await served(state);
          if (verdict !== 'data' || state.kind !== 'data') {
            if (verdict !== 'data') skipped[verdict]++;
            return;
          }
          let cached: unknown;
          try {
            cached = state.envelope.negative
              ? undefined
              : codec.decode(state.envelope.payload, state.envelope.compressed);
          } catch {
            skipped.corrupt++;
            return;
          }
          const row = await fromDb(`read of ${target.model.table}`, () => loadRow(db, target));
          checked++;
          const entry = compare(key, target.model.name, cached, row);
          if (entry !== null) candidates.push({ redisKey, raw: raw as Buffer, entry });
        }),
      );
    }

    // 3. Confirm: once the worker has applied everything the rows showed, an entry still
    // served unchanged is stale; one replaced or invalidated meanwhile was only lag.
    const staleEntries: StaleEntry[] = [];
    const unconfirmedEntries: StaleEntry[] = [];
    if (candidates.length > 0) {
      const after = await waitForWorker(await currentLsn());
      for (const c of candidates) {
        if (!after.reached) {
          unconfirmedEntries.push(c.entry);
          continue;
        }
        const again = await fromRedis('GET of an entry', () => redis.getBuffer(c.redisKey));
        const state = parseEntry(again);
        const same =
          again?.subarray(PREFIX_LENGTH).equals(c.raw.subarray(PREFIX_LENGTH)) &&
          (await served(state)) === 'data';
        if (same) staleEntries.push(c.entry);
        else skipped.changed++;
      }
    }
    return {
      at: started,
      prefix: config.prefix,
      position,
      examined: sampled.length,
      checked,
      stale: staleEntries.length,
      staleEntries,
      unconfirmed: unconfirmedEntries.length,
      unconfirmedEntries,
      skipped,
      durationMs: Date.now() - started,
    };
  } finally {
    redis.disconnect();
    await db.destroy().catch(() => {});
  }
}

/**
 * The logical key of an entry's Redis key: `Keys.entry` percent-encodes a logical key
 * once when it holds a byte outside the safe set (the `%` of an encoded part included).
 */
function logicalKey(tail: string): string | null {
  try {
    return decodeURIComponent(tail);
  } catch {
    return null;
  }
}

/** The entity (and key values) a logical key names; 'query' for a cached query; null for neither. */
function entityTarget(
  models: ReadonlyMap<string, EntityModel>,
  key: string,
): Target | 'query' | null {
  if (key.startsWith('q:')) return 'query';
  const name = key.slice(0, key.indexOf(':'));
  for (const model of models.values()) {
    if (encodeKeyPart(model.name) !== name) continue;
    const parts = parseEntityKey(model.name, model.keyColumns.length, key);
    if (parts !== null) return { model, parts };
    // `users:by:email:a%40b.c`: a row found by a unique column.
    const unique = parseEntityKey(model.name, 3, key);
    if (unique?.[0] === 'by' && model.uniqueColumns.includes(unique[1] as string))
      return { model, unique: unique[1] as string, value: unique[2] as string };
  }
  return null;
}

/** The row as the repository returns it (denied columns removed), or undefined. */
async function loadRow(
  db: DynamicDb,
  target: Target,
): Promise<Record<string, unknown> | undefined> {
  const { model } = target;
  const from = db.withSchema(model.schema).selectFrom(model.tableName).selectAll();
  const query =
    'parts' in target
      ? whereKey(from, model, target.parts)
      : from.where(target.unique, '=', target.value).limit(1);
  const row = (await query.executeTakeFirst()) as Record<string, unknown> | undefined;
  return row === undefined ? undefined : stripDenied(model, row);
}

function compare(
  key: string,
  entity: string,
  cached: unknown,
  row: Record<string, unknown> | undefined,
): StaleEntry | null {
  if (cached === undefined && row === undefined) return null;
  if (cached === undefined) return { key, entity, reason: 'exists', columns: [] };
  if (row === undefined) return { key, entity, reason: 'deleted', columns: [] };
  const columns = differingColumns(cached as Record<string, unknown>, row);
  return columns.length === 0 ? null : { key, entity, reason: 'differs', columns };
}
