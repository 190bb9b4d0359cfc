/**
 * npm run bench:write-behind
 *
 * Accepted writes per second through `repo.<entity>.writeBehind` against direct
 * single-row UPDATEs (of a twin table), same concurrency, same pg pool, in one run; rounds alternate the two
 * and the medians are reported. During each write-behind round a flusher runs in its own
 * process, as `walcache jobs` would (`flushWriteBehind` in a loop); its throughput is the
 * flush rate, and the age of the oldest pending write is
 * sampled every 20 ms (its p99 bounds how long any write waited for Postgres). After the
 * last round everything is flushed and every row is compared with the last value accepted
 * for it: `lost_writes` counts rows that differ (goal 0).
 *
 * Env: ROUNDS (3), ROUND_MS (4000), CONCURRENCY (32), ROWS (10000), PREFIX (random).
 *
 * Ctrl-C or SIGTERM stops the flusher and cleans up; whatever ends this process, the
 * flusher exits with it (bench/children.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { createRepository, resolveConfig } from '../src/index.js';
import { WriteBehindStore } from '../src/write-behind/write-behind-store.js';
import { deleteByPrefix } from '../test/helpers.js';
import { call, once, percentiles } from './cdc-common.js';
import { forkChild, stopChild } from './children.js';
import { quantile, sig } from './stats.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const ROUND_MS = Number(process.env.ROUND_MS ?? 4000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
const ROWS = Number(process.env.ROWS ?? 10_000);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SCHEMA = 'walcache_bench_wb';
const PREFIX = process.env.PREFIX ?? `bench-wb-${randomBytes(3).toString('hex')}`;

interface DB {
  counters: { id: number; value: number; updated_at: Date };
}

const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 10 });
const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
const config = {
  prefix: PREFIX,
  databaseUrl: DATABASE_URL,
  redis: { url: REDIS_URL },
  defaultSchema: SCHEMA,
  accessLog: { sampleRate: 0 },
  writeBehind: { batchSize: 1_000_000, maxFlushRows: 5_000 },
  entities: { counters: { table: 'counters', key: 'id', writeBehind: true } },
} as const;
const repo = createRepository({ db, config });
const store = new WriteBehindStore(resolveConfig(config));

/** The flusher of the round under way. */
let flusher: ChildProcess | null = null;

/** Latest value accepted per row (by sequence number), across rounds. */
const accepted = new Map<number, { seq: number; value: number }>();
let nextValue = 0;

async function writeBehindRound(): Promise<{
  perS: number;
  flushRowsPerS: number;
  ages: number[];
}> {
  const ages: number[] = [];
  flusher = forkChild(new URL('./write-behind-flusher.ts', import.meta.url), {
    args: [JSON.stringify(config), 'counters'],
  });
  let sampler: NodeJS.Timeout | undefined;
  try {
    await once(flusher, 'ready', 30_000);
    sampler = setInterval(() => {
      void store.stats('counters').then((s) => ages.push(s.oldestAgeMs));
    }, 20);
    const started = performance.now();
    const writes = await writeFor(async (id) => {
      const value = ++nextValue;
      const { seq } = await repo.counters.writeBehind(id, { value, updated_at: new Date() });
      const seen = accepted.get(id);
      if (seen === undefined || seen.seq < seq) accepted.set(id, { seq, value });
    });
    const elapsed = (performance.now() - started) / 1000;
    // The flush rate is measured over the same window plus the drain of what was accepted.
    const drainDeadline = performance.now() + 120_000;
    while ((await store.stats('counters')).pending > 0) {
      if (flusher.exitCode !== null || flusher.signalCode !== null)
        throw new Error('the flusher exited with writes still pending');
      if (performance.now() > drainDeadline)
        throw new Error('the flusher did not drain the pending writes within 120 s');
      await new Promise((res) => setTimeout(res, 10));
    }
    const flushElapsed = (performance.now() - started) / 1000;
    const { rows: flushed } = await call<{ type: string; rows: number }>(
      flusher,
      { type: 'stop' },
      30_000,
    );
    return { perS: writes / elapsed, flushRowsPerS: flushed / flushElapsed, ages };
  } finally {
    clearInterval(sampler);
    await stopChild(flusher);
    flusher = null;
  }
}

