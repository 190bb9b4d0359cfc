/**
 * findMany loads its misses in one query. Its batch waits for every key's cache read to
 * answer (a hit, a miss to load, or a wait on a load it does not run); only keys waiting
 * on another caller's load may hold the query back, and those only briefly.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import { createRepository, defineConfig } from '../src/index.js';
import { tableResetTag } from '../src/keys/redis-keys.js';
import { REDIS_CONFIG, Resources, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { startMastersOnly } from './redis-cluster-servers.js';
import { countingDb, SelectGate, TEST_TABLES } from './repo-helpers.js';

const ROWS = 600;

describe('findMany: one query for its misses', () => {
  const res = new Resources();
  const scope = new PgScope('fmbatch');
  const closers: Array<() => unknown> = [];
  const configFor = (redis: Parameters<typeof defineConfig>[0]['redis']) =>
    defineConfig({
      prefix: res.track(uniquePrefix('fmbatch')),
      // Generous timeouts: the test is about how the reads are batched, not a slow machine.
      redis: { ...redis, commandTimeoutMs: 5_000 },
      lease: { waitMs: 3_000 },
      defaultSchema: scope.schema,
      cache: { earlyRefreshBeta: 0 },
      accessLog: { sampleRate: 0 },
      entities: { users: { table: 'users', key: 'id' } },
    });
  /** The ids a load asked for, sorted. */
  const asked = (query: { parameters: readonly unknown[] } | undefined) =>
    [...((query?.parameters[0] ?? []) as string[])].sort();
  /** The loads (`id = any($1)`) among a repository's queries (the catalog reads are not). */
  const loads = (queries: ReadonlyArray<{ sql: string; parameters: readonly unknown[] }>) =>
    queries.filter((q) => /= any\(\$1\)/.test(q.sql));

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(
      `INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, ${ROWS}) g`,
    );
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await res.close();
    await scope.close();
  });

  it('a shard that answers late: its keys join the query instead of loading in one of their own', async () => {
    // Three masters; one is paused while the call runs, so its keys' reads answer 300 ms
    // after the others' (a busy or failing-over master, a loaded machine).
    const cluster = await startMastersOnly(3);
    closers.push(() => cluster.stop());
    const { db, queries } = countingDb(scope.schema);
    closers.push(() => db.destroy());
    const repo = createRepository({
      db,
      config: configFor({ cluster: { nodes: [...cluster.nodes] } }),
    });
    closers.push(() => repo.close());
    await repo.ready();
    assert.ok(await repo.engine.ready());
    const ids = Array.from({ length: ROWS }, (_, i) => i + 1);
    // Paused at the first miss: the reads of its keys have asked for their leases (or
    // not yet read), those of the other masters' keys go on to ask for their loads. Not
    // the master of the epoch or of the table's reset tag: every read waits for those.
    const shared = [
      repo.engine.keys.epoch(),
      repo.engine.keys.tagVersion(tableResetTag(`${scope.schema}.users`)),
    ];
    const slots = (repo.engine.redis as Cluster).slots;
    const busy = new Set(shared.map((k) => slots[calculateSlot(k)]?.[0]));
    const paused = cluster.servers.find((s) => !busy.has(`127.0.0.1:${s.port}`));
    assert.ok(paused);
    let resume: NodeJS.Timeout | undefined;
    repo.engine.events.once('miss', () => {
      paused.signal('SIGSTOP');
      resume = setTimeout(() => paused.signal('SIGCONT'), 300);
    });
    closers.push(() => {
      clearTimeout(resume);
      paused.signal('SIGCONT');
    });
    const started = performance.now();
    const { rows, missing } = await repo.users.findMany(ids);
    const took = performance.now() - started;
    assert.ok(took >= 290, `the paused master held its keys' reads (${took.toFixed(0)} ms)`);
    assert.deepEqual(missing, []);
    assert.deepEqual(
      rows.map((r) => r?.name),
      ids.map((id) => `user ${id}`),
    );
    const sent = loads(queries);
    assert.equal(
      sent.length,
      1,
      `one query for ${ROWS} misses (sizes: ${sent.map((q) => (q.parameters[0] as unknown[]).length).join(', ')})`,
    );
  });

  it('a key another process is loading does not hold back the query of the rest', async () => {
    const config = configFor(REDIS_CONFIG);
    const other = countingDb(scope.schema);
    closers.push(() => other.db.destroy());
    const gate = new SelectGate();
    const loader = createRepository({ db: other.db.withPlugin(gate), config });
    closers.push(() => loader.close());
    const mine = countingDb(scope.schema);
    closers.push(() => mine.db.destroy());
    const repo = createRepository({ db: mine.db, config });
    closers.push(() => repo.close());
    await Promise.all([loader.ready(), repo.ready()]);
    assert.ok((await loader.engine.ready()) && (await repo.engine.ready()));

    // The other process holds 5's lease: its load has read the row and not yet filled.
    gate.armed = true;
    const otherRead = loader.users.findById(5);
    await gate.entered.promise;
    const reading = repo.users.findMany([5, 6, 7]);
    try {
      await waitFor('the query of 6 and 7', () => loads(mine.queries).length > 0, 2_000);
      assert.deepEqual(
        asked(loads(mine.queries)[0]),
        ['6', '7'],
        "5 is left to the other process's load",
      );
    } finally {
      gate.release.resolve();
    }
    const { rows } = await reading;
    assert.deepEqual(
      rows.map((r) => r?.name),
      ['user 5', 'user 6', 'user 7'],
    );
    assert.equal((await otherRead)?.name, 'user 5');
    assert.equal(loads(mine.queries).length, 1, "5 came from the other process's fill");
  });
  it('a key this process is already loading does not hold back the query of the rest', async () => {
    const { db, queries } = countingDb(scope.schema);
    closers.push(() => db.destroy());
    const gate = new SelectGate();
    const repo = createRepository({ db: db.withPlugin(gate), config: configFor(REDIS_CONFIG) });
    closers.push(() => repo.close());
    await repo.ready();
    assert.ok(await repo.engine.ready());
    gate.armed = true;
    const single = repo.users.findById(15);
    await gate.entered.promise; // 15's load has read its row and is held
    const before = loads(queries).length;
    const reading = repo.users.findMany([15, 16, 17]);
    try {
      await waitFor('the query of 16 and 17', () => loads(queries).length > before, 2_000);
      assert.deepEqual(asked(loads(queries)[before]), ['16', '17'], '15 joins the load in flight');
    } finally {
      gate.release.resolve();
    }
    assert.deepEqual(
      (await reading).rows.map((r) => r?.name),
      ['user 15', 'user 16', 'user 17'],
    );
    assert.equal((await single)?.name, 'user 15');
    assert.equal(loads(queries).length, before + 1);
  });
});
