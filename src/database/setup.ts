import pg from 'pg';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import type { DecoderName } from '../config/schema.js';
import { SetupError } from '../errors/typed-errors.js';
import { DDL_MESSAGE_PREFIX } from '../model/change-mapper.js';
import { buildChangeModel, type TableModel } from '../model/table-model.js';
import { DEFAULT_WALCACHE_SCHEMA, pendingMigrations, runMigrations } from './migrations.js';
import { checkModel, IDENTITIES, oldValuesNeeded, quoteTable } from './model-check.js';
import { assertDecoder, assertSlotName, checkWalLevel, createSlot } from './slot.js';
import { poolQuery, readCatalog, type TableCatalog } from './table-catalog.js';

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

export interface SetupReport {
  /** No step is an `error`. */
  readonly ok: boolean;
  readonly steps: readonly SetupStep[];
}

export interface SetupOptions {
  readonly config: ResolvedConfig;
  /** Logical replication slot. @default 'walcache' */
  readonly slot?: string;
  /** Output plugin of the slot. @default 'wal2json' */
  readonly decoder?: DecoderName;
  /** Publication (read by pgoutput; created for wal2json too, so switching is easy). @default 'walcache' */
  readonly publication?: string;
  /** `ALTER TABLE ... REPLICA IDENTITY FULL` where the config needs old values; false only reports. @default true */
  readonly setReplicaIdentity?: boolean;
  /** Change nothing: report the SQL that would run as `would-run` steps. @default false */
  readonly dryRun?: boolean;
  /**
   * Schema of walcache's own tables (access log, migration bookkeeping). The repository
   * reads the access log from `walcache`: change this only for tests. @default 'walcache'
   */
  readonly walcacheSchema?: string;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
/** A DDL statement waits this long for its table lock, then fails instead of queueing every writer behind it. */
const LOCK_TIMEOUT = '10s';

/**
 * Prepares PostgreSQL for walcache, idempotently: checks `wal_level`, runs migrations,
 * sets `REPLICA IDENTITY FULL` where the config needs old row values (docs/design.md,
 * Contract 7), creates or updates the publication and creates the replication slot.
 * A second run changes nothing and reports only `ok` steps; `dryRun` changes nothing
 * and reports the exact SQL.
 *
 * Problems the user must fix are `error` steps (with `fix`), not exceptions; it throws
 * only when it cannot run at all (bad options, database unreachable).
 *
 * @example
 * const report = await setup({ config, decoder: 'pgoutput' });
 * if (!report.ok) for (const s of report.steps) if (s.status === 'error') console.error(s.detail, s.fix);
 */
export async function setup(options: SetupOptions): Promise<SetupReport> {
  const { config } = options;
  const slot = options.slot ?? options.config.worker.slot;
  const decoder = options.decoder ?? options.config.worker.decoder;
  const publication = options.publication ?? options.config.worker.publication;
  const walcacheSchema = options.walcacheSchema ?? DEFAULT_WALCACHE_SCHEMA;
  const dryRun = options.dryRun === true;
  assertSlotName(slot);
  assertDecoder(decoder);
  if (!IDENTIFIER.test(publication)) {
    throw new SetupError(
      `Invalid publication name ${JSON.stringify(publication)}`,
      'use letters, digits, "_" and "$" (at most 63, not starting with a digit)',
    );
  }
  const model = buildChangeModel(config);
  const steps: SetupStep[] = [];
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl, { application_name: 'walcache-setup' }),
    max: 2,
  });
  pool.on('error', () => {});
  try {
    await connect(pool, config.databaseUrl);

    let walLevelOk = true;
    try {
      await checkWalLevel(pool);
      steps.push({ step: 'wal_level', status: 'ok', detail: 'wal_level = logical' });
    } catch (error) {
      walLevelOk = false;
      steps.push(errorStep('wal_level', error));
    }

    await guard(steps, 'migrations', () => migrationsStep(pool, walcacheSchema, dryRun, steps));

    // Tables: what exists, its columns and their types, its replica identity.
    const configured = [...model.keys()].sort();
    const catalog = await readCatalog(poolQuery(pool), configured);
    const problems = checkModel(model, catalog);
    const unusable = new Set<string>();
    for (const p of problems) {
      if (p.kind === 'identity') continue; // set below
      if (p.kind === 'missing' || p.kind === 'not-a-table' || p.kind === 'partitioned')
        unusable.add(p.table);
      steps.push({ step: 'table', status: 'error', detail: p.detail, fix: p.fix });
    }
    const usable: TableCatalog[] = configured
      .filter((name) => !unusable.has(name))
      .map((name) => catalog.get(name) as TableCatalog);

    // Replica identity FULL where the config needs old values (docs/design.md, Contract 7): a unique or
    // tag column, and a key that is not the primary key (or identity index).
    const full = new Set<string>();
    await guard(steps, 'replica-identity', async () => {
      for (const t of usable) {
        const needs = oldValuesNeeded(model.get(t.name) as TableModel, t);
        if (needs.length === 0) continue;
        const why = `old values of ${needs.join(', ')}`;
        const statement = `ALTER TABLE ${quoteTable(t.name)} REPLICA IDENTITY FULL`;
        if (t.replicaIdentity === 'f') {
          full.add(t.name);
          steps.push({
            step: 'replica-identity',
            status: 'ok',
            detail: `${t.name} has REPLICA IDENTITY FULL (${why})`,
          });
        } else if (options.setReplicaIdentity === false) {
          steps.push({
            step: 'replica-identity',
            status: 'error',
            detail: `${t.name} needs REPLICA IDENTITY FULL (${why}; it is ${IDENTITIES[t.replicaIdentity] ?? t.replicaIdentity}): without it UPDATE and DELETE do not carry the old values, and the worker refuses to start`,
            fix: `${statement}; (or run walcache setup without --no-replica-identity)`,
          });
        } else if (dryRun) {
          full.add(t.name);
          steps.push({
            step: 'replica-identity',
            status: 'would-run',
            detail: `would set REPLICA IDENTITY FULL on ${t.name} (${why})`,
            sql: statement,
          });
        } else {
          try {
            await ddl(pool, [statement]);
          } catch (error) {
            steps.push(errorStep('replica-identity', explainDdlError(error, statement)));
            continue;
          }
          full.add(t.name);
          steps.push({
            step: 'replica-identity',
            status: 'changed',
            detail: `set REPLICA IDENTITY FULL on ${t.name} (${why})`,
            sql: statement,
          });
        }
      }
      // A published table without a key or identity makes PostgreSQL refuse its UPDATEs and
      // DELETEs (55000), and wal2json skips them: never publish one.
      for (const t of usable) {
        if (full.has(t.name) || hasIdentity(t)) continue;
        steps.push({
          step: 'replica-identity',
          status: 'error',
          detail: `${t.name} has no primary key and no replica identity (REPLICA IDENTITY ${IDENTITIES[t.replicaIdentity] ?? t.replicaIdentity}): published, its UPDATEs and DELETEs would fail, and the worker could not see which row changed; left out of the publication`,
          fix: `ALTER TABLE ${quoteTable(t.name)} ADD PRIMARY KEY (...);  or  ALTER TABLE ${quoteTable(t.name)} REPLICA IDENTITY FULL;`,
        });
      }
    });

    await guard(steps, 'publication', () =>
      publicationStep(pool, {
        publication,
        dryRun,
        allTables: configured.length === 0,
        tables: usable.filter((t) => full.has(t.name) || hasIdentity(t)),
        steps,
      }),
    );

    await guard(steps, 'ddl-trigger', () => ddlTriggerStep(pool, walcacheSchema, dryRun, steps));

    // The slot last, and only for a setup that succeeded: a slot holds WAL from the moment
    // it exists, and one left by a failed setup would retain it with no worker to read it.
    const failed = steps.filter((s) => s.status === 'error');
    if (failed.length === 0)
      await guard(steps, 'slot', () =>
        slotStep(pool, { slot, decoder, dryRun, walLevelOk, steps }),
      );
    else
      steps.push({
        step: 'slot',
        status: 'skipped',
        detail: `slot ${slot} not created: fix the ${failed.length === 1 ? 'problem' : `${failed.length} problems`} above first (a slot retains WAL from the moment it exists)`,
      });
  } finally {
    await pool.end().catch(() => {});
  }
  return { ok: steps.every((s) => s.status !== 'error'), steps };
}

