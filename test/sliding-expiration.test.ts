import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeEntry, newToken, parseEntry, tombstoneValue } from '../src/cache/envelope.js';
import {
  type CacheEngine,
  ConfigError,
  createRepository,
  defineConfig,
  resolveConfig,
} from '../src/index.js';
import { REDIS_CONFIG, Resources, sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

/**
 * Long enough that a stall of the event loop on a loaded machine (a read every 15 ms, a
 * slide once half the TTL is gone) does not let an entry expire between two reads.
 */
const TTL = 600;
/** Short, exact lifetimes: no jitter, no early refresh, no stale grace. */
const CACHE = { ttlMs: TTL, jitter: 0, earlyRefreshBeta: 0, staleWhileRevalidateMs: 0 };
const SLIDING = { sliding: { maxAgeMs: 10_000 } } as const;

/** Reads `key` every `everyMs` for `forMs`, checking each value; returns the number of reads. */
async function readFor(
  forMs: number,
  everyMs: number,
  read: () => Promise<unknown>,
  check: (value: unknown) => void = () => {},
): Promise<number> {
  const started = Date.now();
  let reads = 0;
  while (Date.now() - started < forMs) {
    check(await read());
    reads++;
    await sleep(everyMs);
  }
  return reads;
}

describe('sliding expiration', () => {
  const res = new Resources();
  const redis = res.redis();
  after(() => res.close());

  for (const l1 of [true, false]) {
    it(`a key read regularly stays fresh past its TTL without reloading, rarely touched (L1 ${l1 ? 'on' : 'off'})`, async () => {
      const prefix = uniquePrefix('slide-hot');
      const a = await res.readyEngine(prefix, { cache: CACHE, l1: { enabled: l1 } });
      const b = await res.readyEngine(prefix, { cache: CACHE, l1: { enabled: false } });
      let loads = 0;
      let slides = 0;
      a.events.on('slide', () => slides++);
      a.events.on('slide-failed', (_key, error) => assert.fail(`L2 touch failed: ${error}`));
      const load = () => ({ n: ++loads });
      const started = Date.now();
      const reads = await readFor(
        4 * TTL,
        15,
        () => a.getOrLoad('k', load, SLIDING),
        (v) => assert.deepEqual(v, { n: 1 }),
      );
      const elapsed = Date.now() - started;
      assert.equal(loads, 1, `loaded once ${elapsed} ms ago (TTL ${TTL} ms)`);
      // A slide moves freshness to now + TTL; the next comes once half of it is gone.
      assert.ok(slides >= 2, `${slides} slides`);
      assert.ok(
        slides <= elapsed / (TTL / 2) + 1,
        `${slides} slides in ${elapsed} ms: at most one per half TTL`,
      );
      assert.ok(reads > 2 * slides, `${reads} reads, ${slides} slides`);
      // L2 holds the extension: another process (no L1) gets the value without loading.
      const state = parseEntry(await redis.getBuffer(a.keys.entry('k')));
      assert.ok(state.kind === 'data');
      assert.ok(
        state.envelope.freshUntil > state.envelope.createdAt + TTL,
        'the L2 entry was moved past its TTL',
      );
      assert.ok(state.envelope.freshUntil > Date.now(), 'and is fresh');
      assert.ok((await redis.pttl(a.keys.entry('k'))) > 0);
      assert.deepEqual(await b.getOrLoad('k', () => assert.fail('must be an L2 hit'), SLIDING), {
        n: 1,
      });
    });
  }

  it('it is reloaded once maxAgeMs passes, however often it is read', async () => {
    const prefix = uniquePrefix('slide-max');
    const ttl = 400;
    const maxAgeMs = 1_000;
    const a = await res.readyEngine(prefix, { cache: { ...CACHE, ttlMs: ttl } });
    const loadedAt: number[] = [];
    const load = () => {
      loadedAt.push(Date.now());
      return loadedAt.length;
    };
    await readFor(1_700, 15, () => a.getOrLoad('k', load, { sliding: { maxAgeMs } }));
    assert.ok(loadedAt.length >= 2, `reloaded (${loadedAt.length} loads)`);
    const age = (loadedAt[1] as number) - (loadedAt[0] as number);
    assert.ok(age >= maxAgeMs - 5, `the first value lived ${age} ms (max age ${maxAgeMs} ms)`);
    assert.ok(age < maxAgeMs + ttl, `and was reloaded in time: ${age} ms`);
  });

  it('a key not read expires at its TTL', async () => {
    const prefix = uniquePrefix('slide-cold');
    const a = await res.readyEngine(prefix, { cache: CACHE });
    let loads = 0;
    const load = () => ++loads;
    assert.equal(await a.getOrLoad('k', load, SLIDING), 1);
    const pttl = await redis.pttl(a.keys.entry('k'));
    assert.ok(pttl > 0 && pttl <= TTL, `L2 expiry ${pttl} ms`);
    await sleep(TTL + 100);
    assert.equal(await redis.getBuffer(a.keys.entry('k')), null, 'gone from L2 at its TTL');
    assert.equal(await a.getOrLoad('k', load, SLIDING), 2, 'reloaded');
  });

  it('an invalidation still drops it at once', async () => {
    const prefix = uniquePrefix('slide-inval');
    const a = await res.readyEngine(prefix, { cache: CACHE });
    const b = await res.readyEngine(prefix, { cache: CACHE });
    let loads = 0;
    const load = () => ++loads;
    let slides = 0;
    a.events.on('slide', () => slides++);
    await readFor(2 * TTL, 15, () => a.getOrLoad('k', load, SLIDING));
    assert.equal(loads, 1);
    assert.ok(slides >= 1, 'it slid');
    await b.delete('k');
    assert.equal((await redis.getBuffer(a.keys.entry('k')))?.toString('latin1', 0, 1), 'T');
    await waitFor('the bus drops A’s L1 copy', () => a.peek('k') === undefined, 2_000);
    assert.equal(await a.getOrLoad('k', load, SLIDING), 2, 'the next read loads');
  });

  for (const replaced of ['another fill', 'a tombstone'] as const) {
    it(`the touch never revives a replaced fill (${replaced} lands between the read and the touch)`, async () => {
      const prefix = uniquePrefix('slide-race');
      // One connection for the engine and the test: Redis runs their commands in order.
      const shared = res.redis();
      const a = res.engine(prefix, { cache: CACHE, l1: { enabled: false } }, { redis: shared });
      assert.ok(await a.ready());
      const key = a.keys.entry('k');
      let loads = 0;
      assert.equal(await a.getOrLoad('k', () => ++loads, SLIDING), 1);
      await sleep(TTL * 0.6); // less than half the TTL left: the next hit slides
      const now = Date.now();
      const replacement =
        replaced === 'another fill'
          ? encodeEntry(
              newToken(),
              {
                createdAt: now,
                freshUntil: now + 100,
                staleUntil: now + 100,
                loadMs: 0,
                epoch: 'another',
                tags: null,
                negative: false,
              },
              Buffer.from([0x2a]),
              false,
            )
          : Buffer.from(tombstoneValue(0n));
      let slides = 0;
      a.events.on('slide', () => slides++);
      // The hit's event comes before its touch is sent: the SET goes first.
      a.events.once('hit', () => void shared.set(key, replacement, 'PX', 5_000));
      assert.equal(await a.getOrLoad('k', () => ++loads, SLIDING), 1, 'a hit of the old fill');
      assert.equal(slides, 1, 'the hit did slide (and sent its touch)');
      await shared.ping(); // after the touch
      assert.deepEqual(await shared.getBuffer(key), replacement, 'the replacement is untouched');
      const pttl = await shared.pttl(key);
      assert.ok(pttl > 4_000 && pttl <= 5_000, `its expiry is its own: ${pttl} ms`);
    });
  }

  it('a call without sliding is unaffected: reloaded at each TTL, never moved', async () => {
    const prefix = uniquePrefix('slide-off');
    const a = await res.readyEngine(prefix, { cache: CACHE });
    let loads = 0;
    let slides = 0;
    a.events.on('slide', () => slides++);
    await readFor(4 * TTL, 15, () => a.getOrLoad('k', () => ++loads));
    assert.ok(loads >= 3, `${loads} loads in 4 TTLs`);
    assert.equal(slides, 0);
    const state = parseEntry(await redis.getBuffer(a.keys.entry('k')));
    assert.ok(state.kind === 'data');
    assert.equal(state.envelope.freshUntil, state.envelope.createdAt + TTL);
  });

  it('bad sliding options get a ConfigError naming the option', async () => {
    const entity = { table: 'users', key: 'id' };
    const configError = (option: string, text: RegExp) => (error: unknown) =>
      error instanceof ConfigError && error.option === option && text.test(error.message);
    assert.throws(
      () =>
        resolveConfig({
          entities: { users: { ...entity, ttlMs: 1_000, sliding: { maxAgeMs: 500 } } },
        }),
      configError('entities.users.sliding.maxAgeMs', /at least the entity's TTL \(1000 ms\)/),
    );
    assert.throws(
      () => resolveConfig({ entities: { users: { ...entity, sliding: { maxAgeMs: 30_000 } } } }),
      configError('entities.users.sliding.maxAgeMs', /at least the entity's TTL \(60000 ms\)/),
      'the TTL falls back to cache.ttlMs',
    );
    assert.throws(
      () => resolveConfig({ entities: { users: { ...entity, sliding: { maxAgeMs: -5 } } } }),
      configError('entities.users.sliding.maxAgeMs', /./),
    );
    assert.throws(
      () =>
        resolveConfig({
          entities: { users: { ...entity, sliding: { maxAge: 5 } as never } },
        }),
      // The typo is named, with the option meant (not only the required option it left out).
      configError(
        'entities.users.sliding.maxAge',
        /did you mean `entities\.users\.sliding\.maxAgeMs`/,
      ),
    );
    const ok = resolveConfig({
      entities: { users: { ...entity, ttlMs: 1_000, sliding: { maxAgeMs: 1_000 } } },
    });
    assert.equal(ok.entities.users?.sliding?.maxAgeMs, 1_000);

    const a = await res.readyEngine(uniquePrefix('slide-bad'), { cache: CACHE });
    const load = () => assert.fail('a bad option loads nothing');
    await assert.rejects(
      a.getOrLoad('k', load, { sliding: { maxAgeMs: TTL - 1 } }),
      configError('sliding.maxAgeMs', new RegExp(`at least the TTL \\(${TTL} ms\\)`)),
    );
    await assert.rejects(
      a.getOrLoad('k', load, { ttlMs: 5_000, sliding: { maxAgeMs: 1_000 } }),
      configError('sliding.maxAgeMs', /at least the TTL \(5000 ms\)/),
    );
    for (const maxAgeMs of [-1, 0, Number.NaN, '500' as unknown as number])
      await assert.rejects(
        a.getOrLoad('k', load, { sliding: { maxAgeMs } }),
        configError('sliding.maxAgeMs', /positive number/),
      );
  });
});

describe('sliding expiration of repository entities', () => {
  const res = new Resources();
  const scope = new PgScope('slide');
  const prefix = res.track(uniquePrefix('slide-repo'));
  const { db, queries } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: CACHE,
    accessLog: { sampleRate: 0 },
    entities: {
      users: { table: 'users', key: 'id', sliding: { maxAgeMs: 10_000 } },
      orders: { table: 'orders', key: 'id' },
    },
  });
  const repo = createRepository({ db, config });
  let engine: CacheEngine;

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`
      INSERT INTO $schema.users (id, email, name) VALUES (1, 'a@x', 'Ann');
      INSERT INTO $schema.orders (id, user_id) VALUES (1, 1);`);
    await repo.ready();
    // Redis too: a read before the connection is up (longer on a cluster) skips the cache.
    assert.ok(await repo.engine.ready());
    engine = repo.engine;
  });
  after(async () => {
    await repo.close();
    await db.destroy();
    await scope.close();
    await res.close();
  });

  it('a sliding entity is read once while it stays hot; the other entity reloads at its TTL', async () => {
    let slides = 0;
    engine.events.on('slide', () => slides++);
    queries.length = 0;
    await readFor(4 * TTL, 15, async () => {
      const [user, order] = await Promise.all([repo.users.findById(1), repo.orders.findById(1)]);
      assert.equal(user?.name, 'Ann');
      assert.equal(order?.user_id, 1);
    });
    const from = (table: string) => queries.filter((q) => q.sql.includes(`"${table}"`)).length;
    assert.equal(from('users'), 1, 'users: loaded once');
    assert.ok(from('orders') >= 3, `orders: loaded ${from('orders')} times in 4 TTLs`);
    assert.ok(slides >= 2, `${slides} slides`);
  });
});
