import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { type ResolvedConfig, writeBehindEntities } from '../config/config.js';
import { QUEUE_NAMES, type QueueName } from '../queues/walcache-queues.js';
import { within } from './within.js';

/** A metrics scrape does not wait longer than this for Redis. */
const SCRAPE_TIMEOUT_MS = 2_000;

/** `walcache_warm_keys_total{outcome}`: what a warmer did with each key. */
export const WARM_OUTCOMES = ['loaded', 'skipped', 'missing', 'failed'] as const;

/** What the jobs metrics read from the runner at scrape time. */
export interface MeasuredRunner {
  readonly registry: Registry;
  readonly config: ResolvedConfig;
  jobCounts(): Promise<Map<QueueName, Record<string, number>> | undefined>;
  writeBehindState(): Promise<
    Map<string, { pending: number; oldestAgeMs: number; dead: number }> | undefined
  >;
}

/**
 * The jobs runner's Prometheus metrics: job durations and failures per queue, warm keys
 * per warmer and outcome, write-behind rows flushed and failed per entity (every series
 * the config names at 0), and gauges read at scrape time (queue depths, write-behind
 * backlog and dead letters).
 */
export interface JobsMetrics {
  readonly duration: Histogram<'queue'>;
  readonly failures: Counter<'queue'>;
  readonly flushedRows: Counter<'entity'>;
  readonly flushFailedRows: Counter<'entity'>;
  readonly warmKeys: Counter<'warmer' | 'outcome'>;
}

export function createJobsMetrics(runner: MeasuredRunner): JobsMetrics {
  const r = { registers: [runner.registry] };
  new Gauge({
    name: 'walcache_jobs_queue_jobs',
    help: 'Jobs per queue and state (waiting, active, delayed, failed), read at scrape time',
    labelNames: ['queue', 'state'],
    ...r,
    async collect() {
      const read = await within(runner.jobCounts(), SCRAPE_TIMEOUT_MS);
      const counts = read.settled ? read.value : undefined;
      if (counts === undefined) return;
      this.reset();
      for (const [queue, byState] of counts)
        for (const [state, n] of Object.entries(byState)) this.set({ queue, state }, n);
    },
  });
  // The three write-behind gauges read one `writeBehindState` per scrape (prom-client
  // collects metrics concurrently): the first collect starts the read, the others share it.
  let shared: { at: number; read: ReturnType<MeasuredRunner['writeBehindState']> } | undefined;
  const writeBehindState = () => {
    const now = Date.now();
    if (shared === undefined || now - shared.at > 1_000)
      shared = {
        at: now,
        read: within(runner.writeBehindState(), SCRAPE_TIMEOUT_MS).then((r) =>
          r.settled ? r.value : undefined,
        ),
      };
    return shared.read;
  };
  const writeBehindGauge = (
    name: string,
    help: string,
    pick: (s: { pending: number; oldestAgeMs: number; dead: number }) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['entity'],
      ...r,
      async collect() {
        const state = await writeBehindState();
        if (state === undefined) return;
        for (const [entity, s] of state) this.set({ entity }, pick(s));
      },
    });
  writeBehindGauge(
    'walcache_write_behind_pending',
    'Rows with write-behind writes not yet flushed to Postgres',
    (s) => s.pending,
  );
  writeBehindGauge(
    'walcache_write_behind_oldest_pending_seconds',
    'Age of the oldest pending write-behind write',
    (s) => s.oldestAgeMs / 1000,
  );
  writeBehindGauge(
    'walcache_write_behind_dead_letters',
    'Write-behind records in the dead-letter list',
    (s) => s.dead,
  );
  const metrics: JobsMetrics = {
    duration: new Histogram({
      name: 'walcache_jobs_duration_seconds',
      help: 'Time a job ran (each attempt), per queue',
      labelNames: ['queue'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      ...r,
    }),
    failures: new Counter({
      name: 'walcache_jobs_failures_total',
      help: 'Job attempts that failed, per queue',
      labelNames: ['queue'],
      ...r,
    }),
    flushedRows: new Counter({
      name: 'walcache_write_behind_flushed_rows_total',
      help: 'Write-behind rows written to Postgres (rate() gives rows/s)',
      labelNames: ['entity'],
      ...r,
    }),
    flushFailedRows: new Counter({
      name: 'walcache_write_behind_failed_rows_total',
      help: 'Write-behind rows whose flush failed (retried, or dead-lettered past writeBehind.maxAttempts)',
      labelNames: ['entity'],
      ...r,
    }),
    warmKeys: new Counter({
      name: 'walcache_warm_keys_total',
      help: 'Keys handled by warmers, by outcome (loaded, skipped, missing, failed)',
      labelNames: ['warmer', 'outcome'],
      ...r,
    }),
  };
  // Every series the config names, at 0: a first failure (or flush) is then an increase
  // Prometheus sees, not a series that appears at 1.
  for (const queue of QUEUE_NAMES) {
    metrics.duration.zero({ queue });
    metrics.failures.inc({ queue }, 0);
  }
  for (const entity of writeBehindEntities(runner.config)) {
    metrics.flushedRows.inc({ entity }, 0);
    metrics.flushFailedRows.inc({ entity }, 0);
  }
  for (const warmer of Object.keys(runner.config.warmers))
    for (const outcome of WARM_OUTCOMES) metrics.warmKeys.inc({ warmer, outcome }, 0);
  return metrics;
}
