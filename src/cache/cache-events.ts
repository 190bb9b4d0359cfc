import { EventEmitter } from 'node:events';

export const TIERS = ['l1', 'l2'] as const;
export type Tier = (typeof TIERS)[number];

/**
 * The values the events below can carry as a reason or an operation: metrics create their
 * labelled series for each at 0, so a first event is an increase Prometheus can see.
 */
export const L2_OPERATIONS = [
  'get',
  'get-versions',
  'init-version',
  'bump-versions',
  'acquire',
  'fill',
  'release',
  'tombstone',
  'delete-if',
  'touch',
  'set',
  'publish',
] as const;
export type L2Operation = (typeof L2_OPERATIONS)[number];
export const REFRESH_REASONS = ['stale', 'early'] as const;
export type RefreshReason = (typeof REFRESH_REASONS)[number];
/** Why L1 was cleared (see `l1-reset`). */
export const L1_RESET_REASONS = [
  'down',
  'stalled',
  'gap',
  'worker-restart',
  'epoch',
  'flush',
  'up',
] as const;
export type L1ResetReason = (typeof L1_RESET_REASONS)[number];

/**
 * What the engine reports. Metrics and logs subscribe; the hot path only emits
 * (positional arguments, no objects allocated per event).
 */
export interface CacheEventMap {
  /** A read was answered from a tier with a fresh value. */
  hit: [tier: Tier, key: string];
  /** Neither tier had a usable value. */
  miss: [key: string];
  /** A stale value was served inside its grace period while a refresh runs. */
  'stale-served': [tier: Tier, key: string];
  /** A caller joined a load already under way in this process. */
  coalesced: [key: string];
  /** The loader ran; `filled` says whether L2 accepted the value. */
  load: [key: string, durationMs: number];
  fill: [key: string];
  /**
   * L2 refused a fill: the lease was lost to an invalidation (or expired), or, for a
   * fenced load (`LoadOptions.snapshot`), its snapshot did not prove it saw the commits
   * that invalidated it (`not-proven`).
   */
  'fill-rejected': [key: string, reason: 'lease-lost' | 'not-proven' | 'invalidated-locally'];
  /**
   * A fill landed although invalidations arrived during its load: its snapshot proved the
   * load saw their commits (also counted as a `fill`).
   */
  'fill-fenced': [key: string];
  /** Another process held the lease; we waited `waitedMs`; `gotValue` whether its fill came in time. */
  'lease-wait': [key: string, waitedMs: number, gotValue: boolean];
  /**
   * Sliding expiration (`LoadOptions.sliding`): a hit moved the entry's freshness to
   * `freshUntil` (ms since epoch), in L1 and (in the background) in L2.
   */
  slide: [key: string, freshUntil: number];
  /** The L2 side of a slide failed (Redis): the entry keeps its L2 expiry; nothing else. */
  'slide-failed': [key: string, error: unknown];
  /** A background refresh started (stale-while-revalidate or early refresh). */
  refresh: [key: string, reason: RefreshReason];
  /** An L2 value could not be decoded; it was treated as a miss and removed. */
  'corrupt-entry': [key: string, reason: string];
  /**
   * An encrypted entry did not decrypt (a key id this process lacks, another key under the
   * same id, no keys at all, tampering), or a read that requires encryption found one in
   * the clear: a miss, and the fill replaces it.
   */
  'decrypt-failed': [key: string, reason: string];
  'l2-error': [operation: L2Operation, error: unknown];
  'breaker-open': [];
  'breaker-close': [];
  'bus-up': [];
  'bus-down': [];
  /** L1 was cleared: the bus went down or came back, a gap, a worker restart, an epoch bump. */
  'l1-reset': [reason: L1ResetReason];
  /** A read asked for `maxStalenessMs` and the worker was further behind (`lagMs`): the cache was bypassed. */
  bypass: [key: string, lagMs: number];
  /** Invalidations applied locally from the bus. */
  'bus-invalidate': [keys: number, tags: number];
  /** A repository write committed but its local eviction failed (Redis): the worker still invalidates. */
  'evict-failed': [keys: number, tags: number, error: unknown];
  /**
   * The loader failed with a connection error and `cache.graceMs` let the read have the
   * last value this process loaded for the key, `ageMs` old: possibly stale.
   */
  'grace-served': [key: string, ageMs: number];
  /** A `readYourWrites` read waited `waitedMs` without the worker reaching the write: it read the database. */
  'ryw-timeout': [key: string, waitedMs: number];
}

export class CacheEvents extends EventEmitter<CacheEventMap> {}
