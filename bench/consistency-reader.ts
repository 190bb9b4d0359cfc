/**
 * Child process of bench/consistency.ts: one application process reading the hot rows
 * through the repository, with its own L1 and bus connection. Its loader is slowed by
 * `delayMs` between the SELECT and the fill (a Kysely plugin holds the result), which
 * widens the window in which a write can land between a load and its fill.
 *
 * Every read is recorded: start time (wall clock, comparable across processes), row id,
 * version returned (-1: the read failed; -2: no row), duration, and whether L1 answered. Driven over IPC
 * (bench/cdc-common.ts protocol); never writes to stdout.
 *
 * Requests: start { prefix, redisUrl, delayMs, rows, rate, concurrency, maxStalenessMs? }, collect
 * (returns and forgets the reads so far), pause, resume, sweep (each row once), stop.
 */
import {
  Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PostgresDialect,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createRepository } from '../src/index.js';
import { type Envelope, now, serve, sleep } from './cdc-common.js';
import { exitWithParent } from './children.js';
import { consistencyConfig, DATABASE_URL, type Database } from './consistency-common.js';

/** Holds every SELECT's result for `delayMs` before the repository sees it (and fills). */
class SlowLoads implements KyselyPlugin {
  readonly #selects = new WeakSet<object>();
  constructor(readonly delayMs: number) {}
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    if (this.delayMs > 0 && args.node.kind === 'SelectQueryNode') this.#selects.add(args.queryId);
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    if (this.#selects.has(args.queryId)) await sleep(this.delayMs);
    return args.result;
  }
}

type Repo = ReturnType<typeof open>;

function open(message: Envelope) {
  const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 8 });
  // A PostgreSQL restart errors idle and checked-out clients alike: neither may crash us.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    plugins: [new SlowLoads(Number(message.delayMs))],
  });
  const config = consistencyConfig(String(message.prefix), String(message.redisUrl));
  return { db, repo: createRepository({ db, config }) };
}

let opened: Repo | null = null;
let running = false;
let loops: Promise<void>[] = [];
let reads = {
  t: [] as number[],
  id: [] as number[],
  v: [] as number[],
  ms: [] as number[],
  l1: [] as number[],
};
/** Set by the engine's `hit` event, which an L1 hit emits synchronously inside findById. */
let l1Hit = false;

/** `maxStalenessMs` for every read (BENCH_CONSISTENCY_MAX_STALENESS_MS), or none. */
let readOptions: { maxStalenessMs?: number } = {};

async function readOne(id: number): Promise<number> {
  try {
    const row = await (opened as Repo).repo.hot.findById(id, readOptions);
    return row === undefined ? -2 : Number(row.version);
  } catch {
    return -1;
  }
}

/** One read, and whether L1 answered it (checked before the first await). */
function readTagged(id: number): { l1: boolean; version: Promise<number> } {
  l1Hit = false;
  const version = readOne(id);
  return { l1: l1Hit, version };
}

async function loop(rows: number, intervalMs: number): Promise<void> {
  let next = now();
  let n = 0;
  while (running) {
    const id = 1 + Math.floor(Math.random() * rows);
    const t0 = now();
    const read = readTagged(id);
    const v = await read.version;
    const t1 = now();
    reads.t.push(t0);
    reads.id.push(id);
    reads.v.push(v);
    reads.ms.push(t1 - t0);
    reads.l1.push(read.l1 ? 1 : 0);
    next += intervalMs;
    if (next < t1 - 1_000) next = t1; // fell behind (a fault): do not burst to catch up
    const wait = next - t1;
    // L1 hits resolve without a macrotask: yield now and then so bus messages get in.
    if (wait >= 1) await sleep(wait);
    else if (++n % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
}

let params = { rows: 0, intervalMs: 1, concurrency: 1 };

function startLoops(): void {
  running = true;
  loops = Array.from({ length: params.concurrency }, () => loop(params.rows, params.intervalMs));
}

async function stopLoops(): Promise<void> {
  running = false;
  await Promise.all(loops);
  loops = [];
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'start': {
      opened = open(message);
      if (typeof message.maxStalenessMs === 'number')
        readOptions = { maxStalenessMs: message.maxStalenessMs };
      await opened.repo.ready();
      opened.repo.engine.events.on('hit', (tier) => {
        if (tier === 'l1') l1Hit = true;
      });
      const concurrency = Number(message.concurrency);
      params = {
        rows: Number(message.rows),
        concurrency,
        intervalMs: (1000 * concurrency) / Number(message.rate),
      };
      startLoops();
      return { type: 'started' };
    }
    case 'collect': {
      const out = reads;
      reads = { t: [], id: [], v: [], ms: [], l1: [] };
      return { type: 'reads', ...out };
    }
    case 'pause':
      await stopLoops();
      return { type: 'paused' };
    case 'resume':
      startLoops();
      return { type: 'resumed' };
    case 'sweep': {
      const versions: number[] = [];
      for (let id = 1; id <= params.rows; id++) versions.push(await readOne(id));
      return { type: 'swept', versions };
    }
    case 'stop':
      await close();
      setImmediate(() => process.disconnect?.());
      return { type: 'stopped' };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

async function close(): Promise<void> {
  await stopLoops();
  const o = opened;
  opened = null;
  await o?.repo.close();
  await o?.db.destroy();
}

serve(handle);
exitWithParent(close);
process.send?.({ type: 'ready' });
