import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CacheEngine } from '../cache/cache-engine.js';
import { L1_RESET_REASONS, L2_OPERATIONS, REFRESH_REASONS, TIERS } from '../cache/cache-events.js';

/** `walcache_lease_wait_seconds{outcome}`: the other process's fill came in time, or not. */
const LEASE_WAIT_OUTCOMES = ['filled', 'gave-up'] as const;

/**
 * Prometheus metrics for an engine, fed by its events (the hot path never calls
 * prom-client). Returns a function that unsubscribes.
 *
 * Every labelled series whose label values are known here (tiers, L2 operations, refresh
 * and L1 reset reasons, lease-wait outcomes) exists at 0 from this call on: a counter
 * that first appears at 1 is no increase to Prometheus, and `increase()` would miss it.
 *
 * @example
 * const registry = new Registry();
 * const stop = collectEngineMetrics(engine, registry);
 * // expose registry.metrics() on /metrics
 */
export function collectEngineMetrics(
  engine: CacheEngine,
  registry: Registry = new Registry(),
): () => void {
  const labels = { registers: [registry] };
  const hits = new Counter({
    name: 'walcache_cache_hits_total',
    help: 'Reads answered by a tier with a fresh value',
    labelNames: ['tier'],
    ...labels,
  });
  const stale = new Counter({
    name: 'walcache_cache_stale_served_total',
    help: 'Stale values served inside their grace period',
    labelNames: ['tier'],
    ...labels,
  });
  const misses = new Counter({
    name: 'walcache_cache_misses_total',
    help: 'Reads neither tier could answer',
    ...labels,
  });
  const coalesced = new Counter({
    name: 'walcache_cache_coalesced_total',
    help: 'Reads that joined a load already under way in this process',
    ...labels,
  });
  const fills = new Counter({
    name: 'walcache_cache_fills_total',
    help: 'Values stored in L2 under a lease',
    ...labels,
  });
  const rejected = new Counter({
    name: 'walcache_cache_fill_rejected_total',
    help: 'Fills refused because the lease was lost (an invalidation won the race)',
    ...labels,
  });
  const fenced = new Counter({
    name: 'walcache_cache_fills_fenced_total',
    help: 'Fills stored although invalidated during the load: the load snapshot proved the commits seen',
    ...labels,
  });
  const slides = new Counter({
    name: 'walcache_cache_slides_total',
    help: 'Hits that extended an entry (sliding expiration)',
    ...labels,
  });
  const slideFailed = new Counter({
    name: 'walcache_cache_slide_failed_total',
    help: 'Sliding extensions that Redis did not take (the L2 entry keeps its expiry)',
    ...labels,
  });
  const corrupt = new Counter({
    name: 'walcache_cache_corrupt_entries_total',
    help: 'L2 entries that could not be decoded',
    ...labels,
  });
  const decryptFailed = new Counter({
    name: 'walcache_cache_decrypt_failures_total',
    help: 'Encrypted L2 entries that did not decrypt (missing or other key), read as misses',
    ...labels,
  });
  const l2Errors = new Counter({
    name: 'walcache_redis_errors_total',
    help: 'Failed Redis operations',
    labelNames: ['operation'],
    ...labels,
  });
  const refreshes = new Counter({
    name: 'walcache_cache_refreshes_total',
    help: 'Background refreshes',
    labelNames: ['reason'],
    ...labels,
  });
  const resets = new Counter({
    name: 'walcache_l1_resets_total',
    help: 'Times L1 was cleared',
    labelNames: ['reason'],
    ...labels,
  });
  const evictFailed = new Counter({
    name: 'walcache_write_evict_failed_total',
    help: 'Repository writes whose local eviction failed (the worker still invalidates)',
    ...labels,
  });
  const rywTimeouts = new Counter({
    name: 'walcache_read_your_writes_timeouts_total',
    help: 'readYourWrites reads that did not see the worker reach the write in time and read the database',
    ...labels,
  });
  const bypasses = new Counter({
    name: 'walcache_staleness_bypass_total',
    help: 'maxStalenessMs reads that bypassed the cache because the worker lagged',
    ...labels,
  });
  const graceServed = new Counter({
    name: 'walcache_grace_served_total',
    help: 'Reads answered with the last loaded value because the database was unreachable (cache.graceMs): possibly stale',
    ...labels,
  });
  const loads = new Histogram({
    name: 'walcache_load_duration_seconds',
    help: 'Loader duration',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    ...labels,
  });
  const leaseWaits = new Histogram({
    name: 'walcache_lease_wait_seconds',
    help: 'Time spent waiting for another process to fill',
    labelNames: ['outcome'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    ...labels,
  });
  new Gauge({
    name: 'walcache_breaker_open',
    help: '1 while the Redis circuit breaker is open or half-open',
    ...labels,
    collect() {
      this.set(engine.breakerState === 'closed' ? 0 : 1);
    },
  });
  new Gauge({
    name: 'walcache_bus_healthy',
    help: '1 while the L1 coherence bus is subscribed',
    ...labels,
    collect() {
      this.set(engine.busHealthy ? 1 : 0);
    },
  });
  new Gauge({
    name: 'walcache_l1_entries',
    help: 'Entries in L1',
    ...labels,
    collect() {
      this.set(engine.l1Stats.entries);
    },
  });
  new Gauge({
    name: 'walcache_l1_bytes',
    help: 'Estimated heap bytes held in L1',
    ...labels,
    collect() {
      this.set(engine.l1Stats.bytes);
    },
  });

  for (const tier of TIERS) {
    hits.inc({ tier }, 0);
    stale.inc({ tier }, 0);
  }
  for (const operation of L2_OPERATIONS) l2Errors.inc({ operation }, 0);
  for (const reason of REFRESH_REASONS) refreshes.inc({ reason }, 0);
  for (const reason of L1_RESET_REASONS) resets.inc({ reason }, 0);
  for (const outcome of LEASE_WAIT_OUTCOMES) leaseWaits.zero({ outcome });

  const l1Hits = hits.labels('l1');
  const l2Hits = hits.labels('l2');
  const listeners = {
    hit: (tier: 'l1' | 'l2') => (tier === 'l1' ? l1Hits : l2Hits).inc(),
    'stale-served': (tier: 'l1' | 'l2') => stale.labels(tier).inc(),
    miss: () => misses.inc(),
    coalesced: () => coalesced.inc(),
    fill: () => fills.inc(),
    'fill-rejected': () => rejected.inc(),
    'fill-fenced': () => fenced.inc(),
    slide: () => slides.inc(),
    'slide-failed': () => slideFailed.inc(),
    'corrupt-entry': () => corrupt.inc(),
    'decrypt-failed': () => decryptFailed.inc(),
    'l2-error': (operation: string) => l2Errors.labels(operation).inc(),
    refresh: (_key: string, reason: string) => refreshes.labels(reason).inc(),
    'l1-reset': (reason: string) => resets.labels(reason).inc(),
    load: (_key: string, ms: number) => loads.observe(ms / 1000),
    'evict-failed': () => evictFailed.inc(),
    'ryw-timeout': () => rywTimeouts.inc(),
    bypass: () => bypasses.inc(),
    'grace-served': () => graceServed.inc(),
    'lease-wait': (_key: string, ms: number, got: boolean) =>
      leaseWaits.labels(got ? 'filled' : 'gave-up').observe(ms / 1000),
  } as const;
  for (const [event, listener] of Object.entries(listeners))
    engine.events.on(event as 'miss', listener as () => void);
  return () => {
    for (const [event, listener] of Object.entries(listeners))
      engine.events.off(event as 'miss', listener as () => void);
  };
}
