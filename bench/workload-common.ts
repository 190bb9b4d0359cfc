/**
 * Shared pieces of the workload benchmark (bench/workload.ts) and its worker child
 * process (bench/workload-worker.ts): names, the walcache config both sides use, and the
 * Kysely database type.
 */
import type { Generated } from 'kysely';
import { defineConfig } from '../src/index.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The benchmark's own schema: dropped and recreated at the start, dropped at the end. */
export const SCHEMA = 'walcache_bench';
/** Its replication slot (dropped at the end, also on failure or Ctrl-C). */
export const SLOT = 'walcache_bench';
/** Every Redis key of the benchmark starts with this (one sub-prefix per contender round). */
export const KEY_PREFIX = 'walcache-bench-wl';

export interface Database {
  users: {
    id: string;
    email: string;
    name: string;
    tenant_id: number;
    password_hash: string;
  };
  orders: {
    id: Generated<string>;
    user_id: string;
    status: string;
    total: string;
    created_at: Generated<Date>;
  };
}

/** The config of the service (repository) and of the worker: identical on both sides. */
export function benchConfig(prefix: string, sampleRate = 0.01) {
  return defineConfig({
    prefix,
    databaseUrl: DATABASE_URL,
    redis: { url: REDIS_URL },
    defaultSchema: SCHEMA,
    entities: {
      users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
      orders: { table: 'orders', key: 'id' },
    },
    invalidateBy: { orders: ['user_id'], users: ['id'] },
    accessLog: { sampleRate },
  });
}
