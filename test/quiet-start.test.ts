import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { CacheEngine, ConfigError, createRepository, defineConfig } from '../src/index.js';
import { freePort, REDIS_URL, Resources, sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';
import { SlowProxy } from './slow-proxy.js';

/** A pino logger writing parsed lines into `lines` (level 50 is error). */
function capturingLogger(): {
  logger: pino.Logger;
  lines: Array<{ level: number; msg: string }>;
} {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino(
    { level: 'trace' },
    { write: (line: string) => void lines.push(JSON.parse(line)) },
  );
  return { logger, lines };
}

const errorLines = (lines: ReadonlyArray<{ level: number; msg: string }>) =>
  lines.filter((l) => l.level >= 50);

describe('a quiet start: reads before Redis is connected', () => {
  const res = new Resources();
  const scope = new PgScope('quiet');
  const { db } = countingDb(scope.schema);

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`INSERT INTO $schema.users (id, email, name)
      SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 10) g`);
  });
  after(async () => {
    await db.destroy();
    await res.close();
    await scope.close();
  });

  const configFor = (url: string, prefix: string, breaker = {}) =>
    defineConfig({
      prefix: res.track(prefix),
      redis: { url },
      defaultSchema: scope.schema,
      accessLog: { sampleRate: 0 },
      breaker,
      entities: { users: { table: 'users', key: 'id' } },
    });

  it('reads made at once, while a healthy Redis is still connecting, log nothing and use the cache', async () => {
    // The connection's first reply comes 150 ms late (within the command timeout): the reads below start before it.
    const proxy = await SlowProxy.start(REDIS_URL, 150);
    const { logger, lines } = capturingLogger();
    const repo = createRepository({
      db,
      config: configFor(proxy.url, uniquePrefix('quiet')),
      logger,
    });
    const l2Errors: string[] = [];
    repo.engine.events.on('l2-error', (op, error) => l2Errors.push(`${op}: ${String(error)}`));
    let fills = 0;
    repo.engine.events.on('fill', () => fills++);
    try {
      const rows = await Promise.all([1, 2, 3].map((id) => repo.users.findById(id)));
      assert.deepEqual(
        rows.map((r) => r?.name),
        ['user 1', 'user 2', 'user 3'],
      );
      assert.deepEqual(l2Errors, [], 'no Redis error while Redis is healthy');
      assert.deepEqual(errorLines(lines), []);
      assert.equal(repo.engine.breakerState, 'closed');
      assert.equal(fills, 3, 'the reads waited for the connection and filled the cache');
    } finally {
      await repo.close();
      await proxy.close();
    }
  });

  it('ready() resolves true once the catalog is read and Redis is connected', async () => {
    const proxy = await SlowProxy.start(REDIS_URL, 150);
    const repo = createRepository({ db, config: configFor(proxy.url, uniquePrefix('quiet')) });
    try {
      const started = Date.now();
      assert.equal(await repo.ready(), true);
      assert.ok(Date.now() - started >= 100, 'it waited for the connection');
      assert.equal(repo.engine.redis.status, 'ready');
    } finally {
      await repo.close();
      await proxy.close();
    }
  });

  it('with Redis down: ready() resolves false, reads go to the database, the outage is logged once, and its end', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    let server: ChildProcess | undefined;
    const { logger, lines } = capturingLogger();
    // A short cooldown: the breaker re-opens several times below, one outage all along.
    const repo = createRepository({
      db,
      config: configFor(url, uniquePrefix('quiet'), { cooldownMs: 50 }),
      logger,
    });
    try {
      const started = Date.now();
      assert.equal(await repo.ready(300), false);
      assert.ok(Date.now() - started < 2_000, 'ready(300) gave up after its timeout');
      for (let i = 0; i < 20; i++) {
        assert.equal((await repo.users.findById(1 + (i % 10)))?.name, `user ${1 + (i % 10)}`);
        await sleep(15);
      }
      const errors = errorLines(lines);
      assert.equal(errors.length, 1, JSON.stringify(lines));
      assert.match(errors[0]?.msg ?? '', /Redis/);
      assert.match(errors[0]?.msg ?? '', /database/);
      assert.ok(JSON.stringify(errors[0]).includes(new URL(url).host), 'the line names the Redis');
      assert.equal(repo.engine.breakerState === 'closed', false);

      // Redis comes up on that port: the next probe closes the breaker, said once.
      server = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', ''],
        {
          stdio: 'ignore',
        },
      );
      await waitFor(
        'the breaker closes',
        async () => {
          // forceFresh: an L1 hit (the bus is back first) would not probe Redis.
          await repo.users.findById(1, { forceFresh: true });
          await sleep(20);
          return repo.engine.breakerState === 'closed';
        },
        10_000,
      );
      const back = lines.filter((l) => l.level === 30 && /answers again/.test(l.msg));
      assert.equal(back.length, 1, JSON.stringify(lines));
      assert.equal(errorLines(lines).length, 1);
    } finally {
      await repo.close();
      server?.kill('SIGKILL');
    }
  });

  it('refuses a bad ready() timeout, and a logger next to a shared engine', async () => {
    const config = configFor(REDIS_URL, uniquePrefix('quiet'));
    const repo = createRepository({ db, config });
    const engine = new CacheEngine({ config });
    try {
      for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY])
        await assert.rejects(repo.ready(bad), (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.match(e.message, /ready\(timeoutMs\)/);
          assert.match(e.message, /repo\.ready\(5_000\)/);
          return true;
        });
      const { logger } = capturingLogger();
      assert.throws(
        () => createRepository({ db, config, cache: engine, logger }),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.option === 'logger' &&
          /new CacheEngine\(\{ config, logger \}\)/.test(e.message),
      );
    } finally {
      await repo.close();
      await engine.close();
    }
  });
});
