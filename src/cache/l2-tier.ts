import { RedisUnavailableError } from '../errors/typed-errors.js';
import { publishOn } from './bus-connection.js';
import type { L2Operation } from './cache-events.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import { newToken } from './envelope.js';
import { type AnyPipeline, execByNode, type RedisClient } from './redis-client.js';
import { defineScripts, type ScriptCommands } from './scripts.js';

export type AcquireResult =
  | { readonly kind: 'acquired' }
  | { readonly kind: 'held'; readonly pttl: number }
  | { readonly kind: 'data'; readonly value: Buffer }
  | { readonly kind: 'changed' };

/**
 * Redis as the L2 tier: every operation is on one key (Redis Cluster safe), every call
 * passes the circuit breaker, and an open breaker fails at once with
 * RedisUnavailableError instead of waiting for a timeout.
 */
export class L2Tier {
  readonly #redis: RedisClient & ScriptCommands;
  readonly #breaker: CircuitBreaker;
  readonly #onError: (operation: L2Operation, error: unknown) => void;
  /** Settles once the client's first connection is up or its wait is over (`holdUntil`). */
  #connecting: Promise<void> | undefined;

  constructor(
    redis: RedisClient,
    breaker: CircuitBreaker,
    onError: (operation: L2Operation, error: unknown) => void,
  ) {
    this.#redis = defineScripts(redis);
    this.#breaker = breaker;
    this.#onError = onError;
  }

  /**
   * Holds every call until `connected` settles. A client without an offline queue
   * refuses commands at once until its first connection is up, and each refusal would
   * count against the breaker as an outage; a Redis still down after the wait is one.
   */
  holdUntil(connected: Promise<unknown>): void {
    const wait: Promise<void> = connected.then(
      () => this.#endHold(wait),
      () => this.#endHold(wait),
    );
    this.#connecting = wait;
  }

  #endHold(wait: Promise<void>): void {
    if (this.#connecting === wait) this.#connecting = undefined;
  }

  get available(): boolean {
    return this.#breaker.state === 'closed';
  }

  /** GET; a key of another Redis type reads as foreign bytes (a corrupt entry), not as an outage. */
  get(key: string): Promise<Buffer | null> {
    if (this.#connecting !== undefined) return this.#connecting.then(() => this.get(key));
    // The hit path: one promise, no async wrapper (measured in bench:hitpath).
    if (!this.#breaker.allow()) return Promise.reject(new RedisUnavailableError('get'));
    return this.#redis.getBuffer(key).then(this.#getDone, this.#getFailed);
  }

  /**
   * `get`, handing what it read to `next` in the same callback (one promise fewer: the L2
   * hit path). A failure goes to `failed` as `get` would reject with it.
   */
  getThen<R>(
    key: string,
    next: (value: Buffer | null) => R | PromiseLike<R>,
    failed: (error: unknown) => R | PromiseLike<R>,
  ): Promise<R> {
    if (this.#connecting !== undefined)
      return this.#connecting.then(() => this.getThen(key, next, failed));
    if (!this.#breaker.allow())
      return Promise.resolve(new RedisUnavailableError('get')).then(failed);
    return this.#redis.getBuffer(key).then(
      (value) => {
        this.#breaker.success();
        return next(value);
      },
      (error: unknown) => {
        let value: Buffer;
        try {
          value = this.#getFailed(error);
        } catch (unavailable) {
          return failed(unavailable);
        }
        return next(value);
      },
    );
  }

  readonly #getDone = (value: Buffer | null): Buffer | null => {
    this.#breaker.success();
    return value;
  };

  readonly #getFailed = (error: unknown): Buffer => {
    if (error instanceof Error && error.message.startsWith('WRONGTYPE')) {
      this.#breaker.success();
      return WRONG_TYPE;
    }
    this.#breaker.failure();
    this.#onError('get', error);
    throw new RedisUnavailableError('get', error);
  };

  /** Reads several version keys (tags, epoch) with single-key GETs, pipelined. */
  getVersions(keys: readonly string[]): Promise<Array<string | null>> {
    return this.#guard('get-versions', () => Promise.all(keys.map((k) => this.#redis.get(k))));
  }

  /** Reads a version, creating a fresh unique one (living `ttlMs`; 0: for ever) if it is missing. */
  initVersion(key: string, ttlMs: number, proposed: string = newVersion(INITIAL)): Promise<string> {
    return this.#guard('init-version', () =>
      this.#redis.walcache_init_version(key, proposed, ttlMs),
    );
  }

