import type { LoadOptions } from '../cache/cache-engine.js';
import type { WriteReceipt } from './read-your-writes.js';

/** Per-call options of every repository read. Each falls back to the entity's and the config's. */
export interface ReadOptions {
  /** Fresh lifetime of a value this read fills. @default the entity's `ttlMs`, else `cache.ttlMs` */
  readonly ttlMs?: number;
  /**
   * Serve from the cache only if the worker has applied every commit older than this
   * (by its heartbeat); otherwise read the database without touching the cache.
   */
  readonly maxStalenessMs?: number;
  /** Skip the cache, read the database, and refill the cache with what it returned. */
  readonly forceFresh?: boolean;
  /** Grace after expiry in which the stale value is served while one refresh runs. */
  readonly staleWhileRevalidateMs?: number;
  /**
   * Read-your-writes across processes: wait (at most `repository.readYourWritesTimeoutMs`)
   * until the worker has applied this write, then read; if it does not in time, read the
   * database directly (never an older cached value).
   */
  readonly readYourWrites?: WriteReceipt | string;
}

/**
 * The engine's options for a read after a write receipt was reached: nothing this process
 * holds in memory (L1, trusted tag versions, a load in flight) may answer it, since the
 * bus message that drops them can arrive after the worker's position did.
 */
export function afterWrite(options: LoadOptions): LoadOptions {
  return { ...options, skipL1: true, verifyTags: true };
}

/** The engine's options for a read: the defaults object itself when the call passes none. */
export function loadOptions(defaults: LoadOptions, options: ReadOptions | undefined): LoadOptions {
  if (options === undefined) return defaults;
  const { ttlMs, maxStalenessMs, forceFresh, staleWhileRevalidateMs } = options;
  if (
    ttlMs === undefined &&
    maxStalenessMs === undefined &&
    forceFresh === undefined &&
    staleWhileRevalidateMs === undefined
  )
    return defaults;
  return {
    ...defaults,
    ...(ttlMs !== undefined && { ttlMs }),
    ...(maxStalenessMs !== undefined && { maxStalenessMs }),
    ...(forceFresh !== undefined && { forceFresh }),
    ...(staleWhileRevalidateMs !== undefined && { staleWhileRevalidateMs }),
  };
}
