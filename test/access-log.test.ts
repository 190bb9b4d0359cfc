import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { type Cluster, Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { runMigrations } from '../src/database/migrations.js';
import { InvalidKeyError, RedisUnavailableError } from '../src/errors/typed-errors.js';
import { Keys, MAX_KEY_LENGTH } from '../src/keys/redis-keys.js';
import {
  AccessLogSampler,
  accessLogBucketStart,
  flushAccessLog,
  hottestKeys,
  MAX_PENDING_BYTES,
  MAX_PENDING_ENTRIES,
} from '../src/repository/access-log.js';
import {
  freePort,
  keysMatching,
  ON_CLUSTER,
  Resources,
  testRedis,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { DATABASE_URL } from './pg-helpers.js';

const HOUR = 3_600_000;
const SEP = '\u0000';

// biome-ignore lint/suspicious/noExplicitAny: the access-log table is walcache's own
let db: Kysely<any>;
let pool: pg.Pool;

before(() => {
  pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 6 });
  pool.on('error', () => {});
  db = new Kysely({ dialect: new PostgresDialect({ pool }) });
});
after(() => db.destroy());

interface Scope {
  readonly prefix: string;
  readonly keys: Keys;
  readonly redis: Redis | Cluster;
  readonly schema: string;
  /** Closed after the test. */
  readonly clients: Array<Redis | Cluster>;
  sampler(rate: number, random?: () => number, redis?: Redis | Cluster): AccessLogSampler;
  flush(options?: {
    now?: number;
    bucketMs?: number;
    redis?: Redis | Cluster;
  }): ReturnType<typeof flushAccessLog>;
  rows(): Promise<Array<{ key: string; entity: string | null; hits: number; bucket: Date }>>;
}

/** A key prefix and an access-log schema of the test's own, removed after it. */
async function scope(t: TestContext, name: string, withSchema = true): Promise<Scope> {
  const res = new Resources();
  const prefix = res.track(uniquePrefix(`al-${name}`));
  const keys = new Keys(prefix);
  const redis = res.redis();
  const schema = `t_al_${name.replaceAll('-', '_')}_${randomBytes(4).toString('hex')}`;
  const samplers: AccessLogSampler[] = [];
  const clients: Array<Redis | Cluster> = [];
  if (withSchema) await runMigrations(pool, { schema });
  t.after(async () => {
    await Promise.all(samplers.map((s) => s.close()));
    for (const client of clients) client.disconnect();
    if (withSchema) await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await res.close();
  });
  return {
    prefix,
    keys,
    redis,
    schema,
    clients,
    sampler(rate, random, client = redis) {
      const s = new AccessLogSampler(
        client,
        keys,
        { sampleRate: rate, flushIntervalMs: 60_000, bucketMs: HOUR },
        random,
      );
      samplers.push(s);
      return s;
    },
    flush(options = {}) {
      return flushAccessLog({
        redis: options.redis ?? redis,
        keys,
        db,
        schema,
        ...(options.now === undefined ? {} : { now: options.now }),
        ...(options.bucketMs === undefined ? {} : { bucketMs: options.bucketMs }),
      });
    },
    async rows() {
      const { rows } = await sql<{
        key: string;
        entity: string | null;
        hits: string;
        bucket: Date;
      }>`SELECT key, entity, hits, bucket FROM ${sql.table(`${schema}.access_log`)} ORDER BY bucket, key`.execute(
        db,
      );
      return rows.map((r) => ({ ...r, hits: Number(r.hits) }));
    },
  };
}

/** Runs `f` and returns the bucket start it ran in (retried if an hour boundary passed). */
async function inOneBucket(f: () => void | Promise<void>): Promise<number> {
  for (;;) {
    const before = accessLogBucketStart(Date.now(), HOUR);
    await f();
    if (accessLogBucketStart(Date.now(), HOUR) === before) return before;
  }
}

/** Every Redis key under the prefix. */
async function keysUnder(redis: Redis | Cluster, prefix: string): Promise<string[]> {
  return keysMatching(redis, `${prefix}:*`);
}