async function directRound(): Promise<number> {
  const started = performance.now();
  const writes = await writeFor(async (id) => {
    await pool.query(`UPDATE ${SCHEMA}.direct SET value = $2, updated_at = now() WHERE id = $1`, [
      id,
      ++nextValue,
    ]);
  });
  return writes / ((performance.now() - started) / 1000);
}

/** `CONCURRENCY` loops writing random rows for `ROUND_MS`; the number of writes done. */
async function writeFor(write: (id: number) => Promise<void>): Promise<number> {
  const deadline = performance.now() + ROUND_MS;
  let writes = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await write(1 + Math.floor(Math.random() * ROWS));
        writes++;
      }
    }),
  );
  return writes;
}

async function main(): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; CREATE SCHEMA ${SCHEMA};
    CREATE TABLE ${SCHEMA}.counters (id int PRIMARY KEY, value int NOT NULL, updated_at timestamptz NOT NULL);
    INSERT INTO ${SCHEMA}.counters SELECT g, 0, now() FROM generate_series(1, ${ROWS}) g;
    CREATE TABLE ${SCHEMA}.direct (LIKE ${SCHEMA}.counters INCLUDING ALL);
    INSERT INTO ${SCHEMA}.direct SELECT * FROM ${SCHEMA}.counters;`);
  if (!(await repo.engine.ready(5_000))) throw new Error('Redis is not reachable');
  const wb: number[] = [];
  const direct: number[] = [];
  const flush: number[] = [];
  const ages: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['direct', 'wb'] : ['wb', 'direct'];
    for (const which of order) {
      if (which === 'direct') direct.push(await directRound());
      else {
        const r = await writeBehindRound();
        wb.push(r.perS);
        flush.push(r.flushRowsPerS);
        ages.push(...r.ages);
      }
    }
    console.log(
      `round ${round + 1}: writeBehind ${sig(wb.at(-1) as number)}/s, direct UPDATE ${sig(direct.at(-1) as number)}/s, flush ${sig(flush.at(-1) as number)} rows/s`,
    );
  }
  // Every row written behind must hold the last value accepted for it.
  const { rows } = await pool.query<{ id: number; value: number }>(
    `SELECT id, value FROM ${SCHEMA}.counters`,
  );
  const lost = rows.filter((r) => {
    const last = accepted.get(r.id);
    return last !== undefined && r.value !== last.value;
  }).length;
  const med = (xs: number[]) =>
    quantile(
      [...xs].sort((a, b) => a - b),
      0.5,
    );
  const ratios = wb.map((w, i) => w / (direct[i] as number));
  const age = percentiles(ages);
  const summary = {
    write_behind_per_s: sig(med(wb)),
    direct_update_per_s: sig(med(direct)),
    ratio: sig(med(ratios)),
    flush_rows_per_s: sig(med(flush)),
    pending_age_p50_ms: sig(age.p50),
    pending_age_p99_ms: sig(age.p99),
    lost_writes: lost,
    rounds: ROUNDS,
    round_ms: ROUND_MS,
    concurrency: CONCURRENCY,
    rows: ROWS,
  };
  console.log(
    `\nwriteBehind ${summary.write_behind_per_s}/s vs direct UPDATE ${summary.direct_update_per_s}/s: ${summary.ratio}x (goal >= 10x)`,
  );
  console.log(
    `flush ${summary.flush_rows_per_s} rows/s; oldest pending write p50 ${summary.pending_age_p50_ms} ms, p99 ${summary.pending_age_p99_ms} ms; lost writes ${lost}`,
  );
  console.log(JSON.stringify(summary));
}

let cleaning: Promise<void> | null = null;

/** Stops the flusher, then drops the schema and the keys. Once, whichever way the bench ends. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopChild(flusher, { type: 'stop' });
    await repo.close().catch(() => {});
    await store.close();
    await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
    await db.destroy().catch(() => {});
    const { Redis } = await import('ioredis');
    const admin = new Redis(REDIS_URL);
    await deleteByPrefix(admin, PREFIX).catch(() => {});
    admin.disconnect();
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    setTimeout(() => process.exit(130), 30_000).unref();
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await cleanup();
}
