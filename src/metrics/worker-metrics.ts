import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InvalidationWorker } from '../cdc/invalidation-worker.js';
import { lsnToBigInt } from '../protocol/lsn.js';

/**
 * Prometheus metrics of the invalidation worker, fed by its events. The slot's retained
 * WAL is read from PostgreSQL at scrape time.
 */
export function collectWorkerMetrics(
  worker: InvalidationWorker,
  registry: Registry = new Registry(),
): () => void {
  const r = { registers: [registry] };
  const changes = new Counter({
    name: 'walcache_worker_changes_total',
    help: 'Row changes decoded',
    ...r,
  });
  const transactions = new Counter({
    name: 'walcache_worker_transactions_total',
    help: 'Committed transactions applied',
    ...r,
  });
  const collapsed = new Counter({
    name: 'walcache_worker_collapsed_transactions_total',
    help: 'Transactions past the row cap (table tags bumped instead of keys)',
    ...r,
  });
  const keys = new Counter({
    name: 'walcache_worker_keys_tombstoned_total',
    help: 'Keys tombstoned',
    ...r,
  });
  const tags = new Counter({
    name: 'walcache_worker_tags_bumped_total',
    help: 'Tag versions bumped',
    ...r,
  });
  const apply = new Histogram({
    name: 'walcache_worker_apply_seconds',
    help: 'Time to apply one group to Redis and acknowledge it',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    ...r,
  });
  const lag = new Histogram({
    name: 'walcache_worker_lag_seconds',
    help: 'Commit to applied (invalidated in Redis and broadcast)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    ...r,
  });
  const errors = new Counter({
    name: 'walcache_worker_errors_total',
    help: 'Errors by kind',
    labelNames: ['kind'],
    ...r,
  });
  const unknown = new Counter({
    name: 'walcache_worker_unknown_table_changes_total',
    help: 'Changes to tables the config does not know',
    labelNames: ['table'],
    ...r,
  });
  const epochs = new Counter({
    name: 'walcache_worker_epoch_bumps_total',
    help: 'Global epoch bumps',
    labelNames: ['reason'],
    ...r,
  });
  const outsideWrites = new Counter({
    name: 'walcache_worker_write_behind_outside_writes_total',
    help: 'Changes made outside walcache to rows with pending write-behind writes (the next flush applies them over it)',
    labelNames: ['entity'],
    ...r,
  });
  const reconnects = new Counter({
    name: 'walcache_worker_reconnects_total',
    help: 'Replication stream reconnects',
    ...r,
  });
  const acknowledged = new Gauge({
    name: 'walcache_worker_acknowledged_lsn',
    help: 'Last acknowledged commit LSN, as a number',
    ...r,
  });
  new Gauge({
    name: 'walcache_worker_active',
    help: '1 while this worker holds the slot, 0 on standby',
    ...r,
    collect() {
      this.set(worker.role === 'active' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'walcache_slot_retained_wal_bytes',
    help: 'WAL the replication slot keeps from being recycled',
    ...r,
    async collect() {
      const slot = await worker.slotInfo().catch(() => null);
      if (slot) this.set(slot.retainedBytes);
    },
  });

  const listeners = {
    transaction: (rows: number, wasCollapsed: boolean) => {
      changes.inc(rows);
      if (wasCollapsed) collapsed.inc();
    },
    applied: (txs: number, _rows: number, k: number, t: number, ms: number, lags: number[]) => {
      transactions.inc(txs);
      keys.inc(k);
      tags.inc(t);
      apply.observe(ms / 1000);
      for (const l of lags) lag.observe(Math.max(0, l) / 1000);
    },
    acknowledged: (lsn: string) => acknowledged.set(Number(lsnToBigInt(lsn))),
    'unknown-table': (table: string, n: number) => unknown.labels(table).inc(n),
    'epoch-bump': (reason: string) => epochs.labels(reason).inc(),
    reconnect: () => reconnects.inc(),
    'write-behind-outside-write': (entity: string) => outsideWrites.labels(entity).inc(),
    failure: (kind: string) => errors.labels(kind).inc(),
  } as const;
  for (const [event, listener] of Object.entries(listeners))
    worker.events.on(event as 'reconnect', listener as () => void);
  return () => {
    for (const [event, listener] of Object.entries(listeners))
      worker.events.off(event as 'reconnect', listener as () => void);
  };
}
