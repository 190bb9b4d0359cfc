/**
 * Fills fenced by the database's own order (docs/consistency.md, "fills fenced by
 * snapshots"). Each test forces one interleaving of a load, the commits it may or may not
 * have seen, and the worker's tombstones (sent here as the worker sends them: the
 * tombstone script with the commits' xids), with real PostgreSQL snapshots and
 * transaction ids.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import { tombstoneValue } from '../src/cache/envelope.js';
import { newVersion } from '../src/cache/l2-tier.js';
import { defineScripts } from '../src/cache/scripts.js';
import type { CacheEngine } from '../src/index.js';
import { deferred, Resources, startRedis, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';

describe('fills fenced by PostgreSQL snapshots', () => {
  const res = new Resources();
  const pg = new PgScope('fence');
  let raw: Redis | Cluster;

  before(async () => {
    await pg.create(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
      INSERT INTO items SELECT g, 'v0' FROM generate_series(1, 10) g;`);
    raw = res.redis();
  });
  after(async () => {
    await res.close();
    await pg.close();
  });

  const snapshot = async () =>
    (await pg.q<{ s: string }>('SELECT pg_current_snapshot()::text AS s')).rows[0]?.s;
  const readRow = async (id: number) =>
    (await pg.q<{ v: string }>('SELECT v FROM $schema.items WHERE id = $1', [id])).rows[0]?.v;
  /** A committed UPDATE; resolves with its xid. */
  const commitUpdate = async (id: number, v: string): Promise<number> => {
    const { rows } = await pg.q<{ xid: string }>(
      'UPDATE $schema.items SET v = $2 WHERE id = $1 RETURNING pg_current_xact_id()::text AS xid',
      [id, v],
    );
    return Number(BigInt(rows[0]?.xid as string) & 0xffffffffn);
  };
  /** What the worker does for a commit: the key's tombstone, with the commit's xids. */
  const workerTombstone = (engine: CacheEngine, key: string, xids: number[], lsn = 1n) =>
    defineScripts(raw).walcache_tombstone(
      engine.keys.entry(key),
      tombstoneValue(lsn),
      60_000,
      xids.join(','),
      Date.now(),
    );
  const stored = async (engine: CacheEngine, key: string) =>
    (await raw.getBuffer(engine.keys.entry(key)))?.toString('latin1') ?? null;
  const engineFor = (name: string) =>
    res.readyEngine(uniquePrefix(name), {
      cache: { earlyRefreshBeta: 0 },
      lease: { ttlMs: 5_000, waitMs: 2_000 },
    });
  const counting = (engine: CacheEngine) => {
    const seen = { fills: 0, fenced: 0, rejected: [] as string[] };
    engine.events.on('fill', () => seen.fills++);
    engine.events.on('fill-fenced', () => seen.fenced++);
    engine.events.on('fill-rejected', (_k, reason) => seen.rejected.push(reason));
    return seen;
  };

  it('a commit the load saw, invalidated during the load, does not refuse its fill', async () => {
    const engine = await engineFor('fence-seen');
    const seen = counting(engine);
    // The writer commits; a reader misses at once (the worker has not applied it yet).
    const xid = await commitUpdate(1, 'v1');
    const value = await engine.getOrLoad(
      'items:1',
      async () => {
        const v = await readRow(1);
        // The worker's tombstone for that commit lands while the load is under way.
        await workerTombstone(engine, 'items:1', [xid]);
        return v;
      },
      { snapshot },
    );
    assert.equal(value, 'v1');
    assert.equal(seen.fenced, 1, 'stored over the fenced tombstone');
    assert.deepEqual(seen.rejected, []);
    assert.match((await stored(engine, 'items:1')) ?? '', /^D/, 'L2 holds the row');
    assert.equal(await engine.get('items:1'), 'v1', 'and it is the row after the commit');
  });

  it('without a snapshot the same interleaving refuses the fill, as before', async () => {
    const engine = await engineFor('fence-none');
    const seen = counting(engine);
    const xid = await commitUpdate(2, 'v1');
    await engine.getOrLoad('items:2', async () => {
      const v = await readRow(2);
      await workerTombstone(engine, 'items:2', [xid]);
      return v;
    });
    assert.deepEqual(seen.rejected, ['lease-lost']);
    assert.match((await stored(engine, 'items:2')) ?? '', /^T/);
  });

  it('a commit in progress when the snapshot was taken refuses the fill (the load predates it)', async () => {
    const engine = await engineFor('fence-running');
    const seen = counting(engine);
    const writer = await pg.pool.connect();
    try {
      await writer.query('BEGIN');
      const { rows } = await writer.query<{ xid: string }>(
        `UPDATE ${pg.schema}.items SET v = 'v1' WHERE id = 3 RETURNING pg_current_xact_id()::text AS xid`,
      );
      const xid = Number(BigInt(rows[0]?.xid as string) & 0xffffffffn);
      const value = await engine.getOrLoad(
        'items:3',
        async () => {
          const v = await readRow(3); // the old row: the writer has not committed
          await writer.query('COMMIT');
          await workerTombstone(engine, 'items:3', [xid]);
          return v;
        },
        { snapshot },
      );
      assert.equal(value, 'v0', 'the load saw the row before the commit');
      assert.deepEqual(seen.rejected, ['not-proven']);
      assert.equal(seen.fenced, 0);
      assert.match((await stored(engine, 'items:3')) ?? '', /^T/, 'the tombstone stays');
      assert.equal(
        await engine.getOrLoad('items:3', () => readRow(3), { snapshot }),
        'v1',
        'the next read loads the committed row',
      );
    } finally {
      await writer.query('ROLLBACK').catch(() => {});
      writer.release();
    }
  });

  it('every commit of the tombstone must be visible, not only the newest (commit order is not visibility order)', async () => {
    const engine = await engineFor('fence-two');
    const seen = counting(engine);
    // A takes an xid first and commits last; B commits in between. A snapshot taken
    // between the two commits shows B visible and A running, although A's id is lower.
    const a = await pg.pool.connect();
    try {
      await a.query('BEGIN');
      const { rows } = await a.query<{ xid: string }>(
        `UPDATE ${pg.schema}.items SET v = 'a' WHERE id = 4 RETURNING pg_current_xact_id()::text AS xid`,
      );
      const xidA = Number(BigInt(rows[0]?.xid as string) & 0xffffffffn);
      const { rows: bRows } = await pg.q<{ xid: string }>(
        "UPDATE $schema.items SET v = 'b' WHERE id = 5 RETURNING pg_current_xact_id()::text AS xid",
      );
      const fullB = bRows[0]?.xid as string;
      const xidB = Number(BigInt(fullB) & 0xffffffffn);
      let taken = '';
      const value = await engine.getOrLoad(
        'items:4',
        async () => {
          const v = await readRow(4);
          await a.query('COMMIT');
          // One tombstone for both commits (a worker group), the newest one visible.
          await workerTombstone(engine, 'items:4', [xidA, xidB]);
          return v;
        },
        {
          snapshot: async () => {
            taken = (await snapshot()) as string;
            return taken;
          },
        },
      );
      assert.equal(value, 'v0');
      assert.deepEqual(seen.rejected, ['not-proven'], 'A was running in the snapshot');
      // The unsafe variant, a fence on the newest commit alone, would have stored v0:
      const { rows: vis } = await pg.q<{ b: boolean }>(
        'SELECT pg_visible_in_snapshot($1::xid8, $2::pg_snapshot) AS b',
        [fullB, taken],
      );
      assert.equal(vis[0]?.b, true, 'B, the newest commit, was visible to the load');
      assert.match((await stored(engine, 'items:4')) ?? '', /^T/);
    } finally {
      await a.query('ROLLBACK').catch(() => {});
      a.release();
    }
  });

  it('the tombstones a lease replaced must be visible too (a commit is decoded before it is visible)', async () => {
    const engine = await engineFor('fence-inherit');
    const seen = counting(engine);
    const writer = await pg.pool.connect();
    try {
      await writer.query('BEGIN');
      const { rows } = await writer.query<{ xid: string }>(
        `UPDATE ${pg.schema}.items SET v = 'v1' WHERE id = 6 RETURNING pg_current_xact_id()::text AS xid`,
      );
      const xid = Number(BigInt(rows[0]?.xid as string) & 0xffffffffn);
      // The worker's tombstone lands before the commit is visible to new snapshots (the
      // moment between the commit record's flush and the end of the transaction, held
      // open here), then a reader misses: its lease inherits the xid.
      await workerTombstone(engine, 'items:6', [xid]);
      const value = await engine.getOrLoad('items:6', () => readRow(6), { snapshot });
      assert.equal(value, 'v0', 'the load did not see the commit');
      await writer.query('COMMIT');
      assert.equal(
        await engine.getOrLoad('items:6', () => readRow(6), { snapshot }),
        'v1',
        'the row before the commit was not cached',
      );
      assert.deepEqual(seen.rejected, ['not-proven']);
      assert.equal(seen.fills, 1, 'once the commit is visible the fill lands');
    } finally {
      await writer.query('ROLLBACK').catch(() => {});
      writer.release();
    }
  });

  it('a tag version the worker bumped for a commit the load did not see refuses the fill', async () => {
    const engine = await engineFor('fence-tag');
    const seen = counting(engine);
    const writer = await pg.pool.connect();
    try {
      await writer.query('BEGIN');
      const { rows } = await writer.query<{ xid: string }>(
        `UPDATE ${pg.schema}.items SET v = 'v1' WHERE id = 9 RETURNING pg_current_xact_id()::text AS xid`,
      );
      const xid = Number(BigInt(rows[0]?.xid as string) & 0xffffffffn);
      // The worker's bump for that commit, decoded before the commit is visible.
      await raw.set(engine.keys.tagVersion('items:id=9'), newVersion('', String(xid)));
      const read = () =>
        engine.getOrLoad('q:items-9', () => readRow(9), { tags: ['items:id=9'], snapshot });
      assert.equal(await read(), 'v0');
      await writer.query('COMMIT');
      assert.equal(await read(), 'v1', 'the value before the commit was not cached');
      assert.deepEqual(seen.rejected, ['not-proven']);
      assert.equal(seen.fills, 1);
    } finally {
      await writer.query('ROLLBACK').catch(() => {});
      writer.release();
    }
  });

  it('data loaded after a commit survives that commit’s tombstone; a later commit still invalidates it', async () => {
    // L2 alone: the L1 copies are what the worker's bus message drops, not shown here.
    const engine = await res.readyEngine(uniquePrefix('fence-keep'), {
      cache: { earlyRefreshBeta: 0 },
      l1: { enabled: false },
    });
    const xid = await commitUpdate(7, 'v1');
    // A reader fills after the commit, before the worker applied it.
    assert.equal(await engine.getOrLoad('items:7', () => readRow(7), { snapshot }), 'v1');
    assert.equal(await workerTombstone(engine, 'items:7', [xid]), 2, 'the data is kept');
    assert.match((await stored(engine, 'items:7')) ?? '', /^D/);
    let loads = 0;
    const loader = () => {
      loads++;
      return readRow(7);
    };
    assert.equal(await engine.get('items:7'), 'v1');
    const later = await commitUpdate(7, 'v2');
    assert.equal(await workerTombstone(engine, 'items:7', [later]), 1, 'a newer commit tombstones');
    assert.match((await stored(engine, 'items:7')) ?? '', /^T/);
    // An unknown transaction (no xid) tombstones whatever the data holds.
    assert.equal(await engine.getOrLoad('items:7', loader, { snapshot }), 'v2');
    assert.equal(await workerTombstone(engine, 'items:7', []), 1);
    assert.match((await stored(engine, 'items:7')) ?? '', /^T/);
    assert.equal(loads, 1);
  });

  it('a reader of another process waits for a fenced fill and is woken by its notice', async () => {
    const prefix = uniquePrefix('fence-wake');
    const config = { cache: { earlyRefreshBeta: 0 }, lease: { ttlMs: 5_000, waitMs: 3_000 } };
    const a = await res.readyEngine(prefix, config);
    const b = await res.readyEngine(prefix, config);
    const xid = await commitUpdate(8, 'v1');
    const inLoad = deferred();
    const finish = deferred();
    let filledAt = 0;
    const loadA = a
      .getOrLoad(
        'items:8',
        async () => {
          const v = await readRow(8);
          await workerTombstone(a, 'items:8', [xid]);
          inLoad.resolve();
          await finish.promise;
          return v;
        },
        { snapshot },
      )
      .then((v) => {
        filledAt = Date.now();
        return v;
      });
    await inLoad.promise;
    assert.match((await stored(a, 'items:8')) ?? '', /^T[0-9a-f]{16}\/L/, 'fenced for a');
    let bLoads = 0;
    const waits: boolean[] = [];
    b.events.on('lease-wait', (_k, _ms, got) => waits.push(got));
    const readB = b
      .getOrLoad(
        'items:8',
        () => {
          bLoads++;
          return readRow(8);
        },
        { snapshot },
      )
      .then((v) => ({ v, at: Date.now() }));
    // b found the fenced tombstone and waits (its polls back off); let it settle into it.
    await new Promise((r) => setTimeout(r, 400));
    finish.resolve();
    assert.equal(await loadA, 'v1');
    const got = await readB;
    assert.equal(got.v, 'v1');
    assert.equal(bLoads, 0, 'b took the fill instead of loading');
    assert.deepEqual(waits, [true]);
    assert.ok(
      got.at - filledAt < 60,
      `b answered ${got.at - filledAt} ms after the fill (a poll would be up to 100 ms later)`,
    );
  });
});

