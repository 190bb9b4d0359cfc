import { type AnyPipeline, closeClient, type RedisClient } from '../cache/redis-client.js';
import { createCacheRedis, waitReady } from '../cache/redis-connection.js';
import type { ResolvedConfig } from '../config/config.js';
import { queuesEndpoint } from '../config/redis-endpoint.js';
import { RedisUnavailableError } from '../errors/typed-errors.js';
import { Keys } from '../keys/redis-keys.js';
import { queueRedisUrl } from '../queues/walcache-queues.js';
import { assertKeepsWriteBehind } from './eviction-policy.js';
import { ATTEMPTS, fenceField, WriteBehindCodec } from './write-behind-codec.js';
import type { PendingRecord } from './write-behind-record.js';
import { defineWriteBehindScripts, type WriteBehindCommands } from './write-behind-scripts.js';

type Row = Record<string, unknown>;

/** Writes that kept failing, with the error of their last attempt. */
export interface DeadLetter {
  readonly key: string;
  /** Sequence number of the last of them (names their hash). */
  readonly seq: string;
  readonly error: string;
  /** SQLSTATE, or walcache's code (`E_MISSING_ROW`); null when neither. */
  readonly code: string | null;
  readonly at: number;
  /** The writes, merged in sequence order. */
  readonly values: Row;
}

export interface WriteBehindStats {
  /** Rows with pending writes. */
  readonly pending: number;
  /** Age of the oldest pending write, ms (0 when none). */
  readonly oldestAgeMs: number;
  /** Entries in the dead-letter list. */
  readonly dead: number;
}

/** Fields to clear from one record (see wb-settle-n.lua). */
export interface Settlement {
  readonly key: string;
  /** Writes applied or spent. */
  readonly seqs?: readonly number[];
  /** Fences (by xid) to remove. */
  readonly fences?: readonly string[];
  /** Also reset the attempt counter (the failing writes are gone). */
  readonly attempts?: boolean;
}

/** Write-behind commands can move thousands of records; slower than a cache read is fine. */
const COMMAND_TIMEOUT_MS = 5_000;
/** Records per settle script call. */
const SETTLE_SLICE = 250;
/** Records per read script call. */
const READ_SLICE = 1_000;

/**
 * Pending write-behind state in Redis: per row, one hash field per accepted write; per
 * entity, a queue of rows by age, a sequence counter and a dead-letter list. It lives on
 * the jobs Redis (`jobs.redisUrl`, else `redis.url`), never on an LRU cache server: writes
 * are refused (EvictionPolicyError) while that server's `maxmemory-policy` may evict them,
 * checked at every (re)connection. Every key of one entity carries the same hash tag, so
 * each script touches one slot. A record's layout is WriteBehindCodec's.
 *
 * @example
 * const store = new WriteBehindStore(config);
 * console.log(await store.stats('counters'), await store.deadLetters('counters'));
 * await store.close();
 */
export class WriteBehindStore {
  readonly keys: Keys;
  readonly #redis: RedisClient & WriteBehindCommands;
  /** Replicas a write must reach before it is acknowledged (`writeBehind.replicas`). */
  readonly #replicas: number;
  readonly #replicaTimeoutMs: number;
  readonly #url: string;
  readonly #codec: WriteBehindCodec;
  readonly #connectTimeoutMs: number;
  /** The eviction check of the current connection (redone on every reconnection). */
  #policy: Promise<void> | undefined;
  /** It passed, and the connection is the one it checked: writes need not wait. */
  #safe = false;
  #closing: Promise<void> | undefined;
  #connecting: Promise<boolean> | undefined;
  readonly #batches = new Map<
    string,
    Array<{
      key: string;
      patch: Buffer;
      resolve: (result: { seq: number; pending: number }) => void;
      reject: (error: unknown) => void;
    }>
  >();

