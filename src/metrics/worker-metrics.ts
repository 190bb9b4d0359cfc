import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InvalidationWorker } from '../cdc/invalidation-worker.js';
import { EPOCH_BUMP_REASONS, WORKER_FAILURE_KINDS } from '../cdc/worker-events.js';
import { lsnToBigInt } from '../protocol/lsn.js';

/**
 * Prometheus metrics of the invalidation worker, fed by its events. The slot's retained
 * WAL is read from PostgreSQL at scrape time.
 *
 * Every series carries `slot` (the replication slot: several workers, of one slot or of
 * several, may be scraped together), and every series whose labels are known here
 * (failure kinds, epoch bump reasons, write-behind entities of the config) exists at 0
 * from this call on, so a first event is an increase Prometheus can see. Call it before
 * `worker.start()`: the epoch bump a start may need is then counted from 0.
 * `walcache_worker_start_time_seconds` says when the counters started; an alert can tell
 * from it that a counter above 0 counts events of the last minutes (a bump at start,
 * before the first scrape).
 */
export function collectWorkerMetrics(
  worker: InvalidationWorker,
  registry: Registry = new Registry(),
): () => void {
  const r = { registers: [registry] };
  const slot = worker.slot;
  const slotCounter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Counter({ name, help, labelNames: ['slot', ...labelNames], ...r });
  const changes = slotCounter('walcache_worker_changes_total', 'Row changes decoded');
  const transactions = slotCounter(
    'walcache_worker_transactions_total',
    'Committed transactions applied',
  );
  const collapsed = slotCounter(
    'walcache_worker_collapsed_transactions_total',
    'Transactions past the row cap (table tags bumped instead of keys)',
  );
  const keys = slotCounter('walcache_worker_keys_tombstoned_total', 'Keys tombstoned');
  const tags = slotCounter('walcache_worker_tags_bumped_total', 'Tag versions bumped');
  const apply = new Histogram({
    name: 'walcache_worker_apply_seconds',
    help: 'Time to apply one group to Redis and acknowledge it',
    labelNames: ['slot'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    ...r,
  });
  const lag = new Histogram({
    name: 'walcache_worker_lag_seconds',
    help: 'Commit to applied (invalidated in Redis and broadcast)',
    labelNames: ['slot'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    ...r,
  });
  const errors = slotCounter('walcache_worker_errors_total', 'Errors by kind', ['kind']);
  const unknown = slotCounter(
    'walcache_worker_unknown_table_changes_total',
    'Changes to tables the config does not know',
    ['table'],
  );
  const epochs = slotCounter('walcache_worker_epoch_bumps_total', 'Global epoch bumps', ['reason']);
  const outsideWrites = slotCounter(
    'walcache_worker_write_behind_outside_writes_total',
    'Changes made outside walcache to rows with pending write-behind writes (the next flush applies them over it)',
    ['entity'],
  );
  const reconnects = slotCounter(
    'walcache_worker_reconnects_total',
    'Replication stream reconnects',
  );
  let acknowledgedLsn: string | null = null;
  new Gauge({
    name: 'walcache_worker_acknowledged_lsn',
    help: 'Last acknowledged commit LSN, as a number',
    labelNames: ['slot'],
    ...r,
    collect() {
      // Before its first commit, the position the slot was confirmed at: a worker that
      // never acknowledges is then a flat line (WalcacheWorkerStalled), not a missing series.
      const lsn = acknowledgedLsn ?? worker.appliedLsn;
      if (lsn !== null) this.set({ slot }, Number(lsnToBigInt(lsn)));
    },
  });
  new Gauge({
    name: 'walcache_worker_active',
    help: '1 while this worker holds the slot, 0 on standby',
    labelNames: ['slot'],
    ...r,
    collect() {
      this.set({ slot }, worker.role === 'active' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'walcache_slot_retained_wal_bytes',
    help: 'WAL the replication slot keeps from being recycled',
    labelNames: ['slot'],
    ...r,
    async collect() {
      const info = await worker.slotInfo().catch(() => null);
      if (info) this.set({ slot }, info.retainedBytes);
    },
  });
  new Gauge({
    name: 'walcache_worker_start_time_seconds',
    help: 'Unix time the counters of this worker started from 0',
    labelNames: ['slot'],
    ...r,
  }).set({ slot }, Date.now() / 1000);

  // The series known in advance, at 0 (see above).
  for (const c of [changes, transactions, collapsed, keys, tags, reconnects]) c.inc({ slot }, 0);
  apply.zero({ slot });
  lag.zero({ slot });
  for (const kind of WORKER_FAILURE_KINDS) errors.inc({ slot, kind }, 0);
  for (const reason of EPOCH_BUMP_REASONS) epochs.inc({ slot, reason }, 0);
  for (const [entity, options] of Object.entries(worker.config.entities))
    if (options.writeBehind) outsideWrites.inc({ slot, entity }, 0);

  const listeners = {
    transaction: (rows: number, wasCollapsed: boolean) => {
      changes.inc({ slot }, rows);
      if (wasCollapsed) collapsed.inc({ slot });
    },
    applied: (txs: number, _rows: number, k: number, t: number, ms: number, lags: number[]) => {
      transactions.inc({ slot }, txs);
      keys.inc({ slot }, k);
      tags.inc({ slot }, t);
      apply.observe({ slot }, ms / 1000);
      for (const l of lags) lag.observe({ slot }, Math.max(0, l) / 1000);
    },
    acknowledged: (lsn: string) => {
      acknowledgedLsn = lsn;
    },
    'unknown-table': (table: string, n: number) => unknown.inc({ slot, table }, n),
    'epoch-bump': (reason: string) => epochs.inc({ slot, reason }),
    reconnect: () => reconnects.inc({ slot }),
    'write-behind-outside-write': (entity: string) => outsideWrites.inc({ slot, entity }),
    failure: (kind: string) => errors.inc({ slot, kind }),
  } as const;
  for (const [event, listener] of Object.entries(listeners))
    worker.events.on(event as 'reconnect', listener as () => void);
  return () => {
    for (const [event, listener] of Object.entries(listeners))
      worker.events.off(event as 'reconnect', listener as () => void);
  };
}
