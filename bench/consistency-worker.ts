/**
 * Child process of bench/consistency.ts: one InvalidationWorker on the benchmark's slot,
 * in its own process so the fault schedule can SIGKILL it as a crash would. Driven over
 * IPC (bench/cdc-common.ts protocol); never writes to stdout.
 *
 * Requests: start { prefix, redisUrl } -> { role }, stats { reset } -> { lag }, stop.
 */
import type { EventEmitter } from 'node:events';
import pg from 'pg';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { resolveConfig } from '../src/config/config.js';
import { pgConfig } from '../src/config/database.js';
import { type Envelope, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';
import { consistencyConfig, DATABASE_URL, SLOT } from './consistency-common.js';

let worker: InvalidationWorker | null = null;
let failures = 0;
let stopped = false;
/** Commit → applied, over the transactions applied since the last `stats { reset }`. */
let lag = { max: 0, over100: 0, n: 0 };

/**
 * The parent died without stopping us (SIGKILL, a crash): nobody else will drop the
 * benchmark's slot, and a slot left behind keeps WAL on a shared server forever.
 */
async function orphaned(): Promise<void> {
  // A frozen Redis can hold stop() up: the slot matters more.
  await Promise.race([worker?.close(), new Promise((resolve) => setTimeout(resolve, 3_000))]);
  if (stopped) return;
  const client = new pg.Client(pgConfig(DATABASE_URL));
  client.on('error', () => {});
  await client.connect();
  try {
    // Our own walsender may take a moment to let go; past a few tries it is ended.
    for (let i = 0; i < 60; i++) {
      const { rows } = await client.query(
        'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
        [SLOT],
      );
      if (rows.length === 0) return;
      const pid = rows[0].active_pid as number | null;
      if (pid !== null && i >= 10)
        await client.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => {});
      if (pid === null)
        await client.query('SELECT pg_drop_replication_slot($1)', [SLOT]).catch(() => {});
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await client.end().catch(() => {});
  }
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'start': {
      const config = resolveConfig(
        consistencyConfig(String(message.prefix), String(message.redisUrl)),
      );
      worker = new InvalidationWorker({ config, slot: SLOT });
      (worker.events as unknown as EventEmitter).on('failure', () => failures++);
      worker.events.on('applied', (_transactions, _rows, _keys, _tags, _applyMs, lags) => {
        for (const ms of lags) {
          lag.n++;
          if (ms > lag.max) lag.max = ms;
          if (ms > 100) lag.over100++;
        }
      });
      await worker.start();
      return { type: 'started', role: worker.role };
    }
    case 'stats': {
      const seen = lag;
      if (message.reset) lag = { max: 0, over100: 0, n: 0 };
      return { type: 'stats', failures, lag: seen };
    }
    case 'stop': {
      stopped = true;
      const w = worker;
      worker = null;
      await w?.close();
      setImmediate(() => process.disconnect?.());
      return { type: 'stopped' };
    }
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

serve(handle);
exitWithParent(() =>
  orphaned().catch((error: Error) =>
    process.stderr.write(`consistency-worker: could not drop slot ${SLOT}: ${error.message}\n`),
  ),
);
process.send?.({ type: 'ready' });
