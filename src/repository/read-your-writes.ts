import type { CacheEngine } from '../cache/cache-engine.js';
import { ConfigError } from '../errors/typed-errors.js';
import { isLsn, lsnToBigInt } from '../protocol/lsn.js';

/**
 * What a committed repository write leaves behind: the WAL position its commit is
 * covered by, and what the writing process evicted at once.
 */
export interface WriteReceipt {
  /** `pg_current_wal_lsn()` just after the commit: at or past the commit record's end. */
  readonly lsn: string;
  readonly keys: readonly string[];
  readonly tags: readonly string[];
}

/**
 * Waits until the invalidation worker has applied a WAL position. One poll of the
 * worker's heartbeat (every `intervalMs`) serves every waiter of the process.
 */
export class WorkerPosition {
  readonly #engine: CacheEngine;
  readonly #intervalMs: number;
  readonly #waiters = new Set<{
    target: bigint;
    resolve: (ok: boolean) => void;
    deadline: number;
  }>();
  #applied = -1n;
  #polling = false;

  constructor(engine: CacheEngine, intervalMs = 10) {
    this.#engine = engine;
    this.#intervalMs = intervalMs;
  }

  /**
   * Resolves true once the worker's applied position reaches `lsn` (every change
   * committed before it has been invalidated), false after `timeoutMs`.
   */
  waitFor(lsn: string | WriteReceipt, timeoutMs: number): Promise<boolean> {
    const target = toLsn(lsn);
    if (target <= this.#applied) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.#waiters.add({ target, resolve, deadline: Date.now() + timeoutMs });
      if (!this.#polling) void this.#poll();
    });
  }

  async #poll(): Promise<void> {
    this.#polling = true;
    try {
      while (this.#waiters.size > 0) {
        const beat = await this.#engine.workerHeartbeat();
        if (beat) {
          const lsn = lsnToBigInt(beat.lsn);
          if (lsn > this.#applied) this.#applied = lsn;
        }
        const now = Date.now();
        for (const waiter of this.#waiters) {
          if (waiter.target <= this.#applied) waiter.resolve(true);
          else if (now >= waiter.deadline) waiter.resolve(false);
          else continue;
          this.#waiters.delete(waiter);
        }
        if (this.#waiters.size > 0) await new Promise((r) => setTimeout(r, this.#intervalMs));
      }
    } finally {
      this.#polling = false;
    }
  }

  /**
   * For a read after a write: true once the worker has applied it; false after
   * `timeoutMs`, having reported `ryw-timeout` for `key` (the read then goes to the
   * database, never to an older cached value).
   */
  async readAfter(lsn: string | WriteReceipt, key: string, timeoutMs: number): Promise<boolean> {
    const started = Date.now();
    if (await this.waitFor(lsn, timeoutMs)) return true;
    this.#engine.events.emit('ryw-timeout', key, Date.now() - started);
    return false;
  }

  /** Ends every wait (as not reached). */
  close(): void {
    for (const waiter of this.#waiters) waiter.resolve(false);
    this.#waiters.clear();
  }
}

function toLsn(value: string | WriteReceipt): bigint {
  const lsn = typeof value === 'string' ? value : value?.lsn;
  if (typeof lsn !== 'string' || !isLsn(lsn))
    throw new ConfigError(
      'readYourWrites',
      value,
      'expected a write receipt or an LSN like "0/16B3748"',
    );
  return lsnToBigInt(lsn);
}
