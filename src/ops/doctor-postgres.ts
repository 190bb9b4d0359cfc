import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import type { DecoderName } from '../config/schema.js';
import {
  checkModel,
  type ModelProblem,
  quoteTable,
  searchPathProblems,
} from '../database/model-check.js';
import { checkWalLevel, explainServerError, readSlot, type SlotInfo } from '../database/slot.js';
import { poolQuery, readCatalog, unpublishedTables } from '../database/table-catalog.js';
import { SetupError } from '../errors/typed-errors.js';
import { buildChangeModel } from '../model/table-model.js';
import {
  check,
  type DoctorCheck,
  firstLine,
  ok,
  PG_TIMEOUT_MS,
  RETAINED_WAL_WARN_BYTES,
} from './doctor-check.js';
import { formatBytes } from './format.js';

// doctor's PostgreSQL checks: reachable, wal_level, the output plugin, the slot and its
// retained WAL, the worker's slot consumer, tables against the config (replica identity,
// publication, search_path).

export async function postgresChecks(
  config: ResolvedConfig,
  slot: string,
  decoder: DecoderName,
  publication: string,
  checks: DoctorCheck[],
): Promise<SlotInfo | undefined> {
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl, {
      application_name: 'walcache-doctor',
      connectionTimeoutMillis: PG_TIMEOUT_MS,
      statement_timeout: PG_TIMEOUT_MS,
    }),
    max: 2,
  });
  pool.on('error', () => {});
  try {
    const reached = await check(
      checks,
      'postgres',
      'check databaseUrl in the config (or DATABASE_URL) and that PostgreSQL is running',
      async () => {
        const { rows } = await pool.query<{ version: string; db: string }>(
          "SELECT current_setting('server_version') AS version, current_database() AS db",
        );
        return ok(
          'postgres',
          `PostgreSQL ${rows[0]?.version} reachable at ${redactUrl(config.databaseUrl)}`,
        );
      },
      (message) => `cannot connect to PostgreSQL at ${redactUrl(config.databaseUrl)}: ${message}`,
    );
    if (!reached) return undefined;

    let walLevelOk = false;
    await check(checks, 'wal_level', 'see the PostgreSQL error', async () => {
      await checkWalLevel(pool);
      walLevelOk = true;
      return ok('wal_level', 'wal_level = logical');
    });

    let found: SlotRead | undefined;
    await check(
      checks,
      'slot',
      `run walcache setup --slot ${slot} --decoder ${decoder}`,
      async () => {
        found = await readSlotFully(pool, slot);
        return slotCheck(found, slot, decoder);
      },
    );

    await check(
      checks,
      'output-plugin',
      `run walcache setup --slot ${slot} --decoder ${decoder}; its error names the fix`,
      () => pluginCheck(pool, slot, decoder, found, walLevelOk),
    );

    const info = found?.info;
    if (found?.kind === 'ok' && info) {
      checks.push(
        info.active
          ? ok('slot-active', `slot ${slot} is streamed by a worker (pid ${info.activePid})`)
          : {
              name: 'slot-active',
              status: 'warn',
              detail: `slot ${slot} has no worker attached: changes are not being invalidated, and WAL piles up`,
              fix: `start walcache worker --slot ${slot} --decoder ${decoder}`,
            },
      );
      checks.push(walStatusCheck(info, slot, decoder));
      checks.push(
        info.retainedBytes > RETAINED_WAL_WARN_BYTES
          ? {
              name: 'slot-retained-wal',
              status: 'warn',
              detail: `slot ${slot} retains ${formatBytes(info.retainedBytes)} of WAL (above ${formatBytes(RETAINED_WAL_WARN_BYTES)}): the worker is behind or not running`,
              fix: `start walcache worker --slot ${slot} (or check why it lags: its /metrics and logs); if the slot is abandoned, SELECT pg_drop_replication_slot('${slot}');`,
            }
          : ok(
              'slot-retained-wal',
              `slot ${slot} retains ${formatBytes(info.retainedBytes)} of WAL`,
            ),
      );
    }

    await check(checks, 'max_slot_wal_keep_size', 'see the PostgreSQL error', async () => {
      const { rows } = await pool.query<{ setting: string; unit: string | null }>(
        "SELECT setting, unit FROM pg_settings WHERE name = 'max_slot_wal_keep_size'",
      );
      const row = rows[0];
      if (!row)
        return ok(
          'max_slot_wal_keep_size',
          'max_slot_wal_keep_size is not known to this server (before 13): slots retain WAL without bound',
        );
      if (row.setting === '-1')
        return {
          name: 'max_slot_wal_keep_size',
          status: 'warn',
          detail:
            'max_slot_wal_keep_size = -1: a stopped worker makes its slot retain WAL without bound, which can fill the disk and stop PostgreSQL',
          fix: "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf();  (size it below the free disk; a slot past it is lost, and the worker recreates it and bumps the cache epoch)",
        };
      return ok(
        'max_slot_wal_keep_size',
        `max_slot_wal_keep_size = ${row.setting}${row.unit ?? ''}`,
      );
    });

    await check(
      checks,
      'replica-identity',
      'run walcache setup (it reports the table problems it finds)',
      () => tableChecks(pool, config, decoder, publication, checks),
    );
    return found?.kind === 'ok' ? (found.info ?? undefined) : undefined;
  } finally {
    await pool.end().catch(() => {});
  }
}