// --- steps ---------------------------------------------------------------------------

/**
 * DDL that rewrites values (`ALTER TABLE ... ALTER COLUMN ... TYPE ... USING`, a new
 * column with a default) changes rows without any row change in the WAL. An event
 * trigger emits a transactional logical message naming each altered table, which the
 * worker maps to the table's reset (src/model/change-mapper.ts). Event triggers need a
 * superuser: without one the step is skipped, and docs/invalidation.md says what is then
 * not invalidated.
 */
async function ddlTriggerStep(
  pool: pg.Pool,
  schema: string,
  dryRun: boolean,
  steps: SetupStep[],
): Promise<void> {
  const trigger = `walcache_ddl_${schema}`.slice(0, 63);
  const fn = `${ident(schema)}.walcache_ddl_notify`;
  const statements = [
    `CREATE OR REPLACE FUNCTION ${fn}() RETURNS event_trigger LANGUAGE plpgsql AS $walcache$
DECLARE r record;
BEGIN
  FOR r IN SELECT DISTINCT n.nspname || '.' || c.relname AS name
             FROM pg_event_trigger_ddl_commands() d
             JOIN pg_class c ON c.oid = d.objid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')
  LOOP
    PERFORM pg_logical_emit_message(true, '${DDL_MESSAGE_PREFIX}', r.name);
  END LOOP;
END $walcache$`,
    `CREATE EVENT TRIGGER ${ident(trigger)} ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION ${fn}()`,
  ];
  const { rows } = await pool.query(
    'SELECT 1 FROM pg_event_trigger WHERE evtname = $1 AND evtenabled <> $2',
    [trigger, 'D'],
  );
  if (rows.length > 0) {
    steps.push({
      step: 'ddl-trigger',
      status: 'ok',
      detail: `event trigger ${trigger} reports ALTER TABLE to the worker`,
    });
    return;
  }
  const sql = statements.join(';\n');
  if (dryRun) {
    steps.push({
      step: 'ddl-trigger',
      status: 'would-run',
      detail: `would create event trigger ${trigger} (ALTER TABLE resets the altered table's entries)`,
      sql,
    });
    return;
  }
  try {
    await ddl(pool, [`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`, ...statements]);
  } catch (error) {
    if ((error as { code?: string }).code !== '42501') throw explainDdlError(error, sql);
    steps.push({
      step: 'ddl-trigger',
      status: 'skipped',
      detail: `event trigger ${trigger} not created (${(error as Error).message}): ALTER TABLE that rewrites values is not invalidated (docs/invalidation.md)`,
      fix: `have a superuser run:\n${sql}`,
    });
    return;
  }
  steps.push({
    step: 'ddl-trigger',
    status: 'created',
    detail: `created event trigger ${trigger} (ALTER TABLE resets the altered table's entries)`,
    sql,
  });
}

