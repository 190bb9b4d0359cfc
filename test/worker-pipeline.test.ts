/**
 * The invalidation pipeline keeps its promises at the edges (issue 13): a change no key
 * can be built from does not stop the stream, the heartbeat claims only what was applied,
 * the epoch bump at activation comes before any acknowledgement, lag is measured on
 * followed commits, and tag versions do not live for ever.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseHeartbeat } from '../src/cache/heartbeat.js';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { Invalidator } from '../src/cdc/invalidator.js';
import { tagVersionTtlMs } from '../src/config/config.js';
import { CacheEngine, columnTag, entityKey, resolveConfig } from '../src/index.js';
import { Keys, tableResetTag } from '../src/keys/redis-keys.js';
import { emptyInvalidation, mapTransaction } from '../src/model/change-mapper.js';
import { buildChangeModel } from '../src/model/table-model.js';
import { lsnToBigInt } from '../src/protocol/lsn.js';
import { REDIS_CONFIG, Resources, sleep, startRedis, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';

describe('the invalidation pipeline at its edges', () => {
  const res = new Resources();
  const scope = new PgScope('pipe');
  const workers: InvalidationWorker[] = [];
  const servers: ChildProcess[] = [];
  /** On the Redis under test, or on the private server at `url`. */
  const config = (prefix: string, url?: string) =>
    resolveConfig({
      prefix: res.track(prefix),
      redis: url === undefined ? REDIS_CONFIG : { url },
      defaultSchema: scope.schema,
      cache: { earlyRefreshBeta: 0 },
      entities: { items: { table: 'items', key: 'id' } },
      invalidateBy: { items: ['owner'] },
    });

  before(() =>
    scope.create(`
      CREATE TABLE items (id int PRIMARY KEY, owner text, n int NOT NULL DEFAULT 0);
      ALTER TABLE items REPLICA IDENTITY FULL;
      CREATE TABLE other (id int PRIMARY KEY);
      INSERT INTO items (id, owner) SELECT g, 'o' || g FROM generate_series(1, 10) g;`),
  );
  after(async () => {
    for (const w of workers) await w.close();
    for (const s of servers) s.kill('SIGKILL');
    await res.close();
    await scope.close();
  });

  it('a change whose values no key can be built from resets its table; it never throws out of the mapper', () => {
    const model = buildChangeModel(config(uniquePrefix('pipe-map')));
    const table = `${scope.schema}.items`;
    const into = mapTransaction(
      {
        xid: 1,
        commitLsn: '0/10',
        commitTime: new Date(),
        changes: [
          {
            schema: scope.schema,
            table: 'items',
            op: 'U',
            newRow: { id: { not: 'a key' }, owner: ['an', 'array'] },
            oldRow: { id: 1, owner: 'o1' },
            oldRowIsFull: true,
            unchangedToast: [],
            keyColumns: ['id'],
          },
        ],
        collapsedTables: [],
        rowCount: 1,
        messages: [],
      },
      model,
      emptyInvalidation(),
    );
    assert.ok(into.tags.has(tableResetTag(table)));
    assert.equal(into.problems.length > 0, true);
  });

  it('the stream goes on after a tag column turns into jsonb while the worker runs', async () => {
    const prefix = uniquePrefix('pipe-json');
    const worker = new InvalidationWorker({
      config: config(prefix),
      slot: scope.slot('_json'),
      heartbeatIntervalMs: 200,
    });
    workers.push(worker);
    await worker.start();
    const reader = await res.readyEngine(prefix);
    // A query narrowed to owner 'o2', as cached() tags it.
    const table = `${scope.schema}.items`;
    const narrowed = [columnTag(table, 'owner', 'o2'), tableResetTag(table)];
    await reader.getOrLoad('list:o2', () => ['item 2'], { tags: narrowed });
    await scope.q(`ALTER TABLE $schema.items ALTER COLUMN owner TYPE jsonb USING to_jsonb(owner)`);
    await scope.q(`UPDATE $schema.items SET owner = '{"a": 1}' WHERE id = 2`);
    // The old owner was 'o2': the jsonb value cannot be named, so the table is reset.
    await waitFor('the o2 list evicted', () => reader.peek('list:o2') === undefined, 10_000);
    // A later ordinary change is still applied: the stream did not stop on the jsonb value.
    const key = entityKey('items', [3]);
    await reader.getOrLoad(
      key,
      async () => (await scope.q('SELECT * FROM $schema.items WHERE id = 3')).rows[0],
    );
    await scope.q('UPDATE $schema.items SET n = n + 1 WHERE id = 3');
    await waitFor(
      'items:3 evicted after the jsonb change',
      () => reader.peek(key) === undefined,
      10_000,
    );
    await scope.q(`ALTER TABLE $schema.items ALTER COLUMN owner TYPE text USING owner::text`);
  });

  it('while a worker replays a backlog, its heartbeat never claims a commit time it has not applied', async () => {
    const prefix = uniquePrefix('pipe-hb');
    const slot = scope.slot('_hb');
    const cfg = config(prefix);
    const first = new InvalidationWorker({ config: cfg, slot, heartbeatIntervalMs: 200 });
    await first.start();
    await scope.q('UPDATE $schema.items SET n = n + 1 WHERE id = 1');
    await scope.waitCaughtUp(slot);
    await first.close();
    // A backlog committed at a known time, then time passes before the worker returns.
    await scope.q('INSERT INTO $schema.other SELECT g FROM generate_series(1, 1) g');
    await scope.q(
      'UPDATE $schema.items SET n = n + 1 FROM generate_series(1, 20000) g WHERE id = 1 + g % 10',
    );
    const backlogCommittedAt = Date.now();
    const { rows } = await scope.q<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    await sleep(1_500);
    const watcher = res.redis();
    const keys = new Keys(prefix);
    const seen: Array<{ lsn: string; commitTime: number }> = [];
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const beat = parseHeartbeat(await watcher.get(keys.heartbeat()));
        if (beat && seen.at(-1)?.lsn !== beat.lsn)
          seen.push({ lsn: beat.lsn, commitTime: beat.commitTime });
        await sleep(1);
      }
    })();
    const second = new InvalidationWorker({ config: cfg, slot, heartbeatIntervalMs: 60_000 });
    workers.push(second);
    await second.start();
    await scope.waitCaughtUp(slot);
    watching = false;
    await watch;
    const target = rows[0]?.lsn as string;
    for (const beat of seen) {
      if (lsnToBigInt(beat.lsn) >= lsnToBigInt(target)) continue;
      assert.ok(
        beat.commitTime <= backlogCommittedAt,
        `heartbeat at ${beat.lsn}, before the backlog was applied, claimed commit time ${beat.commitTime - backlogCommittedAt} ms after the backlog`,
      );
    }
  });

  it('groups applied at once are acknowledged in order: a later one waits for an earlier one held up by Redis', async () => {
    const prefix = uniquePrefix('pipe-order');
    const slot = scope.slot('_order');
    const worker = new InvalidationWorker({
      config: config(prefix),
      slot,
      groupMaxTransactions: 1, // every commit is a group of its own, flushed at once
      heartbeatIntervalMs: 60_000,
    });
    workers.push(worker);
    await worker.start();
    const slowKey = entityKey('items', [4]);
    const events: Array<{ kind: 'ack'; lsn: string } | { kind: 'slow-done' | 'slow-start' }> = [];
    worker.events.on('acknowledged', (lsn) => events.push({ kind: 'ack', lsn }));
    // The group of items:4 is held up for a while, then fails once (retried), while the
    // groups after it reach Redis.
    const original = Invalidator.prototype.apply;
    let held = false;
    Invalidator.prototype.apply = async function (this: Invalidator, ...args) {
      const [invalidation] = args;
      if (!held && invalidation.keys.has(slowKey)) {
        held = true;
        events.push({ kind: 'slow-start' });
        await sleep(800);
        throw new Error('injected: Redis held up');
      }
      const result = await original.apply(this, args);
      if (held && invalidation.keys.has(slowKey)) events.push({ kind: 'slow-done' });
      return result;
    };
    try {
      await scope.q('UPDATE $schema.items SET n = n + 1 WHERE id = 4');
      for (const id of [5, 6, 7, 8])
        await scope.q(`UPDATE $schema.items SET n = n + 1 WHERE id = ${id}`);
      await scope.waitCaughtUp(slot);
    } finally {
      Invalidator.prototype.apply = original;
    }
    const start = events.findIndex((e) => e.kind === 'slow-start');
    const done = events.findIndex((e) => e.kind === 'slow-done');
    assert.ok(start >= 0 && done > start, `the held group was retried: ${JSON.stringify(events)}`);
    const acks = events
      .filter((e) => e.kind === 'ack')
      .map((e) => lsnToBigInt((e as { lsn: string }).lsn));
    for (let i = 1; i < acks.length; i++)
      assert.ok((acks[i] as bigint) > (acks[i - 1] as bigint), 'acknowledgements move forward');
    assert.deepEqual(
      events.slice(start, done).filter((e) => e.kind === 'ack'),
      [],
      'nothing acknowledged while an earlier group was not applied',
    );
    assert.ok(
      events.slice(done).some((e) => e.kind === 'ack'),
      'the later groups were acknowledged after it',
    );
    // Every row's tombstone is in Redis, and the heartbeat claims the last commit.
    const redis = res.redis();
    const keys = new Keys(prefix);
    for (const id of [4, 5, 6, 7, 8]) {
      const value = await redis.get(keys.entry(entityKey('items', [id])));
      assert.equal(value?.[0], 'T', `items:${id} tombstoned`);
    }
    const beat = parseHeartbeat(await redis.get(keys.heartbeat()));
    assert.equal(
      beat?.lsn !== undefined && lsnToBigInt(beat.lsn) + 1n >= (acks.at(-1) as bigint),
      true,
    );
  });

  it('lag is measured on followed commits only; tag versions expire', async () => {
    const prefix = uniquePrefix('pipe-ttl');
    const cfg = config(prefix);
    const worker = new InvalidationWorker({
      config: cfg,
      slot: scope.slot('_ttl'),
      heartbeatIntervalMs: 60_000,
    });
    workers.push(worker);
    await worker.start();
    const lags: number[][] = [];
    worker.events.on('applied', (_t, _r, _k, _g, _ms, l) => lags.push(l));
    await scope.q('INSERT INTO $schema.other VALUES (1000)'); // another table: an empty transaction
    await scope.waitCaughtUp(scope.slot('_ttl'));
    assert.deepEqual(lags.flat(), [], 'the empty transaction of another table is not a lag sample');
    await scope.q(`UPDATE $schema.items SET owner = 'o5b' WHERE id = 5`);
    await scope.waitCaughtUp(scope.slot('_ttl'));
    assert.ok(lags.flat().length >= 1, 'the followed commit is');
    const redis = res.redis();
    const keys = new Keys(prefix);
    const ttl = tagVersionTtlMs(cfg);
    const bumped = await redis.pttl(
      keys.tagVersion(columnTag(`${scope.schema}.items`, 'owner', 'o5b')),
    );
    assert.ok(
      bumped > 0 && bumped <= ttl,
      `a bumped tag version expires (pttl ${bumped}, ttl ${ttl})`,
    );
    const engine = new CacheEngine({ config: cfg });
    try {
      assert.ok(await engine.ready());
      const created = 'brand-new-tag';
      await engine.getOrLoad('k:new', () => 1, { tags: [created] });
      const pttl = await redis.pttl(keys.tagVersion(created));
      assert.ok(pttl > 0 && pttl <= ttl, `a tag version a fill creates expires (pttl ${pttl})`);
      assert.equal(await redis.pttl(keys.epoch()), -1, 'the epoch does not expire');
    } finally {
      await engine.close();
    }
  });

  it('the epoch bump at activation is applied before any acknowledgement, even when it first fails', async () => {
    const prefix = uniquePrefix('pipe-epoch');
    // A private Redis whose worker user may read but not write the epoch key at first.
    const server = await startRedis();
    servers.push(server.process);
    const admin = new Redis(server.url);
    const port = new URL(server.url).port;
    await admin.call(
      'ACL',
      'SETUSER',
      'worker',
      'on',
      '>pw',
      '+@all',
      '&*',
      `%RW~${prefix}:[^e]*`,
      `%R~${prefix}:epoch`,
    );
    const url = `redis://worker:pw@127.0.0.1:${port}`;
    const worker = new InvalidationWorker({
      config: config(prefix, url),
      slot: scope.slot('_epoch'),
      heartbeatIntervalMs: 200,
    });
    workers.push(worker);
    const events: string[] = [];
    worker.events.on('acknowledged', () => events.push('ack'));
    const started = worker.start();
    started.catch(() => {});
    await sleep(800); // the slot is new: an epoch bump is due, and refused by Redis
    await scope.q('UPDATE $schema.items SET n = n + 1 WHERE id = 4');
    await sleep(1_000);
    events.push('epoch-writable');
    await admin.call('ACL', 'SETUSER', 'worker', `%RW~${prefix}:*`);
    await started;
    await waitFor(
      'the epoch written',
      async () => (await admin.get(`${prefix}:epoch`)) !== null,
      10_000,
    );
    await waitFor('an acknowledgement after the bump', () => events.includes('ack'), 10_000);
    assert.equal(
      events[0],
      'epoch-writable',
      `acknowledged before the epoch bump: ${events.join(', ')}`,
    );
    admin.disconnect();
  });
});
