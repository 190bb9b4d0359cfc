/**
 * Configuration gaps that would leave entries stale silently: each is found by the worker
 * at start (it refuses, naming the fix), by `walcache doctor`, and where it can be fixed,
 * by `walcache setup`. And a gap that opens while the worker runs (REPLICA IDENTITY reset
 * by a migration) falls back to the table's reset tag instead of missing the old key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { pgConfig } from '../src/config/database.js';
import {
  createRepository,
  defineConfig,
  doctor,
  InvalidQueryError,
  resolveConfig,
  SetupError,
  setup,
  type WalcacheConfigInput,
} from '../src/index.js';
import { REDIS_CONFIG, Resources, uniquePrefix, waitFor } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: a dynamic schema of the test's own
type AnyDb = any;

describe('configuration gaps are found, not served stale', () => {
  const res = new Resources();
  const scope = new PgScope('gaps');
  const workers: InvalidationWorker[] = [];
  const input = (more: WalcacheConfigInput): WalcacheConfigInput => ({
    prefix: res.track(uniquePrefix('gaps')),
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    ...more,
  });
  const config = (more: WalcacheConfigInput) => resolveConfig(input(more));
  const refusal = async (
    input: WalcacheConfigInput,
    options: { decoder?: 'pgoutput'; publication?: string } = {},
  ) => {
    const worker = new InvalidationWorker({
      config: config(input),
      slot: scope.slot(`_${workers.length}`),
      ...options,
    });
    workers.push(worker);
    const error = await worker.start().then(
      () => assert.fail('the worker started'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof SetupError, String(error));
    return error;
  };
  const doctorFails = async (
    input: WalcacheConfigInput,
    name: string,
    options: { decoder?: 'pgoutput'; publication?: string } = {},
  ) => {
    const report = await doctor({ config: config(input), slot: scope.slot('_doctor'), ...options });
    const failed = report.checks.filter((c) => c.status === 'fail' && c.name === name);
    assert.ok(
      failed.length > 0,
      `doctor: no failing ${name} check in ${JSON.stringify(report.checks, null, 1)}`,
    );
    return failed;
  };

  /** A Kysely on a pool of its own whose search_path is `searchPath`; `close` ends both. */
  const openDb = (searchPath = scope.schema) => {
    const pool = new pg.Pool({
      ...pgConfig(DATABASE_URL),
      max: 2,
      options: `-c search_path=${searchPath}`,
    });
    pool.on('error', () => {});
    return new Kysely<AnyDb>({ dialect: new PostgresDialect({ pool }) });
  };

  before(() =>
    scope.create(`
      CREATE TABLE posts (id int PRIMARY KEY, slug text UNIQUE NOT NULL, title text);
      INSERT INTO posts VALUES (1, 'hello', 'Hello');
      CREATE TABLE events (id int, at date NOT NULL, kind text) PARTITION BY RANGE (at);
      CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE VIEW recent_posts AS SELECT * FROM posts WHERE id > 0;
      CREATE TABLE docs (id int PRIMARY KEY, tags text[], body jsonb, ttl interval);
      CREATE PUBLICATION ${scope.schema}_pub FOR TABLE posts;`),
  );
  after(async () => {
    for (const w of workers) await w.close();
    await scope.q(`DROP PUBLICATION IF EXISTS ${scope.schema}_pub`);
    await res.close();
    await scope.close();
  });

  it('an entity keyed by a column that is not the replica identity: refused until FULL; setup sets it', async () => {
    const input = { entities: { posts: { table: 'posts', key: 'slug' } } };
    const error = await refusal(input);
    assert.match(
      error.message,
      new RegExp(
        `${scope.schema}\\.posts needs REPLICA IDENTITY FULL: the worker needs the old values of slug`,
      ),
    );
    assert.match(error.fix, /ALTER TABLE .*"posts" REPLICA IDENTITY FULL/);
    const [check] = await doctorFails(input, 'replica-identity');
    assert.match(check?.detail ?? '', /old values of slug/);
    const report = await setup({
      config: config(input),
      slot: scope.slot('_setup'),
      publication: `${scope.schema}_pub2`,
      walcacheSchema: scope.schema,
    });
    assert.ok(
      report.steps.some(
        (s) => s.step === 'replica-identity' && s.status === 'changed' && /slug/.test(s.detail),
      ),
      JSON.stringify(report.steps),
    );
    await scope.q(`DROP PUBLICATION IF EXISTS ${scope.schema}_pub2`);
  });

  it('renaming the key of a row evicts the old key; with the identity reset while the worker runs, the table’s reset tag does', async () => {
    await scope.q('ALTER TABLE $schema.posts REPLICA IDENTITY FULL');
    const cfg = defineConfig({
      ...input({}),
      entities: { posts: { table: 'posts', key: 'slug' } },
    });
    const worker = new InvalidationWorker({
      config: resolveConfig(cfg),
      slot: scope.slot('_run'),
      heartbeatIntervalMs: 200,
    });
    workers.push(worker);
    await worker.start();
    const db = openDb();
    const repo = createRepository({ db, config: cfg });
    try {
      assert.equal((await repo.posts.findById('hello' as never))?.title, 'Hello');
      await scope.q(`UPDATE $schema.posts SET slug = 'hello-2' WHERE id = 1`);
      await waitFor(
        'the old slug evicted (FULL)',
        async () => (await repo.posts.findById('hello' as never)) === undefined,
        5_000,
      );

      // A migration resets the identity while the worker runs: the old image has only `id`.
      assert.equal((await repo.posts.findById('hello-2' as never))?.title, 'Hello');
      await scope.q('ALTER TABLE $schema.posts REPLICA IDENTITY DEFAULT');
      const problems: unknown[] = [];
      worker.events.on('failure', (kind, e) => kind === 'mapping' && problems.push(e));
      await scope.q(`UPDATE $schema.posts SET slug = 'hello-3' WHERE id = 1`);
      await waitFor(
        'the old slug evicted (reset tag)',
        async () => (await repo.posts.findById('hello-2' as never)) === undefined,
        5_000,
      );
      assert.ok(problems.length > 0, 'the gap is reported');
      assert.match(String(problems[0]), /without the old value of `slug`/);
    } finally {
      await repo.close();
      await db.destroy();
    }
  });

  it('ALTER TABLE that rewrites values (no row change in the WAL) resets the table through setup’s event trigger', async () => {
    await scope.q(`CREATE TABLE $schema.notes (id int PRIMARY KEY, body text)`);
    await scope.q(`INSERT INTO $schema.notes VALUES (1, 'quiet')`);
    const cfg = defineConfig({ ...input({}), entities: { notes: { table: 'notes', key: 'id' } } });
    const report = await setup({
      config: resolveConfig(cfg),
      slot: scope.slot('_ddl'),
      publication: `${scope.schema}_pub4`,
      walcacheSchema: scope.schema,
    });
    assert.ok(
      report.steps.some((s) => s.step === 'ddl-trigger' && ['created', 'ok'].includes(s.status)),
      JSON.stringify(report.steps),
    );
    const worker = new InvalidationWorker({
      config: resolveConfig(cfg),
      slot: scope.slot('_ddl'),
      heartbeatIntervalMs: 200,
    });
    workers.push(worker);
    await worker.start();
    const db = openDb();
    const repo = createRepository({ db, config: cfg });
    try {
      assert.equal((await repo.notes.findById(1))?.body, 'quiet');
      await scope.q('ALTER TABLE $schema.notes ALTER COLUMN body TYPE text USING upper(body)');
      await waitFor(
        'the rewritten row evicted',
        async () => (await repo.notes.findById(1))?.body === 'QUIET',
        5_000,
      );
    } finally {
      await repo.close();
      await db.destroy();
      await scope.q(`DROP PUBLICATION IF EXISTS ${scope.schema}_pub4`);
    }
  });

  it('a partitioned table, a view, and key or tag columns of types that cannot be keys are refused with the column named', async () => {
    const partitioned = await refusal({ invalidateBy: { events: ['kind'] } });
    assert.match(partitioned.message, /events is a partitioned table/);
    assert.match(partitioned.fix, /partitions/);
    const view = await refusal({ invalidateBy: { recent_posts: [] } });
    assert.match(view.message, /recent_posts is a view/);
    assert.match(view.fix, /base tables.*`tables: \[\.\.\.\]`/);
    const types = await refusal({
      entities: { docs: { table: 'docs', key: 'id', unique: ['tags'] } },
      invalidateBy: { docs: ['body', 'ttl'] },
    });
    assert.match(types.message, /docs\.tags is an array/);
    assert.match(types.message, /docs\.body is jsonb/);
    assert.match(types.message, /docs\.ttl is an interval/);
    await doctorFails({ invalidateBy: { recent_posts: [] } }, 'table');
    const report = await setup({
      config: config({ invalidateBy: { events: ['kind'] } }),
      slot: scope.slot('_setup2'),
      publication: `${scope.schema}_pub3`,
      walcacheSchema: scope.schema,
      dryRun: true,
    });
    assert.ok(
      report.steps.some(
        (s) => s.step === 'table' && s.status === 'error' && /partitioned/.test(s.detail),
      ),
    );
  });

  it('pgoutput: a configured table the publication does not send is found at start and by doctor', async () => {
    await scope.q('CREATE TABLE $schema.tags (id int PRIMARY KEY)');
    const input = {
      entities: { posts: { table: 'posts', key: 'id' }, tags: { table: 'tags', key: 'id' } },
    };
    const options = { decoder: 'pgoutput' as const, publication: `${scope.schema}_pub` };
    const error = await refusal(input, options);
    assert.match(error.message, new RegExp(`does not send ${scope.schema}\\.tags`));
    assert.match(
      error.fix,
      new RegExp(`ALTER PUBLICATION ${scope.schema}_pub ADD TABLE "${scope.schema}"\\."tags"`),
    );
    await doctorFails(input, 'publication', options);
    const missing = await refusal(input, { decoder: 'pgoutput', publication: 'no_such_pub' });
    assert.match(missing.message, /publication no_such_pub does not exist/);
  });

  it('a cached query on an unqualified table that the pool’s search_path resolves elsewhere is refused', async () => {
    const other = `${scope.schema}_other`;
    await scope.q(
      `CREATE SCHEMA ${other}; CREATE TABLE ${other}.posts (id int PRIMARY KEY, slug text, title text)`,
    );
    const db = openDb(`${other},${scope.schema}`);
    const repo = createRepository({
      db,
      config: defineConfig(input({ invalidateBy: { posts: [] } })),
    });
    try {
      await assert.rejects(repo.ready(), (e: unknown) => {
        assert.ok(e instanceof SetupError);
        assert.match(
          e.message,
          new RegExp(`\`posts\` resolves to ${other}\\.posts .* follows ${scope.schema}\\.posts`),
        );
        return true;
      });
      await assert.rejects(repo.cached(db.selectFrom('posts').selectAll()), SetupError);
    } finally {
      await repo.close();
      await db.destroy();
      await scope.q(`DROP SCHEMA ${other} CASCADE`);
    }
  });

  it('a query on a view says to declare its base tables, not to follow the view', async () => {
    const db = openDb();
    const repo = createRepository({
      db,
      config: defineConfig(input({ invalidateBy: { posts: [] } })),
    });
    try {
      await assert.rejects(repo.cached(db.selectFrom('recent_posts').selectAll()), (e: unknown) => {
        assert.ok(e instanceof InvalidQueryError);
        assert.match(e.message, /if it is a view.*`tables: \[/);
        return true;
      });
      const rows = await repo.cached(db.selectFrom('recent_posts').selectAll(), {
        tables: ['posts'],
      });
      assert.equal(rows.length, 1);
    } finally {
      await repo.close();
      await db.destroy();
    }
  });
});
