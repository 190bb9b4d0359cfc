/**
 * The invalidation worker's heartbeat in Redis (`Keys.heartbeat()`): written by the worker
 * with every applied group and idle keepalive, read by the engine for `maxStalenessMs` and
 * by the worker at start to find gaps.
 */
export interface Heartbeat {
  /** Last applied (and about to be acknowledged) position. */
  readonly lsn: string;
  /** Commit time of the last applied transaction, or of the idle keepalive (ms since epoch). */
  readonly commitTime: number;
  /** When it was applied (ms since epoch). */
  readonly appliedAt: number;
  readonly runId: string;
}

/** The heartbeat stored as `raw`, or null when there is none or it is not one. */
export function parseHeartbeat(raw: string | null): Heartbeat | null {
  if (raw === null) return null;
  try {
    const beat = JSON.parse(raw) as Partial<Heartbeat> | null;
    return typeof beat?.lsn === 'string' &&
      typeof beat.commitTime === 'number' &&
      typeof beat.appliedAt === 'number'
      ? (beat as Heartbeat)
      : null;
  } catch {
    return null;
  }
}
