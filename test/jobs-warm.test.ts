import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ConfigError,
  createRepository,
  defineConfig,
  entityKey,
  runMigrations,
  runWarmer,
  WarmerSqlError,
  type WarmProgress,
} from '../src/index.js';
import { REDIS_CONFIG, Resources, runCli, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { countingDb, SelectGate, TEST_TABLES, warmerSqlFiles } from './repo-helpers.js';

/**
 * Warmers run directly (`runWarmer`) and through the CLI (`walcache warm --now`).
 *
 * The packaged `sql/hot-keys.sql` names `walcache.access_log`; each test has the access
 * log in its own schema, so the warmers here use a copy of that file written to a temp
 * dir with the schema replaced (what a user with another walcache schema does too).
 */
describe('warmers', () => {
  const res = new Resources();
  const scope = new PgScope('jwarm');
  const prefix = res.track(uniquePrefix('jwarm'));
  const reader = countingDb(scope.schema);
  const writer = countingDb(scope.schema);
  const sqlFiles = warmerSqlFiles(scope.schema);
  const { dir, hotKeys } = sqlFiles;
  const sqlFile = sqlFiles.file;
  const baseConfig = {
    prefix,
    redis: REDIS_CONFIG,
    databaseUrl: DATABASE_URL,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
  } as const;
  const config = defineConfig({
    ...baseConfig,
    entities: {
      users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
      orders: { table: 'orders', key: 'id' },
      labels: { table: 'labels', key: ['ns', 'name'] },
    },
    warmers: {
      hot: { schedule: { every: 60_000 }, sql: hotKeys, entity: 'users', batchSize: 3 },
      composite: {
        schedule: { cron: '0 3 * * *' },
        sql: sqlFile(
          'composite.sql',
          `SELECT k AS key FROM unnest(ARRAY[
             $1::text || ':a%3Ab:x%20y', $1::text || ':plain:one', 'users:1',
             $1::text || ':onlyone', $1::text || ':bad%ZZ:x'
           ]) AS k LIMIT $2`,
        ),
        entity: 'labels',
      },
      ids: {
        schedule: { every: 60_000 },
        sql: sqlFile(
          'ids.sql',
          'SELECT id FROM users WHERE id <= 4 AND $1::text IS NOT NULL ORDER BY id LIMIT $2',
        ),
        entity: 'users',
      },
      one: {
        schedule: { every: 60_000 },
        sql: sqlFile('one.sql', `SELECT $1::text || ':30' AS key LIMIT $2`),
        entity: 'users',
      },
      broken: {
        schedule: { every: 60_000 },
        sql: sqlFile('broken.sql', 'SELECT key FROM no_such_table WHERE $1::text = $1 LIMIT $2'),
        entity: 'users',
      },
      missingFile: { schedule: { every: 60_000 }, sql: join(dir, 'nope.sql'), entity: 'users' },
    },
  });

  before(async () => {
    await scope.create(`${TEST_TABLES}
      CREATE TABLE labels (ns text, name text, note text, PRIMARY KEY (ns, name));`);
    await runMigrations(scope.pool, { schema: scope.schema });
    await scope.q(`
      INSERT INTO $schema.users (id, email, name)
        SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 50) g;
      INSERT INTO $schema.orders (id, user_id) VALUES (3, 1);
      INSERT INTO $schema.labels (ns, name, note) VALUES ('a:b', 'x y', 'encoded'), ('plain', 'one', 'plain');
      -- the access log: ten hot users, a user with no row, a unique-column key, another
      -- entity's key, and a key hot only two days ago
      INSERT INTO $schema.access_log (key, entity, hits, bucket)
        SELECT 'users:' || g, 'users', 100 - g, date_trunc('hour', now()) FROM generate_series(1, 10) g;
      INSERT INTO $schema.access_log (key, entity, hits, bucket) VALUES
        ('users:999', 'users', 5, date_trunc('hour', now())),
        ('users:by:email:u1%40x', 'users', 7, date_trunc('hour', now())),
        ('orders:3', 'orders', 50, date_trunc('hour', now())),
        ('users:20', 'users', 1000, now() - interval '48 hours');`);
  });
  after(async () => {
    await reader.db.destroy();
    await writer.db.destroy();
    sqlFiles.remove();
    await res.close();
    await scope.close();
  });

  it('loads the hottest keys in batches through the fill path; a second run skips them all', async () => {
    const repo = createRepository({ db: reader.db, config });
    try {
      const progress: WarmProgress[] = [];
      const summary = await runWarmer({
        name: 'hot',
        config: repo.config,
        repo,
        onProgress: (p) => {
          progress.push(p);
        },
      });
      assert.deepEqual(
        { ...summary, durationMs: 0 },
        {
          warmer: 'hot',
          entity: 'users',
          keys: 11,
          loaded: 10,
          skipped: 0,
          missing: 1,
          failed: 0,
          ignored: 1, // the unique-column key
          durationMs: 0,
        },
      );
      assert.deepEqual(
        progress.map((p) => [p.done, p.total]),
        [
          [3, 11],
          [6, 11],
          [9, 11],
          [11, 11],
        ],
        'one progress report per batch of 3',
      );
      assert.equal(progress.at(-1)?.loaded, 10);

      // Another process sees them in L2, and reads them without a query.
      const fresh = await res.readyEngine(prefix, { l1: { enabled: false } });
      for (let id = 1; id <= 10; id++) {
        const row = await fresh.get<{ name: string }>(entityKey('users', [id]));
        assert.equal(row?.name, `user ${id}`, `users:${id} is an L2 hit`);
      }
      assert.equal(await fresh.get(entityKey('users', [20])), undefined, 'old buckets are not hot');
      const counted = countingDb(scope.schema);
      const other = createRepository({ db: counted.db, config });
      try {
        assert.ok(await other.engine.ready());
        await other.ready(); // the catalog's column types: read once, before the counted reads
        counted.queries.length = 0;
        for (let id = 1; id <= 10; id++) await other.users.findById(id);
        assert.equal(counted.queries.length, 0, 'every warmed row is read from the cache');
      } finally {
        await other.close();
        await counted.db.destroy();
      }

      const again = await runWarmer({ name: 'hot', config: repo.config, repo });
      assert.equal(again.keys, 11);
      assert.equal(again.loaded, 0);
      assert.equal(again.skipped, 10, 'everything cached is skipped');
      assert.equal(again.missing, 1, 'a key with no row is looked up again (no negative caching)');
    } finally {
      await repo.close();
    }
  });

  it('composite keys are percent-decoded; an `id` column works too; foreign or malformed keys are ignored', async () => {
    const repo = createRepository({ db: reader.db, config });
    try {
      const composite = await runWarmer({ name: 'composite', config: repo.config, repo });
      assert.equal(composite.keys, 2);
      assert.equal(composite.loaded, 2);
      assert.equal(composite.ignored, 3, 'users:1, a key of one part, a bad percent escape');
      const fresh = await res.readyEngine(prefix, { l1: { enabled: false } });
      assert.equal(
        (await fresh.get<{ note: string }>(entityKey('labels', ['a:b', 'x y'])))?.note,
        'encoded',
      );
      assert.equal(
        (await fresh.get<{ note: string }>(entityKey('labels', ['plain', 'one'])))?.note,
        'plain',
      );

      await repo.engine.delete([1, 2, 3, 4].map((id) => entityKey('users', [id])));
      const ids = await runWarmer({ name: 'ids', config: repo.config, repo });
      assert.equal(ids.keys, 4);
      assert.equal(ids.loaded, 4);
    } finally {
      await repo.close();
    }
  });

  it('a key invalidated while the warm loads it is not filled with the old row', async () => {
    const gate = new SelectGate();
    const repo = createRepository({ db: reader.db.withPlugin(gate), config });
    const other = createRepository({ db: writer.db, config });
    try {
      assert.ok(await repo.engine.ready());
      gate.armed = true;
      // The warmer's own SQL runs on another Kysely, so the gate holds the load itself.
      const warming = runWarmer({ name: 'one', config: repo.config, repo, db: writer.db });
      await gate.entered.promise; // the load has read 'user 30'
      await other.users.update(30, { name: 'new 30' });
      gate.release.resolve();
      const summary = await warming;
      assert.equal(summary.keys, 1);
      assert.equal(summary.failed, 0);

      const fresh = await res.readyEngine(prefix, { l1: { enabled: false } });
      const cached = await fresh.get<{ name: string }>(entityKey('users', [30]));
      assert.notEqual(cached?.name, 'user 30', 'the old row was not filled');
      assert.equal((await repo.users.findById(30))?.name, 'new 30');
    } finally {
      await repo.close();
      await other.close();
    }
  });

  it('bad input: unknown warmer, failing SQL, missing file', async () => {
    const repo = createRepository({ db: reader.db, config });
    try {
      await assert.rejects(
        runWarmer({ name: 'nope', config: repo.config, repo }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.option === 'warmers.nope' &&
          /`hot`, `composite`/.test(error.message),
      );
      await assert.rejects(
        runWarmer({ name: 'broken', config: repo.config, repo }),
        (error: unknown) =>
          error instanceof WarmerSqlError &&
          /Warmer "broken"/.test(error.message) &&
          /no_such_table/.test(error.message),
      );
      await assert.rejects(
        runWarmer({ name: 'missingFile', config: repo.config, repo }),
        (error: unknown) =>
          error instanceof ConfigError && error.option === 'warmers.missingFile.sql',
      );
    } finally {
      await repo.close();
    }
  });

  it('resolves a bare `sql` name in the package sql/ folder (the default hot-keys.sql)', async () => {
    const repo = createRepository({
      db: reader.db,
      config: defineConfig({
        ...baseConfig,
        entities: { users: { table: 'users', key: 'id' } },
        warmers: { packaged: { schedule: { every: 60_000 }, entity: 'users' } },
      }),
    });
    try {
      // The packaged file names walcache.access_log: found and run, whether or not that
      // table exists in this database.
      const outcome = await runWarmer({ name: 'packaged', config: repo.config, repo }).then(
        (summary) => summary.warmer,
        (error: unknown) => error,
      );
      if (outcome !== 'packaged') {
        assert.ok(outcome instanceof WarmerSqlError, String(outcome));
        assert.match(outcome.file, /sql[\\/]hot-keys\.sql$/);
      }
    } finally {
      await repo.close();
    }
  });

  describe('walcache warm --now', () => {
    const cli = runCli;
    const configFile = join(dir, 'walcache.config.json');
    before(() => {
      writeFileSync(
        configFile,
        JSON.stringify({
          ...baseConfig,
          entities: { users: { table: 'users', key: 'id', deny: ['password_hash'] } },
          warmers: {
            hot: { schedule: { every: 60_000 }, sql: hotKeys, entity: 'users', batchSize: 4 },
            broken: config.warmers.broken,
          },
        }),
      );
    });

    it('an unknown warmer: exit 1 with one line', async () => {
      const { code, stdout, stderr } = await cli(['warm', 'nope', '--now', '--config', configFile]);
      assert.equal(code, 1);
      assert.equal(stdout, '');
      const lines = stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0] ?? '', /^walcache: .*`warmers\.nope`.*`hot`, `broken`/);
    });

    it('runs a warmer here: progress lines (no TTY) and the summary', async () => {
      await (await res.readyEngine(prefix)).delete([5, 6].map((id) => entityKey('users', [id])));
      const { code, stdout, stderr } = await cli(['warm', 'hot', '--now', '--config', configFile]);
      assert.equal(code, 0, stderr);
      assert.match(stdout, /^✔ hot \(users\): 11 keys: 2 loaded, 8 skipped, 1 missing, 0 failed/);
      assert.match(stderr, /^hot: 4\/11 loaded \d+ skipped \d+ failed 0$/m);
      assert.match(stderr, /^hot: 11\/11 /m);
    });

    it('every warmer: a failing one is reported and exits 1, the others still run', async () => {
      const { code, stdout } = await cli(['warm', '--now', '--config', configFile]);
      assert.equal(code, 1);
      assert.match(stdout, /^✔ hot \(users\)/m);
      assert.match(stdout, /^✖ broken: Warmer "broken": .*no_such_table/m);
    });
  });
});
