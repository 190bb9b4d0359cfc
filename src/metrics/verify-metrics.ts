import { Gauge, Registry } from 'prom-client';
import type { VerifyReport } from '../ops/verify.js';

const GAUGES = {
  stale: ['walcache_verify_stale_entries', 'Cached entries confirmed stale by the last verify run'],
  unconfirmed: [
    'walcache_verify_unconfirmed_entries',
    'Entries that differed from their rows while the worker had not caught up (maybe only lag)',
  ],
  checked: ['walcache_verify_checked_entries', 'Entries compared with their rows by the last run'],
  caughtUp: [
    'walcache_verify_worker_caught_up',
    '1 when the worker had applied the position read before the last run',
  ],
  lastRun: ['walcache_verify_last_run_timestamp_seconds', 'When the last verify run started'],
} as const;

/**
 * Publishes a `verify` report as gauges in `registry` (created on first use, updated
 * after): alert on `walcache_verify_stale_entries > 0`. For a process that runs `verify()`
 * periodically and exposes /metrics, or for `walcache verify --metrics-file` (a
 * node_exporter textfile collector).
 *
 * @example
 * const registry = new Registry();
 * recordVerifyMetrics(await verify(config), registry);
 */
export function recordVerifyMetrics(
  report: VerifyReport,
  registry: Registry = new Registry(),
): Registry {
  const gauge = (which: keyof typeof GAUGES): Gauge => {
    const [name, help] = GAUGES[which];
    const existing = registry.getSingleMetric(name);
    return existing instanceof Gauge ? existing : new Gauge({ name, help, registers: [registry] });
  };
  gauge('stale').set(report.stale);
  gauge('unconfirmed').set(report.unconfirmed);
  gauge('checked').set(report.checked);
  gauge('caughtUp').set(report.position.reached ? 1 : 0);
  gauge('lastRun').set(report.at / 1000);
  return registry;
}
