/**
 * Access-log benchmark: what `AccessLogSampler.record` adds to every repository read.
 *
 *   node --import tsx bench/access-log.ts        (npm run bench:access-log)
 *
 * A tight loop calls `sampler.record('users', key)` over a precomputed array of keys,
 * for sampleRate 0, 0.01, 0.1 and 1, against a baseline loop over the same array that
 * only stores each key in a module variable. Figures are ns per call, medians over the
 * rounds; "net" is the per-round difference from the baseline, then its median. The
 * variants run in a rotated order each round, after a full GC, so drift in machine
 * speed spreads over all of them.
 *
 * No Redis: the sampler gets a stub client that sums what a push would HINCRBY, so each
 * round also checks the estimated hits (exact at rate 1, within 5% at 0.1, 20% at 0.01).
 * The last line of stdout is one JSON object with the results.
 *
 * Environment: BENCH_ROUNDS (default 9), BENCH_OPS (calls per variant and round,
 * default 2,000,000).
 */
import { hrtime } from 'node:process';
import type { Redis } from 'ioredis';
import { Keys } from '../src/keys/redis-keys.js';
import { AccessLogSampler } from '../src/repository/access-log.js';
import { gc } from './gc.js';
import { median, quantile, sig } from './stats.js';

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 9));
const WARMUP_ROUNDS = 2;
const OPS = Math.max(1_000, Number(process.env.BENCH_OPS ?? 2_000_000));
const KEY_COUNT = 1_024; // a power of two: the loops index with `i & MASK`
const MASK = KEY_COUNT - 1;
const RATES = [0, 0.01, 0.1, 1] as const;

const keys = Array.from({ length: KEY_COUNT }, (_, i) => `users:${i}`);

/** The baseline loop stores each key here, so the JIT cannot drop the loop. */
let sinkKey = '';

function baselineLoop(n: number): void {
  for (let i = 0; i < n; i++) sinkKey = keys[i & MASK] as string;
}

type RecordLoop = (sampler: AccessLogSampler, keys: readonly string[], n: number) => void;

/**
 * A loop function of its own per variant (compiled separately), so each call site sees
 * one sampler and one `record` target, as in a process with one sampler; a shared loop
 * would make the call polymorphic and slow every variant down.
 */
function recordLoop(): RecordLoop {
  return new Function(
    'sampler',
    'keys',
    'n',
    `for (let i = 0; i < n; i++) sampler.record('users', keys[i & ${MASK}]);`,
  ) as RecordLoop;
}

/** A Redis stand-in for the sampler's push: sums the hits it would HINCRBY. */
class CountingRedis {
  hits = 0;
  multi() {
    const self = this;
    const tx = {
      hincrby(_key: string, _field: string, n: number) {
        self.hits += n;
        return tx;
      },
      exec: async () => [] as Array<[Error | null, unknown]>,
    };
    return tx;
  }
  async sadd(): Promise<number> {
    return 1;
  }
}

function timeNs(run: () => void): number {
  const t0 = hrtime.bigint();
  run();
  return Number(hrtime.bigint() - t0);
}

interface Variant {
  readonly name: string;
  readonly rate: number | null;
  readonly run: () => void;
  /** After a timed run: pushes and checks the estimate (sampled variants). */
  readonly check: () => Promise<void>;
}

const bucketMs = 3_600_000;
const samplers: AccessLogSampler[] = [];
const prefixKeys = new Keys('bench-al');
const variants: Variant[] = [
  { name: 'baseline', rate: null, run: () => baselineLoop(OPS), check: async () => {} },
  ...RATES.map((rate): Variant => {
    const redis = new CountingRedis();
    const sampler = new AccessLogSampler(redis as unknown as Redis, prefixKeys, {
      sampleRate: rate,
      flushIntervalMs: 3_600_000,
      bucketMs,
    });
    samplers.push(sampler);
    const loop = recordLoop();
    const tolerance = rate === 1 ? 0 : rate >= 0.1 ? 0.05 : 0.2;
    return {
      name: `rate ${rate}`,
      rate,
      run: () => loop(sampler, keys, OPS),
      check: async () => {
        redis.hits = 0;
        await sampler.flush();
        const expected = rate === 0 ? 0 : OPS;
        const error = expected === 0 ? redis.hits : Math.abs(redis.hits - expected) / expected;
        if (error > tolerance)
          throw new Error(`rate ${rate}: estimated ${redis.hits} hits for ${OPS} reads`);
        if (sampler.dropped !== 0) throw new Error(`rate ${rate}: dropped ${sampler.dropped}`);
      },
    };
  }),
];

const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
const net = new Map<string, number[]>(variants.map((v) => [v.name, []]));

console.log(
  `access-log record(): ${OPS.toLocaleString('en')} calls per variant and round, ` +
    `${KEY_COUNT} keys, ${ROUNDS} rounds (+${WARMUP_ROUNDS} warm-up), node ${process.version}`,
);

for (let round = -WARMUP_ROUNDS; round < ROUNDS; round++) {
  const shift = ((round % variants.length) + variants.length) % variants.length;
  const order = [...variants.slice(shift), ...variants.slice(0, shift)];
  const perOp = new Map<string, number>();
  for (const variant of order) {
    gc();
    perOp.set(variant.name, timeNs(variant.run) / OPS);
    await variant.check();
  }
  if (round < 0) continue;
  const base = perOp.get('baseline') as number;
  for (const [name, ns] of perOp) {
    samples.get(name)?.push(ns);
    net.get(name)?.push(ns - base);
  }
}

await Promise.all(samplers.map((s) => s.close()));

const q = (xs: readonly number[], p: number): number =>
  quantile(
    [...xs].sort((a, b) => a - b),
    p,
  );

const rows = variants.map((v) => {
  const s = samples.get(v.name) as number[];
  const n = net.get(v.name) as number[];
  return {
    variant: v.name,
    rate: v.rate,
    nsPerOp: sig(median(s), 3),
    p25: sig(q(s, 0.25), 3),
    p75: sig(q(s, 0.75), 3),
    netNsPerOp: v.rate === null ? 0 : sig(median(n), 3),
  };
});

const pad = (s: string, w: number) => s.padStart(w);
console.log('');
console.log(
  `${'variant'.padEnd(12)}${pad('ns/op', 10)}${pad('p25', 10)}${pad('p75', 10)}${pad('net ns/op', 12)}`,
);
for (const r of rows) {
  console.log(
    `${r.variant.padEnd(12)}${pad(String(r.nsPerOp), 10)}${pad(String(r.p25), 10)}${pad(String(r.p75), 10)}${pad(r.rate === null ? '-' : String(r.netNsPerOp), 12)}`,
  );
}
console.log('');
console.log(
  JSON.stringify({
    bench: 'access-log',
    ops: OPS,
    rounds: ROUNDS,
    keys: KEY_COUNT,
    node: process.version,
    sinkKey: sinkKey.length > 0,
    results: rows,
  }),
);
