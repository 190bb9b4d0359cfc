import type pg from 'pg';
import { DDL_MESSAGE_PREFIX } from '../model/change-mapper.js';
import { ddl, explainDdlError, ident, type SetupStep } from './setup-step.js';

/**
 * DDL that rewrites values (`ALTER TABLE ... ALTER COLUMN ... TYPE ... USING`, a new
 * column with a default) changes rows without any row change in the WAL. An event
 * trigger emits a transactional logical message naming each altered table, which the
 * worker maps to the table's reset (src/model/change-mapper.ts). Event triggers need a
 * superuser: without one the step is skipped, and docs/invalidation.md says what is then
 * not invalidated.
 */
export async function ddlTriggerStep(
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
