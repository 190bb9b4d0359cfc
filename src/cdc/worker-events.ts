import { EventEmitter } from 'node:events';

/**
 * Why the worker bumped the global epoch: at start, a gap it cannot replay (its slot was
 * lost, created, or confirmed past its heartbeat; no heartbeat; away longer than an entry
 * lives); while running, Redis lost invalidations it had acknowledged.
 */
export const EPOCH_BUMP_REASONS = [
  'slot-lost',
  'slot-created',
  'no-heartbeat',
  'away-too-long',
  'slot-ahead-of-heartbeat',
  'redis-heartbeat-missing',
  'redis-behind-acknowledged',
  'redis-shard-mark-missing',
  'redis-shard-behind-acknowledged',
] as const;
export type EpochBumpReason = (typeof EPOCH_BUMP_REASONS)[number];

/** The kinds of `failure` the worker reports. */
export const WORKER_FAILURE_KINDS = [
  'decode',
  'mapping',
  'redis',
  'connect',
  'heartbeat',
  'write-behind',
] as const;
export type WorkerFailureKind = (typeof WORKER_FAILURE_KINDS)[number];

/** What the worker reports; metrics and logs subscribe. */
/** What the worker is doing: taking the slot, waiting for it (standby), streaming, or stopped. */
export type WorkerRole = 'starting' | 'standby' | 'active' | 'stopped';

export interface WorkerEventMap {
  role: [role: WorkerRole];
  /** A committed transaction was decoded and mapped. */
  transaction: [rows: number, collapsed: boolean];
  /** A group was applied to Redis; lags are commit → applied, one per transaction. */
  applied: [
    transactions: number,
    rows: number,
    keys: number,
    tags: number,
    applyMs: number,
    lagsMs: number[],
  ];
  acknowledged: [lsn: string];
  'unknown-table': [table: string, changes: number];
  'epoch-bump': [reason: EpochBumpReason];
  reconnect: [reason: string];
  failure: [kind: WorkerFailureKind, error: unknown];
  /**
   * A change made outside walcache (plain SQL, another service) to a row with pending
   * write-behind writes: the next flush applies them over it (see outside-writes.ts).
   */
  'write-behind-outside-write': [entity: string, key: string];
}

export class WorkerEvents extends EventEmitter<WorkerEventMap> {}