  constructor(config: ResolvedConfig) {
    this.keys = new Keys(config.prefix);
    this.#url = queueRedisUrl(config);
    this.#connectTimeoutMs = config.redis.connectTimeoutMs;
    const redis = createCacheRedis(
      { ...config.redis, ...queuesEndpoint(config), commandTimeoutMs: COMMAND_TIMEOUT_MS },
      `walcache:${config.prefix}:write-behind`,
    );
    redis.on('ready', () => {
      this.#policy = undefined;
      this.#safe = false;
    });
    this.#redis = defineWriteBehindScripts(redis);
    const endpoint = queuesEndpoint(config);
    this.#replicas = config.writeBehind.replicas ?? (endpoint.cluster || endpoint.sentinel ? 1 : 0);
    this.#replicaTimeoutMs = config.writeBehind.replicaTimeoutMs;
    this.#codec = new WriteBehindCodec(config.cache);
  }

  /**
   * Connects, and checks that the server keeps write-behind state: its `maxmemory-policy`
   * never evicts a key without a TTL. Checked again after every reconnection (a restarted
   * server may run another configuration).
   *
   * @throws {EvictionPolicyError} when the server may evict pending writes.
   * @throws {RedisUnavailableError} when it cannot be reached.
   */
  async ready(): Promise<void> {
    await this.#connected();
    this.#policy ??= assertKeepsWriteBehind(this.#redis, this.#url).then(
      () => {
        this.#safe = true;
      },
      (error: unknown) => {
        this.#policy = undefined;
        throw error;
      },
    );
    await this.#policy;
  }

  /**
   * Queues a patch as the row's next write, in one script with the other writes of this
   * tick. Resolves once Redis has it.
   *
   * @throws {SerializationError | ValueTooLargeError} before anything is written.
   * @throws {EvictionPolicyError} when the server may evict pending writes.
   * @throws {RedisUnavailableError} when Redis did not take it.
   */
  async put(entity: string, key: string, patch: Row): Promise<{ seq: number; pending: number }> {
    const encoded = this.#codec.encode(key, patch);
    if (!this.#safe || this.#redis.status !== 'ready' || this.#closing) await this.ready();
    return new Promise((resolve, reject) => {
      let batch = this.#batches.get(entity);
      if (batch === undefined) {
        batch = [];
        this.#batches.set(entity, batch);
        process.nextTick(() => this.#send(entity));
      }
      batch.push({ key, patch: encoded, resolve, reject });
    });
  }

  async #send(entity: string): Promise<void> {
    const batch = this.#batches.get(entity) ?? [];
    this.#batches.delete(entity);
    const keys = [
      this.keys.writeBehindQueue(entity),
      this.keys.writeBehindSequence(entity),
      ...batch.map((p) => this.keys.writeBehindRecord(entity, p.key)),
    ];
    const args: Array<string | Buffer> = [String(Date.now())];
    for (const p of batch) args.push(p.key, p.patch);
    try {
      let reply: number[];
      if (this.#replicas === 0) {
        reply = await this.#redis.walcache_wb_put(keys.length, ...keys, ...args);
      } else {
        // WAIT on the connection (the node) that ran the script, in the same round trip.
        const pipeline = this.#redis.pipeline() as AnyPipeline & WriteBehindCommands;
        pipeline.walcache_wb_put(keys.length, ...keys, ...args);
        pipeline.wait(this.#replicas, this.#replicaTimeoutMs);
        const [[putError, put] = [null, null], [waitError, acked] = [null, 0]] =
          (await pipeline.exec()) ?? [];
        if (putError) throw putError;
        if (waitError) throw waitError;
        reply = put as number[];
        if (Number(acked) < this.#replicas)
          throw new Error(
            `the write reached ${acked} of the ${this.#replicas} replica(s) writeBehind.replicas asks for within ${this.#replicaTimeoutMs} ms (it may still be flushed; retrying it is safe)`,
          );
      }
      const [first, pending] = reply;
      for (const [i, p] of batch.entries())
        p.resolve({ seq: Number(first) + i, pending: Number(pending) });
    } catch (error) {
      const failure = new RedisUnavailableError('writeBehind', error);
      for (const p of batch) p.reject(failure);
    }
  }

  /** The pending records of rows, by key (undefined where none). */
  async read(entity: string, keys: readonly string[]): Promise<Array<PendingRecord | undefined>> {
    if (keys.length === 0) return [];
    const hashes = await this.#hashes(entity, keys, 'writeBehind read');
    return hashes.map((hash, i) => this.#codec.decodeRecord(keys[i] as string, hash, 0));
  }

  /** Whether each row has pending writes. */
  async exists(entity: string, keys: readonly string[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    await this.#connected();
    const pipeline = this.#redis.pipeline();
    for (const key of keys) pipeline.exists(this.keys.writeBehindRecord(entity, key));
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, found]) => {
      if (error) throw new RedisUnavailableError('writeBehind exists', error);
      return found === 1;
    });
  }

  /** The rows whose writes have waited longest, at most `limit`, with everything pending for them. */
  async take(entity: string, limit: number): Promise<PendingRecord[]> {
    await this.#connected();
    const queue = this.keys.writeBehindQueue(entity);
    const ranked = await this.#redis.zrange(queue, '0', String(limit - 1), 'WITHSCORES');
    const members: string[] = [];
    const since: number[] = [];
    for (let i = 0; i < ranked.length; i += 2) {
      members.push(ranked[i] as string);
      since.push(Number(ranked[i + 1]));
    }
    const hashes = await this.#hashes(entity, members, 'writeBehind take');
    const records: PendingRecord[] = [];
    for (const [i, key] of members.entries()) {
      const record = this.#codec.decodeRecord(
        key,
        hashes[i] as Record<string, Buffer>,
        since[i] ?? 0,
      );
      if (record !== undefined) records.push(record);
      // Cleared between the two reads. Unqueued only if still gone: a write may have
      // recreated it since (its ZADD NX found the row still queued).
      else
        await this.#redis.walcache_wb_unqueue_if_gone(
          queue,
          this.keys.writeBehindRecord(entity, key),
          key,
        );
    }
    return records;
  }

  /**
   * Marks, inside a repository transaction `xid`, the record's writes up to `seq` as
   * applied or superseded by it (see wb-fence.lua). False when the record is gone.
   */
  async fence(entity: string, key: string, xid: string, seq: number): Promise<boolean> {
    await this.#connected();
    const set = await this.#redis.walcache_wb_fence(
      this.keys.writeBehindRecord(entity, key),
      fenceField(xid),
      String(seq),
    );
    return set === 1;
  }

  /**
   * Clears exactly the fields named (writes, fences, the attempt counter); a record left
   * without writes leaves the queue. `takenAt`: when the records were read.
   */
  async settle(
    entity: string,
    settlements: readonly Settlement[],
    takenAt = Date.now(),
  ): Promise<void> {
    // A script blocks Redis while it runs: a flush's thousands of records go in slices,
    // so writers' scripts get in between.
    for (let start = 0; start < settlements.length; start += SETTLE_SLICE) {
      const keys = [this.keys.writeBehindQueue(entity)];
      const args: string[] = [String(takenAt)];
      for (const s of settlements.slice(start, start + SETTLE_SLICE)) {
        const fields = [
          ...(s.seqs ?? []).map(String),
          ...(s.fences ?? []).map(fenceField),
          ...(s.attempts ? [ATTEMPTS] : []),
        ];
        if (fields.length === 0) continue;
        keys.push(this.keys.writeBehindRecord(entity, s.key));
        args.push(s.key, String(fields.length), ...fields);
      }
      if (keys.length > 1) await this.#redis.walcache_wb_settle(keys.length, ...keys, ...args);
    }
  }

  /**
   * Counts a failed flush of the writes `seqs` of a record. Past `maxAttempts` they move
   * to the dead-letter list with the error; resolves true then.
   */
  async fail(
    entity: string,
    key: string,
    seqs: readonly number[],
    error: unknown,
    maxAttempts: number,
  ): Promise<boolean> {
    const last = String(Math.max(...seqs));
    const entry = JSON.stringify({
      key,
      seq: last,
      error: error instanceof Error ? error.message : String(error),
      code: (error as { code?: unknown })?.code ?? null,
      at: Date.now(),
    });
    const moved = await this.#redis.walcache_wb_fail(
      this.keys.writeBehindRecord(entity, key),
      this.keys.writeBehindQueue(entity),
      this.keys.writeBehindDead(entity),
      this.keys.writeBehindDeadRecord(entity, last),
      maxAttempts,
      entry,
      key,
      ...seqs.map(String),
    );
    return moved === 1;
  }

  /** Pending rows, oldest age and dead letters of one entity. */
  async stats(entity: string): Promise<WriteBehindStats> {
    await this.#connected();
    const queue = this.keys.writeBehindQueue(entity);
    const [pending, oldest, dead] = await Promise.all([
      this.#redis.zcard(queue),
      this.#redis.zrange(queue, '0', '0', 'WITHSCORES'),
      this.#redis.llen(this.keys.writeBehindDead(entity)),
    ]);
    const since = oldest[1] === undefined ? null : Number(oldest[1]);
    return { pending, oldestAgeMs: since === null ? 0 : Math.max(0, Date.now() - since), dead };
  }

  /** The dead-letter list, oldest first, with the writes that failed. */
  async deadLetters(entity: string, limit = 100): Promise<DeadLetter[]> {
    await this.#connected();
    const entries = await this.#redis.lrange(this.keys.writeBehindDead(entity), 0, limit - 1);
    return Promise.all(
      entries.map(async (json) => {
        const entry = JSON.parse(json) as Omit<DeadLetter, 'values'>;
        const hash = await this.#redis.hgetallBuffer(
          this.keys.writeBehindDeadRecord(entity, entry.seq),
        );
        const writes = this.#codec.decodeWrites(entry.key, hash);
        return { ...entry, values: Object.assign({}, ...writes.map((w) => w.patch)) };
      }),
    );
  }

  /** Closes the connection. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= closeClient(this.#redis);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** The records' hashes, in slices of one script call each (a script blocks Redis while it runs). */
  async #hashes(
    entity: string,
    keys: readonly string[],
    operation: string,
  ): Promise<Array<Record<string, Buffer>>> {
    if (keys.length === 0) return [];
    await this.#connected();
    const hashes: Array<Record<string, Buffer>> = [];
    for (let start = 0; start < keys.length; start += READ_SLICE) {
      const slice = keys.slice(start, start + READ_SLICE);
      let replies: Buffer[][];
      try {
        replies = await this.#redis.walcache_wb_readBuffer(
          slice.length,
          ...slice.map((k) => this.keys.writeBehindRecord(entity, k)),
        );
      } catch (error) {
        throw new RedisUnavailableError(operation, error);
      }
      for (const flat of replies) {
        const hash: Record<string, Buffer> = {};
        for (let i = 0; i < flat.length; i += 2)
          hash[(flat[i] as Buffer).toString()] = flat[i + 1] as Buffer;
        hashes.push(hash);
      }
    }
    return hashes;
  }

  /**
   * Pending writes are state, not cache: a read that cannot see them must fail rather
   * than answer older values. A connection still being opened is waited for (bounded).
   */
  async #connected(): Promise<void> {
    if (this.#closing) throw new RedisUnavailableError('writeBehind (the store is closed)');
    if (this.#redis.status === 'ready') return;
    // One wait shared by every caller (a burst of writes at start would add a listener each).
    this.#connecting ??= waitReady(this.#redis, this.#connectTimeoutMs).finally(() => {
      this.#connecting = undefined;
    });
    if (!(await this.#connecting))
      throw new RedisUnavailableError('writeBehind (no connection to the jobs RedisClient)');
  }
}
