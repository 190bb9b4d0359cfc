import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createRepository, defineConfig, resolveConfig } from '../src/index.js';
import { flushWriteBehind } from '../src/write-behind/write-behind-flush.js';
import { WriteBehindStore } from '../src/write-behind/write-behind-store.js';
import { REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

export interface CountersDb {
  counters: { id: number; value: number; note: string | null; extra: number | null };
}

/**
 * A write-behind entity `counters` (key `id`) in a schema, key prefix and pool of the
 * test's own, with `maxAttempts: 2`: its repository, the store of its pending writes,
 * flushes, and a row read straight from Postgres. The test creates the table
 * (`scope.create`) and calls `close()` after it.
 */
export function countersSuite(name: string) {
  const res = new Resources();
  const scope = new PgScope(name);
  const prefix = res.track(uniquePrefix(name));
  const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 6 });
  const db = new Kysely<CountersDb>({ dialect: new PostgresDialect({ pool }) });
  const config = defineConfig({
    prefix,
    databaseUrl: DATABASE_URL,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    accessLog: { sampleRate: 0 },
    writeBehind: { batchSize: 1_000_000, maxAttempts: 2 },
    jobs: { shutdownTimeoutMs: 5_000 },
    entities: { counters: { table: 'counters', key: 'id', writeBehind: true } },
  });
  const resolved = resolveConfig(config);
  const repo = createRepository({ db, config });
  const store = new WriteBehindStore(resolved);
  const flush = () =>
    flushWriteBehind({ engine: repo.engine, db, config: resolved, entity: 'counters', store });
  return {
    scope,
    pool,
    db,
    config,
    resolved,
    repo,
    store,
    flush,
    /** Flushes until nothing is pending. */
    async flushAll(): Promise<void> {
      for (let i = 0; i < 100; i++) if ((await flush()).remaining === 0) return;
      throw new Error('still pending');
    },
    /** The row as Postgres has it. */
    async row(id: number) {
      return (await scope.q('SELECT id, value, note FROM $schema.counters WHERE id = $1', [id]))
        .rows[0];
    },
    async close(): Promise<void> {
      await repo.close();
      await store.close();
      await db.destroy();
      await res.close();
      await scope.close();
    },
  };
}
