/**
 * `walcache stats` calls the worker's state lag only when the slot holds WAL the worker has
 * not confirmed: an idle worker that is caught up reads "caught up", with the age of its
 * last heartbeat (which is only how often it writes one), not a lag of that age.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { formatStats } from '../src/cli/stats-command.js';
import { resolveConfig } from '../src/index.js';
import { openStats, type WalcacheStats } from '../src/ops/stats.js';
import { REDIS_CONFIG, Resources, uniquePrefix, waitFor } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

describe('walcache stats: the worker line', () => {
  const reading = (over: Partial<WalcacheStats>): WalcacheStats => ({
    at: Date.now(),
    workerLagMs: 0,
    heartbeatAgeMs: 3_000,
    caughtUp: true,
    unconfirmedWalBytes: 0,
    slot: { name: 'walcache', retainedBytes: 100, active: true, walStatus: 'reserved' },
    queues: {},
    writeBehind: {},
    errors: [],
    ...over,
  });
  const line = (s: WalcacheStats) =>
    formatStats(s, 'walcache')
      .split('\n')
      .find((l) => l.startsWith('worker'));

  it('names each state: caught up, lag, no commit yet, unknown without a slot, no heartbeat', () => {
    assert.equal(line(reading({})), 'worker       caught up (last heartbeat 3.0 s ago)');
    assert.equal(
      line(reading({ caughtUp: false, workerLagMs: 4_200, unconfirmedWalBytes: 2048 })),
      'worker       lag 4.2 s (2.0 KiB of WAL not confirmed by the slot), last heartbeat 3.0 s ago',
    );
    assert.equal(
      line(reading({ caughtUp: false, workerLagMs: null, unconfirmedWalBytes: 56 })),
      'worker       no commit applied yet (56 B of WAL not confirmed by the slot, last heartbeat 3.0 s ago)',
    );
    assert.equal(
      line(reading({ caughtUp: null, workerLagMs: 300, unconfirmedWalBytes: null, slot: null })),
      'worker       last commit applied 300 ms ago, last heartbeat 3.0 s ago (no slot to compare with: caught up or not is unknown)',
    );
    assert.equal(
      line(reading({ workerLagMs: null, heartbeatAgeMs: null, caughtUp: null })),
      'worker       no heartbeat (not running with this prefix?)',
    );
  });
});

describe('walcache stats: caught up or lagging', () => {
  const res = new Resources();
  const scope = new PgScope('statslag');
  const workers: InvalidationWorker[] = [];
  after(async () => {
    for (const w of workers) await w.stop();
    await res.close();
    await scope.close();
  });

  it('an idle worker reads "caught up (last heartbeat ... ago)"; WAL it has not confirmed reads as lag', async () => {
    await scope.create('CREATE TABLE users (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);');
    const slot = scope.slot('_s');
    const config = resolveConfig({
      prefix: res.track(uniquePrefix('statslag')),
      databaseUrl: DATABASE_URL,
      redis: REDIS_CONFIG,
      defaultSchema: scope.schema,
      entities: { users: { table: 'users', key: 'id' } },
    });
    const worker = new InvalidationWorker({ config, slot, heartbeatIntervalMs: 200 });
    workers.push(worker);
    await worker.start();
    await scope.q('INSERT INTO $schema.users VALUES (1, 0)');
    await scope.waitCaughtUp(slot);

    const reader = openStats(config, { slot });
    try {
      let s: WalcacheStats | undefined;
      await waitFor(
        'a heartbeat, caught up',
        async () => {
          s = await reader.read();
          return s.heartbeatAgeMs !== null && s.caughtUp === true;
        },
        15_000,
      );
      const idle = s as WalcacheStats;
      assert.deepEqual(idle.errors, []);
      assert.equal(idle.workerLagMs, 0);
      assert.equal(idle.unconfirmedWalBytes, 0);
      const text = formatStats(idle, slot);
      assert.match(text, /^worker +caught up \(last heartbeat [\d.]+ m?s ago\)$/m);
      assert.doesNotMatch(text, /^worker +lag/m);

      // Stopped, then written to: WAL the slot has not confirmed, and that is lag.
      await worker.stop();
      await waitFor(
        'the slot released',
        async () =>
          (await scope.q('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]))
            .rows[0]?.active === false,
        10_000,
      );
      await scope.q('UPDATE $schema.users SET n = n + 1');
      const behind = await reader.read();
      assert.deepEqual(behind.errors, []);
      assert.equal(behind.caughtUp, false);
      assert.ok((behind.unconfirmedWalBytes ?? 0) > 0, `${behind.unconfirmedWalBytes}`);
      assert.ok((behind.workerLagMs ?? 0) > 0);
      assert.match(
        formatStats(behind, slot),
        /^worker +lag [\d.]+ m?s \([\d.]+ (B|KiB|MiB) of WAL not confirmed by the slot\), last heartbeat [\d.]+ m?s ago$/m,
      );
    } finally {
      await reader.close();
    }
  });
});
