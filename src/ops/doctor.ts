import type { ResolvedConfig } from '../config/config.js';
import type { DecoderName } from '../config/schema.js';
import { assertDecoder, assertSlotName } from '../database/slot.js';
import { resolveWarmerSql } from '../jobs/warm.js';
import { warmerSqlChecks } from '../jobs/warmer-sql.js';
import type { DoctorCheck } from './doctor-check.js';
import { postgresChecks } from './doctor-postgres.js';
import { redisChecks } from './doctor-redis.js';

export type { DoctorCheck, DoctorStatus } from './doctor-check.js';
export {
  HEARTBEAT_MAX_AGE_MS,
  RETAINED_WAL_WARN_BYTES,
  WORKER_LAG_WARN_MS,
  WRITE_BEHIND_OLDEST_WARN_MS,
} from './doctor-check.js';

export interface DoctorReport {
  /** No check failed (warnings allowed). */
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

export interface DoctorOptions {
  readonly config: ResolvedConfig;
  /** Replication slot the worker uses. @default 'walcache' */
  readonly slot?: string;
  /** Output plugin the worker uses. @default 'wal2json' */
  readonly decoder?: DecoderName;
  /** Publication the worker reads with pgoutput. @default 'walcache' */
  readonly publication?: string;
}

/**
 * Checks a walcache deployment end to end and says what to fix: PostgreSQL (reachable,
 * `wal_level`, the output plugin, the slot and its retained WAL, replica identity), Redis
 * (reachable, persistence, eviction policies of the cache and the queues), the worker's
 * heartbeat and the write-behind backlog. Read-only, except a temporary logical slot
 * created and dropped to test the plugin when the real slot does not exist yet.
 *
 * Problems are `fail` / `warn` checks, never exceptions: a check that throws becomes a
 * `fail` with the error. Throws only for bad options (slot name, decoder). Every
 * connection it opens is closed before it returns.
 *
 * @example
 * const report = await doctor({ config, slot: 'walcache' });
 * for (const c of report.checks) if (c.status !== 'ok') console.log(c.status, c.detail, c.fix);
 */
export async function doctor(options: DoctorOptions): Promise<DoctorReport> {
  const { config } = options;
  const slot = options.slot ?? options.config.worker.slot;
  const decoder = options.decoder ?? options.config.worker.decoder;
  assertSlotName(slot);
  assertDecoder(decoder);
  const checks: DoctorCheck[] = [];
  const slotInfo = await postgresChecks(
    config,
    slot,
    decoder,
    options.publication ?? options.config.worker.publication,
    checks,
  );
  await redisChecks(config, slot, checks, slotInfo);
  checks.push(...(await warmerSqlChecks(config, (file) => resolveWarmerSql(file))));
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}
