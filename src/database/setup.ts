import pg from 'pg';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import type { DecoderName } from '../config/schema.js';
import { SetupError } from '../errors/typed-errors.js';
import { buildChangeModel, type TableModel } from '../model/table-model.js';
import { DEFAULT_WALCACHE_SCHEMA, pendingMigrations, runMigrations } from './migrations.js';
import { checkModel, IDENTITIES, oldValuesNeeded, quoteTable } from './model-check.js';
import { ddlTriggerStep } from './setup-ddl-trigger.js';
import { publicationStep } from './setup-publication.js';
import { slotStep } from './setup-slot.js';
import { ddl, errorStep, explainDdlError, guard, ident, type SetupStep } from './setup-step.js';
import { assertDecoder, assertSlotName, checkWalLevel } from './slot.js';
import { poolQuery, readCatalog, type TableCatalog } from './table-catalog.js';

export type { SetupStatus, SetupStep, SetupStepName } from './setup-step.js';

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

function hasIdentity(t: TableCatalog): boolean {
  return t.replicaIdentity === 'f' || (t.replicaIdentity !== 'n' && t.keyIndexColumns.size > 0);
}
