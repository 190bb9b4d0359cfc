/**
 * A Redis that comes back without invalidations the worker already acknowledged (restarted
 * from an RDB snapshot, an AOF `everysec` tail lost, an async replica promoted) would serve
 * the old entries until their TTL. The worker compares the heartbeat in Redis with the
 * position it acknowledged, on reconnect and periodically: behind or missing, it bumps
 * the epoch, and every older entry reads as a miss.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { CacheEngine, entityKey, resolveConfig } from '../src/index.js';
import { freePort, sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';

function redisServer(port: number, dir: string): ChildProcess {
  return spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--dbfilename',
      'dump.rdb',
    ],
    { stdio: 'ignore' },
  );
}

describe('Redis rollback', () => {
  const scope = new PgScope('rollback');
  const dir = mkdtempSync(join(tmpdir(), 'walcache-rollback-'));
  let port = 0;
  let server: ChildProcess | undefined;
  let worker: InvalidationWorker | undefined;
  let engine: CacheEngine | undefined;
  before(async () => {
    await scope.create(`CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
      INSERT INTO users VALUES (1, 'old');`);
    port = await freePort();
    server = redisServer(port, dir);
  });
  after(async () => {
    await worker?.close();
    await engine?.close();
    server?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await scope.close();
  });

  it('a Redis restarted from a snapshot taken before an acknowledged invalidation: the epoch is bumped, the old entry is a miss', {
    timeout: 90_000,
  }, async () => {
    const url = `redis://127.0.0.1:${port}`;
    const admin = new Redis(url, { maxRetriesPerRequest: null });
    admin.on('error', () => {});
    await waitFor('redis up', async () => (await admin.ping().catch(() => '')) === 'PONG', 10_000);
    const config = resolveConfig({
      prefix: uniquePrefix('rollback'),
      redis: { url },
      defaultSchema: scope.schema,
      cache: { earlyRefreshBeta: 0 },
      entities: { users: { table: 'users', key: 'id' } },
    });
    worker = new InvalidationWorker({
      config,
      slot: scope.slot(),
      heartbeatIntervalMs: 200,
      statusIntervalMs: 200,
    });
    await worker.start();
    engine = new CacheEngine({ config: { ...config, l1: { ...config.l1, enabled: false } } });
    assert.ok(await engine.ready());
    const key = entityKey('users', [1]);
    const load = async () => (await scope.q('SELECT name FROM $schema.users WHERE id = 1')).rows[0];
    assert.equal((await engine.getOrLoad(key, load))?.name, 'old');
    await admin.save(); // the snapshot holds the entry and an older heartbeat

    await scope.q(`UPDATE $schema.users SET name = 'new' WHERE id = 1`);
    await scope.waitCaughtUp(scope.slot()); // the tombstone was applied and acknowledged
    assert.equal((await engine.getOrLoad(key, load))?.name, 'new');
    await sleep(300);

    // Redis dies and comes back from the snapshot: the tombstone and the newer fill are gone.
    server?.kill('SIGKILL');
    await sleep(200);
    server = redisServer(port, dir);
    await waitFor(
      'redis back',
      async () => (await admin.ping().catch(() => '')) === 'PONG',
      10_000,
    );
    await waitFor(
      'the old entry is no longer served',
      async () => (await engine?.getOrLoad(key, load))?.name === 'new',
      10_000,
    );
    admin.disconnect();
  });
});
