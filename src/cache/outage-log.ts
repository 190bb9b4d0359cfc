import type { Logger } from 'pino';
import type { CacheEvents } from './cache-events.js';

/** The logger walcache writes to: pino's, or anything with its `error` and `info`. */
export type WalcacheLogger = Pick<Logger, 'error' | 'info'>;

/**
 * Logs a cache Redis outage once, at error level, when the circuit breaker opens (reads
 * go to the database from then on), and once, at info level, when it closes again. The
 * breaker re-opening after a failed probe is the same outage: not logged again. Single
 * Redis errors are counted (`l2-error`, walcache_l2_errors_total), not logged: one slow
 * command is not an outage.
 */
export function logRedisOutages(events: CacheEvents, logger: WalcacheLogger, redis: string): void {
  let down = false;
  let lastError: unknown;
  events.on('l2-error', (_operation, error) => {
    lastError = error;
  });
  events.on('breaker-open', () => {
    if (down) return;
    down = true;
    logger.error(
      { redis, err: lastError },
      `cache Redis ${redis} unreachable: reads go to the database, uncached, until it answers again`,
    );
  });
  events.on('breaker-close', () => {
    if (!down) return;
    down = false;
    lastError = undefined;
    logger.info({ redis }, `cache Redis ${redis} answers again: reads use the cache`);
  });
}
