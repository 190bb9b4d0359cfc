/**
 * L2 hits at 64 in flight in one process: this checkout's engine, another checkout's
 * engine (OLD=<path of a checkout with node_modules>, optional) and a raw ioredis
 * getBuffer of the same stored bytes, interleaved in every round (A B C C B A, reversed
 * on odd rounds). For before/after comparisons of the hit path on a noisy machine:
 * both engines run under the same load, so their per-round ratio is what changed.
 *
 *   OLD=/path/to/old/checkout node --import tsx bench/l2-hit-ab.ts
 *
 * Prints one JSON line: ops/s and client CPU µs per hit (process.cpuUsage) per side, and
 * the medians of the per-round ratios. Environment: OLD, ROUNDS (default 41), PER
 * (hits per worker and half-round, default 50), REDIS_URL. L1 is disabled on both
 * engines; Redis commands may take 2 s (a busy machine must not turn hits into loads).
 */
import { hrtime } from 'node:process';
import { Redis } from 'ioredis';
import { CacheEngine } from '../src/index.js';
import { gc } from './gc.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROUNDS = Number(process.env.ROUNDS ?? 41);
const PER = Number(process.env.PER ?? 50);
const KEYS = 20_000;
const CONCURRENCY = 64;

type Engine = Pick<CacheEngine, 'getOrLoad' | 'ready' | 'close' | 'keys'>;
const OldEngine: (new (options: object) => Engine) | undefined = process.env.OLD
  ? (await import(`${process.env.OLD}/src/index.ts`)).CacheEngine
  : undefined;

const config = (prefix: string) => ({
  prefix,
  redis: { url: REDIS_URL, autoPipelining: true, commandTimeoutMs: 2_000 },
  cache: { earlyRefreshBeta: 0, ttlMs: 600_000, staleWhileRevalidateMs: 0 },
  l1: { enabled: false },
});
const engines: Record<string, Engine> = {
  new: new CacheEngine({ config: config(`ab-new-${process.pid}`) }),
};
if (OldEngine) engines.old = new OldEngine({ config: config(`ab-old-${process.pid}`) });
const raw = new Redis(REDIS_URL, {
  enableOfflineQueue: false,
  commandTimeout: 2_000,
  maxRetriesPerRequest: 0,
  enableAutoPipelining: true,
});

const row = (id: number) => ({
  id,
  email: `user${id}@example.com`,
  name: `User Number ${id}`,
  created_at: new Date(1_700_000_000_000 + id * 1_000),
  balance: 1234.5,
  tags: ['a', 'b'],
  active: true,
});
const keys = Array.from({ length: KEYS }, (_, i) => `row:${i}`);
const noLoad = (): never => {
  throw new Error('a loader ran on an L2 hit');
};
let sink = 0;

async function prefill(engine: Engine): Promise<void> {
  await engine.ready();
  for (let pass = 0; ; pass++) {
    const missing: number[] = [];
    for (let b = 0; b < KEYS; b += 1_000) {
      const values = await raw.mgetBuffer(
        ...keys.slice(b, b + 1_000).map((k) => engine.keys.entry(k)),
      );
      values.forEach((v, j) => {
        if (v === null || v[0] !== 0x44) missing.push(b + j);
      });
    }
    if (missing.length === 0) return;
    if (pass > 5) throw new Error(`${missing.length} keys not filled`);
    for (let b = 0; b < missing.length; b += 500)
      await Promise.all(
        missing.slice(b, b + 500).map((i) => engine.getOrLoad(keys[i] as string, () => row(i))),
      );
  }
}

/** 64 loops of PER hits from `offset`; ops/s and CPU µs per hit. */
async function run(op: (k: number) => Promise<number>, offset: number): Promise<[number, number]> {
  const cpu0 = process.cpuUsage();
  const t0 = hrtime.bigint();
  const loops: Promise<void>[] = [];
  for (let w = 0; w < CONCURRENCY; w++)
    loops.push(
      (async () => {
        for (let i = 0; i < PER; i++) sink += await op((offset + w * PER + i) % KEYS);
      })(),
    );
  await Promise.all(loops);
  const ns = Number(hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  const ops = CONCURRENCY * PER;
  return [ops / (ns / 1e9), (cpu.user + cpu.system) / ops];
}

const median = (values: readonly number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  for (const engine of Object.values(engines)) await prefill(engine);
  const rawKeys = keys.map((k) => (engines.new as Engine).keys.entry(k));
  const sides: Record<string, (offset: number) => Promise<[number, number]>> = {
    raw: (o) => run(async (k) => ((await raw.getBuffer(rawKeys[k] as string)) as Buffer).length, o),
  };
  for (const [name, engine] of Object.entries(engines))
    sides[name] = (o) =>
      run(async (k) => (await engine.getOrLoad<{ id: number }>(keys[k] as string, noLoad)).id, o);
  const names = Object.keys(sides);
  const ops: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  for (const n of names) {
    ops[n] = [];
    cpu[n] = [];
  }
  for (let r = -2; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [...names] : [...names].reverse();
    const total: Record<string, [number, number]> = {};
    gc();
    for (const n of [...order, ...[...order].reverse()]) {
      const [o, c] = await (sides[n] as (offset: number) => Promise<[number, number]>)(
        ((r + 5) * 7_919) % KEYS,
      );
      const t = total[n] ?? [0, 0];
      total[n] = [t[0] + o / 2, t[1] + c / 2];
    }
    if (r < 0) continue; // warm-up
    for (const n of names) {
      ops[n]?.push((total[n] as [number, number])[0]);
      cpu[n]?.push((total[n] as [number, number])[1]);
    }
  }
  const ratio = (of: Record<string, number[]>, a: string, b: string) =>
    Number(
      median((of[a] as number[]).map((v, i) => v / ((of[b] as number[])[i] as number))).toFixed(3),
    );
  const out: Record<string, number> = {};
  for (const n of names) {
    out[`${n}_ops_per_s`] = Math.round(median(ops[n] as number[]));
    out[`${n}_cpu_us_per_hit`] = Number(median(cpu[n] as number[]).toFixed(2));
  }
  for (const n of Object.keys(engines)) out[`${n}_vs_raw`] = ratio(ops, n, 'raw');
  if (engines.old) out.new_vs_old = ratio(ops, 'new', 'old');
  out.rounds = ROUNDS;
  for (const engine of Object.values(engines)) {
    const { prefix } = engine.keys;
    let cursor = '0';
    do {
      const [next, found] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1_000);
      cursor = next;
      if (found.length > 0) await raw.unlink(...found);
    } while (cursor !== '0');
    await engine.close();
  }
  raw.disconnect();
  console.log(JSON.stringify(out));
  if (sink === 0) console.error('(no hits?)');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
