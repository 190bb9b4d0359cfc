import type pg from 'pg';
import { SetupError } from '../errors/typed-errors.js';

// One step of `walcache setup` (its status, detail, SQL and fix) and how a step runs
// DDL: under a lock timeout, reported as would-run in a dry run, errors explained.

/** `skipped`: an optional step that could not be done here (said why); not an error. */
export type SetupStatus = 'ok' | 'created' | 'changed' | 'would-run' | 'skipped' | 'error';

export type SetupStepName =
  | 'wal_level'
  | 'migrations'
  | 'table'
  | 'replica-identity'
  | 'publication'
  | 'ddl-trigger'
  | 'slot';

export interface SetupStep {
  readonly step: SetupStepName;
  readonly status: SetupStatus;
  /** One line, readable on its own: `created slot walcache (wal2json)`. */
  readonly detail: string;
  /** The SQL that ran (`created`, `changed`) or would run (`would-run`). */
  readonly sql?: string;
  /** For an `error` or `skipped`: what to run or change. */
  readonly fix?: string;
}

/** A DDL statement waits this long for its table lock, then fails instead of queueing every writer behind it. */
export const LOCK_TIMEOUT = '10s';

/** Runs statements (or reports them in a dry run) as one step. */
export async function apply(
  pool: pg.Pool,
  o: { dryRun: boolean; steps: SetupStep[] },
  status: 'created' | 'changed',
  detail: string,
  wouldDetail: string,
  statements: string[],
): Promise<void> {
  const sql = statements.join(';\n');
  if (o.dryRun) {
    o.steps.push({ step: 'publication', status: 'would-run', detail: `would ${wouldDetail}`, sql });
    return;
  }
  try {
    await ddl(pool, statements);
  } catch (error) {
    o.steps.push(errorStep('publication', explainDdlError(error, sql)));
    return;
  }
  o.steps.push({ step: 'publication', status, detail, sql });
}

/** Statements in one transaction, each waiting at most LOCK_TIMEOUT for its lock. */
export async function ddl(pool: pg.Pool, statements: readonly string[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
    for (const s of statements) await client.query(s);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

export function explainDdlError(error: unknown, statement: string): unknown {
  const code = (error as { code?: string } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === '55P03') {
    return new SetupError(
      `${statement} waited ${LOCK_TIMEOUT} for its lock and gave up (${message})`,
      "a long transaction holds the table; run setup again when it ends (SELECT pid, xact_start, query FROM pg_stat_activity WHERE state <> 'idle' ORDER BY xact_start)",
      error,
    );
  }
  if (code === '42501') {
    return new SetupError(
      `${statement} was refused: ${message}`,
      'run walcache setup as the owner of the tables (or a superuser), or have one run the statement',
      error,
    );
  }
  return new SetupError(`${statement} failed: ${message}`, 'see the PostgreSQL error', error);
}

/** Runs a step; an unexpected failure becomes an error step and setup carries on. */
export async function guard(
  steps: SetupStep[],
  step: SetupStepName,
  run: () => Promise<void>,
): Promise<void> {
  try {
    await run();
  } catch (error) {
    steps.push(errorStep(step, error));
  }
}

export function errorStep(step: SetupStepName, error: unknown): SetupStep {
  if (error instanceof SetupError) {
    const [detail = error.message] = error.message.split('\n  fix: ');
    return { step, status: 'error', detail, fix: error.fix };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { step, status: 'error', detail: `${step} failed: ${message}` };
}

export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