/** A Redis client for a sampler that the test can take down (disconnect) and bring back. */
async function fragileRedis(s: Scope): Promise<Redis | Cluster> {
  const client = testRedis({
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  s.clients.push(client);
  await client.connect();
  return client;
}

describe('access log: keys', () => {
  it('lays out buckets, their flushing copies and the index under the prefix', () => {
    const keys = new Keys('app');
    assert.equal(keys.accessLogBucket(1_700_000_000_000), 'app:al:{1700000000000}');
    assert.equal(keys.accessLogFlushing(1_700_000_000_000), 'app:al:{1700000000000}:flushing');
    assert.equal(keys.accessLogIndex(), 'app:al:index');
    assert.throws(() => keys.accessLogBucket(Number.NaN), InvalidKeyError);
    assert.throws(() => keys.accessLogBucket(1.5), InvalidKeyError);
    assert.throws(() => keys.accessLogFlushing(-1), InvalidKeyError);
  });
});

describe('access log: sampler', () => {
  it('sampleRate 1 counts every read exactly, per bucket, entity and key', async (t) => {
    const s = await scope(t, 'exact', false);
    const sampler = s.sampler(1);
    const start = await inOneBucket(async () => {
      for (let i = 0; i < 3; i++) sampler.record('users', 'users:1');
      sampler.record('users', 'users:2');
      sampler.record(null, 'raw:x');
      sampler.record(null, 'raw:x');
      assert.equal(sampler.pending, 3);
      await sampler.flush();
    });
    assert.equal(sampler.pending, 0);
    assert.deepEqual(await s.redis.hgetall(s.keys.accessLogBucket(start)), {
      [`users${SEP}users:1`]: '3',
      [`users${SEP}users:2`]: '1',
      [`${SEP}raw:x`]: '2',
    });
    assert.deepEqual(await s.redis.smembers(s.keys.accessLogIndex()), [String(start)]);

    await sampler.flush(); // nothing pending: no write
    sampler.record('users', 'users:1');
    await sampler.flush();
    const hits = await s.redis.hget(s.keys.accessLogBucket(start), `users${SEP}users:1`);
    assert.ok(hits === '4' || accessLogBucketStart(Date.now(), HOUR) !== start, `hits ${hits}`);
  });

  it('sampleRate 0 writes nothing and never asks for a random number', async (t) => {
    const s = await scope(t, 'zero', false);
    let calls = 0;
    const sampler = s.sampler(0, () => {
      calls += 1;
      return 0;
    });
    for (let i = 0; i < 1_000; i++) sampler.record('users', `users:${i}`);
    assert.equal(sampler.pending, 0);
    await sampler.flush();
    await sampler.close();
    assert.deepEqual(await keysUnder(s.redis, s.prefix), []);
    assert.equal(calls, 0);
  });

  it('draws the gap to the next sample from random(), and stores samples / rate as hits', async (t) => {
    const s = await scope(t, 'random', false);
    // At rate 0.5 a draw u means 1 + floor(ln(1 - u) / ln(0.5)) reads to the next sample:
    // 0.6 -> 2, 0.1 -> 1, 0.8 -> 3, 0.95 -> 5, 0.99 -> 7.
    const draws = [0.6, 0.1, 0.8, 0.95, 0.99];
    let calls = 0;
    const sampler = s.sampler(0.5, () => draws[calls++] as number);
    assert.equal(calls, 1, 'the first gap is drawn up front');
    const start = await inOneBucket(async () => {
      sampler.record('users', 'users:1'); // read 1
      sampler.record('users', 'users:1'); // read 2: sampled
      sampler.record('users', 'users:2'); // read 3: sampled
      for (let i = 4; i <= 6; i++) sampler.record('users', 'users:1'); // read 6: sampled
      for (let i = 7; i <= 11; i++) sampler.record('orders', 'orders:1'); // read 11: sampled
      sampler.record('orders', 'orders:9'); // read 12
      await sampler.flush();
    });
    assert.equal(calls, 5, 'one random() per sample, not per read');
    assert.deepEqual(await s.redis.hgetall(s.keys.accessLogBucket(start)), {
      [`users${SEP}users:1`]: '4', // 2 samples / 0.5
      [`users${SEP}users:2`]: '2',
      [`orders${SEP}orders:1`]: '2',
    });

    const third = s.sampler(0.3, () => 0);
    const start3 = await inOneBucket(async () => {
      third.record('t', 'k'); // u = 0: the very next read; 1 / 0.3 = 3.33 -> 3 hits
      await third.flush();
    });
    assert.equal(await s.redis.hget(s.keys.accessLogBucket(start3), `t${SEP}k`), '3');
  });

  it('samples at the configured rate on average', async (t) => {
    const s = await scope(t, 'rate', false);
    let x = 0x2545f491;
    const seeded = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 2 ** 32;
    };
    for (const rate of [0.01, 0.2]) {
      const sampler = s.sampler(rate, seeded);
      const reads = 400_000;
      const start = await inOneBucket(async () => {
        for (let i = 0; i < reads; i++) sampler.record('r', `k${i % 10}`);
        await sampler.flush();
      });
      const hash = await s.redis.hgetall(s.keys.accessLogBucket(start));
      const estimated = Object.entries(hash)
        .filter(([field]) => field.startsWith(`r${SEP}`))
        .reduce((n, [, v]) => n + Number(v), 0);
      assert.ok(Math.abs(estimated - reads) / reads < 0.05, `rate ${rate}: ${estimated} hits`);
      await s.redis.del(s.keys.accessLogBucket(start));
    }
  });

  it('the timer pushes on its own; close stops sampling, pushes once and is idempotent', async (t) => {
    const s = await scope(t, 'timer', false);
    const sampler = new AccessLogSampler(s.redis, s.keys, {
      sampleRate: 1,
      flushIntervalMs: 20,
      bucketMs: HOUR,
    });
    t.after(() => sampler.close());
    sampler.record('users', 'users:1');
    await waitFor('the timer push', async () => (await keysUnder(s.redis, s.prefix)).length > 0);
    assert.equal(sampler.pending, 0);

    const closing = new AccessLogSampler(s.redis, s.keys, {
      sampleRate: 1,
      flushIntervalMs: 600_000,
      bucketMs: HOUR,
    });
    const start = await inOneBucket(async () => {
      closing.record('users', 'users:2');
      await Promise.all([closing.close(), closing.close()]);
    });
    closing.record('users', 'users:3'); // closed: a no-op
    assert.equal(closing.pending, 0);
    await closing.close();
    const bucket = await s.redis.hgetall(s.keys.accessLogBucket(start));
    assert.equal(bucket[`users${SEP}users:2`], '1');
    assert.equal(bucket[`users${SEP}users:3`], undefined);
  });

  it('keeps its counts while Redis is down and writes them once it is back', async (t) => {
    const s = await scope(t, 'down');
    const fragile = await fragileRedis(s);
    const errors: unknown[] = [];
    const sampler = new AccessLogSampler(
      fragile,
      s.keys,
      { sampleRate: 1, flushIntervalMs: 600_000, bucketMs: HOUR, onError: (e) => errors.push(e) },
      () => 0,
    );
    t.after(() => sampler.close());

    const start = await inOneBucket(async () => {
      sampler.record('users', 'users:1');
      sampler.record('users', 'users:1');
      sampler.record('users', 'users:2');
      fragile.disconnect();
      const failing = sampler.flush();
      sampler.record('users', 'users:1'); // during the failing push: merged with what comes back
      sampler.record('users', 'users:3');
      await assert.rejects(failing, RedisUnavailableError);
      assert.equal(sampler.pending, 3);
      await assert.rejects(sampler.flush(), RedisUnavailableError);
      assert.equal(sampler.pending, 3, 'a second failure loses nothing either');
      assert.equal(sampler.dropped, 0);

      // A disconnected cluster client stays 'close' (ioredis ends only a single connection).
      await waitFor('the disconnect', () => fragile.status === (ON_CLUSTER ? 'close' : 'end'));
      await fragile.connect();
      await sampler.flush();
    });
    assert.equal(sampler.pending, 0);
    assert.deepEqual(await s.redis.hgetall(s.keys.accessLogBucket(start)), {
      [`users${SEP}users:1`]: '3',
      [`users${SEP}users:2`]: '1',
      [`users${SEP}users:3`]: '1',
    });
    await s.flush();
    assert.deepEqual(
      (await s.rows()).map((r) => [r.key, r.hits]),
      [
        ['users:1', 3],
        ['users:2', 1],
        ['users:3', 1],
      ],
    );

    // Against a port nothing listens on: the push fails, close swallows it (onError gets it).
    const port = await freePort();
    const dead = new Redis(`redis://127.0.0.1:${port}`, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    dead.on('error', () => {});
    s.clients.push(dead);
    const lost = new AccessLogSampler(dead, s.keys, {
      sampleRate: 1,
      flushIntervalMs: 600_000,
      bucketMs: HOUR,
      onError: (e) => errors.push(e),
    });
    lost.record('users', 'users:9');
    await assert.rejects(lost.flush(), RedisUnavailableError);
    assert.equal(lost.pending, 1);
    await lost.close();
    assert.ok(errors.at(-1) instanceof RedisUnavailableError, 'close reports, never throws');
  });

  it(`holds at most ${MAX_PENDING_ENTRIES} distinct entries, counting what it drops`, async (t) => {
    const s = await scope(t, 'cap', false);
    const fragile = await fragileRedis(s);
    const sampler = s.sampler(1, () => 0, fragile);
    fragile.disconnect();
    await inOneBucket(async () => {
      const half = 60_000;
      for (let i = 0; i < half; i++) sampler.record('a', `a:${i}`);
      const failing = sampler.flush();
      for (let i = 0; i < half; i++) sampler.record('b', `b:${i}`);
      assert.equal(sampler.dropped, 0);
      await assert.rejects(failing, RedisUnavailableError);
    });
    assert.equal(sampler.pending, MAX_PENDING_ENTRIES);
    assert.equal(sampler.dropped, 120_000 - MAX_PENDING_ENTRIES);
    const dropped = sampler.dropped;
    sampler.record('b', 'b:0'); // already counted: kept
    sampler.record('c', 'c:new'); // a new entry: dropped
    assert.equal(sampler.dropped, dropped + 1);
    assert.equal(sampler.pending, MAX_PENDING_ENTRIES);
  });
});

describe('access log: bounded while Redis is down', () => {
  it(`holds at most ${MAX_PENDING_BYTES} bytes of keys, and never a key no cache key can be`, async (t) => {
    const s = await scope(t, 'bytes', false);
    const fragile = await fragileRedis(s);
    const sampler = s.sampler(1, () => 0, fragile);
    fragile.disconnect();
    const total = 30_000;
    await inOneBucket(async () => {
      // Long keys (up to the key limit): 30k of them are ~32 MB of strings.
      for (let i = 0; i < total; i++)
        sampler.record('users', `users:${String(i).padEnd(1_000, '-')}`);
      await assert.rejects(sampler.flush(), RedisUnavailableError);
    });
    assert.ok(sampler.pendingBytes <= MAX_PENDING_BYTES, `${sampler.pendingBytes} bytes held`);
    assert.ok(sampler.pending < total, `${sampler.pending} of ${total} long keys held`);
    assert.equal(sampler.dropped, total - sampler.pending);
    // A key over the key limit is never held (the flush would skip it anyway).
    const pending = sampler.pending;
    const dropped = sampler.dropped;
    sampler.record('users', 'x'.repeat(MAX_KEY_LENGTH + 1));
    sampler.record('x'.repeat(MAX_KEY_LENGTH + 1), 'users:1');
    assert.equal(sampler.pending, pending);
    assert.equal(sampler.dropped, dropped + 2);
  });
});

describe('access log: flush to Postgres', () => {
  it('moves the counts into access_log with hits, entity and bucket; two flushes add up', async (t) => {
    const s = await scope(t, 'pg');
    const sampler = s.sampler(1);
    const start = await inOneBucket(async () => {
      for (let i = 0; i < 5; i++) sampler.record('users', 'users:1');
      sampler.record('users', 'users:2');
      sampler.record(null, 'raw:1');
      await sampler.flush();
      assert.deepEqual(await s.flush(), { buckets: 1, rows: 3 });
    });
    const bucket = new Date(start);
    assert.deepEqual(await s.rows(), [
      { key: 'raw:1', entity: null, hits: 1, bucket },
      { key: 'users:1', entity: 'users', hits: 5, bucket },
      { key: 'users:2', entity: 'users', hits: 1, bucket },
    ]);
    assert.equal(await s.redis.exists(s.keys.accessLogBucket(start)), 0);
    assert.equal(await s.redis.exists(s.keys.accessLogFlushing(start)), 0);
    assert.deepEqual(await s.redis.smembers(s.keys.accessLogIndex()), [String(start)]);

    const start2 = await inOneBucket(async () => {
      sampler.record('users', 'users:1');
      sampler.record('users', 'users:3');
      await sampler.flush();
      await s.flush();
    });
    const rows = await s.rows();
    if (start2 === start) {
      assert.deepEqual(
        rows.map((r) => [r.key, r.hits]),
        [
          ['raw:1', 1],
          ['users:1', 6],
          ['users:2', 1],
          ['users:3', 1],
        ],
      );
    }
    assert.deepEqual(await s.flush(), { buckets: 0, rows: 0 }, 'nothing left to move');
  });

  it('scales sampled counts: rate 0.01 with a known random sequence', async (t) => {
    const s = await scope(t, 'scaled');
    // Every 100th read is sampled: 1 + floor(ln(0.99^99.5) / ln(0.99)) = 100.
    const sampler = s.sampler(0.01, () => 1 - 0.99 ** 99.5);
    await inOneBucket(async () => {
      for (let n = 0; n < 1_000; n++) sampler.record('users', 'users:hot');
      for (let n = 0; n < 100; n++) sampler.record('users', 'users:warm');
      for (let n = 0; n < 99; n++) sampler.record('users', 'users:cold'); // never sampled
      await sampler.flush();
      await s.flush();
    });
    assert.deepEqual(
      (await s.rows()).map((r) => [r.key, r.hits]),
      [
        ['users:hot', 1_000],
        ['users:warm', 100],
      ],
    );
  });

  it('does not lose counts written to the live bucket while a flush moves its copy', async (t) => {
    const s = await scope(t, 'during');
    // A bucket of 2^40 ms (about 35 years): no boundary passes during the test.
    const WIDE = 2 ** 40;
    const wide = (): AccessLogSampler => {
      const sampler = new AccessLogSampler(s.redis, s.keys, {
        sampleRate: 1,
        flushIntervalMs: 600_000,
        bucketMs: WIDE,
      });
      t.after(() => sampler.close());
      return sampler;
    };
    const start = accessLogBucketStart(Date.now(), WIDE);
    const first = wide();
    first.record('users', 'users:1');
    first.record('users', 'users:1');
    await first.flush();

    let hooked = 0;
    // Between RENAMENX and DEL (when the flush reads its copy) another process pushes.
    const racing = new Proxy(s.redis, {
      get(target, prop) {
        if (prop === 'hgetall') {
          return async (key: string) => {
            if (hooked++ === 0) {
              assert.equal(await target.exists(s.keys.accessLogFlushing(start)), 1);
              assert.equal(await target.exists(s.keys.accessLogBucket(start)), 0);
              const during = wide();
              for (let i = 0; i < 5; i++) during.record('users', 'users:1');
              during.record('users', 'users:2');
              await during.flush();
            }
            return target.hgetall(key);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    // `now` two buckets later: the bucket is old, so the flush also drops it from the
    // index, and must put it back because the live hash came back.
    const later = start + 2 * WIDE;
    assert.deepEqual(await s.flush({ redis: racing, now: later, bucketMs: WIDE }), {
      buckets: 1,
      rows: 1,
    });
    assert.equal(hooked, 1);
    assert.deepEqual(await s.redis.hgetall(s.keys.accessLogBucket(start)), {
      [`users${SEP}users:1`]: '5',
      [`users${SEP}users:2`]: '1',
    });
    assert.deepEqual(await s.redis.smembers(s.keys.accessLogIndex()), [String(start)]);
    assert.deepEqual(
      (await s.rows()).map((r) => [r.key, r.hits]),
      [['users:1', 2]],
    );

    assert.deepEqual(await s.flush({ now: later, bucketMs: WIDE }), { buckets: 1, rows: 2 });
    assert.deepEqual(
      (await s.rows()).map((r) => [r.key, r.hits, r.bucket.getTime()]),
      [
        ['users:1', 7, start],
        ['users:2', 1, start],
      ],
    );
    assert.deepEqual(
      await keysUnder(s.redis, s.prefix),
      [],
      'an old, empty bucket leaves the index; no copy is left',
    );
  });

  it('processes a :flushing copy left by a crashed flush, then the live bucket', async (t) => {
    const s = await scope(t, 'crash');
    const start = accessLogBucketStart(Date.now(), HOUR) - 3 * HOUR;
    await s.redis.hset(s.keys.accessLogFlushing(start), {
      [`users${SEP}users:9`]: '5',
      [`${SEP}raw:9`]: '1',
    });
    await s.redis.hset(s.keys.accessLogBucket(start), `users${SEP}users:9`, '2');
    await s.redis.sadd(s.keys.accessLogIndex(), String(start));

    assert.deepEqual(await s.flush(), { buckets: 2, rows: 3 });
    assert.deepEqual(await s.rows(), [
      { key: 'raw:9', entity: null, hits: 1, bucket: new Date(start) },
      { key: 'users:9', entity: 'users', hits: 7, bucket: new Date(start) },
    ]);
    assert.deepEqual(await keysUnder(s.redis, s.prefix), [], 'copies deleted, index emptied');
  });

  it('keeps the current bucket in the index, drops old empty ones, skips unusable fields', async (t) => {
    const s = await scope(t, 'index');
    const now = Date.now();
    const current = accessLogBucketStart(now, HOUR);
    await s.redis.sadd(s.keys.accessLogIndex(), String(current), String(current - HOUR), 'junk');
    await s.redis.hset(s.keys.accessLogBucket(current), {
      [`users${SEP}users:1`]: '2',
      [`users${SEP}bad${SEP}key`]: '3', // NUL in the key: Postgres text cannot hold it
      [`users${SEP}users:nan`]: 'x',
      'no-separator': '4', // a field without an entity: the whole field is the key
    });
    assert.deepEqual(await s.flush({ now }), { buckets: 1, rows: 2 });
    assert.deepEqual(
      (await s.rows()).map((r) => [r.key, r.entity, r.hits]),
      [
        ['no-separator', null, 4],
        ['users:1', 'users', 2],
      ],
    );
    assert.deepEqual(
      (await s.redis.smembers(s.keys.accessLogIndex())).sort(),
      [String(current), 'junk'].sort(),
    );
  });

  it('runs concurrent flushes one at a time, so nothing is counted twice', async (t) => {
    const s = await scope(t, 'concurrent');
    const sampler = s.sampler(1);
    await inOneBucket(async () => {
      for (let i = 0; i < 500; i++) sampler.record('users', `users:${i % 50}`);
      await sampler.flush();
    });
    const results = await Promise.all([s.flush(), s.flush(), s.flush()]);
    assert.equal(
      results.reduce((n, r) => n + r.rows, 0),
      50,
    );
    const rows = await s.rows();
    assert.equal(rows.length, 50);
    assert.ok(rows.every((r) => r.hits === 10));
  });
});

describe('access log: hottest keys', () => {
  it('orders by hits summed over recent buckets, filters by age, entity and limit', async (t) => {
    const s = await scope(t, 'hot');
    const hour = accessLogBucketStart(Date.now(), HOUR);
    const insert = (key: string, entity: string | null, hits: number, bucket: number) =>
      sql`INSERT INTO ${sql.table(`${s.schema}.access_log`)} (key, entity, hits, bucket)
          VALUES (${key}, ${entity}, ${hits}, ${new Date(bucket).toISOString()}::timestamptz)`.execute(
        db,
      );
    await insert('users:a', 'users', 5, hour);
    await insert('users:a', 'users', 100, hour - 30 * HOUR);
    await insert('users:b', 'users', 4, hour);
    await insert('users:b', 'users', 6, hour - 2 * HOUR);
    await insert('orders:c', 'orders', 7, hour - HOUR);
    await insert('raw:d', null, 1, hour);

    const day = await hottestKeys(db, { schema: s.schema });
    assert.deepEqual(day, [
      { key: 'users:b', entity: 'users', hits: 10 },
      { key: 'orders:c', entity: 'orders', hits: 7 },
      { key: 'users:a', entity: 'users', hits: 5 },
      { key: 'raw:d', entity: null, hits: 1 },
    ]);
    assert.deepEqual(
      (await hottestKeys(db, { schema: s.schema, sinceMs: 48 * HOUR })).map((r) => [r.key, r.hits]),
      [
        ['users:a', 105],
        ['users:b', 10],
        ['orders:c', 7],
        ['raw:d', 1],
      ],
    );
    assert.deepEqual(
      (await hottestKeys(db, { schema: s.schema, limit: 2 })).map((r) => r.key),
      ['users:b', 'orders:c'],
    );
    assert.deepEqual(
      (await hottestKeys(db, { schema: s.schema, entity: 'users' })).map((r) => r.key),
      ['users:b', 'users:a'],
    );
    assert.deepEqual(
      (await hottestKeys(db, { schema: s.schema, entity: null })).map((r) => r.key),
      ['raw:d'],
    );
    // Only the current bucket starts within the last minute... unless the hour just began.
    const recent = await hottestKeys(db, { schema: s.schema, sinceMs: Date.now() - hour });
    assert.deepEqual(
      recent.map((r) => r.key),
      ['users:a', 'users:b', 'raw:d'],
    );
  });
});
