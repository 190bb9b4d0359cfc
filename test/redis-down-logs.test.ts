/**
 * When the cache Redis is down, the worker's log says which Redis it tried: its URL with
 * the password redacted (a cluster's nodes, a sentinel master's name and sentinels).
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { cacheEndpoint, redactedEndpoint } from '../src/config/redis-endpoint.js';
import { resolveConfig, type WalcacheConfigInput } from '../src/index.js';
import { freePort, Resources, uniquePrefix, waitFor } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { type PrivateRedis, startRedis } from './redis-servers.js';

/** A pino logger whose lines land in `lines` (parsed). */
function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n'))
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

describe('Redis down: the log names the Redis', () => {
  const res = new Resources();
  const scope = new PgScope('redislog');
  const workers: InvalidationWorker[] = [];
  const servers: PrivateRedis[] = [];
  before(() => scope.create('CREATE TABLE users (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);'));
  after(async () => {
    for (const w of workers) await w.stop();
    for (const s of servers) await s.stop();
    await res.close();
    await scope.close();
  });

  const input = (prefix: string, url: string) =>
    resolveConfig({
      prefix,
      databaseUrl: DATABASE_URL,
      redis: { url },
      defaultSchema: scope.schema,
      entities: { users: { table: 'users', key: 'id' } },
    });

  it('at start: the redacted URL of the Redis it cannot reach, never its password', async () => {
    const port = await freePort();
    const { logger, lines } = capture();
    const worker = new InvalidationWorker({
      config: input(uniquePrefix('redislog'), `redis://walcache:s3cret@127.0.0.1:${port}/0`),
      slot: scope.slot('_start'),
      logger,
      retryMs: 50,
    });
    workers.push(worker);
    void worker.start().catch(() => {});
    const named = () =>
      lines.find(
        (l) => l.level === 40 && String(l.msg).includes(`redis://walcache:***@127.0.0.1:${port}`),
      );
    await waitFor('a warning naming the Redis', () => named() !== undefined, 15_000).catch(() => {
      throw new Error(`no warning names the Redis:\n${lines.map((l) => l.msg).join('\n')}`);
    });
    assert.ok(worker.lastError?.message.includes(`redis://walcache:***@127.0.0.1:${port}`));
    await worker.stop();
    assert.doesNotMatch(JSON.stringify(lines), /s3cret/);
  });

  it('while running: applying invalidations names the Redis that went away', async () => {
    const server = await startRedis((_dir, port) => [
      '--port',
      String(port),
      '--requirepass',
      's3cret',
    ]);
    servers.push(server);
    const url = `redis://:s3cret@127.0.0.1:${server.port}`;
    const { logger, lines } = capture();
    const prefix = uniquePrefix('redislog');
    const worker = new InvalidationWorker({
      config: input(prefix, url),
      slot: scope.slot('_run'),
      logger,
    });
    workers.push(worker);
    await worker.start();
    await scope.q('INSERT INTO $schema.users VALUES (1, 0)');
    await waitFor('applied', () => worker.appliedLsn !== null, 10_000);
    server.signal('SIGKILL');
    await scope.q('UPDATE $schema.users SET n = n + 1 WHERE id = 1');
    const where = url.replace(':s3cret@', ':***@');
    await waitFor(
      'a warning naming the Redis',
      () =>
        lines.some(
          (l) =>
            l.level === 40 &&
            String(l.msg).startsWith('applying invalidations') &&
            String(l.msg).includes(where),
        ),
      15_000,
    ).catch(() => {
      throw new Error(`no warning names ${where}:\n${lines.map((l) => l.msg).join('\n')}`);
    });
    await worker.stop();
    assert.doesNotMatch(JSON.stringify(lines), /s3cret/);
  });
});

describe('redactedEndpoint', () => {
  it('a URL with its password redacted; a cluster by its nodes, a sentinel master by its name and sentinels, never a password', () => {
    const where = (redis: WalcacheConfigInput['redis']) =>
      redactedEndpoint(cacheEndpoint(resolveConfig({ redis })));
    assert.equal(
      where({ url: 'rediss://walcache:s3cret@cache.internal:6380/2' }),
      'rediss://walcache:***@cache.internal:6380/2',
    );
    assert.equal(where({ url: 'redis://127.0.0.1:6379' }), 'redis://127.0.0.1:6379');
    assert.equal(
      where({ cluster: { nodes: ['redis://10.0.0.5:7000', '10.0.0.6:7001'] }, password: 's3cret' }),
      'cluster 10.0.0.5:7000,10.0.0.6:7001',
    );
    assert.equal(
      where({
        sentinel: { name: 'mymaster', sentinels: ['10.0.0.7:26379'], sentinelPassword: 's3cret' },
        password: 's3cret',
      }),
      'sentinel master "mymaster" via 10.0.0.7:26379',
    );
  });
});
