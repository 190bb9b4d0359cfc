/**
 * Hit-path benchmark: what walcache adds on top of the libraries it wraps, and how it
 * compares with bentocache on the same two-tier workload.
 *
 *   node --import tsx bench/hitpath.ts        (npm run bench:hitpath)
 *
 * 1. L1 hit: engine.peek / awaited getOrLoad vs lru-cache get (same keys, same values).
 * 2. L2 hit, sequential: getOrLoad (and get) on an engine with L1 disabled vs a raw
 *    ioredis getBuffer of the same Redis key (same bytes, same connection options).
 * 3. The same at 64 in flight, in ops/s.
 * 4. L1+L2, 64 in flight: walcache getOrLoad vs bentocache getOrSet, 20,000 keys chosen
 *    uniformly (the same sequence for both), L1 of 10,000 entries on both sides.
 * 5. What walcache adds per value on its way in, not on an L1 hit: encryption at rest
 *    (an L2 hit of an AES-256-GCM entry, beside the plain one in 2, and the CPU of sealing
 *    and opening one row's payload) and making a decoded row read-only (`share`).
 *
 * Method: one process; per round every comparison runs as a palindrome over two halves
 * of its work, A B B A (B A A B on odd rounds), after a full GC, so machine-speed drift
 * hits both sides alike. Figures are medians over the rounds; a ratio is the median of
 * the per-round ratios (the ratio of the medians is printed beside it). Loaders and
 * factories count their calls; none may run after the pre-fill.
 * Needs Redis at REDIS_URL (default redis://127.0.0.1:6379); deletes its keys at the
 * end. The last line of stdout is one JSON object with the results.
 *
 * Environment: BENCH_ROUNDS (default 9; at least 7), REDIS_URL.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hrtime } from 'node:process';
import { Redis, type RedisOptions } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { Packr } from 'msgpackr';
import { share } from '../src/cache/shared-value.js';
import { Keyring } from '../src/codec/keyring.js';
import { CacheEngine } from '../src/index.js';
import { bentocacheBaseline } from './bentocache-baseline.js';
import { gc } from './gc.js';
import { describe, pairedRatios, type Summary, sig, summarize } from './stats.js';

// --- parameters -------------------------------------------------------------------

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 9));
const WARMUP_ROUNDS = 2;
// Every measurement of a round runs as a palindrome A(½) B(½) B(½) A(½) (B first on odd
// rounds), so a drift in machine speed hits both contenders alike; the sizes below are
// per contender and round.
const PREFIX = `bench-${process.pid}`;
const BENTO_PREFIX = `${PREFIX}-bento`;
const ENC_PREFIX = `${PREFIX}-enc`;
/** A throwaway key for the encrypted engine (never the environment's). */
const BENCH_KEYS = `bench:${randomBytes(32).toString('base64')}`;
const ENC_KEYS = 2_000; // 5. encrypted entries, pre-filled in L2

const TTL_MS = 600_000;
const L1_MAX = 10_000;

const HOT_KEYS = 1_000; // 1. L1 hits cycle over these
const L1_SYNC_OPS = 500_000; // peek / lru.get calls
const L1_ASYNC_OPS = 100_000; // awaited getOrLoad / awaited lru.get

const ROW_KEYS = 20_000; // 2-4. pre-filled in L2
const L2_SEQ_OPS = 1_000; // sequential awaited L2 hits
const CONCURRENCY = 64;
const L2_CONC_PER_WORKER = 200; // 64 x 200 = 12,800 ops, distinct keys: no two in flight share a key
const MIXED_PER_WORKER = 320; // 64 x 320 = 20,480 ops

// --- values -----------------------------------------------------------------------

interface Row {
  id: number;
  email: string;
  name: string;
  created_at: Date;
  balance: number;
  tags: string[];
  active: boolean;
}

function makeRow(id: number): Row {
  return {
    id,
    email: `user${id}@example.com`,
    name: `User Number ${id}`,
    created_at: new Date(1_700_000_000_000 + id * 1_000),
    balance: 1234.5,
    tags: ['a', 'b'],
    active: true,
  };
}

