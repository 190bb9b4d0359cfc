/**
 * The database of the workload benchmark: its pools (admin, and the service's pool that
 * finds the tables through search_path), the seeded schema, and the queries and writes,
 * the same for every contender.
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { dropStaleSlot } from './slot.js';
import { DATABASE_URL, type Database, SCHEMA, SLOT } from './workload-common.js';
import { ORDERS_PER_USER, POOL_SIZE, ROWS } from './workload-params.js';

export const admin = new pg.Pool({
  ...pgConfig(DATABASE_URL),
  max: 2,
  application_name: 'wl-admin',
});
admin.on('error', () => {});
// The service's pool: its tables are found through search_path, as an application's
// tables in `public` are (no per-query withSchema).
export const pool = new pg.Pool({
  ...pgConfig(DATABASE_URL, { options: `-c search_path=${SCHEMA}` }),
  max: POOL_SIZE,
  application_name: 'wl-bench',
});
pool.on('error', () => {});
export const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });

let seededMaxOrderId = '0';

export async function setupDatabase(): Promise<number> {
  const started = performance.now();
  await dropStaleSlot(admin, SLOT);
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await admin.query(`CREATE SCHEMA ${SCHEMA}`);
  await admin.query(
    `CREATE TABLE ${SCHEMA}.users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL, tenant_id int NOT NULL, password_hash text NOT NULL)`,
  );
  await admin.query(
    `CREATE TABLE ${SCHEMA}.orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
  );
  await admin.query(
    `INSERT INTO ${SCHEMA}.users SELECT i, 'user' || i || '@example.com', 'User ' || i, i % 100, md5(i::text) FROM generate_series(1, $1::int) i`,
    [ROWS],
  );
  await admin.query(
    `INSERT INTO ${SCHEMA}.orders (user_id, status, total, created_at)
     SELECT (i % $1::int) + 1, (ARRAY['new','paid','shipped'])[1 + i % 3], ((i * 37) % 100000) / 100.0,
            now() - make_interval(mins => i)
     FROM generate_series(0, $1::int * $2::int - 1) i`,
    [ROWS, ORDERS_PER_USER],
  );
  await admin.query(`CREATE INDEX ON ${SCHEMA}.orders (user_id)`);
  await admin.query(`ALTER TABLE ${SCHEMA}.users REPLICA IDENTITY FULL`);
  await admin.query(`ALTER TABLE ${SCHEMA}.orders REPLICA IDENTITY FULL`);
  await admin.query(`VACUUM ANALYZE ${SCHEMA}.users`);
  await admin.query(`VACUUM ANALYZE ${SCHEMA}.orders`);
  // Flush the load's dirty pages now, not in the first measured round.
  await admin.query('CHECKPOINT').catch(() => {});
  seededMaxOrderId = (
    await admin.query<{ m: string }>(`SELECT max(id)::text AS m FROM ${SCHEMA}.orders`)
  ).rows[0]?.m as string;
  return performance.now() - started;
}

/** Every contender round starts from the seeded data: orders inserted since are deleted. */
export async function resetOrders(): Promise<void> {
  await admin.query(`DELETE FROM ${SCHEMA}.orders WHERE id > $1`, [seededMaxOrderId]);
}

// --- the queries (the same for every contender) ----------------------------------------

export const userQuery = (id: number) =>
  db.selectFrom('users').select(['id', 'email', 'name', 'tenant_id']).where('id', '=', String(id));

/** A user with the count and total of its orders. */
export const aggregateQuery = (id: number) =>
  db
    .selectFrom('users')
    .leftJoin('orders', 'orders.user_id', 'users.id')
    .select((eb) => [
      'users.id',
      'users.name',
      eb.fn.count<string>('orders.id').as('order_count'),
      eb.fn.coalesce(eb.fn.sum<string>('orders.total'), eb.lit(0)).as('total'),
    ])
    .where('users.id', '=', String(id))
    .groupBy(['users.id', 'users.name']);

const RENAME_SQL = `UPDATE ${SCHEMA}.users SET name = $2 WHERE id = $1`;
const INSERT_ORDER_SQL = `INSERT INTO ${SCHEMA}.orders (user_id, status, total) VALUES ($1, 'new', $2)`;

export async function rename(id: number, seq: number): Promise<void> {
  await pool.query(RENAME_SQL, [id, `User ${id} #${seq}`]);
}

export async function insertOrder(id: number, seq: number): Promise<void> {
  await pool.query(INSERT_ORDER_SQL, [id, ((seq % 100_000) / 100).toFixed(2)]);
}
