/**
 * Child process of bench/contention.ts: `writers` loops committing single-row plain SQL
 * UPDATEs to the hot rows as fast as they can (autocommit, one pg connection each), ids
 * uniform from a seeded PRNG (at most `rate` writes/s in all when it is above 0). Never through walcache: the worker is walcache's only
 * invalidation. In bentocache rounds (mode 'bentocache') each write is followed by the
 * delete a bentocache user writes by hand (L1, L2 and the bus), awaited before the next.
 * Driven over IPC (bench/cdc-common.ts protocol); never writes to stdout.
 *
 * Requests: open { mode, prefix, rows, writers, seed, rate }, start, stop (returns the writes
 * since start), close, exit.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { type BentoBaseline, bentocacheBaseline } from './bentocache-baseline.js';
import { type Envelope, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';
import { bentoKey, DATABASE_URL, REDIS_URL, SCHEMA } from './contention-common.js';
import { prng } from './prng.js';

let pool: pg.Pool | null = null;
let bento: { cache: BentoBaseline; connection: Redis } | null = null;
let running = false;
let loops: Promise<void>[] = [];
let writes = 0;
let errors = 0;
let firstError = '';
let startedAt = 0;
let params = { rows: 200, writers: 4, seed: 1, rate: 0 };

async function writer(k: number): Promise<void> {
  const random = prng(params.seed * 31 + k);
  const p = pool as pg.Pool;
  const sql = `UPDATE ${SCHEMA}.hot SET version = version + 1 WHERE id = $1`;
  // rate > 0: the loops together write at most `rate` rows per second.
  const intervalMs = params.rate > 0 ? (1000 * params.writers) / params.rate : 0;
  let next = performance.now();
  while (running) {
    if (intervalMs > 0) {
      next += intervalMs;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      else if (wait < -1_000) next = performance.now(); // fell behind: no burst
      if (!running) break;
    }
    const id = 1 + Math.floor(random() * params.rows);
    try {
      await p.query(sql, [id]);
      if (bento) await bento.cache.delete({ key: bentoKey(id) });
      writes++;
    } catch (error) {
      if (errors++ === 0) firstError = error instanceof Error ? error.message : String(error);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

async function stopLoops(): Promise<void> {
  running = false;
  await Promise.all(loops);
  loops = [];
}

async function close(): Promise<void> {
  await stopLoops();
  const b = bento;
  bento = null;
  if (b) {
    await b.cache.disconnectAll().catch(() => {});
    await b.connection.quit().catch(() => b.connection.disconnect());
  }
  const p = pool;
  pool = null;
  await p?.end().catch(() => {});
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'open': {
      params = {
        rows: Number(message.rows),
        writers: Number(message.writers),
        seed: Number(message.seed ?? 1),
        rate: Number(message.rate ?? 0),
      };
      pool = new pg.Pool({
        ...pgConfig(DATABASE_URL),
        max: params.writers,
        application_name: 'wcb-ct-writer',
      });
      pool.on('error', () => {});
      pool.on('connect', (client) => client.on('error', () => {}));
      if (message.mode === 'bentocache') {
        const prefix = String(message.prefix);
        const connection = new Redis(REDIS_URL, { connectionName: `${prefix}:writer` });
        connection.on('error', () => {});
        const cache = bentocacheBaseline({
          prefix,
          ttlMs: 60_000,
          l1MaxItems: 10_000,
          connection,
          redisUrl: REDIS_URL,
        });
        bento = { cache, connection };
        await cache.getOrSet({ key: 'ready-writer', factory: () => 1 });
        await cache.delete({ key: 'ready-writer' });
      }
      return { type: 'opened' };
    }
    case 'start':
      writes = 0;
      errors = 0;
      firstError = '';
      startedAt = performance.now();
      running = true;
      loops = Array.from({ length: params.writers }, (_, k) => writer(k));
      return { type: 'started' };
    case 'stop': {
      await stopLoops();
      return {
        type: 'stopped',
        writes,
        errors,
        firstError,
        elapsedMs: performance.now() - startedAt,
      };
    }
    case 'close':
      await close();
      return { type: 'closed' };
    case 'exit':
      await close();
      setImmediate(() => process.disconnect?.());
      return { type: 'exiting' };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

serve(handle);
exitWithParent(close);
process.send?.({ type: 'ready' });