const hotKeys = Array.from({ length: HOT_KEYS }, (_, i) => `hot:${i}`);
const rowKeys = Array.from({ length: ROW_KEYS }, (_, i) => `row:${i}`);

/** A fixed uniform random key sequence (xorshift32, seeded), shared by both libraries. */
const RANDOM_LEN = 1 << 18; // > 12 rounds of the mixed workload: no window repeats
const randomIdx = new Uint32Array(RANDOM_LEN);
{
  let x = 0x9e3779b9;
  for (let i = 0; i < RANDOM_LEN; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    randomIdx[i] = (x >>> 0) % ROW_KEYS;
  }
}

// --- helpers ----------------------------------------------------------------------

/** Results are folded into this so the JIT cannot drop any loop. */
let sink = 0;

/** The connection options walcache's own client uses (src/cache/redis-connection.ts). */
function rawRedis(name: string): Redis {
  const options: RedisOptions = {
    connectionName: name,
    enableOfflineQueue: false,
    commandTimeout: 250,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    lazyConnect: false,
  };
  const client = new Redis(REDIS_URL, options);
  client.on('error', () => {});
  return client;
}

function ready(client: Redis, timeoutMs = 5_000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`Redis at ${REDIS_URL} not ready after ${timeoutMs} ms`)),
      timeoutMs,
    );
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function nsSince(t0: bigint): number {
  return Number(hrtime.bigint() - t0);
}

async function quit(client: Redis): Promise<void> {
  try {
    if (client.status === 'ready') await client.quit();
    else client.disconnect();
  } catch {
    client.disconnect();
  }
}

/** Runs `workers` async loops of `perWorker` ops each; returns the elapsed ns. */
async function concurrently(
  workers: number,
  perWorker: number,
  op: (worker: number, i: number) => Promise<number>,
): Promise<number> {
  const t0 = hrtime.bigint();
  const loops: Promise<void>[] = [];
  for (let w = 0; w < workers; w++) {
    loops.push(
      (async () => {
        let acc = 0;
        for (let i = 0; i < perWorker; i++) acc += await op(w, i);
        sink += acc;
      })(),
    );
  }
  await Promise.all(loops);
  return nsSince(t0);
}

// --- setup ------------------------------------------------------------------------

const versionOf = (pkg: string): string => {
  try {
    return (
      JSON.parse(
        readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), 'utf8'),
      ) as { version: string }
    ).version;
  } catch {
    return '?';
  }
};

const baseConfig = {
  prefix: PREFIX,
  redis: { url: REDIS_URL, autoPipelining: true },
  cache: { earlyRefreshBeta: 0, ttlMs: TTL_MS, staleWhileRevalidateMs: 0 },
} as const;

/** 1. hot L1 keys; 2-3. L1 disabled, every read goes to Redis; 4. L1 + L2 against bentocache. */
const engHot = new CacheEngine({
  config: { ...baseConfig, l1: { enabled: true, maxEntries: L1_MAX, ttlMs: TTL_MS } },
});
const engL2 = new CacheEngine({ config: { ...baseConfig, l1: { enabled: false } } });
const engMixed = new CacheEngine({
  config: { ...baseConfig, l1: { enabled: true, maxEntries: L1_MAX, ttlMs: TTL_MS } },
});
/** 5. Every entry encrypted, L1 disabled: each read is an L2 hit that decrypts. */
const engEnc = new CacheEngine({
  config: { ...baseConfig, prefix: ENC_PREFIX, l1: { enabled: false }, encryption: { all: true } },
  env: { WALCACHE_ENCRYPTION_KEYS: BENCH_KEYS },
});
const raw = rawRedis(`${PREFIX}:raw`);
const bentoConn = rawRedis(`${PREFIX}:bento`);

const bento = bentocacheBaseline({
  prefix: BENTO_PREFIX,
  ttlMs: TTL_MS,
  l1MaxItems: L1_MAX,
  connection: bentoConn,
  redisUrl: REDIS_URL,
});

const lru = new LRUCache<string, Row>({ max: 10_000, ttl: TTL_MS });

