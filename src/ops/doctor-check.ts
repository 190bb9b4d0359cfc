import { SetupError } from '../errors/typed-errors.js';

// One doctor check (name, status, detail, fix), the thresholds they judge by, and the
// wrapper that turns a check that throws into a `fail`.

/** How long doctor waits for one PostgreSQL query. */
export const PG_TIMEOUT_MS = 10_000;

/** A worker heartbeat older than this fails (the worker writes one at least every 5 s). */
export const HEARTBEAT_MAX_AGE_MS = 15_000;
/** Worker lag (now − commit time of the last applied transaction) above this warns. */
export const WORKER_LAG_WARN_MS = 60_000;
/** WAL retained by the slot above this warns. */
export const RETAINED_WAL_WARN_BYTES = 1024 ** 3;
/** A write-behind record pending longer than this warns. */
export const WRITE_BEHIND_OLDEST_WARN_MS = 60_000;

export type DoctorStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  /** What was checked: `postgres`, `wal_level`, `slot`, `redis-persistence`, `worker`, ... */
  readonly name: string;
  readonly status: DoctorStatus;
  /** One line, readable on its own. */
  readonly detail: string;
  /** What to run or change; every `fail` has one, most `warn`s too. */
  readonly fix?: string;
}

export function ok(name: string, detail: string): DoctorCheck {
  return { name, status: 'ok', detail };
}

/** An error's message; Node's AggregateError (a refused dual-stack connect) has none of its own. */
export function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && !error.message && error.errors.length > 0)
    return errorMessage(error.errors[0]);
  if (error instanceof Error)
    return error.message || (error as { code?: string }).code || error.name;
  return String(error);
}

export function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

/**
 * Runs one check; its result (or the error it threw, as a `fail`) is appended.
 * Resolves true when the check did not fail.
 */
export async function check(
  checks: DoctorCheck[],
  name: string,
  fix: string,
  run: () => Promise<DoctorCheck>,
  describe: (message: string) => string = (message) => `${name} check failed: ${message}`,
): Promise<boolean> {
  try {
    const result = await run();
    checks.push(result);
    return result.status !== 'fail';
  } catch (error) {
    if (error instanceof SetupError) {
      checks.push({ name, status: 'fail', detail: firstLine(error.message), fix: error.fix });
    } else {
      const message = errorMessage(error);
      checks.push({ name, status: 'fail', detail: describe(message), fix });
    }
    return false;
  }
}
