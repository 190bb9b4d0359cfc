import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import {
  CacheEngine,
  ConfigError,
  type DoctorCheck,
  doctor,
  resolveConfig,
  type WalcacheConfigInput,
} from '../src/index.js';
import { queueConnection } from '../src/queues/walcache-queues.js';
import { uniquePrefix, waitFor } from './helpers.js';
import { DATABASE_URL } from './pg-helpers.js';
import { makeCerts, type PrivateRedis, startRedis, type TestCerts } from './redis-servers.js';

/**
 * Redis as deployed: ACL users, requirepass, TLS (server-verified and mutual), each on a
 * private redis-server started here and stopped after; the engine, the bus, the job
 * queues and doctor's ACL check go through them.
 */
describe('Redis as deployed', () => {
  const prefix = uniquePrefix('deployed');
  const engines: CacheEngine[] = [];
  const clients: Array<Redis | Cluster> = [];
  after(async () => {
    await Promise.all(engines.map((e) => e.close()));
    for (const c of clients) c.disconnect();
  });

  async function engine(redis: WalcacheConfigInput['redis'], extra: WalcacheConfigInput = {}) {
    const e = new CacheEngine({
      config: { prefix, redis: { connectTimeoutMs: 2_000, ...redis }, ...extra },
    });
    engines.push(e);
    return e;
  }

  /** Fills through one engine, hits through another, and sees a `set` reach the other's L1. */
  async function roundTrip(a: CacheEngine, b: CacheEngine): Promise<void> {
    assert.ok(await a.ready(5_000), 'connected and subscribed');
    assert.ok(await b.ready(5_000));
    const key = `rt:${Math.random()}`;
    assert.equal(await a.getOrLoad(key, () => 'v1'), 'v1');
    assert.equal(await b.getOrLoad(key, () => assert.fail('not an L2 hit')), 'v1');
    await a.set(key, 'v2');
    await waitFor('the bus dropped the other L1 copy', async () => (await b.get(key)) === 'v2');
  }

  function check(checks: readonly DoctorCheck[], name: string): DoctorCheck {
    const found = checks.find((c) => c.name === name);
    assert.ok(found, `no ${name} check in ${checks.map((c) => c.name).join(', ')}`);
    return found;
  }

  describe('ACL users and requirepass', () => {
    let acl: PrivateRedis;
    let legacy: PrivateRedis;
    before(async () => {
      const needed =
        '-@all +get +set +del +exists +pexpire +pttl +getrange +setrange +incr +eval +evalsha +publish +subscribe +unsubscribe +scan +multi +exec +hget +hset +hsetnx +hincrby +hgetall +sadd +srem +smembers +rename +renamenx +rpush +llen +lrange +zadd +zcard +zrem +zrange +info +ping +client|setname';
      acl = await startRedis(
        (dir, port) => ['--port', String(port), '--aclfile', `${dir}/users.acl`],
        {
          'users.acl': [
            'user default off',
            `user walcache on >wc-pass ~${prefix}:* &${prefix}:* ${needed}`,
            `user reader on >rd-pass ~${prefix}:* &${prefix}:* -@all +get +set +info`,
            `user elsewhere on >el-pass ~other:* &other:* ${needed}`,
            '',
          ].join('\n'),
        },
      );
      legacy = await startRedis((_dir, port) => [
        '--port',
        String(port),
        '--requirepass',
        'legacy-pass',
      ]);
    });
    after(async () => {
      await acl?.stop();
      await legacy?.stop();
    });

    it('an ACL user in the URL, or as redis.username/redis.password: fills, hits and the bus work', async () => {
      const url = `redis://walcache:wc-pass@127.0.0.1:${acl.port}`;
      await roundTrip(await engine({ url }), await engine({ url }));
      const split = {
        url: `redis://127.0.0.1:${acl.port}`,
        username: 'walcache',
        password: 'wc-pass',
      };
      await roundTrip(await engine(split), await engine(split));
    });

    it('requirepass (the default user): the password in the URL or in redis.password', async () => {
      const url = `redis://:legacy-pass@127.0.0.1:${legacy.port}`;
      await roundTrip(await engine({ url }), await engine({ url }));
      const split = { url: `redis://127.0.0.1:${legacy.port}`, password: 'legacy-pass' };
      await roundTrip(await engine(split), await engine(split));
    });

    it('a wrong password: reads fall back to the loader, never throw', async () => {
      const e = await engine({ url: `redis://walcache:wrong@127.0.0.1:${acl.port}` });
      assert.equal(await e.ready(1_000), false);
      assert.equal(await e.getOrLoad('k', () => 'from the database'), 'from the database');
    });

    it('doctor checks the user may run what walcache needs on its prefix', async () => {
      const base = {
        prefix,
        databaseUrl: DATABASE_URL,
        accessLog: { sampleRate: 0 },
      };
      const asUser = (user: string, password: string) =>
        doctor({
          config: resolveConfig({
            ...base,
            redis: { url: `redis://${user}:${password}@127.0.0.1:${acl.port}` },
          }),
        });
      const good = await asUser('walcache', 'wc-pass');
      const ok = check(good.checks, 'redis-acl');
      assert.equal(ok.status, 'ok', ok.detail);
      assert.match(ok.detail, /walcache/);

      const narrow = await asUser('reader', 'rd-pass');
      const denied = check(narrow.checks, 'redis-acl');
      assert.equal(denied.status, 'fail');
      for (const command of ['evalsha', 'eval', 'publish', 'subscribe', 'scan', 'hincrby'])
        assert.match(denied.detail, new RegExp(`\\b${command}\\b`), denied.detail);
      assert.doesNotMatch(denied.detail, /\bget\b|\binfo\b/, 'what it may run is not listed');
      assert.match(denied.fix ?? '', /^ACL SETUSER reader /);
      assert.match(denied.fix ?? '', new RegExp(`~${prefix}:\\* &${prefix}:\\*`));
      assert.equal(narrow.ok, false);

      const wrongPrefix = await asUser('elsewhere', 'el-pass');
      const keys = check(wrongPrefix.checks, 'redis-acl');
      assert.equal(keys.status, 'fail');
      assert.match(keys.detail, /keys|channel/);
      assert.doesNotMatch(
        JSON.stringify(wrongPrefix),
        /el-pass|wc-pass|rd-pass/,
        'no password in the report',
      );
    });
  });

  describe('TLS', () => {
    let certs: TestCerts;
    let tls: PrivateRedis;
    let mutual: PrivateRedis;
    before(async () => {
      certs = makeCerts();
      const tlsArgs = (port: number, clients: 'no' | 'yes') => [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        certs.serverCert,
        '--tls-key-file',
        certs.serverKey,
        '--tls-ca-cert-file',
        certs.ca,
        '--tls-auth-clients',
        clients,
      ];
      tls = await startRedis((_dir, port) => tlsArgs(port, 'no'));
      mutual = await startRedis((_dir, port) => tlsArgs(port, 'yes'));
    });
    after(async () => {
      await tls?.stop();
      await mutual?.stop();
      certs?.remove();
    });

    it('rediss:// with redis.tls.ca (a path or the PEM text): fills, hits and the bus work', async () => {
      const url = `rediss://127.0.0.1:${tls.port}`;
      await roundTrip(
        await engine({ url, tls: { ca: certs.ca } }),
        await engine({ url, tls: { ca: certs.ca } }),
      );
      const pem = readFileSync(certs.ca, 'utf8');
      await roundTrip(
        await engine({ url, tls: { ca: pem } }),
        await engine({ url, tls: { ca: pem } }),
      );
    });

    it('without the CA the server is not trusted: reads fall back to the loader', async () => {
      const e = await engine({ url: `rediss://127.0.0.1:${tls.port}` });
      assert.equal(await e.ready(1_000), false);
      assert.equal(await e.getOrLoad('k', () => 'from the database'), 'from the database');
    });

    it('mutual TLS: a client certificate and key are presented; without them no connection', async () => {
      const url = `rediss://127.0.0.1:${mutual.port}`;
      const withCert = { url, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } };
      await roundTrip(await engine(withCert), await engine(withCert));
      const without = await engine({ url, tls: { ca: certs.ca } });
      assert.equal(await without.ready(1_000), false);
    });

    it('the job queues connect with the same TLS options, or jobs.redisTls', async () => {
      const config = resolveConfig(
        { prefix, redis: { url: `rediss://127.0.0.1:${tls.port}`, tls: { ca: certs.ca } } },
        {},
      );
      const queues = queueConnection(config, { blocking: false });
      clients.push(queues);
      await queues.connect();
      assert.equal(await queues.ping(), 'PONG');
      const separate = resolveConfig(
        {
          prefix,
          jobs: {
            redisUrl: `rediss://127.0.0.1:${mutual.port}`,
            redisTls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
          },
        },
        {},
      );
      const other = queueConnection(separate, { blocking: false });
      clients.push(other);
      await other.connect();
      assert.equal(await other.ping(), 'PONG');
    });

    it('doctor reaches a TLS Redis and checks its user', async () => {
      const report = await doctor({
        config: resolveConfig({
          prefix,
          databaseUrl: DATABASE_URL,
          redis: { url: `rediss://127.0.0.1:${tls.port}`, tls: { ca: certs.ca } },
        }),
      });
      assert.equal(check(report.checks, 'redis').status, 'ok');
      assert.equal(check(report.checks, 'redis-acl').status, 'ok');
    });

    it('bad TLS options are ConfigErrors naming the option', () => {
      const bad: Array<[WalcacheConfigInput, string, RegExp]> = [
        [
          { redis: { url: 'redis://127.0.0.1:1', tls: { ca: certs.ca } } },
          'redis.tls',
          /rediss:\/\//,
        ],
        [
          { redis: { url: 'rediss://127.0.0.1:1', tls: { ca: '/no/such/ca.pem' } } },
          'redis.tls.ca',
          /no such file/,
        ],
        [
          { redis: { url: 'rediss://127.0.0.1:1', tls: { cert: certs.clientCert } } },
          'redis.tls',
          /cert.*key/,
        ],
        [
          { jobs: { redisUrl: 'redis://127.0.0.1:1', redisTls: { ca: certs.ca } } },
          'jobs.redisTls',
          /rediss:\/\//,
        ],
      ];
      for (const [input, option, reason] of bad) {
        assert.throws(
          () => resolveConfig(input, {}),
          (e: unknown) => e instanceof ConfigError && e.option === option && reason.test(e.message),
          option,
        );
      }
    });
  });
});
