import type { Redis } from 'ioredis';
import type { CacheEngine } from '../cache/engine.js';
import { Codec } from '../codec/codec.js';
import { CorruptEntryError, RedisUnavailableError } from '../errors/errors.js';
import type { Keys } from '../keys/keys.js';
import { defineWriteBehindScripts, type WriteBehindCommands } from './write-behind-scripts.js';

type Row = Record<string, unknown>;

/** One row's pending write-behind record, as a flush takes it. */
export interface PendingRecord {
  /** The row's cache key (`users:42`). */
  readonly key: string;
  /** Sequence number of the last write merged into it. */
  readonly seq: string;
  readonly attempts: number;
  /** When its first pending write arrived (ms since epoch). */
  readonly since: number;
  /** The merged patch: column -> value. */
  readonly values: Row;
}

/** A record that kept failing, with the error of its last attempt. */
export interface DeadLetter {
  readonly key: string;
  readonly seq: string;
  readonly error: string;
  readonly code: string | null;
  readonly at: number;
  readonly values: Row;
}

export interface WriteBehindStats {
  /** Rows with pending writes. */
  readonly pending: number;
  /** Age of the oldest pending write, ms (0 when none). */
  readonly oldestAgeMs: number;
  /** Records in the dead-letter list. */
  readonly dead: number;
}

const COLUMN = 'c:';

/**
 * Pending write-behind records in Redis. Every key of one entity carries the same hash
 * tag, so each script touches one slot. Values are encoded one by one with the cache's
 * codec (Dates, bigints, Buffers, JSON round-trip); a flag byte says whether deflated.
 */
export class WriteBehindStore {
  readonly #redis: Redis & WriteBehindCommands;
  readonly #keys: Keys;
  readonly #codec: Codec;
  readonly #engine: CacheEngine;
  readonly #batches = new Map<
    string,
    Array<{
      key: string;
      fields: Array<string | Buffer>;
      resolve: (result: { seq: number; pending: number }) => void;
      reject: (error: unknown) => void;
    }>
  >();

  constructor(engine: CacheEngine) {
    this.#engine = engine;
    this.#redis = defineWriteBehindScripts(engine.redis);
    this.#keys = engine.keys;
    this.#codec = new Codec(engine.config.cache);
  }

