import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { DEFAULT_DATABASE_URL } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import { readSchemaTables, type SchemaTable, schemaExists } from '../database/schema-tables.js';
import { poolQuery } from '../database/table-catalog.js';
import { DatabaseUnavailableError } from '../errors/database-unavailable-error.js';
import { InitError } from '../errors/init-error.js';
import { ConfigError } from '../errors/typed-errors.js';
import { type ConfigDraft, draftConfig } from './config-draft.js';
import { renderConfigJson, renderConfigModule } from './render-config.js';

export interface InitOptions {
  /** The schema whose tables become entities. */
  readonly schema: string;
  /** @default process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test' */
  readonly databaseUrl?: string;
  /** The file to write: `.ts`, `.mts`, `.js`, `.mjs` (a module) or `.json`. @default 'walcache.config.ts' */
  readonly out?: string;
  /** Overwrite an existing file. @default false */
  readonly force?: boolean;
  /** How long connecting may take. @default 5000 */
  readonly connectTimeoutMs?: number;
}

export interface InitResult {
  /** The absolute path written. */
  readonly path: string;
  readonly format: 'module' | 'json';
  readonly draft: ConfigDraft;
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const MODULE_FILE = /\.m?[jt]s$/;

/**
 * `walcache init`: reads the catalog of one schema and writes a config drafted from it
 * (see {@link draftConfig}). Checks everything before writing: an existing file (without
 * `force`), an unknown or empty schema, an unreachable database leave nothing written.
 *
 * @throws {ConfigError} a schema name or output file name it cannot use
 * @throws {InitError} the file exists, the schema is unknown, empty or has no usable table
 * @throws {DatabaseUnavailableError} PostgreSQL cannot be reached
 */
export async function init(options: InitOptions): Promise<InitResult> {
  if (!SCHEMA_NAME.test(options.schema))
    throw new ConfigError('--schema', options.schema, 'a schema name (a plain SQL identifier)');
  const out = options.out ?? 'walcache.config.ts';
  const format = out.endsWith('.json') ? 'json' : MODULE_FILE.test(out) ? 'module' : null;
  if (format === null) throw new ConfigError('--out', out, 'a .ts, .mts, .js, .mjs or .json file');
  const path = resolve(out);
  if (existsSync(path) && options.force !== true)
    throw new InitError(
      'file-exists',
      `${out} exists; nothing was written`,
      'pass --force to overwrite it, or --out <another file>',
    );

  const url = options.databaseUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const tables = await readTables(url, options.schema, options.connectTimeoutMs ?? 5_000);
  const draft = draftConfig(options.schema, tables);
  if (draft.entities.length === 0)
    throw new InitError(
      'no-entities',
      `no table of ${options.schema} can be an entity (${draft.skipped.map((s) => `${s.table}: ${s.reason}`).join('; ')})`,
      'give the tables a primary key of a plain type (integer, text, uuid...)',
    );
  const text = format === 'json' ? renderConfigJson(draft) : renderConfigModule(draft, out);
  try {
    // 'wx' fails if the file appeared meanwhile: without --force nothing is overwritten.
    writeFileSync(path, text, { flag: options.force === true ? 'w' : 'wx' });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new InitError(
        'file-exists',
        `${out} exists; nothing was written`,
        'pass --force to overwrite it',
      );
    const why =
      code === 'ENOENT'
        ? 'its folder does not exist'
        : code === 'EISDIR'
          ? 'it is a folder'
          : code === 'EACCES'
            ? 'permission denied'
            : (code ?? String(error));
    throw new ConfigError('--out', out, `cannot be written: ${why}`);
  }
  return { path, format, draft };
}

/** The schema's tables; the pool is closed on every path. */
async function readTables(
  url: string,
  schema: string,
  connectTimeoutMs: number,
): Promise<SchemaTable[]> {
  const pool = new pg.Pool({ ...pgConfig(url), max: 1, connectionTimeoutMillis: connectTimeoutMs });
  pool.on('error', () => {}); // an idle client's error: the query that needs it reports
  try {
    const query = poolQuery(pool);
    let exists: boolean;
    try {
      exists = await schemaExists(query, schema);
    } catch (error) {
      throw new DatabaseUnavailableError('walcache init', redactUrl(url), error);
    }
    if (!exists)
      throw new InitError(
        'unknown-schema',
        `schema ${schema} does not exist in ${redactUrl(url)}`,
        'check the name (\\dn in psql lists the schemas), or --database-url / DATABASE_URL of the right database',
      );
    const tables = await readSchemaTables(query, schema);
    if (tables.length === 0)
      throw new InitError(
        'empty-schema',
        `schema ${schema} has no tables`,
        "run the application's migrations first, then walcache init",
      );
    return tables;
  } finally {
    await pool.end();
  }
}