// Loaders and factories: counted; none may run after the pre-fill.
let l2LoaderCalls = 0;
const l2Loader = (): Row => {
  l2LoaderCalls++;
  throw new Error('loader called on an L2 hit');
};
let l1LoaderCalls = 0;
const l1Loader = (): Row => {
  l1LoaderCalls++;
  throw new Error('loader called on an L1 hit');
};
let mixedLoaderCalls = 0;
const mixedLoader = (): Row => {
  mixedLoaderCalls++;
  return makeRow(-1);
};
let bentoFactoryCalls = 0;
const bentoFactory = (): Row => {
  bentoFactoryCalls++;
  return makeRow(-1);
};

// --- measurements -----------------------------------------------------------------
// Each contender has its own function of identical shape, so neither shares (and
// pollutes) the other's type feedback. Each takes (ops, offset) and returns elapsed ns.

type Run = (n: number, offset: number) => number | Promise<number>;

function l1Peek(n: number, offset: number): number {
  let acc = 0;
  let misses = 0;
  let j = offset % HOT_KEYS;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = engHot.peek<Row>(hotKeys[j] as string);
    if (v !== undefined) acc += v.id;
    else misses++;
    if (++j === HOT_KEYS) j = 0;
  }
  const ns = nsSince(t0);
  if (misses > 0) throw new Error(`engine.peek missed ${misses} times on hot keys`);
  sink += acc;
  return ns;
}

function lruGet(n: number, offset: number): number {
  let acc = 0;
  let misses = 0;
  let j = offset % HOT_KEYS;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = lru.get(hotKeys[j] as string);
    if (v !== undefined) acc += v.id;
    else misses++;
    if (++j === HOT_KEYS) j = 0;
  }
  const ns = nsSince(t0);
  if (misses > 0) throw new Error(`lru.get missed ${misses} times`);
  sink += acc;
  return ns;
}

async function l1GetOrLoad(n: number, offset: number): Promise<number> {
  let acc = 0;
  let j = offset % HOT_KEYS;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = await engHot.getOrLoad<Row>(hotKeys[j] as string, l1Loader);
    acc += v.id;
    if (++j === HOT_KEYS) j = 0;
  }
  const ns = nsSince(t0);
  sink += acc;
  return ns;
}

async function lruGetAwait(n: number, offset: number): Promise<number> {
  let acc = 0;
  let j = offset % HOT_KEYS;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = await Promise.resolve(lru.get(hotKeys[j] as string));
    acc += (v as Row).id;
    if (++j === HOT_KEYS) j = 0;
  }
  const ns = nsSince(t0);
  sink += acc;
  return ns;
}

/** Sequential awaited L2 hits through getOrLoad (L1 disabled). */
async function l2SeqEngine(n: number, offset: number): Promise<number> {
  let acc = 0;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = await engL2.getOrLoad<Row>(rowKeys[(offset + i) % ROW_KEYS] as string, l2Loader);
    acc += v.id;
  }
  const ns = nsSince(t0);
  sink += acc;
  return ns;
}

/** Sequential awaited L2 hits through get (L1 disabled). */
async function l2SeqEngineGet(n: number, offset: number): Promise<number> {
  let acc = 0;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = await engL2.get<Row>(rowKeys[(offset + i) % ROW_KEYS] as string);
    acc += (v as Row).id;
  }
  const ns = nsSince(t0);
  sink += acc;
  return ns;
}

let rowRedisKeys: string[] = [];

/** Sequential raw ioredis getBuffer of the same Redis keys (the same stored bytes). */
async function l2SeqRaw(n: number, offset: number): Promise<number> {
  let acc = 0;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const b = await raw.getBuffer(rowRedisKeys[(offset + i) % ROW_KEYS] as string);
    acc += (b as Buffer).length;
  }
  const ns = nsSince(t0);
  sink += acc;
  return ns;
}

/** Sequential awaited L2 hits of encrypted entries (L1 disabled). */
async function l2SeqEncrypted(n: number, offset: number): Promise<number> {
  let acc = 0;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const v = await engEnc.getOrLoad<Row>(rowKeys[(offset + i) % ENC_KEYS] as string, l2Loader);
    acc += v.id;
  }
  const ns = nsSince(t0);
  sink += acc;
  return ns;
}

