import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, resolveConfig } from '../src/index.js';

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
    ['unknown option', { cache: { ttl: 5 } }, 'cache', { ttl: 5 }],
    ['unknown top-level option', { redisUrl: 'x' }, '(config)', undefined],
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

  it('rejects a config that is not an object', () => {
    assert.throws(() => resolveConfig(null as never), ConfigError);
    assert.throws(() => resolveConfig([] as never), ConfigError);
  });
});