async function migrationsStep(
  pool: pg.Pool,
  schema: string,
  dryRun: boolean,
  steps: SetupStep[],
): Promise<void> {
  const pending = await pendingMigrations(pool, { schema });
  if (pending.length === 0) {
    steps.push({
      step: 'migrations',
      status: 'ok',
      detail: `migrations up to date (schema ${schema})`,
    });
    return;
  }
  if (dryRun) {
    const { rows } = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    pending.forEach((m, i) => {
      steps.push({
        step: 'migrations',
        status: 'would-run',
        detail: `would apply migration ${m.name} (schema ${schema})`,
        sql:
          i === 0 && rows.length === 0
            ? `CREATE SCHEMA IF NOT EXISTS ${ident(schema)};\n${m.sql}`
            : m.sql,
      });
    });
    return;
  }
  const run = await runMigrations(pool, { schema });
  if (run.applied.length === 0) {
    steps.push({
      step: 'migrations',
      status: 'ok',
      detail: `migrations up to date (schema ${schema}; another process applied them)`,
    });
    return;
  }
  steps.push({
    step: 'migrations',
    status: 'created',
    detail: `applied migration${run.applied.length > 1 ? 's' : ''} ${run.applied.join(', ')} (schema ${schema})`,
    sql: run.pending
      .filter((m) => run.applied.includes(m.name))
      .map((m) => m.sql)
      .join(';\n'),
  });
}