/** n = ops in total, spread over CONCURRENCY workers. */
function l2ConcEngine(n: number, offset: number): Promise<number> {
  const per = Math.ceil(n / CONCURRENCY);
  return concurrently(CONCURRENCY, per, async (w, i) => {
    const k = rowKeys[(offset + w * per + i) % ROW_KEYS] as string;
    const v = await engL2.getOrLoad<Row>(k, l2Loader);
    return v.id;
  });
}

function l2ConcRaw(n: number, offset: number): Promise<number> {
  const per = Math.ceil(n / CONCURRENCY);
  return concurrently(CONCURRENCY, per, async (w, i) => {
    const b = await raw.getBuffer(rowRedisKeys[(offset + w * per + i) % ROW_KEYS] as string);
    return (b as Buffer).length;
  });
}

function mixedWalcache(n: number, offset: number): Promise<number> {
  const per = Math.ceil(n / CONCURRENCY);
  return concurrently(CONCURRENCY, per, async (w, i) => {
    const k = rowKeys[randomIdx[(offset + w * per + i) & (RANDOM_LEN - 1)] as number] as string;
    const v = await engMixed.getOrLoad<Row>(k, mixedLoader);
    return v.id;
  });
}

function mixedBento(n: number, offset: number): Promise<number> {
  const per = Math.ceil(n / CONCURRENCY);
  return concurrently(CONCURRENCY, per, async (w, i) => {
    const k = rowKeys[randomIdx[(offset + w * per + i) & (RANDOM_LEN - 1)] as number] as string;
    const v = await bento.getOrSet<Row>({ key: k, factory: bentoFactory });
    return v.id;
  });
}

/**
 * Runs the contenders as a palindrome, each on the same two halves of the work:
 * A(h1) B(h1) C(h1) C(h2) B(h2) A(h2), reversed on odd rounds. Returns total ns per contender.
 */
async function palindrome(
  runs: readonly Run[],
  n: number,
  offset: number,
  round: number,
): Promise<number[]> {
  const half = Math.floor(n / 2);
  const order = runs.map((_, i) => i);
  if (round % 2 === 1) order.reverse();
  const total = runs.map(() => 0);
  gc(); // a full GC before each pair, so neither contender pays for the other's garbage
  for (const i of order) total[i] = (total[i] as number) + (await (runs[i] as Run)(half, offset));
  for (const i of [...order].reverse())
    total[i] = (total[i] as number) + (await (runs[i] as Run)(half, offset + half));
  return total;
}

// --- main -------------------------------------------------------------------------

interface Samples {
  l1_hit_ns: number[];
  lru_get_ns: number[];
  getorload_l1_ns: number[];
  lru_get_await_ns: number[];
  l2_hit_us: number[];
  l2_get_us: number[];
  l2_encrypted_us: number[];
  ioredis_get_us: number[];
  walcache_l2_ops_per_s: number[];
  ioredis_ops_per_s: number[];
  walcache_ops_per_s: number[];
  bentocache_ops_per_s: number[];
}

function emptySamples(): Samples {
  return {
    l1_hit_ns: [],
    lru_get_ns: [],
    getorload_l1_ns: [],
    lru_get_await_ns: [],
    l2_hit_us: [],
    l2_get_us: [],
    l2_encrypted_us: [],
    ioredis_get_us: [],
    walcache_l2_ops_per_s: [],
    ioredis_ops_per_s: [],
    walcache_ops_per_s: [],
    bentocache_ops_per_s: [],
  };
}

