/**
 * The contenders of the workload benchmark, one interface over direct Kysely, bentocache,
 * cache-manager and walcache: the same reads and writes, and counters of cache hits and
 * database loads taken alike for every cache.
 */
import KeyvRedis from '@keyv/redis';
import { type Cache as CacheManager, createCache } from 'cache-manager';
import { CacheableMemory } from 'cacheable';
import { Redis } from 'ioredis';
import { Keyv } from 'keyv';
import { createRepository } from '../src/index.js';
import { type BentoBaseline, bentocacheBaseline } from './bentocache-baseline.js';
import { benchConfig, REDIS_URL } from './workload-common.js';
import { aggregateQuery, db, insertOrder, rename, userQuery } from './workload-database.js';
import type { Name } from './workload-params.js';

export const TTL_MS = 60_000;
export const L1_MAX = 10_000; // walcache's default l1.maxEntries; bentocache and cache-manager get the same
/** Engine events tallied per walcache round (diagnostics). */
const TALLIED_EVENTS = [
  'miss',
  'coalesced',
  'load',
  'fill',
  'fill-rejected',
  'lease-wait',
  'refresh',
  'l2-error',
  'breaker-open',
  'bus-down',
  'l1-reset',
  'bus-invalidate',
  'corrupt-entry',
] as const;

export interface Counters {
  l1: number;
  l2: number;
  misses: number;
  loads: number;
}

const zeroCounters = (): Counters => ({ l1: 0, l2: 0, misses: 0, loads: 0 });

export interface Contender {
  readonly name: Name;
  readonly counters: Counters;
  /** Other events by name (walcache's engine events), reset with the counters. */
  readonly tally: Map<string, number>;
  readUser(id: number): Promise<unknown>;
  readAggregate(id: number): Promise<unknown>;
  rename(id: number, seq: number): Promise<void>;
  insertOrder(id: number, seq: number): Promise<void>;
  close(): Promise<void>;
}

export class KyselyContender implements Contender {
  readonly name = 'kysely' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readUser(id: number): Promise<unknown> {
    this.counters.loads++;
    return userQuery(id).executeTakeFirst();
  }
  readAggregate(id: number): Promise<unknown> {
    this.counters.loads++;
    return aggregateQuery(id).execute();
  }
  rename(id: number, seq: number): Promise<void> {
    return rename(id, seq);
  }
  insertOrder(id: number, seq: number): Promise<void> {
    return insertOrder(id, seq);
  }
  async close(): Promise<void> {}
}

export class BentoContender implements Contender {
  readonly name = 'bentocache' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readonly prefix: string;
  readonly #conn: Redis;
  readonly #bento: BentoBaseline;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.#conn = new Redis(REDIS_URL, { connectionName: `${prefix}:l2`, lazyConnect: false });
    this.#conn.on('error', () => {});
    this.#bento = bentocacheBaseline({
      prefix,
      ttlMs: TTL_MS,
      l1MaxItems: L1_MAX,
      connection: this.#conn,
      redisUrl: REDIS_URL,
    });

    this.#bento.on('cache:hit', (e: { layer?: string }) => {
      if (e.layer === 'l2') this.counters.l2++;
      else this.counters.l1++;
    });
    this.#bento.on('cache:miss', () => {
      this.counters.misses++;
    });
  }

  async ready(): Promise<void> {
    if (this.#conn.status !== 'ready')
      await new Promise<void>((resolve) => this.#conn.once('ready', () => resolve()));
    // One round trip through every layer (and the bus subscription), then clean.
    await this.#bento.getOrSet({ key: 'ready', factory: () => 1 });
    await this.#bento.delete({ key: 'ready' });
  }

  readUser(id: number): Promise<unknown> {
    return this.#bento.getOrSet({
      key: `user:${id}`,
      factory: () => {
        this.counters.loads++;
        return userQuery(id).executeTakeFirst();
      },
    });
  }

  readAggregate(id: number): Promise<unknown> {
    return this.#bento.getOrSet({
      key: `user-agg:${id}`,
      factory: () => {
        this.counters.loads++;
        return aggregateQuery(id).execute();
      },
    });
  }

  /** The hand-written invalidation: the row and the aggregate show the name. */
  async rename(id: number, seq: number): Promise<void> {
    await rename(id, seq);
    await this.#bento.deleteMany({ keys: [`user:${id}`, `user-agg:${id}`] });
  }

  /** The hand-written invalidation: only the aggregate counts orders. */
  async insertOrder(id: number, seq: number): Promise<void> {
    await insertOrder(id, seq);
    await this.#bento.delete({ key: `user-agg:${id}` });
  }

  async close(): Promise<void> {
    await this.#bento.disconnectAll().catch(() => {});
    await this.#conn.quit().catch(() => this.#conn.disconnect());
  }
}

