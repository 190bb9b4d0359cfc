/**
 * Child process of bench/cdc.ts: "another process" of the application. It holds a
 * CacheEngine whose L1 was pre-filled with the rows the load generator updates, and
 * records, per key, when
 * - the worker's bus message arrived on a plain subscriber: the worker publishes it in
 *   the same pipeline, after the tombstones, so this is when the L2 tombstone was there
 *   (checked on a sample with a GET that must return a tombstone, 'T...');
 * - the engine dropped it from L1: a listener on the engine's own bus connection, added
 *   after the engine's, runs right after the engine applied the message; it checks that
 *   `peek(key)` is then undefined.
 * Never writes to stdout.
 */
import { Redis } from 'ioredis';
import { createCacheRedis } from '../src/cache/redis-connection.js';
import { CacheEngine, entityKey, resolveConfig } from '../src/index.js';
import { type Envelope, now, serve } from './cdc-common.js';
import { exitWithParent } from './children.js';

let engine: CacheEngine | null = null;
let sub: Redis | null = null;
let checker: Redis | null = null;
let client: Redis | null = null;
const l2Seen = new Map<string, number>();
const l1Dropped = new Map<string, number>();
let l1StillPresent = 0;
let tombstoneChecks = 0;
let tombstoneMisses = 0;
let workerMessages = 0;
let busInvalidateEvents = 0;
const resets: string[] = [];

interface Bus {
  kind?: string;
  keys?: string[];
}

function keysOf(payload: Buffer): string[] {
  const m = JSON.parse(payload.toString('utf8')) as Bus;
  return m.kind === 'worker' && Array.isArray(m.keys) ? m.keys : [];
}

async function init(message: Envelope): Promise<Envelope> {
  const config = resolveConfig({
    prefix: String(message.prefix),
    redis: { url: String(message.redisUrl) },
    cache: { ttlMs: 600_000 },
    l1: { ttlMs: 600_000, maxEntries: 100_000 },
  });
  // Our own client, so we can reach the bus connection the engine duplicates from it.
  const redis = createCacheRedis(config.redis, `walcache:${config.prefix}:observer`) as Redis;
  client = redis;
  const duplicate = redis.duplicate.bind(redis);
  let engineSub: Redis | null = null;
  redis.duplicate = ((...args: Parameters<Redis['duplicate']>) => {
    engineSub = duplicate(...args);
    return engineSub;
  }) as Redis['duplicate'];
  engine = new CacheEngine({ config, redis });
  if (!(await engine.ready(5_000))) throw new Error('observer engine not ready');
  const busChannel = engine.keys.busChannel();
  const e = engine;
  e.events.on('l1-reset', (reason) => resets.push(reason));
  e.events.on('bus-invalidate', () => busInvalidateEvents++);
  if (engineSub === null) throw new Error('could not reach the engine bus connection');
  (engineSub as Redis).on('messageBuffer', (channel: Buffer, payload: Buffer) => {
    if (channel.toString() !== busChannel) return;
    const t = now();
    for (const key of keysOf(payload)) {
      if (!l1Dropped.has(key)) l1Dropped.set(key, t);
      if (e.peek(key) !== undefined) l1StillPresent++;
    }
  });

  checker = new Redis(String(message.redisUrl), { maxRetriesPerRequest: 1 });
  sub = new Redis(String(message.redisUrl), { maxRetriesPerRequest: 1 });
  sub.on('messageBuffer', (channel: Buffer, payload: Buffer) => {
    if (channel.toString() !== busChannel) return;
    const t = now();
    const keys = keysOf(payload);
    if (keys.length === 0) return;
    workerMessages++;
    for (const key of keys) if (!l2Seen.has(key)) l2Seen.set(key, t);
    if (workerMessages % 20 === 1) {
      // Sample: the entry must already be a tombstone when the message arrives.
      const k = keys[0] as string;
      tombstoneChecks++;
      void checker
        ?.getBuffer(e.keys.entry(k))
        .then((v) => {
          if (v === null || v[0] !== 0x54) tombstoneMisses++;
        })
        .catch(() => tombstoneMisses++);
    }
  });
  await sub.subscribe(busChannel);

  // Pre-fill L1 (the main process filled L2 first, so these are L2 hits).
  const ids = Number(message.ids);
  let next = 1;
  const fill = async () => {
    for (let id = next++; id <= ids; id = next++) {
      await e.getOrLoad(entityKey('users', [id]), () => ({ id: String(id), name: `u${id}`, n: 0 }));
    }
  };
  await Promise.all(Array.from({ length: 32 }, fill));
  let inL1 = 0;
  for (let id = 1; id <= ids; id++) if (e.peek(entityKey('users', [id])) !== undefined) inL1++;
  resets.length = 0;
  return { type: 'ready', inL1, l1: e.l1Stats.entries };
}

serve(async (message) => {
  switch (message.type) {
    case 'init':
      return init(message);
    case 'progress':
      return { type: 'progress', l2: l2Seen.size, l1: l1Dropped.size };
    case 'report':
      return {
        type: 'report',
        l2: [...l2Seen],
        l1: [...l1Dropped],
        l1StillPresent,
        tombstoneChecks,
        tombstoneMisses,
        workerMessages,
        busInvalidateEvents,
        resets,
      };
    case 'close':
      await engine?.close();
      client?.disconnect();
      sub?.disconnect();
      checker?.disconnect();
      setImmediate(() => process.disconnect?.());
      return { type: 'closed' };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
exitWithParent(async () => {
  client?.disconnect();
  sub?.disconnect();
  checker?.disconnect();
  await engine?.close();
});
process.send?.({ type: 'ready-process' });
