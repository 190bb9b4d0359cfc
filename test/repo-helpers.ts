import { type ColumnType, type Generated, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
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

/** A Kysely on its own pool that counts the statements it runs. */
export function countingDb(schema: string): {
  db: Kysely<TestDB>;
  queries: Array<{ sql: string; parameters: readonly unknown[] }>;
} {
  const queries: Array<{ sql: string; parameters: readonly unknown[] }> = [];
  const pool = new pg.Pool({
    ...pgConfig(DATABASE_URL),
    max: 4,
    options: `-c search_path=${schema}`,
  });
  pool.on('error', () => {});
  const db = new Kysely<TestDB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      if (event.level === 'query')
        queries.push({ sql: event.query.sql, parameters: event.query.parameters });
    },
  });
  return { db, queries };
}
