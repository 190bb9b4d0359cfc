import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';

/** A schema (and slot name) of the test's own, dropped with every slot it used. */
export class PgScope {
  readonly schema: string;
  readonly pool: pg.Pool;
  readonly #slots = new Set<string>();

  constructor(name: string) {
    this.schema = `t_${name}_${randomBytes(4).toString('hex')}`;
    this.pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 4 });
    // Idle connections die with a server restart; the pool replaces them.
    this.pool.on('error', () => {});
  }

  slot(suffix = ''): string {
    const slot = `${this.schema}${suffix}`.toLowerCase();
    this.#slots.add(slot);
    return slot;
  }

  async create(sql: string): Promise<void> {
    await this.pool.query(`CREATE SCHEMA ${this.schema}`);
    await this.pool.query(`SET search_path TO ${this.schema}; ${sql}`);
  }

  q<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(sql.replaceAll('$schema', this.schema), params);
  }

  /** Waits until `slot` has confirmed everything written so far (the worker applied it). */
  async waitCaughtUp(slot: string, timeoutMs = 30_000): Promise<void> {
    const { rows } = await this.pool.query<{ lsn: string }>(
      'SELECT pg_current_wal_lsn()::text AS lsn',
    );
    const target = rows[0]?.lsn;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.pool.query<{ ok: boolean }>(
        'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2',
        [target, slot],
      );
      if (r.rows[0]?.ok === true) return;
      if (Date.now() > deadline) throw new Error(`slot ${slot} did not catch up with ${target}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async close(): Promise<void> {
    for (const slot of this.#slots) {
      for (let i = 0; i < 50; i++) {
        const { rows } = await this.pool.query(
          'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        );
        if (rows.length === 0) break;
        if (rows[0].active_pid)
          await this.pool
            .query('SELECT pg_terminate_backend($1)', [rows[0].active_pid])
            .catch(() => {});
        await new Promise((r) => setTimeout(r, 50));
        await this.pool.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => {});
      }
    }
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
    await this.pool.end();
  }
}
