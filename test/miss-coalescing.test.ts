/**
 * Concurrent misses of one entity, asked within one turn of the event loop, are loaded
 * by one `key = any($1)` query (a row comparison for composite keys), each key still
 * filled under its own lease. The SELECTs are counted by the Kysely `log` hook of each
 * repository's own Kysely (pg_stat_statements is not preloaded on the test server).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import type { Kysely } from 'kysely';
import { type CacheEngine, createRepository, defineConfig } from '../src/index.js';
import { ON_CLUSTER, REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, SelectGate, TEST_TABLES, type TestDB } from './repo-helpers.js';

interface CoalesceDB extends TestDB {
  memberships: { org_id: number; user_id: number; role: string };
}

const byNumber = (a: string, b: string) => Number(a) - Number(b);
/** The ids a `key = any($1)` query asked for, in numeric order. */
const asked = (query: { parameters: readonly unknown[] } | undefined): string[] =>
  [...((query?.parameters[0] ?? []) as string[])].sort(byNumber);

type Query = { sql: string; parameters: readonly unknown[] };

/**
 * Asserts how many SELECTs concurrent misses took: `expected`, what one server gives. The
 * loads asked in one turn of the event loop share a query (up to `maxBatch` ids), and one
 * server answers the reads' round trips together. On a cluster each key's round trips go
 * to the master of its slot, which answers on a connection of its own, in a turn of its
 * own or with another's: from `expected` queries up to one per master holding some of
 * the missed keys (per `maxBatch` of them). Callers check that no id was asked twice.
 */
function assertQueries(
  queries: readonly Query[],
  expected: number,
  engine: CacheEngine,
  missed: readonly string[],
  maxBatch = Number.POSITIVE_INFINITY,
): void {
  if (!ON_CLUSTER) {
    assert.equal(queries.length, expected, `${queries.length} SELECTs`);
    return;
  }
  const slots = (engine.redis as Cluster).slots;
  const perMaster = new Map<string, number>();
  for (const key of new Set(missed)) {
    const master = slots[calculateSlot(engine.keys.entry(key))]?.[0] ?? '?';
    perMaster.set(master, (perMaster.get(master) ?? 0) + 1);
  }
  let most = 0;
  for (const keys of perMaster.values())
    most += Number.isFinite(maxBatch) ? Math.ceil(keys / maxBatch) : 1;
  assert.ok(
    queries.length >= expected && queries.length <= Math.max(expected, most),
    `${queries.length} SELECTs for ${missed.length} misses on ${perMaster.size} masters (${expected} to ${most})`,
  );
}

