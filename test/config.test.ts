import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { ConfigError, resolveConfig } from '../src/index.js';

/** Everything an error shows when it is printed or logged (pino serialises its own properties). */
function printed(error: unknown): string {
  const e = error as Error & { context?: unknown };
  return [e.message, inspect(e, { depth: 10 }), JSON.stringify(e), JSON.stringify(e.context)].join(
    '\n',
  );
}

describe('config', () => {
  it('fills defaults and environment variables, and freezes the result', () => {
    const config = resolveConfig(
      {},
      {
        REDIS_URL: 'redis://10.0.0.1:6380',
        DATABASE_URL: 'postgres://db/x',
        WALCACHE_PREFIX: 'shop',
      },
    );
    assert.equal(config.redis.url, 'redis://10.0.0.1:6380');
    assert.equal(config.databaseUrl, 'postgres://db/x');
    assert.equal(config.prefix, 'shop');
    assert.equal(config.cache.ttlMs, 60_000);
    assert.equal(config.l1.maxEntries, 10_000);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.cache));
    assert.throws(() => {
      (config.cache as { ttlMs: number }).ttlMs = 1;
    }, TypeError);
    const local = resolveConfig({}, {});
    assert.equal(local.redis.url, 'redis://127.0.0.1:6379');
    assert.equal(local.prefix, 'walcache');
    assert.equal(
      resolveConfig({ prefix: 'mine' }, { WALCACHE_PREFIX: 'env' }).prefix,
      'mine',
      'explicit beats env',
    );
  });

  const bad: Array<[string, unknown, string, unknown]> = [
    ['negative ttl', { cache: { ttlMs: -5 } }, 'cache.ttlMs', -5],
    ['string ttl', { cache: { ttlMs: '60s' } }, 'cache.ttlMs', '60s'],
    ['jitter above 0.9', { cache: { jitter: 2 } }, 'cache.jitter', 2],
    ['prefix with a colon', { prefix: 'a:b' }, 'prefix', 'a:b'],
    ['prefix with a glob', { prefix: 'a*' }, 'prefix', 'a*'],
    ['unknown option', { cache: { ttl: 5 } }, 'cache.ttl', 5],
    ['unknown top-level option', { redisUrl: 'x' }, 'redisUrl', undefined],
    ['bad redis url', { redis: { url: 'not a url' } }, 'redis.url', 'not a url'],
    ['lease wait above lease ttl', { lease: { ttlMs: 100, waitMs: 200 } }, 'lease.waitMs', 200],
    ['l1 of zero entries', { l1: { maxEntries: 0 } }, 'l1.maxEntries', 0],
  ];
  for (const [name, input, option, value] of bad) {
    it(`rejects ${name} with a ConfigError naming the option and value`, () => {
      assert.throws(
        () => resolveConfig(input as never, {}),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.equal(e.code, 'E_CONFIG');
          assert.equal(e.option, option);
          if (value !== undefined) assert.deepEqual(e.value, value);
          assert.match(e.message, new RegExp(option.replace(/[().]/g, '\\$&')));
          return true;
        },
      );
    });
  }

  it('a resolved cluster or sentinel config resolves again (its url is the seed it filled in); a second set-up does not', () => {
    const nodes = ['10.0.0.5:7000', '10.0.0.6:7000'];
    const cluster = resolveConfig({ redis: { cluster: { nodes } } }, {});
    assert.equal(cluster.redis.url, 'redis://10.0.0.5:7000');
    // What doctor, stats and `walcache invalidate` do: a copy with some options changed.
    const again = resolveConfig({ ...cluster, l1: { ...cluster.l1, enabled: false } } as never, {});
    assert.deepEqual(again.redis.cluster?.nodes, nodes);
    assert.equal(again.redis.url, 'redis://10.0.0.5:7000');
    const fromEnv = resolveConfig({}, { REDIS_CLUSTER_NODES: nodes.join(',') });
    assert.deepEqual(resolveConfig({ ...fromEnv } as never, {}).redis.cluster?.nodes, nodes);
    const sentinel = resolveConfig(
      { redis: { sentinel: { sentinels: ['10.0.0.7:26379'], name: 'main' } } },
      {},
    );
    assert.equal(resolveConfig({ ...sentinel } as never, {}).redis.sentinel?.name, 'main');
    assert.throws(
      () => resolveConfig({ redis: { url: 'redis://10.0.0.9:6379', cluster: { nodes } } }, {}),
      (e: unknown) => e instanceof ConfigError && e.option === 'redis.cluster',
    );
  });

  it('rejects a config that is not an object', () => {
    assert.throws(() => resolveConfig(null as never), ConfigError);
    assert.throws(() => resolveConfig([] as never), ConfigError);
  });

  describe('passwords never reach an error', () => {
    const SECRET = 'S3cr3t-pw';
    const urls = {
      databaseUrl: `postgres://app:${SECRET}@db.internal:5432/shop`,
      redis: { url: `redis://cache:${SECRET}@cache.internal:6379` },
      jobs: { redisUrl: `rediss://queues:${SECRET}@queues.internal:6380` },
    };
    const cases: Array<[string, Record<string, unknown>, Record<string, string>, string]> = [
      ['a top-level typo', { ...urls, cahce: {} }, {}, 'cahce'],
      [
        'a typo beside redis.url',
        { ...urls, redis: { ...urls.redis, comandTimeoutMs: 5 } },
        {},
        'redis.comandTimeoutMs',
      ],
      [
        'a typo beside jobs.redisUrl',
        { ...urls, jobs: { ...urls.jobs, concurency: 2 } },
        {},
        'jobs.concurency',
      ],
      [
        'a typo with the URLs from the environment',
        { cache: { tll: 1 } },
        { DATABASE_URL: urls.databaseUrl, REDIS_URL: urls.redis.url },
        'cache.tll',
      ],
      [
        'an unparsable databaseUrl',
        { databaseUrl: `postgres://app:${SECRET}@db internal/x`, prefix: 'a:b' },
        {},
        'prefix',
      ],
      [
        'an unparsable jobs.redisUrl',
        { jobs: { redisUrl: `redis://q:${SECRET}@bad host:1` } },
        {},
        'jobs.redisUrl',
      ],
      [
        'an unparsable redis.url',
        { redis: { url: `redis://q:${SECRET}@bad host:1` } },
        {},
        'redis.url',
      ],
      ['a URL given under a mistyped name', { redisUrl: `redis://:${SECRET}@h:1` }, {}, 'redisUrl'],
      [
        'a keyword/value databaseUrl and a typo',
        { databaseUrl: `host=db user=app password=${SECRET}`, x: 1 },
        {},
        'x',
      ],
    ];
    for (const [name, input, env, option] of cases) {
      it(`${name}: the option is named, no password is printed`, () => {
        assert.throws(
          () => resolveConfig(input as never, env),
          (e: unknown) => {
            assert.ok(e instanceof ConfigError, String(e));
            assert.equal(e.option, option);
            const text = printed(e);
            assert.equal(text.includes(SECRET), false, text);
            assert.match(e.message, new RegExp(`\`${option.replace(/[.]/g, '\\.')}\``));
            return true;
          },
        );
      });
    }

    it('suggests the option meant', () => {
      const suggestion = (input: unknown) => {
        try {
          resolveConfig(input as never, {});
        } catch (e) {
          return (e as Error).message;
        }
        assert.fail('no error');
      };
      assert.match(suggestion({ cache: { tllMs: 5 } }), /did you mean `cache\.ttlMs`\?/);
      assert.match(suggestion({ redisUrl: 'redis://h' }), /did you mean `redis\.url`\?/);
      assert.match(suggestion({ jobs: { concurency: 2 } }), /did you mean `jobs\.concurrency`\?/);
      assert.match(
        suggestion({ entities: { users: { table: 'users', key: 'id', denny: ['x'] } } }),
        /`entities\.users\.denny`.*did you mean `entities\.users\.deny`\?/,
      );
      assert.doesNotMatch(suggestion({ zzzzzz: 1 }), /did you mean/);
    });

    it('suggests at every level, through unions, and before reporting what the typo left missing', () => {
      const message = (input: unknown) => {
        try {
          resolveConfig(input as never, {});
        } catch (e) {
          assert.ok(e instanceof ConfigError, String(e));
          return e.message;
        }
        assert.fail('no error');
      };
      const entity = { table: 't', key: 'id' };
      const warmer = (extra: object) => ({
        entities: { u: entity },
        warmers: { hot: { entity: 'u', ...extra } },
      });
      const cases: Array<[unknown, string, string]> = [
        // level 1: a section's option, the unit left out, a name inside the other
        [{ cache: { ttl: 5 } }, 'cache.ttl', 'cache.ttlMs'],
        [{ breaker: { threshold: 3 } }, 'breaker.threshold', 'breaker.failureThreshold'],
        [{ worker: { slotName: 'x' } }, 'worker.slotName', 'worker.slot'],
        // top level: an option of a section put beside it
        [{ slot: 'x' }, 'slot', 'worker.slot'],
        [{ ttlMs: 5 }, 'ttlMs', 'cache.ttlMs` or `l1.ttlMs` or `lease.ttlMs'],
        // level 2
        [
          { redis: { url: 'rediss://h:1', tls: { serverName: 'x' } } },
          'redis.tls.serverName',
          'redis.tls.servername',
        ],
        [{ redis: { cluster: { node: ['h:1'] } } }, 'redis.cluster.node', 'redis.cluster.nodes'],
        [
          { redis: { sentinel: { sentinel: ['h:1'], name: 'm' } } },
          'redis.sentinel.sentinel',
          'redis.sentinel.sentinels',
        ],
        [
          { jobs: { redisUrl: 'rediss://h:1', redisTls: { sevrername: 'x' } } },
          'jobs.redisTls.sevrername',
          'jobs.redisTls.servername',
        ],
        [warmer({ shedule: { every: 1000 } }), 'warmers.hot.shedule', 'warmers.hot.schedule'],
        // level 3, and inside a union (`schedule` is `{ every }` or `{ cron }`)
        [
          { entities: { u: { ...entity, sliding: { maxAge: 5 } } } },
          'entities.u.sliding.maxAge',
          'entities.u.sliding.maxAgeMs',
        ],
        [
          warmer({ schedule: { evry: 1000 } }),
          'warmers.hot.schedule.evry',
          'warmers.hot.schedule.every',
        ],
        [
          warmer({ schedule: { crn: '0 3 * * *' } }),
          'warmers.hot.schedule.crn',
          'warmers.hot.schedule.cron',
        ],
      ];
      for (const [input, option, meant] of cases) {
        const expected = `Invalid walcache option \`${option}\`: no such option (did you mean \`${meant}\`?)`;
        const got = message(input);
        assert.ok(
          got.startsWith(expected),
          `${option}:\n  got      ${got}\n  expected ${expected}`,
        );
      }
      assert.doesNotMatch(message({ cache: { zzz: 1 } }), /did you mean/);
    });

    it('a warmer of an entity the config lacks is refused when the config is resolved', () => {
      assert.throws(
        () =>
          resolveConfig({
            entities: {
              users: { table: 'users', key: 'id' },
              orders: { table: 'orders', key: 'id' },
            },
            warmers: { hot: { schedule: { every: 60_000 }, entity: 'usres' } },
          }),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.option === 'warmers.hot.entity' &&
          e.message ===
            'Invalid walcache option `warmers.hot.entity`: not an entity of the config (did you mean `users`?); it declares `users`, `orders` (got "usres")',
      );
    });
  });
});