async function publicationStep(
  pool: pg.Pool,
  o: {
    publication: string;
    dryRun: boolean;
    allTables: boolean;
    tables: readonly TableCatalog[];
    steps: SetupStep[];
  },
): Promise<void> {
  const pub = ident(o.publication);
  const list = [...o.tables]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((t) => quoteTable(t.name))
    .join(', ');
  const target = o.allTables ? 'FOR ALL TABLES' : `FOR TABLE ${list}`;
  const what = o.allTables
    ? 'all tables (the config names none)'
    : o.tables.map((t) => t.name).join(', ');

  if (o.allTables) {
    // FOR ALL TABLES publishes every table, present and future: one without a key or
    // identity would have its UPDATEs and DELETEs refused.
    const { rows } = await pool.query<{ name: string }>(
      `SELECT n.nspname || '.' || c.relname AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT (c.relreplident = 'f'
                   OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
                   OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
        ORDER BY 1 LIMIT 11`,
    );
    if (rows.length > 0) {
      const names = rows.slice(0, 10).map((r) => r.name);
      o.steps.push({
        step: 'publication',
        status: 'error',
        detail: `publication ${o.publication} FOR ALL TABLES not created or changed: ${names.join(', ')}${rows.length > 10 ? ' and more' : ''} ha${names.length > 1 ? 've' : 's'} no primary key and no replica identity, and published their UPDATEs and DELETEs would fail`,
        fix: `give them a primary key or REPLICA IDENTITY FULL, or list the cached tables in the config's entities / invalidateBy so the publication names only those`,
      });
      return;
    }
  } else if (o.tables.length === 0) {
    o.steps.push({
      step: 'publication',
      status: 'error',
      detail: `publication ${o.publication} not created or changed: no configured table can be published (see above)`,
      fix: 'fix the table problems above and run walcache setup again',
    });
    return;
  }

  const existing = await readPublication(pool, o.publication);
  if (!existing) {
    const statement = `CREATE PUBLICATION ${pub} ${target}`;
    await apply(
      pool,
      o,
      'created',
      `created publication ${o.publication} for ${what}`,
      `create publication ${o.publication} for ${what}`,
      [statement],
    );
    return;
  }

  const statements: string[] = [];
  const changes: string[] = [];
  if (existing.allTables !== o.allTables) {
    // ALTER PUBLICATION cannot switch between FOR ALL TABLES and a table list.
    statements.push(`DROP PUBLICATION ${pub}`, `CREATE PUBLICATION ${pub} ${target}`);
    changes.push(`recreated ${target}`);
  } else {
    if (!o.allTables) {
      const want = o.tables.map((t) => t.name).sort();
      const have = existing.tables;
      if (existing.filtered || existing.schemas > 0 || want.join('\n') !== have.join('\n')) {
        statements.push(`ALTER PUBLICATION ${pub} SET TABLE ${list}`);
        const added = want.filter((t) => !have.includes(t));
        const removed = have.filter((t) => !want.includes(t));
        changes.push(
          [
            added.length > 0 ? `added ${added.join(', ')}` : '',
            removed.length > 0 ? `removed ${removed.join(', ')}` : '',
            existing.schemas > 0 ? 'dropped its TABLES IN SCHEMA' : '',
            existing.filtered ? 'dropped its row filters / column lists' : '',
          ]
            .filter(Boolean)
            .join('; '),
        );
      }
    }
    if (!existing.publishesAll) {
      statements.push(
        `ALTER PUBLICATION ${pub} SET (publish = 'insert, update, delete, truncate')`,
      );
      changes.push('publishes insert, update, delete and truncate');
    }
  }
  if (statements.length === 0) {
    o.steps.push({
      step: 'publication',
      status: 'ok',
      detail: `publication ${o.publication} covers ${what}`,
    });
    return;
  }
  await apply(
    pool,
    o,
    'changed',
    `changed publication ${o.publication}: ${changes.join('; ')}`,
    `change publication ${o.publication}: ${changes.join('; ')}`,
    statements,
  );
}

