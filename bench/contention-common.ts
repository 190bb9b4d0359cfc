/**
 * Shared pieces of the contention benchmark (bench/contention.ts) and its children
 * (contention-app.ts, contention-writer.ts, contention-worker.ts): names, the walcache
 * config every side uses, the table's type, the loader delay and the seeded PRNG.
 */
import type {
  CompiledQuery,
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Kysely,
  QueryCompiler,
  QueryResult,
} from 'kysely';
import { defineConfig } from '../src/index.js';
import { sleep } from './cdc-common.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * The benchmark's own schema and slot (one name): dropped and recreated at the start,
 * dropped at the end. BENCH_CONTENTION_SCHEMA names another (the test runs it under its own).
 */
export const SCHEMA = process.env.BENCH_CONTENTION_SCHEMA ?? 'walcache_bench_contention';
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(SCHEMA))
  throw new Error(`BENCH_CONTENTION_SCHEMA must be a lower-case identifier, got ${SCHEMA}`);
export const SLOT = SCHEMA;
/** Every Redis key of the run starts with this (one sub-prefix per contender round). */
export const KEY_PREFIX = `wcbench-ct-${SCHEMA}`;

export interface Database {
  hot: { id: number; version: string; payload: string };
}

export type ContenderName = 'walcache' | 'bentocache' | 'direct';

/** The config of the app processes and the worker: walcache's defaults otherwise. */
export function contentionConfig(prefix: string) {
  return defineConfig({
    prefix,
    databaseUrl: DATABASE_URL,
    redis: { url: REDIS_URL },
    defaultSchema: SCHEMA,
    accessLog: { sampleRate: 0 },
    entities: { hot: { table: 'hot', key: 'id' } },
  });
}

/** bentocache's key of a hot row (the app processes read it, the writer deletes it). */
export const bentoKey = (id: number) => `hot:${id}`;

export { sleep };

/**
 * A sampler of row ids 1..rows: uniform, or Zipf(s) over ranks mapped to ids in order
 * (id 1 the hottest).
 */
export function idSampler(
  rows: number,
  dist: 'uniform' | 'zipf',
  zipfS: number,
  random: () => number,
): () => number {
  if (dist === 'uniform') return () => 1 + Math.floor(random() * rows);
  const cdf = new Float64Array(rows);
  let sum = 0;
  for (let k = 1; k <= rows; k++) {
    sum += 1 / k ** zipfS;
    cdf[k - 1] = sum;
  }
  for (let i = 0; i < rows; i++) cdf[i] = (cdf[i] as number) / sum;
  return () => {
    const u = random();
    let lo = 0;
    let hi = rows - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

/**
 * The loader delay of the benchmark, as a Kysely dialect around the real one: every
 * SELECT runs on a pooled connection that goes back to the pool as soon as its rows are
 * in, then the result is held `delayMs` before Kysely (and so the loader, and so the
 * cache's fill) gets it. It stands for work a loader does after its query (mapping,
 * another service), not for a slow query: the connection is not held. Raw SQL (the
 * repository's catalog read) and other statements pass undelayed. No transactions (the
 * app processes only read).
 */
export class DelayedSelects implements Dialect {
  readonly #inner: Dialect;
  readonly #delayMs: number;

  constructor(inner: Dialect, delayMs: number) {
    this.#inner = inner;
    this.#delayMs = delayMs;
  }

  createAdapter(): DialectAdapter {
    return this.#inner.createAdapter();
  }

  createQueryCompiler(): QueryCompiler {
    return this.#inner.createQueryCompiler();
  }

  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own signature
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return this.#inner.createIntrospector(db);
  }

  createDriver(): Driver {
    const driver = this.#inner.createDriver();
    const connection = new LateConnection(driver, this.#delayMs);
    const noTransactions = () =>
      Promise.reject(new Error('DelayedSelects: no transactions in the app processes'));
    return {
      init: () => driver.init(),
      destroy: () => driver.destroy(),
      acquireConnection: async () => connection,
      releaseConnection: async () => {},
      beginTransaction: noTransactions,
      commitTransaction: noTransactions,
      rollbackTransaction: noTransactions,
    };
  }
}

class LateConnection implements DatabaseConnection {
  readonly #driver: Driver;
  readonly #delayMs: number;

  constructor(driver: Driver, delayMs: number) {
    this.#driver = driver;
    this.#delayMs = delayMs;
  }

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const real = await this.#driver.acquireConnection();
    let result: QueryResult<R>;
    try {
      result = await real.executeQuery<R>(query);
    } finally {
      await this.#driver.releaseConnection(real);
    }
    if (this.#delayMs > 0 && query.query.kind === 'SelectQueryNode') await sleep(this.#delayMs);
    return result;
  }

  // biome-ignore lint/correctness/useYield: streaming is not offered
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('DelayedSelects: no streaming in the app processes');
  }
}
