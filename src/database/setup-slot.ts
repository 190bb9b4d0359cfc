import type pg from 'pg';
import type { DecoderName } from '../config/schema.js';
import { errorStep, literal, type SetupStep } from './setup-step.js';
import { createSlot } from './slot.js';

// `walcache setup`'s slot step: the logical slot exists, with the configured plugin, in
// this database; a slot of the wrong kind or plugin is reported with the fix, never dropped.

export async function slotStep(
  pool: pg.Pool,
  o: {
    slot: string;
    decoder: DecoderName;
    dryRun: boolean;
    walLevelOk: boolean;
    steps: SetupStep[];
  },
): Promise<void> {
  const { rows } = await pool.query<{
    slot_type: string;
    plugin: string | null;
    database: string | null;
    wal_status: string | null;
    current: string;
  }>(
    `SELECT slot_type, plugin, database, wal_status, current_database() AS current
       FROM pg_replication_slots WHERE slot_name = $1`,
    [o.slot],
  );
  const row = rows[0];
  const statement = `SELECT pg_create_logical_replication_slot(${literal(o.slot)}, ${literal(o.decoder)})`;
  const drop = `SELECT pg_drop_replication_slot(${literal(o.slot)});`;
  if (!row) {
    if (!o.walLevelOk) {
      o.steps.push({
        step: 'slot',
        status: 'error',
        detail: `slot ${o.slot} not created: wal_level is not logical (see above)`,
        fix: 'set wal_level = logical, restart PostgreSQL, and run walcache setup again',
      });
    } else if (o.dryRun) {
      o.steps.push({
        step: 'slot',
        status: 'would-run',
        detail: `would create slot ${o.slot} (${o.decoder})`,
        sql: statement,
      });
    } else {
      try {
        await createSlot(pool, o.slot, o.decoder);
      } catch (error) {
        o.steps.push(errorStep('slot', error));
        return;
      }
      o.steps.push({
        step: 'slot',
        status: 'created',
        detail: `created slot ${o.slot} (${o.decoder})`,
        sql: statement,
      });
    }
    return;
  }
  if (row.slot_type !== 'logical') {
    o.steps.push({
      step: 'slot',
      status: 'error',
      detail: `slot ${o.slot} exists but is a ${row.slot_type} replication slot`,
      fix: `use another --slot (or, if it is unused, ${drop})`,
    });
  } else if (row.database !== row.current) {
    o.steps.push({
      step: 'slot',
      status: 'error',
      detail: `slot ${o.slot} belongs to database ${row.database}, not ${row.current}: a logical slot streams one database`,
      fix: 'use another --slot for this database',
    });
  } else if (row.plugin !== o.decoder) {
    o.steps.push({
      step: 'slot',
      status: 'error',
      detail: `slot ${o.slot} uses the ${row.plugin} plugin, not ${o.decoder}`,
      fix: `use --decoder ${row.plugin}, or another --slot (or, if no worker uses it, ${drop} then run setup again)`,
    });
  } else if (row.wal_status === 'lost') {
    o.steps.push({
      step: 'slot',
      status: 'error',
      detail: `slot ${o.slot} is lost (wal_status = lost): PostgreSQL removed WAL it had not consumed, so some invalidations are gone. The worker drops and recreates it and bumps the cache epoch (every older entry then reads as a miss)`,
      fix: `start walcache worker --slot ${o.slot} (do not drop it by hand: a slot setup recreates would not bump the epoch); raise max_slot_wal_keep_size so it does not happen again`,
    });
  } else {
    o.steps.push({
      step: 'slot',
      status: 'ok',
      detail: `slot ${o.slot} exists (${row.plugin}${row.wal_status === 'unreserved' ? '; wal_status = unreserved: close to losing WAL, start the worker' : ''})`,
    });
  }
}

// --- helpers -------------------------------------------------------------------------