  /** Gives every version key a new unique value, living `ttlMs` (O(1) per tag, whatever it covers). */
  bumpVersions(keys: readonly string[], ttlMs: number): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return this.#guard('bump-versions', async () => {
      throwFirst(
        await execByNode(
          this.#redis,
          keys.map((key) => ({
            key,
            add: (p) => {
              if (ttlMs > 0) p.set(key, newVersion(), 'PX', ttlMs);
              else p.set(key, newVersion());
            },
          })),
        ),
      );
    });
  }

  acquire(
    key: string,
    token: string,
    ttlMs: number,
    replacePrefix: string,
    mode: 'fill' | 'refresh',
  ): Promise<AcquireResult> {
    return this.#guard('acquire', async () => {
      const [code, extra] = await this.#redis.walcache_acquireBuffer(
        key,
        token,
        ttlMs,
        replacePrefix,
        mode,
        Date.now(),
      );
      switch (code) {
        case 1:
          return { kind: 'acquired' } as const;
        case 2:
          return { kind: 'held', pttl: Number(extra) } as const;
        case 3:
          return { kind: 'data', value: extra as Buffer } as const;
        default:
          return { kind: 'changed' } as const;
      }
    });
  }

  /**
   * Stores a loaded value if its lease holds, or if an invalidation fenced the lease and
   * `snapshot` proves the load saw its commits (fill-1.lua). `stored`: 'lease' (the lease
   * was intact), 'fenced' (stored over the fenced tombstone) or null (refused);
   * `waiters`: other processes wait for the key.
   */
  async fill(
    key: string,
    leasePrefix: string,
    value: Buffer,
    ttlMs: number,
    snapshot = '',
  ): Promise<{ readonly stored: 'lease' | 'fenced' | null; readonly waiters: boolean }> {
    const [code, waiters] = await this.#guard('fill', () =>
      this.#redis.walcache_fill(key, leasePrefix, value, ttlMs, snapshot, Date.now()),
    );
    return { stored: code === 1 ? 'lease' : code === 2 ? 'fenced' : null, waiters: waiters === 1 };
  }

  /** Gives a lease back; `waiters`: other processes wait for the key. */
  async release(
    key: string,
    leasePrefix: string,
  ): Promise<{ readonly released: boolean; readonly waiters: boolean }> {
    const [released, waiters] = await this.#guard('release', () =>
      this.#redis.walcache_release(key, leasePrefix, Date.now()),
    );
    return { released: released === 1, waiters: waiters === 1 };
  }

  /** Tombstones keys in one pipeline; resolves when all are written. */
  tombstone(keys: readonly string[], tombstone: string, ttlMs: number): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return this.#guard('tombstone', async () => {
      if (keys.length === 1) {
        await this.#redis.walcache_tombstone(keys[0] as string, tombstone, ttlMs, '', Date.now());
        return;
      }
      const now = Date.now();
      throwFirst(
        await execByNode(
          this.#redis,
          keys.map((key) => ({
            key,
            add: (p: AnyPipeline) =>
              (p as AnyPipeline & ScriptCommands).walcache_tombstone(
                key,
                tombstone,
                ttlMs,
                '',
                now,
              ),
          })),
        ),
      );
    });
  }

  async deleteIf(key: string, prefix: string): Promise<boolean> {
    return (
      (await this.#guard('delete-if', () => this.#redis.walcache_delete_if(key, prefix))) === 1
    );
  }

  /**
   * Sliding expiration: moves an entry's freshUntil and staleUntil, and its key's expiry
   * to `staleUntil`, only if it still holds the fill `prefix` and only forward (touch-1.lua).
   */
  async touch(
    key: string,
    prefix: string,
    freshUntil: number,
    staleUntil: number,
    ttlMs: number,
  ): Promise<boolean> {
    const times = Buffer.allocUnsafe(16);
    times.writeDoubleBE(freshUntil, 0);
    times.writeDoubleBE(staleUntil, 8);
    const ttl = Math.max(1, Math.ceil(ttlMs));
    return (
      (await this.#guard('touch', () => this.#redis.walcache_touch(key, prefix, times, ttl))) === 1
    );
  }

  set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    return this.#guard('set', async () => {
      await this.#redis.set(key, value, 'PX', ttlMs);
    });
  }

  publish(channel: string, message: string): Promise<void> {
    return this.#guard('publish', async () => {
      await publishOn(this.#redis, channel, message);
    });
  }

  async #guard<T>(operation: L2Operation, run: () => Promise<T>): Promise<T> {
    if (this.#connecting !== undefined) await this.#connecting;
    if (!this.#breaker.allow()) throw new RedisUnavailableError(operation);
    try {
      const result = await run();
      this.#breaker.success();
      return result;
    } catch (error) {
      this.#breaker.failure();
      this.#onError(operation, error);
      throw error instanceof RedisUnavailableError
        ? error
        : new RedisUnavailableError(operation, error);
    }
  }
}

/** Stands for a key of another Redis type: parses as a corrupt (foreign) entry. */
const WRONG_TYPE = Buffer.from('?wrong-type');

let versionCounter = 0;
/** Marks a version created where none was (`initVersion`) rather than by a bump. */
export const INITIAL = 'i';

/**
 * A version no other bump will produce: time, a process-random part and a counter;
 * `i` first for one made by `initVersion` (it stands for no invalidation).
 */
export function newVersion(mark = '', xids = ''): string {
  versionCounter = (versionCounter + 1) % 0x100000;
  const base = `${mark}${Date.now().toString(36)}.${processTag}.${versionCounter.toString(36)}`;
  return xids === '' ? base : `${base}~${xids}`;
}

/**
 * The ids of the commits a version was bumped for (the worker's `~<xids>` suffix, see
 * docs/consistency.md), or an empty list when it names none.
 */
export function versionXids(version: string): number[] {
  const tilde = version.indexOf('~');
  if (tilde < 0) return [];
  return version
    .slice(tilde + 1)
    .split(',')
    .map(Number)
    .filter((x) => Number.isInteger(x) && x > 0);
}
const processTag = newToken().slice(0, 6);

/** Was this version made by a bump (not created by `initVersion`)? */
export function isBumpVersion(version: string): boolean {
  return !version.startsWith(INITIAL);
}

/** When a version was made (ms since epoch, the maker's clock); NaN for a foreign value. */
export function versionTime(version: string): number {
  const start = version.startsWith(INITIAL) ? 1 : 0;
  const dot = version.indexOf('.');
  return dot > start ? Number.parseInt(version.slice(start, dot), 36) : Number.NaN;
}

function throwFirst(results: Array<[Error | null, unknown]> | null): void {
  for (const [error] of results ?? []) if (error) throw error;
}
