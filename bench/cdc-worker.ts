/**
 * Child process of bench/cdc.ts: runs one InvalidationWorker, so its RSS is the worker's
 * alone and the load generator does not share its event loop. Driven over IPC
 * (see bench/cdc-common.ts); never writes to stdout.
 *
 * Requests: start, wait-keys, stats (optionally resetting), gc-rss, stop.
 * Notifications: ready, rss (every second).
 */
import type { EventEmitter } from 'node:events';
import { InvalidationWorker, type WorkerOptions } from '../src/cdc/invalidation-worker.js';
import { resolveConfig } from '../src/config/config.js';
import { type Envelope, MB, now, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';

interface Stats {
  groups: number;
  transactions: number;
  rows: number;
  keys: number;
  applyMs: number;
  maxGroupRows: number;
  lags: number[];
  since: number;
}

const newStats = (): Stats => ({
  groups: 0,
  transactions: 0,
  rows: 0,
  keys: 0,
  applyMs: 0,
  maxGroupRows: 0,
  lags: [],
  since: now(),
});

let worker: InvalidationWorker | null = null;
let totalRows = 0;
/** Keys invalidated: this benchmark's rows only (the slot also carries other schemas' changes). */
let totalKeys = 0;
let errors = 0;
let lastError = '';
let stats = newStats();
const waiters: Array<{ keys: number; resolve: (t: number) => void }> = [];

function memory() {
  const m = process.memoryUsage();
  return { rss: m.rss / MB, heapUsed: m.heapUsed / MB };
}

const rssTimer = setInterval(() => {
  process.send?.({ type: 'rss', t: now(), keys: totalKeys, ...memory() });
}, 1_000);

async function start(message: Envelope): Promise<Envelope> {
  const config = resolveConfig({
    prefix: String(message.prefix),
    defaultSchema: String(message.schema),
    databaseUrl: String(message.databaseUrl),
    redis: { url: String(message.redisUrl) },
    entities: { users: { table: 'users', key: 'id' } },
  });
  const options = (message.workerOptions ?? {}) as Partial<WorkerOptions>;
  worker = new InvalidationWorker({ ...options, config, slot: String(message.slot) });
  // Failures are reported as 'failure' (older versions: 'error'); count both, untyped, so
  // an 'error' emit never throws here.
  const onFailure = (_kind: unknown, error: unknown) => {
    errors++;
    lastError = error instanceof Error ? error.message : String(error);
  };
  const emitter = worker.events as unknown as EventEmitter;
  emitter.on('failure', onFailure);
  emitter.on('error', onFailure);
  worker.events.on('applied', (transactions, rows, keys, _tags, applyMs, lags) => {
    totalRows += rows;
    totalKeys += keys;
    stats.groups++;
    stats.transactions += transactions;
    stats.rows += rows;
    stats.keys += keys;
    stats.applyMs += applyMs;
    if (rows > stats.maxGroupRows) stats.maxGroupRows = rows;
    for (const lag of lags) stats.lags.push(lag);
    if (waiters.length > 0) {
      const t = now();
      for (let i = waiters.length - 1; i >= 0; i--) {
        const w = waiters[i];
        if (w && totalKeys >= w.keys) {
          waiters.splice(i, 1);
          w.resolve(t);
        }
      }
    }
  });
  const t0 = now();
  await worker.start();
  return { type: 'started', t0, tStarted: now(), role: worker.role };
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'start':
      return start(message);
    case 'wait-keys': {
      const keys = Number(message.keys);
      const t =
        totalKeys >= keys
          ? now()
          : await new Promise<number>((resolve) => waiters.push({ keys, resolve }));
      return { type: 'keys-reached', t, keys: totalKeys, rows: totalRows, ...memory() };
    }
    case 'stats': {
      const s = stats;
      if (message.reset) stats = newStats();
      return { type: 'stats', ...s, totalRows, totalKeys, errors, lastError, until: now() };
    }
    case 'gc-rss': {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      return { type: 'gc-rss', gc: gc !== undefined, ...memory() };
    }
    case 'stop': {
      clearInterval(rssTimer);
      await worker?.close();
      setImmediate(() => process.disconnect?.());
      return { type: 'stopped', totalRows };
    }
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

serve(handle);
// The parent went away (crash, Ctrl-C): release the slot and exit.
exitWithParent(async () => {
  clearInterval(rssTimer);
  await worker?.close();
});
process.send?.({ type: 'ready' });
