import type { Pool } from 'pg';
import { DECODER_NAMES, type DecoderName } from '../config/schema.js';
import { SetupError } from '../errors/typed-errors.js';

export interface SlotInfo {
  readonly plugin: string;
  /** 'reserved' | 'extended' | 'unreserved' | 'lost' */
  readonly walStatus: string | null;
  readonly confirmedFlushLsn: string | null;
  readonly active: boolean;
  readonly activePid: number | null;
  /** WAL the slot keeps from being recycled. */
  readonly retainedBytes: number;
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

export function assertSlotName(slot: string): void {
  if (!SLOT_NAME.test(slot)) {
    throw new SetupError(
      `Invalid replication slot name ${JSON.stringify(slot)}`,
      'use lower-case letters, digits and "_" (at most 63)',
    );
  }
}

/** Refuses an output plugin the worker cannot decode (an option that bypassed the config). */
export function assertDecoder(decoder: string): asserts decoder is DecoderName {
  if (!(DECODER_NAMES as readonly string[]).includes(decoder))
    throw new SetupError(
      `Unknown decoder ${JSON.stringify(decoder)}`,
      `use ${DECODER_NAMES.join(' or ')}`,
    );
}

export async function readSlot(pool: Pool, slot: string): Promise<SlotInfo | null> {
  const { rows } = await pool.query<{
    plugin: string;
    wal_status: string | null;
    confirmed_flush_lsn: string | null;
    active: boolean;
    active_pid: number | null;
    retained: string | null;
  }>(
    `SELECT plugin, wal_status, confirmed_flush_lsn::text, active, active_pid,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained
       FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'logical'`,
    [slot],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    plugin: row.plugin,
    walStatus: row.wal_status,
    confirmedFlushLsn: row.confirmed_flush_lsn,
    active: row.active,
    activePid: row.active_pid,
    retainedBytes: Number(row.retained ?? 0),
  };
}

/** Creates a permanent logical slot; turns the plugin allow-list refusal into the exact fix. */
export async function createSlot(pool: Pool, slot: string, decoder: DecoderName): Promise<void> {
  assertSlotName(slot);
  try {
    await pool.query('SELECT pg_create_logical_replication_slot($1, $2)', [slot, decoder]);
  } catch (error) {
    throw explainServerError(error, decoder);
  }
}

export async function dropSlot(pool: Pool, slot: string): Promise<void> {
  await pool.query(
    'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
}

export async function checkWalLevel(pool: Pool): Promise<void> {
  const { rows } = await pool.query<{ wal_level: string }>('SHOW wal_level');
  const level = rows[0]?.wal_level;
  if (level !== 'logical') {
    throw new SetupError(
      `PostgreSQL has wal_level=${level}; walcache needs logical replication`,
      "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (the docker-compose.yml of walcache's repository starts one set up for it)",
    );
  }
}

/** Maps server errors a user can fix to a SetupError saying how. */
export function explainServerError(error: unknown, decoder: DecoderName): unknown {
  const message = error instanceof Error ? error.message : String(error);
  if (/may not be used as an output plugin/.test(message)) {
    return new SetupError(
      `PostgreSQL refuses the ${decoder} output plugin (output_plugin_libraries)`,
      `ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', '${decoder}'; SELECT pg_reload_conf();  (keep any plugin already listed; or use --decoder pgoutput, which is always allowed)`,
      error,
    );
  }
  if (/could not access file "wal2json"/.test(message)) {
    return new SetupError(
      'The wal2json plugin is not installed on the PostgreSQL server',
      'apt-get install postgresql-15-wal2json (or use --decoder pgoutput)',
      error,
    );
  }
  if (/logical decoding requires wal_level >= logical/.test(message)) {
    return new SetupError(
      'PostgreSQL has wal_level below logical',
      'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
      error,
    );
  }
  return error;
}

/** The slot is being streamed by another process: we are the standby. */
export function isSlotBusy(error: unknown): boolean {
  return error instanceof Error && /replication slot "[^"]+" is active for PID/.test(error.message);
}