describe('concurrent misses of one entity are coalesced into one query', () => {
  const res = new Resources();
  const scope = new PgScope('coalesce');
  /** A repository on its own Kysely (its SELECTs counted) and its own key prefix. */
  const open = (name: string, repository: { maxBatch?: number; coalesceMisses?: boolean } = {}) => {
    const counted = countingDb(scope.schema);
    const db = counted.db as unknown as Kysely<CoalesceDB>;
    const config = defineConfig({
      prefix: res.track(uniquePrefix(name)),
      redis: REDIS_CONFIG,
      defaultSchema: scope.schema,
      cache: { earlyRefreshBeta: 0 },
      accessLog: { sampleRate: 0 },
      repository,
      entities: {
        users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
        orders: { table: 'orders', key: 'id' },
        memberships: { table: 'memberships', key: ['org_id', 'user_id'] },
      },
    });
    const repo = createRepository({ db, config });
    const misses: string[] = [];
    repo.engine.events.on('miss', (key) => misses.push(key));
    /** The SELECTs sent from now on (those that failed: `failed`; the keys that missed: `missed`). */
    const selects = () => {
      const start = counted.queries.length;
      const startFailed = counted.failed.length;
      const startMissed = misses.length;
      const isSelect = (q: { sql: string }) => /^select/i.test(q.sql);
      return Object.assign(() => counted.queries.slice(start).filter(isSelect), {
        failed: () => counted.failed.slice(startFailed).filter(isSelect),
        missed: () => misses.slice(startMissed),
      });
    };
    return { repo, db, config, selects };
  };
  const main = open('coalesce');
  const capped = open('coalesce-cap', { maxBatch: 3 });
  const off = open('coalesce-off', { coalesceMisses: false });
  const all = [main, capped, off];

  before(async () => {
    await scope.create(`${TEST_TABLES}
      CREATE TABLE memberships (org_id int, user_id int, role text NOT NULL, PRIMARY KEY (org_id, user_id));`);
    await scope.q(`
      INSERT INTO $schema.users (id, email, name)
        SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 200) g;
      INSERT INTO $schema.orders (id, user_id) SELECT g, g FROM generate_series(1, 200) g;
      INSERT INTO $schema.memberships VALUES (1, 1, 'owner'), (1, 2, 'member'), (2, 1, 'member');`);
    // The catalog (column types) is read once; the counts below are the reads' own. And
    // Redis is connected: a read before that would load without the cache.
    for (const { repo } of all) {
      await repo.ready();
      assert.ok(await repo.engine.ready());
    }
  });
  after(async () => {
    for (const { repo, db } of all) {
      await repo.close();
      await db.destroy();
    }
    await res.close();
    await scope.close();
  });

  it('32 concurrent findById misses of distinct ids run one SELECT, each caller getting its own row', async () => {
    const ids = Array.from({ length: 32 }, (_, i) => i + 1);
    const sent = main.selects();
    const rows = await Promise.all(ids.map((id) => main.repo.users.findById(id)));
    assert.deepEqual(
      rows.map((r) => r?.id),
      ids.map(String),
      'each caller gets the row of its own id',
    );
    assert.equal(rows[4]?.name, 'user 5');
    assert.equal('password_hash' in (rows[4] as object), false, 'denied columns are stripped');
    assertQueries(sent(), 1, main.repo.engine, sent.missed());
    for (const q of sent()) assert.match(q.sql, /= any\(\$1\)/);
    assert.deepEqual(sent().flatMap(asked).sort(byNumber), ids.map(String));
    // The fills happened: the same reads are hits now.
    const again = main.selects();
    await Promise.all(ids.map((id) => main.repo.users.findById(id)));
    assert.equal(again().length, 0, 'every coalesced load filled its own entry');
  });

  it('with coalesceMisses off, each miss is its own SELECT (as before)', async () => {
    const sent = off.selects();
    const rows = await Promise.all([1, 2, 3, 4].map((id) => off.repo.users.findById(id)));
    assert.deepEqual(
      rows.map((r) => r?.id),
      ['1', '2', '3', '4'],
    );
    assert.equal(sent().length, 4);
  });

  it('misses of two entities run two SELECTs, one per table', async () => {
    const sent = main.selects();
    const [users, orders] = await Promise.all([
      Promise.all([41, 42, 43].map((id) => main.repo.users.findById(id))),
      Promise.all([41, 42, 43].map((id) => main.repo.orders.findById(id))),
    ]);
    assert.deepEqual(
      users.map((r) => r?.email),
      ['u41@x', 'u42@x', 'u43@x'],
    );
    assert.deepEqual(
      orders.map((r) => r?.id),
      [41, 42, 43],
    );
    const ofUsers = sent().filter((q) => q.sql.includes('"users"'));
    const ofOrders = sent().filter((q) => q.sql.includes('"orders"'));
    assert.equal(ofUsers.length + ofOrders.length, sent().length);
    const missed = (entity: string) => sent.missed().filter((k) => k.startsWith(`${entity}:`));
    assertQueries(ofUsers, 1, main.repo.engine, missed('users'));
    assertQueries(ofOrders, 1, main.repo.engine, missed('orders'));
    assert.deepEqual(ofUsers.flatMap(asked).sort(byNumber), ['41', '42', '43'], 'each once');
    assert.deepEqual(ofOrders.flatMap(asked).sort(byNumber), ['41', '42', '43']);
  });

  it('a missing id resolves undefined while the others of its batch get their rows', async () => {
    const sent = main.selects();
    const rows = await Promise.all([51, 9999, 52].map((id) => main.repo.users.findById(id)));
    assert.deepEqual(
      rows.map((r) => r?.id),
      ['51', undefined, '52'],
    );
    assertQueries(sent(), 1, main.repo.engine, sent.missed());
    assert.deepEqual(sent().flatMap(asked).sort(byNumber), ['51', '52', '9999']);
  });

  it('ids with one canonical text are loaded once: 042 and 42 (also past the engine’s single flight)', async () => {
    const sent = main.selects();
    const rows = await Promise.all([
      main.repo.users.findById('061'),
      main.repo.users.findById(61),
      main.repo.users.findById(62n as never),
    ]);
    assert.deepEqual(
      rows.map((r) => r?.id),
      ['61', '61', '62'],
    );
    assertQueries(sent(), 1, main.repo.engine, sent.missed());
    assert.deepEqual(sent().flatMap(asked).sort(byNumber), ['61', '62']);
    // No worker runs, so a bounded read bypasses the cache: each call runs the loader
    // itself, without the engine's single flight. The batch still asks for 63 once.
    const bypass = main.selects();
    const bounded = await Promise.all(
      ['063', 63, ' 63'].map((id) =>
        main.repo.users.findById(id as never, { maxStalenessMs: 1_000 }),
      ),
    );
    assert.deepEqual(
      bounded.map((r) => r?.id),
      ['63', '63', '63'],
    );
    assert.equal(bypass().length, 1);
    assert.deepEqual(bypass()[0]?.parameters[0], ['63']);
  });

  it('composite keys: one row-comparison SELECT, rows matched to their ids, a missing one undefined', async () => {
    const sent = main.selects();
    const rows = await Promise.all([
      main.repo.memberships.findById([2, 1]),
      main.repo.memberships.findById(['01', '002'] as never),
      main.repo.memberships.findById([9, 9]),
      main.repo.memberships.findById([1, 1]),
    ]);
    assert.deepEqual(
      rows.map((r) => r?.role),
      ['member', 'member', undefined, 'owner'],
    );
    assert.deepEqual(
      rows.map((r) => (r === undefined ? undefined : [r.org_id, r.user_id])),
      [[2, 1], [1, 2], undefined, [1, 1]],
    );
    assertQueries(sent(), 1, main.repo.engine, sent.missed());
    for (const q of sent()) assert.match(q.sql, /\("org_id", "user_id"\) in/);
    assert.equal(sent().flatMap((q) => q.parameters).length, 2 * 4, 'each key asked once');
  });

  it('findBy misses of one unique column are coalesced too, matched by the value', async () => {
    const sent = main.selects();
    const rows = await Promise.all(
      ['u71@x', 'nobody@x', 'u72@x', 'u73@x'].map((email) =>
        main.repo.users.findBy('email', email),
      ),
    );
    assert.deepEqual(
      rows.map((r) => r?.id),
      ['71', undefined, '72', '73'],
    );
    assertQueries(sent(), 1, main.repo.engine, sent.missed());
    for (const q of sent()) assert.match(q.sql, /"email" = any\(\$1\)/);
    assert.deepEqual(
      sent()
        .flatMap((q) => q.parameters[0] as string[])
        .sort(),
      ['nobody@x', 'u71@x', 'u72@x', 'u73@x'],
    );
  });

  it('a batch is capped at repository.maxBatch ids: 7 misses with a cap of 3 run 3 SELECTs', async () => {
    const ids = [81, 82, 83, 84, 85, 86, 87];
    const sent = capped.selects();
    const rows = await Promise.all(ids.map((id) => capped.repo.users.findById(id)));
    assert.deepEqual(
      rows.map((r) => r?.id),
      ids.map(String),
    );
    if (ON_CLUSTER) {
      assertQueries(sent(), 3, capped.repo.engine, sent.missed(), 3);
      for (const q of sent()) assert.ok(asked(q).length <= 3, `${asked(q).length} ids`);
    } else
      assert.deepEqual(
        sent()
          .map((q) => asked(q).length)
          .sort(),
        [1, 3, 3],
      );
    assert.deepEqual(sent().flatMap(asked).sort(), ids.map(String));
  });

  it('a failed batched query rejects every caller of the batch, caches nothing, and spares other entities', async () => {
    await scope.q('ALTER TABLE $schema.users RENAME TO users_away');
    const sent = main.selects();
    let outcomes: PromiseSettledResult<unknown>[];
    let orders: unknown[];
    try {
      [outcomes, orders] = await Promise.all([
        Promise.allSettled([91, 92, 93].map((id) => main.repo.users.findById(id))),
        Promise.all([91, 92].map((id) => main.repo.orders.findById(id))),
      ]);
    } finally {
      await scope.q('ALTER TABLE $schema.users_away RENAME TO users');
    }
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['rejected', 'rejected', 'rejected'],
    );
    for (const o of outcomes)
      assert.match(String((o as PromiseRejectedResult).reason), /does not exist/);
    assert.equal(orders.length, 2);
    const missedUsers = sent.missed().filter((k) => k.startsWith('users:'));
    assertQueries(sent.failed(), 1, main.repo.engine, missedUsers);
    assert.deepEqual(sent.failed().flatMap(asked).sort(byNumber), ['91', '92', '93']);
    assert.equal(sent().filter((q) => q.sql.includes('"users"')).length, 0);
    for (const id of [91, 92, 93])
      assert.equal(await main.repo.engine.get(main.repo.users.key(id)), undefined, `users:${id}`);
    // Nothing was cached, no lease is left behind: the next reads load (once) and succeed.
    const retry = main.selects();
    const rows = await Promise.all([91, 92, 93].map((id) => main.repo.users.findById(id)));
    assert.deepEqual(
      rows.map((r) => r?.id),
      ['91', '92', '93'],
    );
    assertQueries(retry(), 1, main.repo.engine, retry.missed());
  });

  it('each key of a batch keeps its lease: a row written while the query ran is not cached, the others are', async () => {
    const gate = new SelectGate();
    const gated = createRepository({ db: main.db.withPlugin(gate), config: main.config });
    try {
      await gated.ready();
      assert.ok(await gated.engine.ready());
      gate.armed = true;
      const reading = Promise.all([101, 102, 103].map((id) => gated.users.findById(id)));
      await gate.entered.promise; // the batched SELECT has returned the old rows
      await main.repo.users.update(102, { name: 'new' });
      gate.release.resolve();
      assert.deepEqual(
        (await reading).map((r) => r?.name),
        ['user 101', 'user 102', 'user 103'],
        'the reads answer what they read',
      );
      const sent = main.selects();
      const again = await Promise.all([101, 102, 103].map((id) => gated.users.findById(id)));
      assert.deepEqual(
        again.map((r) => r?.name),
        ['user 101', 'new', 'user 103'],
        'the stale fill of 102 was refused',
      );
      assert.deepEqual(asked(sent()[0]), ['102'], 'only 102 loads again');
      assert.equal(sent().length, 1);
    } finally {
      await gated.close();
    }
  });
});
