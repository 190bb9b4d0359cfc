/**
 * Child process of bench/contention.ts: one application process. It opens one contender
 * at a time (walcache's repository, bentocache, or direct Kysely reads), all three on the
 * same pg pool behind the same loader delay (DelayedSelects), and runs `concurrency`
 * read loops over the hot rows. Driven over IPC (bench/cdc-common.ts protocol); never
 * writes to stdout.
 *
 * Requests: open { contender, prefix, delayMs, rows, concurrency, dist, zipfS, seed },
 * start (loops run, unmeasured), mark (the measured window begins), stop (loops end;
 * returns what the window counted), check (every row once through the contender, 8 at a
 * time; returns the versions), close (the contender), exit.
 */
import type { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createRepository } from '../src/index.js';
import { type BentoBaseline, bentocacheBaseline } from './bentocache-baseline.js';
import { type Envelope, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';
import {
  bentoKey,
  type ContenderName,
  contentionConfig,
  DATABASE_URL,
  type Database,
  DelayedSelects,
  idSampler,
  REDIS_URL,
  SCHEMA,
} from './contention-common.js';
import { prng } from './prng.js';
import { quantile } from './stats.js';

const POOL = Number(process.env.BENCH_CONTENTION_POOL ?? 10);
const TTL_MS = 60_000;
const L1_MAX = 10_000; // walcache's default l1.maxEntries; bentocache gets the same
/** Read loops yield to the event loop every this many reads (L1 hits never do). */
const YIELD_EVERY = 16;

type Row = Database['hot'];

interface Opened {
  readonly name: ContenderName;
  readonly db: Kysely<Database>;
  read(id: number): Promise<Row | undefined>;
  close(): Promise<void>;
}

let opened: Opened | null = null;
let running = false;
let measuring = false;
let loops: Promise<void>[] = [];
let markedAt = 0;
let reads = 0;
let errors = 0;
let firstError = '';
/** bentocache factory runs and direct queries (walcache's loads are its `load` events). */
let loads = 0;
let tally = new Map<string, number>();
let leaseGaveUp = 0;
const latency = new Float64Array(1 << 21);
let params = {
  rows: 200,
  concurrency: 32,
  dist: 'uniform' as 'uniform' | 'zipf',
  zipfS: 1,
  seed: 1,
};

function openDb(delayMs: number): Kysely<Database> {
  const pool = new pg.Pool({
    ...pgConfig(DATABASE_URL),
    max: POOL,
    application_name: 'wcb-ct-app',
  });
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return new Kysely<Database>({
    dialect: new DelayedSelects(new PostgresDialect({ pool }), delayMs),
  });
}

/** The same query for bentocache and direct reads as walcache's loader runs. */
const selectRow = (db: Kysely<Database>, id: number) =>
  db.withSchema(SCHEMA).selectFrom('hot').selectAll().where('id', '=', id).executeTakeFirst();

/** Counts every engine event by name (whatever the engine in the tree emits), while measuring. */
function tallyEvents(events: EventEmitter): void {
  const emit = events.emit.bind(events);
  events.emit = (name: string | symbol, ...args: unknown[]) => {
    if (measuring && typeof name === 'string') {
      tally.set(name, (tally.get(name) ?? 0) + 1);
      // Tiers apart: 'hit' 'l1' is counted as hit and hit-l1.
      if (args[0] === 'l1' || args[0] === 'l2') {
        const tiered = `${name}-${args[0]}`;
        tally.set(tiered, (tally.get(tiered) ?? 0) + 1);
      }
      if (name === 'lease-wait' && args[2] === false) leaseGaveUp++;
    }
    return emit(name, ...args);
  };
}

async function open(message: Envelope): Promise<Opened> {
  const name = message.contender as ContenderName;
  const prefix = String(message.prefix);
  const db = openDb(Number(message.delayMs));
  if (name === 'walcache') {
    const repo = createRepository({ db, config: contentionConfig(prefix) });
    await repo.ready();
    if (!(await repo.engine.ready(10_000))) throw new Error('walcache engine not ready');
    tallyEvents(repo.engine.events as unknown as EventEmitter);
    return {
      name,
      db,
      read: (id) => repo.hot.findById(id) as Promise<Row | undefined>,
      close: async () => {
        await repo.close();
        await db.destroy();
      },
    };
  }
  if (name === 'bentocache') {
    const connection = new Redis(REDIS_URL, { connectionName: `${prefix}:l2` });
    connection.on('error', () => {});
    const bento: BentoBaseline = bentocacheBaseline({
      prefix,
      ttlMs: TTL_MS,
      l1MaxItems: L1_MAX,
      connection,
      redisUrl: REDIS_URL,
    });
    // One round trip through every layer (and the bus subscription), then clean.
    await bento.getOrSet({ key: 'ready', factory: () => 1 });
    await bento.delete({ key: 'ready' });
    bento.on('cache:hit', (e: { layer?: string }) => {
      if (!measuring) return;
      const k = e.layer === 'l2' ? 'hit-l2' : 'hit-l1';
      tally.set(k, (tally.get(k) ?? 0) + 1);
    });
    bento.on('cache:miss', () => {
      if (measuring) tally.set('miss', (tally.get('miss') ?? 0) + 1);
    });
    return {
      name,
      db,
      read: (id) =>
        bento.getOrSet({
          key: bentoKey(id),
          factory: () => {
            if (measuring) loads++;
            return selectRow(db, id);
          },
        }),
      close: async () => {
        await bento.disconnectAll().catch(() => {});
        await connection.quit().catch(() => connection.disconnect());
        await db.destroy();
      },
    };
  }
  return {
    name,
    db,
    read: (id) => {
      if (measuring) loads++;
      return selectRow(db, id);
    },
    close: () => db.destroy(),
  };
}

async function loop(k: number): Promise<void> {
  const o = opened as Opened;
  const next = idSampler(
    params.rows,
    params.dist,
    params.zipfS,
    prng(params.seed * 7919 + k * 104_729),
  );
  let n = 0;
  while (running) {
    const id = next();
    const t0 = performance.now();
    try {
      await o.read(id);
    } catch (error) {
      if (measuring && errors++ === 0)
        firstError = error instanceof Error ? error.message : String(error);
    }
    if (measuring) {
      if (reads < latency.length) latency[reads] = performance.now() - t0;
      reads++;
    }
    if (++n % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
  }
}

async function stopLoops(): Promise<void> {
  running = false;
  await Promise.all(loops);
  loops = [];
}

async function close(): Promise<void> {
  await stopLoops();
  const o = opened;
  opened = null;
  await o?.close();
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'open': {
      if (opened) throw new Error(`${opened.name} is still open`);
      params = {
        rows: Number(message.rows),
        concurrency: Number(message.concurrency),
        dist: message.dist === 'zipf' ? 'zipf' : 'uniform',
        zipfS: Number(message.zipfS ?? 1),
        seed: Number(message.seed ?? 1),
      };
      opened = await open(message);
      return { type: 'opened' };
    }
    case 'start':
      if (!opened) throw new Error('nothing open');
      running = true;
      measuring = false;
      loops = Array.from({ length: params.concurrency }, (_, k) => loop(k));
      return { type: 'started' };
    case 'mark':
      reads = 0;
      errors = 0;
      firstError = '';
      loads = 0;
      leaseGaveUp = 0;
      tally = new Map();
      markedAt = performance.now();
      measuring = true;
      return { type: 'marked' };
    case 'stop': {
      const elapsedMs = performance.now() - markedAt;
      measuring = false;
      await stopLoops();
      const sorted = Array.from(latency.subarray(0, Math.min(reads, latency.length)).sort());
      return {
        type: 'stopped',
        reads,
        elapsedMs,
        errors,
        firstError,
        loads,
        leaseGaveUp,
        events: Object.fromEntries(tally),
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
      };
    }
    case 'check': {
      // Every row once, 8 at a time (after a round most are misses: with a loader delay,
      // one at a time would take rows × delay).
      const o = opened as Opened;
      const versions: number[] = new Array(params.rows);
      let next = 1;
      const lane = async () => {
        for (let id = next++; id <= params.rows; id = next++) {
          try {
            const row = await o.read(id);
            versions[id - 1] = row === undefined ? -2 : Number(row.version);
          } catch {
            versions[id - 1] = -1;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, lane));
      return { type: 'checked', versions };
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
