import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  PostgresDialect,
  sql,
} from 'kysely';
import pg from 'pg';
import { pgConfig } from '../config/database.js';
import { SetupError } from '../errors/typed-errors.js';

/** Schema of walcache's own tables (access log, migration bookkeeping). */
export const DEFAULT_WALCACHE_SCHEMA = 'walcache';
/** Kysely's bookkeeping tables, inside the walcache schema. */
export const MIGRATION_TABLE = 'kysely_migration';
export const MIGRATION_LOCK_TABLE = 'kysely_migration_lock';

/** One `migrations/NNNN_name.sql` file, split at its `-- up` and `-- down` markers. */
export interface SqlMigration {
  /** The file name without `.sql`; migrations run in the order of their names. */
  readonly name: string;
  readonly file: string;
  readonly up: string;
  readonly down: string | null;
}

export interface MigrationOptions {
  /** Schema the migrations run in (their `search_path`) and where their bookkeeping lives. @default 'walcache' */
  readonly schema?: string;
  /** Folder of the `.sql` files. @default the package's `migrations/` */
  readonly directory?: string;
}

export interface PendingMigration {
  readonly name: string;
  /** Exactly what runs, in one transaction, to apply it. */
  readonly sql: string;
}

export interface MigrationRun {
  /** Names of the migrations applied by this call (none when `dryRun` or up to date). */
  readonly applied: readonly string[];
  /** What was pending before the call: applied now, or what would be applied in a dry run. */
  readonly pending: readonly PendingMigration[];
  readonly dryRun: boolean;
}

/** A pg pool (left open) or a connection string (a pool is opened and closed). */
export type MigrationTarget = pg.Pool | string;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const UP = /^--\s*up\s*$/im;
const DOWN = /^--\s*down\s*$/im;

/**
 * The package's `migrations/` folder: `../../migrations` from `src/cdc/` (running the
 * sources), `../../../migrations` from `dist/src/cdc/` (the published build).
 */
export function migrationsDirectory(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [
    join(here, '..', '..', 'migrations'),
    join(here, '..', '..', '..', 'migrations'),
  ];
  const found = candidates.find((dir) => existsSync(dir));
  if (!found) {
    throw new SetupError(
      `walcache's migrations folder is missing (looked in ${candidates.join(', ')})`,
      'reinstall walcache: the package ships migrations/ next to dist/',
    );
  }
  return found;
}

/** Splits a migration file: text before `-- up` is a header, `-- down` is optional. */
export function parseSqlMigration(name: string, text: string, file = name): SqlMigration {
  const up = UP.exec(text);
  if (!up) {
    throw new SetupError(
      `Migration ${file} has no "-- up" line`,
      'start the statements that apply it with a line "-- up" (and the ones that undo it with "-- down")',
    );
  }
  const afterUp = text.slice(up.index + up[0].length);
  const down = DOWN.exec(afterUp);
  const upSql = (down ? afterUp.slice(0, down.index) : afterUp).trim();
  const downSql = down ? afterUp.slice(down.index + down[0].length).trim() : '';
  if (upSql === '') {
    throw new SetupError(`Migration ${file} has an empty "-- up" section`, 'add its statements');
  }
  return { name, file, up: upSql, down: downSql === '' ? null : downSql };
}

/** Every `*.sql` migration of a folder, sorted by name. */
export async function readSqlMigrations(
  directory: string = migrationsDirectory(),
): Promise<SqlMigration[]> {
  const files = (await readdir(directory)).filter((f) => f.endsWith('.sql')).sort();
  return Promise.all(
    files.map(async (f) => {
      const file = join(directory, f);
      return parseSqlMigration(f.slice(0, -'.sql'.length), await readFile(file, 'utf8'), file);
    }),
  );
}

/**
 * A Kysely `MigrationProvider` over `.sql` files: each runs with `sql.raw`, after
 * `SET LOCAL search_path` to the walcache schema (the Migrator wraps each run in a
 * transaction, so the setting ends with it).
 */
export class SqlFileMigrationProvider implements MigrationProvider {
  readonly #directory: string | undefined;
  readonly #schema: string;

  constructor(options: MigrationOptions = {}) {
    this.#directory = options.directory;
    this.#schema = checkSchema(options.schema ?? DEFAULT_WALCACHE_SCHEMA);
  }