async function round(r: number, s: Samples): Promise<void> {
  const offset = (r * 7_919) % ROW_KEYS;
  const n = (L: number) => 2 * Math.floor(L / 2); // ops actually run per contender
  // 1. L1
  const [peek, lruNs] = await palindrome([l1Peek, lruGet], L1_SYNC_OPS, offset, r);
  s.l1_hit_ns.push((peek as number) / n(L1_SYNC_OPS));
  s.lru_get_ns.push((lruNs as number) / n(L1_SYNC_OPS));
  const [gol, lruAw] = await palindrome([l1GetOrLoad, lruGetAwait], L1_ASYNC_OPS, offset, r);
  s.getorload_l1_ns.push((gol as number) / n(L1_ASYNC_OPS));
  s.lru_get_await_ns.push((lruAw as number) / n(L1_ASYNC_OPS));
  // 2. sequential L2 hits
  const [seqE, seqR, seqG, seqX] = await palindrome(
    [l2SeqEngine, l2SeqRaw, l2SeqEngineGet, l2SeqEncrypted],
    L2_SEQ_OPS,
    offset,
    r,
  );
  s.l2_hit_us.push((seqE as number) / n(L2_SEQ_OPS) / 1e3);
  s.ioredis_get_us.push((seqR as number) / n(L2_SEQ_OPS) / 1e3);
  s.l2_get_us.push((seqG as number) / n(L2_SEQ_OPS) / 1e3);
  s.l2_encrypted_us.push((seqX as number) / n(L2_SEQ_OPS) / 1e3);
  // 3. 64 in flight
  const concOps = CONCURRENCY * L2_CONC_PER_WORKER;
  const [concE, concR] = await palindrome([l2ConcEngine, l2ConcRaw], concOps, offset, r);
  s.walcache_l2_ops_per_s.push(n(concOps) / ((concE as number) / 1e9));
  s.ioredis_ops_per_s.push(n(concOps) / ((concR as number) / 1e9));
  // 4. L1 + L2 against bentocache
  const mixedOps = CONCURRENCY * MIXED_PER_WORKER;
  // Both libraries replay the same fresh window of the random sequence (none seen before).
  const [mixW, mixB] = await palindrome(
    [mixedWalcache, mixedBento],
    mixedOps,
    nextMixedWindow(),
    r,
  );
  s.walcache_ops_per_s.push(n(mixedOps) / ((mixW as number) / 1e9));
  s.bentocache_ops_per_s.push(n(mixedOps) / ((mixB as number) / 1e9));
}

/**
 * 5. CPU per value, without Redis: sealing and opening one row's MessagePack payload
 * (what an encrypted fill and an encrypted L2 hit add), and `share` of a freshly decoded
 * row (what every fill adds to make it read-only). Medians of ROUNDS batches.
 */
function measurePerValue(): { crypt: Summary; share: Summary } {
  const keyring = Keyring.fromEnv('K', { K: BENCH_KEYS }) as Keyring;
  const packr = new Packr({ useRecords: false, moreTypes: true });
  const payload = packr.pack(makeRow(1));
  const batch = 20_000;
  const crypt: number[] = [];
  const shared: number[] = [];
  for (let r = 0; r < ROUNDS + WARMUP_ROUNDS; r++) {
    let t0 = hrtime.bigint();
    for (let i = 0; i < batch; i++) {
      sink += keyring.open(keyring.seal(payload, 'bench:k:row:1'), 'bench:k:row:1').length;
    }
    const cryptNs = nsSince(t0) / batch;
    const rows = Array.from({ length: batch }, () => packr.unpack(payload) as Row);
    t0 = hrtime.bigint();
    for (const row of rows) sink += share(row).bytes;
    const shareNs = nsSince(t0) / batch;
    if (r >= WARMUP_ROUNDS) {
      crypt.push(cryptNs);
      shared.push(shareNs);
    }
  }
  return { crypt: summarize(crypt), share: summarize(shared) };
}

/** Where the next round's mixed workload starts in the random key sequence. */
let mixedCursor = 0;
function nextMixedWindow(): number {
  const start = mixedCursor;
  mixedCursor += CONCURRENCY * MIXED_PER_WORKER;
  return start;
}

/** One instrumented pass of the mixed workload per library: which tier answered. */
async function mixedTierShares(): Promise<{
  walcache_l1_share: number;
  bentocache_l1_share: number;
}> {
  const ops = CONCURRENCY * MIXED_PER_WORKER;
  const window = nextMixedWindow();
  let wl1 = 0;
  let wl2 = 0;
  const onHit = (tier: string) => (tier === 'l1' ? wl1++ : wl2++);
  engMixed.events.on('hit', onHit);
  await mixedWalcache(ops, window);
  engMixed.events.off('hit', onHit);
  let bl1 = 0;
  let bl2 = 0;
  const onBentoHit = (e: { layer?: string }) => (e.layer === 'l1' ? bl1++ : bl2++);
  bento.on('cache:hit', onBentoHit);
  await mixedBento(ops, window);
  bento.off('cache:hit', onBentoHit);
  return { walcache_l1_share: wl1 / (wl1 + wl2), bentocache_l1_share: bl1 / (bl1 + bl2) };
}

