import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ColumnType,
  type Generated,
  Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PostgresDialect,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { deferred, ROOT } from './helpers.js';
import { DATABASE_URL } from './pg-helpers.js';

/** The Database type of the repository tests' schema. */
export interface TestDB {
  users: {
    id: ColumnType<string, string | number, never>; // bigint: pg returns int8 as a string
    email: string;
    name: string;
    tenant_id: Generated<number>;
    password_hash: Generated<string>;
  };
  orders: {
    id: number;
    user_id: number;
    status: Generated<string>;
    total: Generated<string>; // numeric
  };
  audit: { id: number; note: string };
}

export const TEST_TABLES = `
  CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE NOT NULL, name text NOT NULL,
                      tenant_id int NOT NULL DEFAULT 1, password_hash text NOT NULL DEFAULT 'hunter2-secret');
  ALTER TABLE users REPLICA IDENTITY FULL;
  CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL, status text NOT NULL DEFAULT 'open',
                       total numeric(12,2) NOT NULL DEFAULT 0);
  ALTER TABLE orders REPLICA IDENTITY FULL;
  CREATE TABLE audit (id int PRIMARY KEY, note text);`;

/**
 * A Kysely on its own pool that counts the statements it runs (`failed`: those that
 * failed), the fill fence's snapshot reads aside.
 */
export function countingDb(schema: string): {
  db: Kysely<TestDB>;
  queries: Array<{ sql: string; parameters: readonly unknown[] }>;
  failed: Array<{ sql: string; parameters: readonly unknown[] }>;
} {
  const queries: Array<{ sql: string; parameters: readonly unknown[] }> = [];
  const failed: Array<{ sql: string; parameters: readonly unknown[] }> = [];
  const pool = new pg.Pool({
    ...pgConfig(DATABASE_URL),
    max: 4,
    options: `-c search_path=${schema}`,
  });
  pool.on('error', () => {});
  const db = new Kysely<TestDB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      // The fill fence's snapshot reads (SnapshotSource) are not loads: not counted.
      if (event.query.sql.includes('pg_current_snapshot()')) return;
      const query = { sql: event.query.sql, parameters: event.query.parameters };
      (event.level === 'query' ? queries : failed).push(query);
    },
  });
  return { db, queries, failed };
}

/**
 * Holds the result of the first SELECT run after it is armed: the load has read the
 * database, its fill has not happened yet (a write can land in between).
 */
export class SelectGate implements KyselyPlugin {
  armed = false;
  readonly entered = deferred();
  readonly release = deferred();
  readonly #held = new WeakSet<object>();
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    if (this.armed && args.node.kind === 'SelectQueryNode') {
      this.armed = false;
      this.#held.add(args.queryId);
    }
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    if (this.#held.has(args.queryId)) {
      this.entered.resolve();
      await this.release.promise;
    }
    return args.result;
  }
}

/**
 * A temporary folder of warmer SQL files. `hotKeys` is a copy of the packaged
 * `sql/hot-keys.sql` naming the test's schema (the packaged one names
 * `walcache.access_log`), as a user with another walcache schema would write it.
 */
export function warmerSqlFiles(schema: string): {
  dir: string;
  file(name: string, text: string): string;
  hotKeys: string;
  remove(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'walcache-sql-'));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const hotKeys = file(
    'hot-keys.sql',
    readFileSync(join(ROOT, 'sql', 'hot-keys.sql'), 'utf8').replace(
      'walcache.access_log',
      `${schema}.access_log`,
    ),
  );
  return { dir, file, hotKeys, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
