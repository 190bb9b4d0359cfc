import { EventEmitter } from 'node:events';

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
  'epoch-bump': [reason: string];
  reconnect: [reason: string];
  failure: [
    kind: 'decode' | 'mapping' | 'redis' | 'connect' | 'heartbeat' | 'write-behind',
    error: unknown,
  ];
  /**
   * A change made outside walcache (plain SQL, another service) to a row with pending
   * write-behind writes: the next flush applies them over it (see outside-writes.ts).
   */
  'write-behind-outside-write': [entity: string, key: string];
}

export class WorkerEvents extends EventEmitter<WorkerEventMap> {}