/**
 * cache-manager 7 as its docs set up two tiers: a Keyv over cacheable's CacheableMemory
 * (LRU of 10,000, TTL 60 s) in front of a Keyv over @keyv/redis, `wrap` for reads (it
 * coalesces concurrent calls per key in the process). No bus: one process here, so the
 * hand-written deletes (`del`/`mdel`: every store) reach its only L1.
 */
export class CacheManagerContender implements Contender {
  readonly name = 'cache-manager' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readonly prefix: string;
  readonly #cache: CacheManager;

  constructor(prefix: string) {
    this.prefix = prefix;
    const redis = new KeyvRedis(REDIS_URL);
    redis.on('error', () => {});
    this.#cache = createCache({
      ttl: TTL_MS,
      stores: [
        new Keyv({ store: new CacheableMemory({ ttl: TTL_MS, lruSize: L1_MAX }) }),
        new Keyv({ store: redis, namespace: prefix }),
      ],
    });
  }

  async ready(): Promise<void> {
    await this.#cache.wrap('ready', async () => 1);
    await this.#cache.del('ready');
  }

  readUser(id: number): Promise<unknown> {
    return this.#cache.wrap(`user:${id}`, () => {
      this.counters.loads++;
      return userQuery(id).executeTakeFirst();
    });
  }

  readAggregate(id: number): Promise<unknown> {
    return this.#cache.wrap(`user-agg:${id}`, () => {
      this.counters.loads++;
      return aggregateQuery(id).execute();
    });
  }

  /** The hand-written invalidation: the row and the aggregate show the name. */
  async rename(id: number, seq: number): Promise<void> {
    await rename(id, seq);
    await this.#cache.mdel([`user:${id}`, `user-agg:${id}`]);
  }

  /** The hand-written invalidation: only the aggregate counts orders. */
  async insertOrder(id: number, seq: number): Promise<void> {
    await insertOrder(id, seq);
    await this.#cache.del(`user-agg:${id}`);
  }

  async close(): Promise<void> {
    await this.#cache.disconnect().catch(() => {});
  }
}

export function newRepository(prefix: string, sampleRate = 0.01) {
  return createRepository({ db, config: benchConfig(prefix, sampleRate) });
}
export type Repo = ReturnType<typeof newRepository>;

export class WalcacheContender implements Contender {
  readonly name = 'walcache' as const;
  readonly counters = zeroCounters();
  readonly tally = new Map<string, number>();
  readonly prefix: string;
  readonly repo: Repo;
  /** The aggregate as a prepared query: keyed by the user id, built only on a miss. */
  readonly #aggregate: (id: number) => Promise<unknown[]>;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.repo = newRepository(prefix);
    this.#aggregate = this.repo.prepare('user-agg', aggregateQuery);
    const c = this.counters;
    this.repo.engine.events.on('hit', (tier) => {
      if (tier === 'l1') c.l1++;
      else c.l2++;
    });
    this.repo.engine.events.on('stale-served', (tier) => {
      if (tier === 'l1') c.l1++;
      else c.l2++;
    });
    this.repo.engine.events.on('miss', () => {
      c.misses++;
    });
    this.repo.engine.events.on('load', () => {
      c.loads++;
    });
    const events = this.repo.engine.events as unknown as NodeJS.EventEmitter;
    for (const name of TALLIED_EVENTS)
      events.on(name, () => this.tally.set(name, (this.tally.get(name) ?? 0) + 1));
  }

  async ready(): Promise<void> {
    if (!(await this.repo.engine.ready(10_000)))
      throw new Error(`walcache engine not ready (Redis at ${REDIS_URL})`);
  }

  readUser(id: number): Promise<unknown> {
    return this.repo.users.findById(id);
  }

  readAggregate(id: number): Promise<unknown> {
    return this.#aggregate(id);
  }

  rename(id: number, seq: number): Promise<void> {
    return rename(id, seq);
  }

  insertOrder(id: number, seq: number): Promise<void> {
    return insertOrder(id, seq);
  }

  async close(): Promise<void> {
    await this.repo.close();
  }
}
