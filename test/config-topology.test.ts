/**
 * The Redis topology in the config: one of `url`, `cluster` and `sentinel` (for the cache
 * and for the job queues), `REDIS_CLUSTER_NODES`, and the bad inputs refused with a
 * ConfigError that names the option.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cacheEndpoint, describeEndpoint, queuesEndpoint } from '../src/config/redis-endpoint.js';
import { ConfigError, resolveConfig } from '../src/index.js';

function refused(input: Parameters<typeof resolveConfig>[0], env: NodeJS.ProcessEnv = {}) {
  try {
    resolveConfig(input, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail('accepted');
}

describe('Redis topology in the config', () => {
  it('a cluster: seeds as given, url its first seed, endpoints carry it, doctor names it', () => {
    const config = resolveConfig(
      { redis: { cluster: { nodes: ['10.0.0.5:6379', 'redis://10.0.0.6:6380'] } } },
      {},
    );
    assert.deepEqual(config.redis.cluster?.nodes, ['10.0.0.5:6379', 'redis://10.0.0.6:6380']);
    assert.equal(config.redis.url, 'redis://10.0.0.5:6379');
    assert.deepEqual(cacheEndpoint(config).cluster, config.redis.cluster);
    assert.deepEqual(queuesEndpoint(config).cluster, config.redis.cluster, 'queues follow');
    assert.equal(describeEndpoint(cacheEndpoint(config)), 'cluster 10.0.0.5:6379,10.0.0.6:6380');
  });

  it('REDIS_CLUSTER_NODES stands for redis.cluster; with TLS the seed URL is rediss://', () => {
    const config = resolveConfig({}, { REDIS_CLUSTER_NODES: ' 10.0.0.5:7000 , 10.0.0.6:7000 ' });
    assert.deepEqual(config.redis.cluster?.nodes, ['10.0.0.5:7000', '10.0.0.6:7000']);
    const tls = resolveConfig(
      { redis: { cluster: { nodes: ['10.0.0.5:7000'] }, tls: { rejectUnauthorized: false } } },
      {},
    );
    assert.equal(tls.redis.url, 'rediss://10.0.0.5:7000');
    // A topology in the config wins over the environment.
    const url = resolveConfig(
      { redis: { url: 'redis://cache:6379' } },
      { REDIS_CLUSTER_NODES: '10.0.0.5:7000' },
    );
    assert.equal(url.redis.cluster, undefined);
  });

  it('a sentinel set-up, and the job queues on a cluster of their own', () => {
    const config = resolveConfig(
      {
        redis: { sentinel: { sentinels: ['10.0.0.7:26379'], name: 'cache' } },
        jobs: { redisCluster: { nodes: ['10.0.0.9:7000'] } },
      },
      {},
    );
    assert.equal(
      describeEndpoint(cacheEndpoint(config)),
      'sentinel master "cache" via 10.0.0.7:26379',
    );
    assert.deepEqual(queuesEndpoint(config).cluster?.nodes, ['10.0.0.9:7000']);
    assert.equal(queuesEndpoint(config).sentinel, undefined);
  });

  it('refuses two topologies, in the config or in the environment', () => {
    const both = refused({
      redis: { url: 'redis://a:6379', cluster: { nodes: ['b:6379'] } },
    });
    assert.equal(both.context.option, 'redis.cluster');
    assert.match(both.message, /one of redis\.url, redis\.cluster and redis\.sentinel/);
    refused({
      redis: {
        cluster: { nodes: ['b:6379'] },
        sentinel: { sentinels: ['c:26379'], name: 'm' },
      },
    });
    const env = refused({}, { REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:6379' });
    assert.equal(env.context.option, 'REDIS_CLUSTER_NODES');
    const jobs = refused({
      jobs: { redisUrl: 'redis://a:6379', redisSentinel: { sentinels: ['c:1'], name: 'm' } },
    });
    assert.equal(jobs.context.option, 'jobs.redisSentinel');
  });

  it('refuses malformed topologies, naming the option', () => {
    for (const [input, option] of [
      [{ redis: { cluster: { nodes: [] } } }, 'redis.cluster.nodes'],
      [{ redis: { cluster: { nodes: ['no-port'] } } }, 'redis.cluster.nodes.0'],
      [{ redis: { cluster: { nodes: ['10.0.0.5:6379', 'http://x:1'] } } }, 'redis.cluster.nodes.1'],
      [{ redis: { cluster: { nodes: ['a:1'], seeds: ['b:2'] } } }, 'redis.cluster.seeds'],
      [{ redis: { sentinel: { sentinels: ['a:1'] } } }, 'redis.sentinel.name'],
      [{ redis: { sentinel: { sentinels: ['a:1'], name: '' } } }, 'redis.sentinel.name'],
      [{ writeBehind: { replicas: -1 } }, 'writeBehind.replicas'],
    ] as const) {
      const error = refused(input as Parameters<typeof resolveConfig>[0]);
      assert.equal(error.context.option, option, `${JSON.stringify(input)}: ${error.message}`);
    }
    const bad = refused({}, { REDIS_CLUSTER_NODES: '10.0.0.5' });
    assert.equal(bad.context.option, 'redis.cluster.nodes.0');
  });
});
