/**
 * Child process of bench/workload.ts: runs the InvalidationWorker on the benchmark's slot
 * during walcache rounds, so its CPU is its own process's (as in production) and the load
 * generator does not share its event loop. Driven over IPC (bench/cdc-common.ts
 * protocol); never writes to stdout.
 *
 * Requests: start { prefix } (a new worker per walcache round, with that round's key
 * prefix), stats { reset }, stop.
 * Notifications: ready.
 */
import type { EventEmitter } from 'node:events';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { resolveConfig } from '../src/config/config.js';
import { type Envelope, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';
import { benchConfig, SLOT } from './workload-common.js';

let worker: InvalidationWorker | null = null;
let errors = 0;
let lastError = '';

interface Stats {
  groups: number;
  transactions: number;
  rows: number;
  keys: number;
  tags: number;
  applyMs: number;
  lags: number[];
}

const newStats = (): Stats => ({
  groups: 0,
  transactions: 0,
  rows: 0,
  keys: 0,
  tags: 0,
  applyMs: 0,
  lags: [],
});
let stats = newStats();

async function start(message: Envelope): Promise<Envelope> {
  if (worker) throw new Error('worker already running');
  const config = resolveConfig(benchConfig(String(message.prefix)));
  const w = new InvalidationWorker({ config, slot: SLOT });
  const onFailure = (_kind: unknown, error: unknown) => {
    errors++;
    lastError = error instanceof Error ? error.message : String(error);
  };
  const emitter = w.events as unknown as EventEmitter;
  emitter.on('failure', onFailure);
  emitter.on('error', onFailure);
  w.events.on('applied', (transactions, rows, keys, tags, applyMs, lags) => {
    stats.groups++;
    stats.transactions += transactions;
    stats.rows += rows;
    stats.keys += keys;
    stats.tags += tags;
    stats.applyMs += applyMs;
    // Bounded: a sample is plenty for percentiles.
    for (const lag of lags) if (stats.lags.length < 200_000) stats.lags.push(lag);
  });
  worker = w;
  await w.start();
  return { type: 'started', role: w.role };
}

async function stop(): Promise<void> {
  const w = worker;
  worker = null;
  await w?.close();
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'start':
      return start(message);
    case 'stats': {
      const s = stats;
      if (message.reset) stats = newStats();
      return { type: 'stats', ...s, errors, lastError, appliedLsn: worker?.appliedLsn ?? null };
    }
    case 'stop':
      await stop();
      return { type: 'stopped' };
    case 'exit':
      await stop();
      setImmediate(() => process.disconnect?.());
      return { type: 'exiting' };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

serve(handle);
// The parent went away (crash, Ctrl-C): release the slot and exit.
exitWithParent(stop);
process.send?.({ type: 'ready' });
