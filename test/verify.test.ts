import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import {
  ConfigError,
  createRepository,
  DatabaseUnavailableError,
  defineConfig,
  RedisUnavailableError,
  resolveConfig,
  UnknownEntityError,
  type VerifyReport,
  verify,
} from '../src/index.js';
import { tableResetTag } from '../src/keys/redis-keys.js';
import { freePort, REDIS_CONFIG, Resources, runCli, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

describe('walcache verify', () => {
  const res = new Resources();
  const scope = new PgScope('verify');
  const prefix = res.track(uniquePrefix('verify'));
  const { db } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    databaseUrl: DATABASE_URL,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    // Misses are cached too, so "not found" entries are checked against their rows.
    cache: { earlyRefreshBeta: 0, negativeTtlMs: 60_000 },
    accessLog: { sampleRate: 0 },
    entities: {
      users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
      orders: { table: 'orders', key: 'id' },
    },
    invalidateBy: { orders: ['user_id'] },
  });
  const resolved = resolveConfig(config);
  const repo = createRepository({ db, config });
  const dir = mkdtempSync(join(tmpdir(), 'walcache-verify-'));
  const configFile = (name: string, extra: Record<string, unknown> = {}) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ ...config, ...extra }));
    return file;
  };
  const usersTable = `${scope.schema}.users`;
  let worker: InvalidationWorker | undefined;
  const startWorker = async () => {
    worker = new InvalidationWorker({
      config: resolved,
      slot: scope.slot(),
      heartbeatIntervalMs: 200,
    });
    await worker.start();
  };
  const keysOf = (entries: VerifyReport['staleEntries']) =>
    entries.map((e) => `${e.key} ${e.reason} ${e.columns.join(',')}`.trim()).sort();

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`
      INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 20) g;
      INSERT INTO $schema.orders (id, user_id, total) VALUES (1, 7, 10), (2, 7, 20), (3, 8, 5);`);
    await startWorker();
  });
  after(async () => {
    await worker?.close();
    await repo.close();
    await db.destroy();
    await res.close();
    await scope.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a cache filled by the repository and kept by the worker has no stale entry; tombstones, queries and misses are skipped, not checked', async () => {
    for (let id = 1; id <= 10; id++) assert.ok(await repo.users.findById(id));
    assert.ok(await repo.users.findBy('email', 'u11@x'));
    assert.equal(await repo.users.findById(999), undefined, 'a cached "not found"');
    assert.ok(await repo.orders.findById(1));
    await repo.cached(db.selectFrom('orders').selectAll().where('user_id', '=', 7));
    // A row changed with plain SQL: the worker tombstones its entry.
    await scope.q(`UPDATE $schema.users SET name = 'renamed' WHERE id = 2`);
    await scope.waitCaughtUp(scope.slot());

    const report = await verify(resolved, { waitMs: 10_000 });
    assert.equal(report.position.reached, true, 'the worker reached the position');
    assert.equal(report.stale, 0, JSON.stringify(report.staleEntries));
    assert.equal(report.unconfirmed, 0);
    // users 1 and 3..10, the unique lookup, the negative entry for 999, order 1.
    assert.equal(report.checked, 12);
    // users:2 and users:by:email:u2%40x: the worker tombstones the row's unique keys too.
    assert.equal(report.skipped.tombstone, 2, 'tombstoned by the worker');
    assert.equal(report.skipped.queries, 1);
    assert.equal(report.examined, 14);

    const one = await verify(resolved, { sample: 1, entity: 'orders' });
    assert.equal(one.examined, 1);
    assert.equal(one.checked, 1);
  });

  it('entries planted through the engine’s fill path, which no change will ever invalidate, are exactly the stale ones', async () => {
    const tags = [tableResetTag(usersTable)];
    const wrong = { id: '15', email: 'u15@x', name: 'not the row', tenant_id: 1 };
    assert.equal((await repo.engine.getOrLoad('users:15', () => wrong, { tags })).name, wrong.name);
    await repo.engine.getOrLoad('users:16', () => undefined, { tags });
    await repo.engine.getOrLoad(
      'users:777',
      () => ({ id: '777', email: 'ghost@x', name: 'ghost', tenant_id: 1 }),
      { tags },
    );

    const report = await verify(resolved, { waitMs: 10_000 });
    assert.equal(report.position.reached, true);
    assert.deepEqual(keysOf(report.staleEntries), [
      'users:15 differs name',
      'users:16 exists',
      'users:777 deleted',
    ]);
    assert.equal(report.stale, 3);
    assert.equal(report.checked, 15);

    const cli = await runCli([
      'verify',
      '--config',
      configFile('ok'),
      '--entity',
      'users',
      '--metrics-file',
      join(dir, 'verify.prom'),
    ]);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stdout, /✖ stale users:15: columns name differ/);
    assert.match(cli.stdout, /3 stale/);
    assert.match(
      readFileSync(join(dir, 'verify.prom'), 'utf8'),
      /^walcache_verify_stale_entries 3$/m,
    );

    // Invalidated by hand, they are skipped as tombstones and the check is clean again.
    await repo.engine.delete(['users:15', 'users:16', 'users:777']);
    const clean = await runCli(['verify', '--config', configFile('ok'), '--json']);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    const json = JSON.parse(clean.stdout) as VerifyReport;
    assert.equal(json.stale, 0);
    assert.equal(json.skipped.tombstone, 5);
  });

  it('a row changed while the worker is stopped is reported as unconfirmed (maybe lag), not stale', async () => {
    assert.equal((await repo.users.findById(12))?.name, 'user 12');
    await worker?.close();
    try {
      await scope.q(`UPDATE $schema.users SET name = 'moved on' WHERE id = 12`);
      const report = await verify(resolved, { waitMs: 300 });
      assert.equal(report.position.reached, false);
      assert.equal(report.stale, 0);
      assert.deepEqual(keysOf(report.unconfirmedEntries), ['users:12 differs name']);
    } finally {
      await startWorker();
    }
    await scope.waitCaughtUp(scope.slot());
    const after = await verify(resolved, { waitMs: 10_000 });
    assert.equal(after.stale + after.unconfirmed, 0, 'the restarted worker replayed the change');
  });

  it('bad input: a typed error from verify(), one line from the CLI', async () => {
    await assert.rejects(verify(resolved, { sample: 0 }), ConfigError);
    await assert.rejects(verify(resolved, { sample: -3 }), ConfigError);
    await assert.rejects(verify(resolved, { sample: 1.5 }), ConfigError);
    await assert.rejects(verify(resolved, { entity: 'nope' }), UnknownEntityError);
    const deadPort = await freePort();
    await assert.rejects(
      verify(resolveConfig({ ...config, redis: { url: `redis://127.0.0.1:${deadPort}` } })),
      RedisUnavailableError,
    );
    await assert.rejects(
      verify(resolveConfig({ ...config, databaseUrl: `postgres://127.0.0.1:${deadPort}/test` })),
      DatabaseUnavailableError,
    );

    const runs = await Promise.all([
      runCli(['verify', '--config', configFile('ok'), '--sample', '0']),
      runCli(['verify', '--config', configFile('ok'), '--sample', '-2']),
      runCli(['verify', '--config', configFile('ok'), '--entity', 'nope']),
      runCli([
        'verify',
        '--config',
        configFile('noredis', { redis: { url: `redis://127.0.0.1:${deadPort}` } }),
      ]),
      runCli([
        'verify',
        '--config',
        configFile('nopg', { databaseUrl: `postgres://127.0.0.1:${deadPort}/test` }),
      ]),
    ]);
    const expected = [
      /--sample.*whole number/,
      /--sample.*whole number|unknown option/,
      /Unknown entity "nope"/,
      /Redis is unavailable/,
      /PostgreSQL at .* is unavailable/,
    ];
    runs.forEach((run, i) => {
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
      assert.match(run.stderr, expected[i] as RegExp);
    });
  });
});
