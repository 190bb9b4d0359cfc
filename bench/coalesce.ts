/**
 * npm run bench:coalesce
 *
 * Concurrent cold misses of one entity, with `repository.coalesceMisses` off (one SELECT
 * per miss, the behaviour before it existed) and on (the misses asked in one event-loop
 * turn share one `id = any($1)` SELECT):
 *
 * 1. burst: CONCURRENCY findById calls at once, each of an id never read before (a cold
 *    L1 and L2 miss); the wall time until the last resolves and the SELECTs sent.
 * 2. lone: CONCURRENCY cold findById calls one after another; the median latency of one
 *    (what waiting for the rest of the event-loop turn costs a miss with no company).
 *
 * Both repositories run in this process against the same table, each on its own pg pool
 * of POOL connections (SELECTs counted by Kysely's `log` hook) and its own key prefix.
 * Per round each side runs once, in alternating order (off first on even rounds); the
 * figures are medians over ROUNDS rounds after WARMUP rounds. Every read is checked
 * against its id. The last line of stdout is one JSON object with the results.
 *
 * Env: ROUNDS (15), WARMUP (3), CONCURRENCY (32), POOL (10, pg's default), DATABASE_URL,
 * REDIS_URL. Creates and drops its own schema; deletes its Redis keys at the end.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createRepository, defineConfig } from '../src/index.js';
import { deleteByPrefix } from '../test/helpers.js';
import { type Summary, sig, summarize } from './stats.js';

const ROUNDS = Math.max(1, Number(process.env.ROUNDS ?? 15));
const WARMUP = Math.max(0, Number(process.env.WARMUP ?? 3));
const CONCURRENCY = Math.max(1, Number(process.env.CONCURRENCY ?? 32));
const POOL = Math.max(1, Number(process.env.POOL ?? 10));
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const TAG = randomBytes(3).toString('hex');
const SCHEMA = `walcache_bench_coalesce_${TAG}`;
// Two sides x two sections x CONCURRENCY fresh ids per round.
const ROWS = (ROUNDS + WARMUP) * 4 * CONCURRENCY;

interface DB {
  users: { id: string; email: string; name: string; balance: string; created_at: Date };
}

type Side = 'off' | 'on';

function open(side: Side) {
  const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: POOL });
  pool.on('error', () => {});
  let selects = 0;
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      if (/^select/i.test(event.query.sql)) selects++;
    },
  });
  const prefix = `bench-coalesce-${TAG}-${side}`;
  const config = defineConfig({
    prefix,
    redis: { url: REDIS_URL },
    defaultSchema: SCHEMA,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    repository: { coalesceMisses: side === 'on' },
    entities: { users: { table: 'users', key: 'id' } },
  });
  const repo = createRepository({ db, config });
  return { side, db, repo, prefix, selects: () => selects };
}

type Contender = ReturnType<typeof open>;

let nextId = 0;
/** Ids no read has asked for yet (cold in L1 and L2), spread over the table. */
function freshIds(n: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(++nextId);
  return ids;
}

function check(id: number, row: { id: string } | undefined): void {
  if (row?.id !== String(id)) throw new Error(`findById(${id}) returned ${JSON.stringify(row)}`);
}

async function burst(c: Contender): Promise<{ ms: number; selects: number }> {
  const ids = freshIds(CONCURRENCY);
  const before = c.selects();
  const started = performance.now();
  const rows = await Promise.all(ids.map((id) => c.repo.users.findById(id)));
  const ms = performance.now() - started;
  ids.forEach((id, i) => {
    check(id, rows[i]);
  });
  return { ms, selects: c.selects() - before };
}

async function lone(c: Contender): Promise<{ ms: number; selects: number }> {
  const ids = freshIds(CONCURRENCY);
  const before = c.selects();
  const times: number[] = [];
  for (const id of ids) {
    const started = performance.now();
    check(id, await c.repo.users.findById(id));
    times.push(performance.now() - started);
  }
  return { ms: summarize(times).median, selects: c.selects() - before };
}

const brief = (s: Summary) => ({
  median: sig(s.median),
  p25: sig(s.p25),
  p75: sig(s.p75),
  min: sig(s.min),
  max: sig(s.max),
});

async function main(): Promise<void> {
  const admin = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 1 });
  const sides = [open('off'), open('on')];
  try {
    await admin.query(`CREATE SCHEMA ${SCHEMA};
      CREATE TABLE ${SCHEMA}.users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL,
        balance numeric(12,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
      INSERT INTO ${SCHEMA}.users (id, email, name, balance)
        SELECT g, 'u' || g || '@example.com', 'user ' || g, g * 1.25 FROM generate_series(1, ${ROWS}) g;
      ANALYZE ${SCHEMA}.users;`);
    for (const c of sides) await c.repo.ready();
    const samples = {
      burst: { off: [] as number[], on: [] as number[] },
      burstSelects: { off: [] as number[], on: [] as number[] },
      lone: { off: [] as number[], on: [] as number[] },
      loneSelects: { off: [] as number[], on: [] as number[] },
    };
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const c of order) {
        const b = await burst(c);
        const l = await lone(c);
        if (round < WARMUP) continue;
        samples.burst[c.side].push(b.ms);
        samples.burstSelects[c.side].push(b.selects);
        samples.lone[c.side].push(l.ms);
        samples.loneSelects[c.side].push(l.selects);
      }
    }
    const result = {
      rounds: ROUNDS,
      concurrency: CONCURRENCY,
      pool: POOL,
      burst_ms: {
        off: brief(summarize(samples.burst.off)),
        on: brief(summarize(samples.burst.on)),
      },
      burst_selects: {
        off: summarize(samples.burstSelects.off).median,
        on: summarize(samples.burstSelects.on).median,
        on_max: summarize(samples.burstSelects.on).max,
      },
      lone_ms: { off: brief(summarize(samples.lone.off)), on: brief(summarize(samples.lone.on)) },
      lone_selects_per_round: {
        off: summarize(samples.loneSelects.off).median,
        on: summarize(samples.loneSelects.on).median,
      },
    };
    const row = (what: string, off: Summary, on: Summary, unit: string) =>
      console.log(
        `${what.padEnd(34)} off ${sig(off.median, 3)} ${unit} [${sig(off.p25, 3)}-${sig(off.p75, 3)}]   on ${sig(on.median, 3)} ${unit} [${sig(on.p25, 3)}-${sig(on.p75, 3)}]`,
      );
    console.log(
      `${CONCURRENCY} cold findById misses, ${ROUNDS} rounds (+${WARMUP} warm-up), pg pool ${POOL}; median [p25-p75]`,
    );
    row(
      `burst of ${CONCURRENCY}: wall time`,
      summarize(samples.burst.off),
      summarize(samples.burst.on),
      'ms',
    );
    row(
      `burst of ${CONCURRENCY}: SELECTs sent`,
      summarize(samples.burstSelects.off),
      summarize(samples.burstSelects.on),
      '',
    );
    row('lone miss: latency', summarize(samples.lone.off), summarize(samples.lone.on), 'ms');
    console.log(JSON.stringify(result));
  } finally {
    for (const c of sides) {
      await c.repo.close().catch(() => {});
      await c.db.destroy().catch(() => {});
    }
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
    await admin.end();
    const { Redis } = await import('ioredis');
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      for (const c of sides) await deleteByPrefix(redis, c.prefix);
    } finally {
      redis.disconnect();
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