async function slotStep(
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

async function connect(pool: pg.Pool, url: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new SetupError(
      `Cannot connect to PostgreSQL at ${redactUrl(url)}: ${message}`,
      'check databaseUrl in the config (or DATABASE_URL) and that PostgreSQL is running',
      error,
    );
  }
}

async function readPublication(
  pool: pg.Pool,
  name: string,
): Promise<{
  allTables: boolean;
  publishesAll: boolean;
  tables: string[];
  filtered: boolean;
  schemas: number;
} | null> {
  const { rows } = await pool.query<{
    oid: number;
    puballtables: boolean;
    all_ops: boolean;
    has_namespaces: boolean;
  }>(
    `SELECT oid, puballtables, (pubinsert AND pubupdate AND pubdelete AND pubtruncate) AS all_ops,
            to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL AS has_namespaces
       FROM pg_publication WHERE pubname = $1`,
    [name],
  );
  const p = rows[0];
  if (!p) return null;
  const rels = await pool.query<{ name: string; filtered: boolean }>(
    // prqual / prattrs (row filters, column lists) exist from PG 15: read through jsonb.
    `SELECT n.nspname || '.' || c.relname AS name,
            (to_jsonb(pr) ->> 'prqual') IS NOT NULL OR (to_jsonb(pr) ->> 'prattrs') IS NOT NULL AS filtered
       FROM pg_publication_rel pr
       JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE pr.prpubid = $1`,
    [p.oid],
  );
  let schemas = 0;
  if (p.has_namespaces) {
    const ns = await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_catalog.pg_publication_namespace WHERE pnpubid = $1',
      [p.oid],
    );
    schemas = ns.rows[0]?.n ?? 0;
  }
  return {
    allTables: p.puballtables,
    publishesAll: p.all_ops,
    tables: rels.rows.map((r) => r.name).sort(),
    filtered: rels.rows.some((r) => r.filtered),
    schemas,
  };
}

/** Runs statements (or reports them in a dry run) as one step. */
async function apply(
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
async function ddl(pool: pg.Pool, statements: readonly string[]): Promise<void> {
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

function explainDdlError(error: unknown, statement: string): unknown {
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
async function guard(
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

function errorStep(step: SetupStepName, error: unknown): SetupStep {
  if (error instanceof SetupError) {
    const [detail = error.message] = error.message.split('\n  fix: ');
    return { step, status: 'error', detail, fix: error.fix };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { step, status: 'error', detail: `${step} failed: ${message}` };
}

function hasIdentity(t: TableCatalog): boolean {
  return t.replicaIdentity === 'f' || (t.replicaIdentity !== 'n' && t.keyIndexColumns.size > 0);
}

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