  /**
   * Merges a patch into the row's pending record and queues the row, in one script.
   * Resolves once Redis has it.
   *
   * @throws {SerializationError | ValueTooLargeError} before anything is written.
   * @throws {RedisUnavailableError} when Redis did not take it.
   */
  async put(entity: string, key: string, patch: Row): Promise<{ seq: number; pending: number }> {
    const fields: Array<string | Buffer> = [];
    for (const [column, value] of Object.entries(patch)) {
      fields.push(column, this.#encode(`${key}.${column}`, value));
    }
    await this.#connected();
    return new Promise((resolve, reject) => {
      let batch = this.#batches.get(entity);
      if (batch === undefined) {
        batch = [];
        this.#batches.set(entity, batch);
        // The writes of one tick go to Redis in one script call (each patch still whole).
        process.nextTick(() => this.#send(entity));
      }
      batch.push({ key, fields, resolve, reject });
    });
  }

  async #send(entity: string): Promise<void> {
    const batch = this.#batches.get(entity) ?? [];
    this.#batches.delete(entity);
    const keys = [
      this.#keys.writeBehindQueue(entity),
      this.#keys.writeBehindSequence(entity),
      ...batch.map((p) => this.#keys.writeBehindRecord(entity, p.key)),
    ];
    const args: Array<string | Buffer> = [String(Date.now()), String(batch.length)];
    for (const p of batch) args.push(p.key, String(p.fields.length / 2), ...p.fields);
    try {
      const result = await this.#redis.walcache_wb_put(keys.length, ...keys, ...args);
      const pending = Number(result[batch.length]);
      for (const [i, p] of batch.entries()) p.resolve({ seq: Number(result[i]), pending });
    } catch (error) {
      const failure = new RedisUnavailableError('writeBehind', error);
      for (const p of batch) p.reject(failure);
    }
  }

  /** The pending patches of rows, by key (undefined where none). */
  async read(entity: string, keys: readonly string[]): Promise<Array<Row | undefined>> {
    if (keys.length === 0) return [];
    await this.#connected();
    let raw: Array<Record<string, Buffer>>;
    try {
      raw = await Promise.all(
        keys.map((k) => this.#redis.hgetallBuffer(this.#keys.writeBehindRecord(entity, k))),
      );
    } catch (error) {
      throw new RedisUnavailableError('writeBehind read', error);
    }
    return raw.map((hash, i) =>
      Object.keys(hash).length === 0 ? undefined : this.#decodeValues(keys[i] as string, hash),
    );
  }

  /** The oldest pending records, at most `limit`. */
  async take(entity: string, limit: number): Promise<PendingRecord[]> {
    await this.#connected();
    const members = await this.#redis.zrange(
      this.#keys.writeBehindQueue(entity),
      '0',
      String(limit - 1),
    );
    const hashes = await Promise.all(
      members.map((k) => this.#redis.hgetallBuffer(this.#keys.writeBehindRecord(entity, k))),
    );
    const records: PendingRecord[] = [];
    for (let i = 0; i < members.length; i++) {
      const hash = hashes[i] as Record<string, Buffer>;
      const key = members[i] as string;
      if (hash.s === undefined) {
        // Cleared between the two reads (a flush elsewhere). Unqueued only if still gone:
        // a write may have recreated it since.
        await this.#redis.walcache_wb_unqueue_if_gone(
          this.#keys.writeBehindQueue(entity),
          this.#keys.writeBehindRecord(entity, key),
          key,
        );
        continue;
      }
      records.push({
        key,
        seq: hash.s.toString(),
        attempts: Number(hash.a?.toString() ?? 0),
        since: Number(hash.t?.toString() ?? Date.now()),
        values: this.#decodeValues(key, hash),
      });
    }
    return records;
  }

  /** Clears exactly the records flushed (a record that took a newer write meanwhile stays). */
  async ack(
    entity: string,
    records: ReadonlyArray<Pick<PendingRecord, 'key' | 'seq'>>,
  ): Promise<number> {
    if (records.length === 0) return 0;
    const keys = [
      this.#keys.writeBehindQueue(entity),
      ...records.map((r) => this.#keys.writeBehindRecord(entity, r.key)),
    ];
    return this.#redis.walcache_wb_ack(
      keys.length,
      ...keys,
      ...records.map((r) => r.seq),
      ...records.map((r) => r.key),
    );
  }

  /** Counts a failure; true when the record moved to the dead-letter list. */
  async fail(
    entity: string,
    record: PendingRecord,
    error: unknown,
    maxAttempts: number,
  ): Promise<boolean> {
    const entry = JSON.stringify({
      key: record.key,
      seq: record.seq,
      error: error instanceof Error ? error.message : String(error),
      code: (error as { code?: unknown })?.code ?? null,
      at: Date.now(),
    });
    const moved = await this.#redis.walcache_wb_fail(
      this.#keys.writeBehindRecord(entity, record.key),
      this.#keys.writeBehindQueue(entity),
      this.#keys.writeBehindDead(entity),
      this.#keys.writeBehindDeadRecord(entity, record.seq),
      record.seq,
      maxAttempts,
      entry,
      record.key,
    );
    return moved === 1;
  }

  async stats(entity: string): Promise<WriteBehindStats> {
    await this.#connected();
    const queue = this.#keys.writeBehindQueue(entity);
    const [pending, oldest, dead] = await Promise.all([
      this.#redis.zcard(queue),
      this.#redis.zrange(queue, '0', '0', 'WITHSCORES'),
      this.#redis.llen(this.#keys.writeBehindDead(entity)),
    ]);
    const since = oldest[1] === undefined ? null : Number(oldest[1]);
    return { pending, oldestAgeMs: since === null ? 0 : Math.max(0, Date.now() - since), dead };
  }

  /** The dead-letter list, oldest first, with the values that failed. */
  async deadLetters(entity: string, limit = 100): Promise<DeadLetter[]> {
    const entries = await this.#redis.lrange(this.#keys.writeBehindDead(entity), 0, limit - 1);
    return Promise.all(
      entries.map(async (json) => {
        const entry = JSON.parse(json) as Omit<DeadLetter, 'values'>;
        const hash = await this.#redis.hgetallBuffer(
          this.#keys.writeBehindDeadRecord(entity, entry.seq),
        );
        return { ...entry, values: this.#decodeValues(entry.key, hash) };
      }),
    );
  }

  /**
   * Pending writes are state, not cache: a read that cannot see them must fail rather
   * than answer older values. A connection still being opened is waited for (bounded).
   */
  async #connected(): Promise<void> {
    if (this.#redis.status !== 'ready')
      await this.#engine.ready(this.#engine.config.redis.connectTimeoutMs);
  }

  #encode(key: string, value: unknown): Buffer {
    const { bytes, compressed } = this.#codec.encode(key, value);
    return Buffer.concat([Buffer.from([compressed ? 1 : 0]), bytes]);
  }

  #decodeValues(key: string, hash: Record<string, Buffer>): Row {
    const values: Row = {};
    for (const [field, raw] of Object.entries(hash)) {
      if (!field.startsWith(COLUMN)) continue;
      try {
        values[field.slice(COLUMN.length)] = this.#codec.decode(raw.subarray(1), raw[0] === 1);
      } catch (error) {
        throw new CorruptEntryError(
          key,
          `write-behind value of \`${field.slice(COLUMN.length)}\` does not decode`,
          error,
        );
      }
    }
    return values;
  }
}
