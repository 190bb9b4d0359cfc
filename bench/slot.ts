/**
 * The replication-slot chores the benches that run the invalidation worker share
 * (bench/cdc.ts, bench/workload.ts, bench/contention.ts): the current WAL position, the
 * wait for a slot to confirm it, and dropping a slot once its walsender has gone (or, at
 * a run's start, refusing a slot another run still streams from).
 */
import type pg from 'pg';
import { sleep } from './cdc-common.js';

export async function currentLsn(pool: pg.Pool): Promise<string> {
  return (await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]
    ?.lsn as string;
}

/** Waits until `slot` has confirmed `lsn`; returns the ms waited, or -1 after `timeoutMs`. */
export async function waitConfirmed(
  pool: pg.Pool,
  slot: string,
  lsn: string,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    const { rows } = await pool.query<{ ok: boolean }>(
      'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2',
      [lsn, slot],
    );
    if (rows[0]?.ok) return performance.now() - started;
    if (performance.now() - started > timeoutMs) return -1;
    await sleep(10);
  }
}

/**
 * Drops `slot` once its walsender has gone, terminating the walsender after 3 s; gives
 * up after `attempts` polls 50 ms apart.
 */
export async function dropSlot(pool: pg.Pool, slot: string, attempts = 200): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    const { rows } = await pool.query<{ active_pid: number | null }>(
      'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    const row = rows[0];
    if (!row) return;
    if (row.active_pid === null) {
      try {
        await pool.query('SELECT pg_drop_replication_slot($1)', [slot]);
        return;
      } catch {
        // became active again meanwhile: retry
      }
    } else if (i >= 60) {
      await pool.query('SELECT pg_terminate_backend($1)', [row.active_pid]).catch(() => {});
    }
    await sleep(50);
  }
}

/**
 * A run's fresh start: drops `slot` left by an earlier run, but refuses one a walsender
 * still streams from (another run of the same bench is going).
 */
export async function dropStaleSlot(pool: pg.Pool, slot: string): Promise<void> {
  const { rows } = await pool.query<{ active_pid: number | null }>(
    'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  const pid = rows[0]?.active_pid;
  if (pid != null) throw new Error(`slot ${slot} is in use (pid ${pid}): is another run going?`);
  await dropSlot(pool, slot);
}
