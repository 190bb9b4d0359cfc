/**
 * Shared pieces of the consistency benchmark (bench/consistency.ts) and its children
 * (consistency-reader.ts, consistency-worker.ts, consistency-redis.ts): names, the config
 * every side uses, the table's type.
 */
import { defineConfig } from '../src/index.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';

/**
 * The benchmark's own schema and slot (one name): dropped and recreated at the start,
 * dropped at the end. BENCH_CONSISTENCY_SCHEMA names another (tests run it under theirs).
 */
export const SCHEMA = process.env.BENCH_CONSISTENCY_SCHEMA ?? 'walcache_bench_consistency';
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(SCHEMA))
  throw new Error(`BENCH_CONSISTENCY_SCHEMA must be a lower-case identifier, got ${SCHEMA}`);
export const SLOT = SCHEMA;

export interface Database {
  hot: { id: number; version: string; payload: string; secret: string };
}

/**
 * The config of the readers and the worker. Redis is the bench's private server (faults
 * are injected there); everything else is walcache's defaults, as a service would run.
 */
export function consistencyConfig(prefix: string, redisUrl: string) {
  return defineConfig({
    prefix,
    databaseUrl: DATABASE_URL,
    redis: { url: redisUrl },
    defaultSchema: SCHEMA,
    accessLog: { sampleRate: 0 },
    entities: { hot: { table: 'hot', key: 'id', deny: ['secret'] } },
  });
}