interface SlotRead {
  readonly kind: 'ok' | 'missing' | 'physical' | 'other-database';
  readonly info: SlotInfo | null;
  readonly database: string | null;
  readonly current: string;
}

async function readSlotFully(pool: pg.Pool, slot: string): Promise<SlotRead> {
  const { rows } = await pool.query<{
    slot_type: string;
    database: string | null;
    current: string;
  }>(
    `SELECT slot_type, database, current_database() AS current
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = rows[0];
  if (!row) return { kind: 'missing', info: null, database: null, current: '' };
  if (row.slot_type !== 'logical')
    return { kind: 'physical', info: null, database: null, current: row.current };
  if (row.database !== row.current)
    return { kind: 'other-database', info: null, database: row.database, current: row.current };
  return {
    kind: 'ok',
    info: await readSlot(pool, slot),
    database: row.database,
    current: row.current,
  };
}

function slotCheck(found: SlotRead, slot: string, decoder: DecoderName): DoctorCheck {
  const drop = `SELECT pg_drop_replication_slot('${slot}');`;
  switch (found.kind) {
    case 'missing':
      return {
        name: 'slot',
        status: 'fail',
        detail: `replication slot ${slot} does not exist: nothing records the changes the cache must drop`,
        fix: `walcache setup --slot ${slot} --decoder ${decoder}  (the worker also creates it at start, bumping the cache epoch)`,
      };
    case 'physical':
      return {
        name: 'slot',
        status: 'fail',
        detail: `slot ${slot} exists but is a physical replication slot`,
        fix: `use another --slot (or, if it is unused, ${drop})`,
      };
    case 'other-database':
      return {
        name: 'slot',
        status: 'fail',
        detail: `slot ${slot} belongs to database ${found.database}, not ${found.current}: a logical slot streams one database`,
        fix: 'use another --slot for this database',
      };
  }
  const info = found.info;
  if (!info) throw new Error(`slot ${slot} vanished while it was read`);
  if (info.plugin !== decoder)
    return {
      name: 'slot',
      status: 'fail',
      detail: `slot ${slot} uses the ${info.plugin} plugin, not ${decoder}`,
      fix: `use --decoder ${info.plugin}, or another --slot (or, if no worker uses it, ${drop} then walcache setup)`,
    };
  return ok('slot', `slot ${slot} exists (${info.plugin})`);
}

function walStatusCheck(info: SlotInfo, slot: string, decoder: DecoderName): DoctorCheck {
  if (info.walStatus === 'lost')
    return {
      name: 'slot-wal-status',
      status: 'fail',
      detail: `slot ${slot} is lost (wal_status = lost): PostgreSQL removed WAL it had not consumed, so some invalidations are gone`,
      fix: `start walcache worker --slot ${slot} --decoder ${decoder}: it recreates the slot and bumps the cache epoch (do not drop it by hand); raise max_slot_wal_keep_size so it does not happen again`,
    };
  if (info.walStatus === 'unreserved')
    return {
      name: 'slot-wal-status',
      status: 'warn',
      detail: `slot ${slot} has wal_status = unreserved: it is past max_slot_wal_keep_size and about to lose WAL`,
      fix: `start walcache worker --slot ${slot} now (or raise max_slot_wal_keep_size)`,
    };
  return ok('slot-wal-status', `slot ${slot} wal_status = ${info.walStatus ?? 'unknown'}`);
}

/** Allowed by `output_plugin_libraries` (where the server has it) and installed. */
async function pluginCheck(
  pool: pg.Pool,
  slot: string,
  decoder: DecoderName,
  found: SlotRead | undefined,
  walLevelOk: boolean,
): Promise<DoctorCheck> {
  const name = 'output-plugin';
  const { rows } = await pool.query<{ setting: string }>(
    "SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'",
  );
  const allowList = rows[0] === undefined ? null : parsePluginList(rows[0].setting);
  if (allowList !== null && !allowList.includes(decoder))
    return {
      name,
      status: 'fail',
      detail: `PostgreSQL refuses the ${decoder} output plugin: output_plugin_libraries is ${allowList.length > 0 ? allowList.join(', ') : 'empty'}`,
      fix: allowListFix(allowList, decoder),
    };
  const allowed = allowList === null ? '' : ', in output_plugin_libraries';
  if (found?.kind === 'ok' && found.info?.plugin === decoder)
    return ok(name, `${decoder} is usable: slot ${slot} uses it${allowed}`);
  if (decoder === 'pgoutput') return ok(name, `pgoutput is built in${allowed}`);
  if (!walLevelOk)
    return {
      name,
      status: 'warn',
      detail: `could not test that ${decoder} is installed: wal_level is not logical`,
      fix: 'set wal_level = logical (see above) and run walcache doctor again',
    };
  // No slot with the plugin: create a temporary one (dropped at once, and with the session).
  const probe = `walcache_doctor_${randomBytes(4).toString('hex')}`;
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_create_logical_replication_slot($1, $2, true)', [probe, decoder]);
    await client.query('SELECT pg_drop_replication_slot($1)', [probe]);
  } catch (error) {
    broken = true;
    if ((error as { code?: string }).code === '57014')
      return {
        name,
        status: 'warn',
        detail: `could not test that ${decoder} is installed: creating a temporary slot waited ${PG_TIMEOUT_MS / 1000} s (a long-running transaction delays it)`,
        fix: 'run walcache doctor again when the long transaction ends, or walcache setup',
      };
    const explained = explainServerError(error, decoder);
    if (explained instanceof SetupError)
      return { name, status: 'fail', detail: firstLine(explained.message), fix: explained.fix };
    throw error;
  } finally {
    client.release(broken);
  }
  return ok(name, `${decoder} is installed${allowed} (tested with a temporary slot)`);
}

/** `'pgoutput, test_decoding'` (or `'"a", b'`) as names. */
export function parsePluginList(setting: string): string[] {
  return setting
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter((s) => s.length > 0);
}

/** The ALTER SYSTEM that allows `decoder`, keeping the defaults and every plugin already listed. */
export function allowListFix(current: readonly string[], decoder: string): string {
  const list = [...new Set(['pgoutput', 'test_decoding', ...current, decoder])];
  return `ALTER SYSTEM SET output_plugin_libraries = ${list.map((p) => `'${p.replaceAll("'", "''")}'`).join(', ')}; SELECT pg_reload_conf();  (keep any plugin already listed; or use --decoder pgoutput, which is always allowed)`;
}

/**
 * The config against the catalog: every table exists and is a plain table, its key,
 * unique and tag columns exist with types that can be keys or tags, its replica identity
 * carries the old values the worker needs, and (pgoutput) the publication sends it. Each
 * gap would leave entries stale silently; each goes to `out` with its fix.
 */
async function tableChecks(
  pool: pg.Pool,
  config: ResolvedConfig,
  decoder: DecoderName,
  publication: string,
  out: DoctorCheck[],
): Promise<DoctorCheck> {
  const model = buildChangeModel(config);
  const configured = [...model.keys()].sort();
  if (configured.length === 0)
    return ok('replica-identity', 'the config names no tables (entities / invalidateBy)');
  const query = poolQuery(pool);
  const catalog = await readCatalog(query, configured);
  const problems: Array<Pick<ModelProblem, 'detail' | 'fix'> & { kind?: string }> = [
    ...checkModel(model, catalog),
    // The database URL's own search_path: the service's pool may set another.
    ...(await searchPathProblems(query, config)),
  ];
  for (const p of problems)
    out.push({
      name: p.kind === 'identity' ? 'replica-identity' : 'table',
      status: 'fail',
      detail: p.detail,
      fix: p.fix,
    });
  if (decoder === 'pgoutput') {
    const missing = await unpublishedTables(query, publication, configured);
    if (missing === null || missing.length > 0)
      out.push({
        name: 'publication',
        status: 'fail',
        detail:
          missing === null
            ? `the publication ${publication} does not exist: the worker (pgoutput) would receive nothing`
            : `the publication ${publication} does not send ${missing.join(', ')}: their changes never reach the worker`,
        fix:
          missing === null
            ? `walcache setup --decoder pgoutput --publication ${publication}`
            : `ALTER PUBLICATION ${publication} ADD TABLE ${missing.map(quoteTable).join(', ')};  (or run walcache setup again)`,
      });
  }
  const full = configured.filter((t) => catalog.get(t)?.replicaIdentity === 'f');
  return ok(
    'replica-identity',
    `${catalog.size} of ${configured.length} configured table${configured.length > 1 ? 's' : ''} found${problems.length === 0 ? ', keys and tags match their columns' : ''}${full.length > 0 ? `; REPLICA IDENTITY FULL on ${full.join(', ')}` : ''}`,
  );
}
