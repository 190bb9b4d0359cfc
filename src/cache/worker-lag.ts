import { type Heartbeat, parseHeartbeat } from './heartbeat.js';
import type { L2Tier } from './l2-tier.js';

/** How long a heartbeat read serves `lagMs` calls before Redis is asked again. */
const HEARTBEAT_REUSE_MS = 250;

/**
 * How far behind the invalidation worker is, from its heartbeat key in Redis (the
 * position it applied and that commit's time). Reads bounded by `maxStalenessMs` ask it
 * before every read, so one heartbeat read serves the calls of the next 250 ms.
 */
export class WorkerLag {
  #last: { readAt: number; commitTime: number } | undefined;
  #reading: Promise<number> | undefined;

  constructor(
    private readonly l2: L2Tier,
    private readonly heartbeatKey: string,
  ) {}

  /** The worker's last heartbeat, read now. Null when there is none or Redis cannot say. */
  async heartbeat(): Promise<Heartbeat | null> {
    try {
      const [raw] = await this.l2.getVersions([this.heartbeatKey]);
      return parseHeartbeat(raw ?? null);
    } catch {
      return null;
    }
  }

  /** Now minus the commit time of the last applied transaction; Infinity when unknown. */
  lagMs(): Promise<number> {
    const last = this.#last;
    if (last !== undefined && Date.now() - last.readAt < HEARTBEAT_REUSE_MS)
      return Promise.resolve(Date.now() - last.commitTime);
    this.#reading ??= this.l2
      .getVersions([this.heartbeatKey])
      .then(([raw]) => {
        const commitTime = parseHeartbeat(raw ?? null)?.commitTime ?? Number.NEGATIVE_INFINITY;
        this.#last = { readAt: Date.now(), commitTime };
        return Date.now() - commitTime;
      })
      .catch(() => Number.POSITIVE_INFINITY)
      .finally(() => {
        this.#reading = undefined;
      });
    return this.#reading;
  }
}
