/**
 * Child process of bench/contention.ts: the InvalidationWorker on the benchmark's slot,
 * started for each walcache round with that round's key prefix, so its CPU is its own
 * process's (as in production). Driven over IPC (bench/cdc-common.ts protocol); never
 * writes to stdout.
 *
 * Requests: start { prefix }, stats { reset } -> { rows, lagP99, failures }, stop, exit.
 * If the parent dies without stopping it, it stops the worker and drops the slot.
 */
import type { EventEmitter } from 'node:events';
import pg from 'pg';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { resolveConfig } from '../src/config/config.js';
import { pgConfig } from '../src/config/database.js';
import { type Envelope, percentiles, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';
import { contentionConfig, DATABASE_URL, SLOT, sleep } from './contention-common.js';

let worker: InvalidationWorker | null = null;
let failures = 0;
let exiting = false;
let rows = 0;
let lags: number[] = [];

async function stop(): Promise<void> {
  const w = worker;
  worker = null;
  await w?.close();
}

/** The parent died without stopping us: nobody else will drop the benchmark's slot. */
async function orphaned(): Promise<void> {
  await Promise.race([stop(), sleep(3_000)]);
  if (exiting) return;
  const client = new pg.Client(pgConfig(DATABASE_URL));
  client.on('error', () => {});
  await client.connect();
  try {
    for (let i = 0; i < 60; i++) {
      const { rows: found } = await client.query(
        'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
        [SLOT],
      );
      if (found.length === 0) return;
      const pid = found[0].active_pid as number | null;
      if (pid !== null && i >= 10)
        await client.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => {});
      if (pid === null)
        await client.query('SELECT pg_drop_replication_slot($1)', [SLOT]).catch(() => {});
      else await sleep(100);
    }
  } finally {
    await client.end().catch(() => {});
  }
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'start': {
      if (worker) throw new Error('worker already running');
      const config = resolveConfig(contentionConfig(String(message.prefix)));
      const w = new InvalidationWorker({ config, slot: SLOT });
      (w.events as unknown as EventEmitter).on('failure', () => failures++);
      w.events.on('applied', (_transactions, applied, _keys, _tags, _applyMs, commitLags) => {
        rows += applied;
        for (const ms of commitLags) if (lags.length < 100_000) lags.push(ms);
      });
      worker = w;
      await w.start();
      return { type: 'started', role: w.role };
    }
    case 'stats': {
      const out = { type: 'stats', rows, failures, lagP99: percentiles(lags).p99 };
      if (message.reset) {
        rows = 0;
        lags = [];
      }
      return out;
    }
    case 'stop':
      await stop();
      return { type: 'stopped' };
    case 'exit':
      exiting = true;
      await stop();
      setImmediate(() => process.disconnect?.());
      return { type: 'exiting' };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

serve(handle);
exitWithParent(() =>
  orphaned().catch((error: Error) =>
    process.stderr.write(`contention-worker: could not drop slot ${SLOT}: ${error.message}\n`),
  ),
);
process.send?.({ type: 'ready' });