describe('loads in flight and invalidations', () => {
  const res = new Resources();
  after(() => res.close());

  it('a read that begins after an invalidation arrived does not join a load that began before it', async () => {
    const prefix = uniquePrefix('flight-detach');
    const a = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const b = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const release = deferred();
    const loading = deferred();
    const first = a.getOrLoad('rows:1', async () => {
      loading.resolve(); // it holds the lease and has read the row
      await release.promise;
      return 'before the write';
    });
    await loading.promise;
    // Joined before the invalidation: it may take the load in flight.
    const early = a.getOrLoad('rows:1', () => assert.fail('joins the first load'));
    const heard = new Promise<void>((resolve) => a.events.once('bus-invalidate', () => resolve()));
    await b.delete('rows:1'); // a write elsewhere, and its invalidation on the bus
    await heard;
    const late = a.getOrLoad('rows:1', () => 'after the write');
    release.resolve();
    assert.equal(await first, 'before the write');
    assert.equal(await early, 'before the write');
    assert.equal(await late, 'after the write', 'a read after the invalidation loads anew');
  });
});

describe('a read after an invalidation', () => {
  const res = new Resources();
  let server: Awaited<ReturnType<typeof startRedis>> | undefined;
  after(async () => {
    await res.close();
    server?.process.kill('SIGKILL');
  });

  it('goes straight to the lease: no GET that would only find the tombstone', async () => {
    server = await startRedis();
    const prefix = uniquePrefix('after-invalidation');
    const config = { cache: { earlyRefreshBeta: 0 }, redis: { url: server.url } };
    const a = await res.readyEngine(prefix, config);
    const b = await res.readyEngine(prefix, config);
    const tags = ['rows'];
    assert.equal(await a.getOrLoad('rows:1', () => 'v1', { tags }), 'v1');
    // Another row of the tag: its version (created by the first fill) is now read, trusted.
    assert.equal(await a.getOrLoad('rows:2', () => 'w1', { tags }), 'w1');
    const heard = new Promise<void>((resolve) => a.events.once('bus-invalidate', () => resolve()));
    await b.delete('rows:1');
    await heard;
    const admin = res.redis(server.url);
    const gets = async () => {
      const info = await admin.info('commandstats');
      return Number(/cmdstat_get:calls=(\d+)/.exec(info)?.[1] ?? 0);
    };
    const before = await gets();
    assert.equal(await a.getOrLoad('rows:1', () => 'v2', { tags }), 'v2');
    // GET counts the scripts' own GETs too: the lease script's and the fill script's.
    assert.equal(await gets(), before + 2, 'no GET of its own (the lease script, then the fill)');
    // The next read after that is an ordinary one: L1 holds it.
    assert.equal(await a.getOrLoad('rows:1', () => assert.fail('cached'), { tags }), 'v2');
  });
});