async function cleanup(): Promise<number> {
  let deleted = 0;
  for (const pattern of [`${PREFIX}:*`, `${BENTO_PREFIX}:*`, `${ENC_PREFIX}:*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', pattern, 'COUNT', 1_000);
      cursor = next;
      if (keys.length > 0) deleted += await raw.unlink(...keys);
    } while (cursor !== '0');
  }
  return deleted;
}

async function main(): Promise<void> {
  const started = Date.now();
  await Promise.all([ready(raw), ready(bentoConn)]);
  for (const e of [engHot, engL2, engMixed, engEnc]) {
    if (!(await e.ready())) throw new Error(`walcache engine not ready (Redis at ${REDIS_URL})`);
  }
  const redisVersion = /redis_version:(\S+)/.exec(await raw.info('server'))?.[1] ?? '?';
  console.log(
    `walcache hit-path bench: node ${process.version}, ioredis ${versionOf('ioredis')}, lru-cache ${versionOf('lru-cache')}, ` +
      `bentocache ${versionOf('bentocache')}, redis ${redisVersion}, prefix ${PREFIX}, rounds ${ROUNDS} (+${WARMUP_ROUNDS} warm-up)`,
  );

  // Pre-fill. Hot keys: engHot's L1 (and L2). Row keys: L2 (and engMixed's L1) via walcache, and bentocache.
  let prefillLoads = 0;
  const prefillRow = (i: number): Row => {
    prefillLoads++;
    return makeRow(i);
  };
  await Promise.all(hotKeys.map((k, i) => engHot.getOrLoad(k, () => prefillRow(i))));
  for (let i = 0; i < HOT_KEYS; i++) lru.set(hotKeys[i] as string, makeRow(i));
  let prefillBento = 0;
  const prefillBentoRow = (i: number): Row => {
    prefillBento++;
    return makeRow(i);
  };
  for (let base = 0; base < ROW_KEYS; base += 500) {
    const batch: Promise<unknown>[] = [];
    for (let i = base; i < Math.min(ROW_KEYS, base + 500); i++) {
      const k = rowKeys[i] as string;
      batch.push(engMixed.getOrLoad(k, () => prefillRow(i)));
      batch.push(bento.getOrSet({ key: k, factory: () => prefillBentoRow(i) }));
    }
    await Promise.all(batch);
  }
  for (let i = 0; i < ENC_KEYS; i += 500)
    await Promise.all(
      rowKeys.slice(i, i + 500).map((k, j) => engEnc.getOrLoad(k, () => prefillRow(i + j))),
    );
  rowRedisKeys = rowKeys.map((k) => engL2.keys.entry(k));
  const stored = await raw.getBuffer(rowRedisKeys[0] as string);
  const rawBento = await bentoConn.get(`${BENTO_PREFIX}:${rowKeys[0]}`);
  if (stored === null) throw new Error('pre-fill did not reach Redis');
  const payloadBytes = new Packr({ useRecords: true, mapsAsObjects: false, moreTypes: true }).pack(
    makeRow(0),
  ).length;
  console.log(
    `pre-fill: ${prefillLoads} walcache loads, ${prefillBento} bentocache factory runs; ` +
      `walcache L2 entry ${stored.length} B (msgpack payload ${payloadBytes} B + envelope ${stored.length - payloadBytes} B), ` +
      `bentocache L2 entry ${rawBento?.length ?? '?'} B (JSON)`,
  );

  const perValue = measurePerValue();

  // Warm-up, then measured rounds.
  for (let r = 0; r < WARMUP_ROUNDS; r++) await round(r + 1_000, emptySamples());
  const s = emptySamples();
  for (let r = 0; r < ROUNDS; r++) await round(r, s);
  const shares = await mixedTierShares();

  const m = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, summarize(v)])) as Record<
    keyof Samples,
    Summary
  >;
  /** The headline ratio: the median of the per-round ratios (each round runs both sides back to back). */
  const paired = (a: keyof Samples, b: keyof Samples) => summarize(pairedRatios(s[a], s[b]));
  const ratio = (a: keyof Samples, b: keyof Samples) => paired(a, b).median;
  const ofMedians = (a: keyof Samples, b: keyof Samples) => m[a].median / m[b].median;
  const ratioLine = (name: string, a: keyof Samples, b: keyof Samples, goal: string) =>
    `   ${name} = ${sig(ratio(a, b), 3)}   (per-round ${describe(paired(a, b), 'x', 3)}; ratio of medians ${sig(ofMedians(a, b), 3)})   goal ${goal}`;

  console.log('');
  console.log(`1. L1 hit (${HOT_KEYS} hot keys cycling)`);
  console.log(`   engine.peek              ${describe(m.l1_hit_ns, 'ns/op')}`);
  console.log(`   lru-cache get            ${describe(m.lru_get_ns, 'ns/op')}`);
  console.log(ratioLine('l1_ratio', 'l1_hit_ns', 'lru_get_ns', '<= 3'));
  console.log(`   await engine.getOrLoad   ${describe(m.getorload_l1_ns, 'ns/op')}`);
  console.log(`   await lru.get            ${describe(m.lru_get_await_ns, 'ns/op')}`);
  console.log(ratioLine('getorload_l1_ratio', 'getorload_l1_ns', 'lru_get_await_ns', '(info)'));
  console.log('');
  console.log(`2. L2 hit, sequential (L1 disabled, ${L2_SEQ_OPS} ops/round each)`);
  console.log(`   engine.getOrLoad         ${describe(m.l2_hit_us, 'us/op')}`);
  console.log(`   engine.get               ${describe(m.l2_get_us, 'us/op')}`);
  console.log(`   ioredis getBuffer        ${describe(m.ioredis_get_us, 'us/op')}`);
  console.log(ratioLine('l2_ratio', 'l2_hit_us', 'ioredis_get_us', '<= 1.3'));
  console.log(ratioLine('l2_get_ratio', 'l2_get_us', 'ioredis_get_us', '(info)'));
  console.log(`   getOrLoad, encrypted     ${describe(m.l2_encrypted_us, 'us/op')}`);
  console.log(ratioLine('l2_encrypted_ratio', 'l2_encrypted_us', 'l2_hit_us', '(info)'));
  console.log('');
  console.log(
    `3. L2 hit, ${CONCURRENCY} in flight (${CONCURRENCY * L2_CONC_PER_WORKER} ops/round each)`,
  );
  console.log(`   engine.getOrLoad         ${describe(m.walcache_l2_ops_per_s, 'ops/s', 3)}`);
  console.log(`   ioredis getBuffer        ${describe(m.ioredis_ops_per_s, 'ops/s', 3)}`);
  console.log(
    ratioLine('l2_concurrent_ratio', 'walcache_l2_ops_per_s', 'ioredis_ops_per_s', '>= 0.8'),
  );
  console.log('');
  console.log(
    `4. L1+L2 mixed vs bentocache (${ROW_KEYS} keys uniform, L1 max ${L1_MAX}, TTL ${TTL_MS} ms, ` +
      `${CONCURRENCY} in flight, ${CONCURRENCY * MIXED_PER_WORKER} ops/round each)`,
  );
  console.log(`   walcache getOrLoad       ${describe(m.walcache_ops_per_s, 'ops/s', 3)}`);
  console.log(`   bentocache getOrSet      ${describe(m.bentocache_ops_per_s, 'ops/s', 3)}`);
  console.log(
    `   L1 share of hits: walcache ${sig(shares.walcache_l1_share, 3)}, bentocache ${sig(shares.bentocache_l1_share, 3)}`,
  );
  console.log(ratioLine('vs_bentocache', 'walcache_ops_per_s', 'bentocache_ops_per_s', '>= 1.5'));
  console.log('');
  console.log('5. Per value on its way in (CPU only, one bench row; none of it on an L1 hit)');
  console.log(`   AES-256-GCM seal + open  ${describe(perValue.crypt, 'ns/op')}`);
  console.log(`   share (freeze + measure) ${describe(perValue.share, 'ns/op')}`);
  console.log('');
  const loaderCalls = {
    l1: l1LoaderCalls,
    l2: l2LoaderCalls,
    mixed: mixedLoaderCalls,
    bento: bentoFactoryCalls,
  };
  const loadersOk = loaderCalls.l1 + loaderCalls.l2 + loaderCalls.mixed + loaderCalls.bento === 0;
  console.log(
    `loaders/factories after pre-fill: walcache L1 ${loaderCalls.l1}, walcache L2 ${loaderCalls.l2}, ` +
      `walcache mixed ${loaderCalls.mixed}, bentocache ${loaderCalls.bento}` +
      (loadersOk ? ' (ok)' : '  WARNING: a hit ran a loader'),
  );

  const deleted = await cleanup();
  await bento.disconnectAll();
  await Promise.all([engHot.close(), engL2.close(), engMixed.close(), engEnc.close()]);
  await quit(bentoConn);
  await quit(raw);
  console.log(
    `cleanup: ${deleted} keys deleted; ${((Date.now() - started) / 1000).toFixed(1)} s; checksum ${sink}`,
  );

  const result = {
    l1_hit_ns: sig(m.l1_hit_ns.median),
    lru_get_ns: sig(m.lru_get_ns.median),
    l1_ratio: sig(ratio('l1_hit_ns', 'lru_get_ns'), 3),
    getorload_l1_ns: sig(m.getorload_l1_ns.median),
    lru_get_await_ns: sig(m.lru_get_await_ns.median),
    getorload_l1_ratio: sig(ratio('getorload_l1_ns', 'lru_get_await_ns'), 3),
    l2_hit_us: sig(m.l2_hit_us.median),
    l2_get_us: sig(m.l2_get_us.median),
    ioredis_get_us: sig(m.ioredis_get_us.median),
    l2_ratio: sig(ratio('l2_hit_us', 'ioredis_get_us'), 3),
    l2_get_ratio: sig(ratio('l2_get_us', 'ioredis_get_us'), 3),
    l2_encrypted_us: sig(m.l2_encrypted_us.median),
    l2_encrypted_ratio: sig(ratio('l2_encrypted_us', 'l2_hit_us'), 3),
    encrypt_seal_open_ns: sig(perValue.crypt.median),
    share_row_ns: sig(perValue.share.median),
    walcache_l2_ops_per_s: Math.round(m.walcache_l2_ops_per_s.median),
    ioredis_ops_per_s: Math.round(m.ioredis_ops_per_s.median),
    l2_concurrent_ratio: sig(ratio('walcache_l2_ops_per_s', 'ioredis_ops_per_s'), 3),
    walcache_ops_per_s: Math.round(m.walcache_ops_per_s.median),
    bentocache_ops_per_s: Math.round(m.bentocache_ops_per_s.median),
    vs_bentocache: sig(ratio('walcache_ops_per_s', 'bentocache_ops_per_s'), 3),
    walcache_l1_share: sig(shares.walcache_l1_share, 3),
    bentocache_l1_share: sig(shares.bentocache_l1_share, 3),
    loader_calls_after_prefill: loaderCalls,
    ratio_method: 'median of per-round paired ratios',
    rounds: ROUNDS,
  };
  console.log(JSON.stringify(result));
}

main().catch(async (error: unknown) => {
  console.error(error);
  // Best effort, bounded: with Redis down, closing clients that keep reconnecting can hang.
  const teardown = (async () => {
    await cleanup().catch(() => {});
    await bento.disconnectAll().catch(() => {});
    await Promise.all([engHot.close(), engL2.close(), engMixed.close(), engEnc.close()]).catch(
      () => {},
    );
    await quit(bentoConn);
    await quit(raw);
  })();
  await Promise.race([teardown, new Promise((resolve) => setTimeout(resolve, 3_000).unref())]);
  process.exit(1);
});