  async getMigrations(): Promise<Record<string, Migration>> {
    const migrations: Record<string, Migration> = {};
    for (const m of await readSqlMigrations(this.#directory)) {
      const down = m.down;
      migrations[m.name] = {
        up: async (db) => {
          await sql.raw(searchPath(this.#schema)).execute(db);
          await sql.raw(m.up).execute(db);
        },
        ...(down === null
          ? {}
          : {
              down: async (db) => {
                await sql.raw(searchPath(this.#schema)).execute(db);
                await sql.raw(down).execute(db);
              },
            }),
      };
    }
    return migrations;
  }
}

/** A Migrator for walcache's migrations, its bookkeeping in `<schema>.kysely_migration`. */
export function createMigrator(
  // biome-ignore lint/suspicious/noExplicitAny: the Migrator takes any database shape
  db: Kysely<any>,
  options: MigrationOptions = {},
): Migrator {
  return new Migrator({
    db,
    provider: new SqlFileMigrationProvider(options),
    migrationTableSchema: checkSchema(options.schema ?? DEFAULT_WALCACHE_SCHEMA),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
}

/** Migrations not applied yet, with the SQL each would run. Reads only; creates nothing. */
export async function pendingMigrations(
  target: MigrationTarget,
  options: MigrationOptions = {},
): Promise<PendingMigration[]> {
  return withMigrator(target, options, (migrator) => pending(migrator, options));
}

/**
 * Applies every pending migration (each in its own transaction, under Kysely's migration
 * lock, so concurrent runs are safe). With `dryRun`, only reports what is pending.
 *
 * @throws {SetupError} naming the migration that failed (it was rolled back).
 */
export async function runMigrations(
  target: MigrationTarget,
  options: MigrationOptions & { readonly dryRun?: boolean } = {},
): Promise<MigrationRun> {
  return withMigrator(target, options, async (migrator) => {
    const before = await pending(migrator, options);
    if (options.dryRun || before.length === 0)
      return { applied: [], pending: before, dryRun: options.dryRun === true };
    const { error, results = [] } = await migrator.migrateToLatest();
    if (error !== undefined) {
      const failed = results.find((r) => r.status === 'Error')?.migrationName;
      const message = error instanceof Error ? error.message : String(error);
      throw new SetupError(
        failed
          ? `Migration ${failed} failed and was rolled back: ${message}`
          : `Migrations could not run: ${message}`,
        'fix the cause above, then run `walcache setup` again',
        error,
      );
    }
    return {
      applied: results.filter((r) => r.status === 'Success').map((r) => r.migrationName),
      pending: before,
      dryRun: false,
    };
  });
}

async function pending(migrator: Migrator, options: MigrationOptions): Promise<PendingMigration[]> {
  const schema = options.schema ?? DEFAULT_WALCACHE_SCHEMA;
  const files = new Map(
    (await readSqlMigrations(options.directory)).map((m) => [m.name, m] as const),
  );
  return (await migrator.getMigrations())
    .filter((m) => m.executedAt === undefined)
    .map((m) => ({
      name: m.name,
      sql: `${searchPath(schema)};\n${files.get(m.name)?.up ?? ''}`,
    }));
}

async function withMigrator<T>(
  target: MigrationTarget,
  options: MigrationOptions,
  run: (migrator: Migrator) => Promise<T>,
): Promise<T> {
  checkSchema(options.schema ?? DEFAULT_WALCACHE_SCHEMA);
  const owned = typeof target === 'string';
  const pool = owned
    ? new pg.Pool({ ...pgConfig(target, { application_name: 'walcache-migrate' }), max: 2 })
    : target;
  if (owned) pool.on('error', () => {});
  // A borrowed pool stays open: destroying this Kysely would end it.
  const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
  try {
    // Kysely's migrator lists every table of the database; a schema another session drops
    // at that moment fails the listing ("schema ... does not exist"). Nothing was applied
    // then (a failed migration is rolled back): try again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await run(createMigrator(db, options));
      } catch (error) {
        if (attempt >= 5 || !isConcurrentDdlRace(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  } finally {
    if (owned) await db.destroy();
  }
}

/** A catalog read that raced another session's DROP (not an error of ours). */
function isConcurrentDdlRace(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === '3F000' || code === 'XX000' || code === '42P01') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function checkSchema(schema: string): string {
  if (!IDENTIFIER.test(schema)) {
    throw new SetupError(
      `Invalid walcache schema name ${JSON.stringify(schema)}`,
      'use letters, digits, "_" and "$" (at most 63, not starting with a digit)',
    );
  }
  return schema;
}

function searchPath(schema: string): string {
  return `SET LOCAL search_path TO "${schema.replaceAll('"', '""')}"`;
}
