import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { L1_RESET_REASONS, L2_OPERATIONS, REFRESH_REASONS } from '../src/cache/cache-events.js';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { EPOCH_BUMP_REASONS, WORKER_FAILURE_KINDS } from '../src/cdc/worker-events.js';
import { collectEngineMetrics, resolveConfig } from '../src/index.js';
import { collectWorkerMetrics } from '../src/metrics/worker-metrics.js';
import { Resources, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';

function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics', () => {
  const res = new Resources();
  after(() => res.close());

  it('the Prometheus collector counts what the engine reports, and stops when asked', async () => {
    const prefix = uniquePrefix('metrics');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    const registry = new Registry();
    const stop = collectEngineMetrics(b, registry);
    await a.getOrLoad('k', () => 1); // filled by a
    await b.getOrLoad('k', () => 2); // l2 hit
    await b.getOrLoad('k', () => 3); // l1 hit
    await b.getOrLoad('other', () => 4); // miss + fill + load
    await Promise.all([b.getOrLoad('c', () => 5), b.getOrLoad('c', () => 5)]); // one coalesced
    await b.getOrLoad('bounded', () => 6, { maxStalenessMs: 1_000 }); // no worker ever ran: bypass
    const text = await registry.metrics();
    assert.equal(sample(text, 'walcache_staleness_bypass_total'), 1);
    assert.equal(sample(text, 'walcache_cache_hits_total{tier="l2"}'), 1);
    assert.equal(sample(text, 'walcache_cache_hits_total{tier="l1"}'), 1);
    assert.equal(sample(text, 'walcache_cache_misses_total'), 2);
    assert.equal(sample(text, 'walcache_cache_fills_total'), 2);
    assert.equal(sample(text, 'walcache_cache_coalesced_total'), 1);
    assert.equal(sample(text, 'walcache_load_duration_seconds_count'), 2, 'a bypass is no load');
    assert.equal(sample(text, 'walcache_bus_healthy'), 1);
    assert.equal(sample(text, 'walcache_breaker_open'), 0);
    assert.equal(sample(text, 'walcache_l1_entries'), 3);
    stop();
    await b.getOrLoad('k', () => 3);
    assert.equal(
      sample(await registry.metrics(), 'walcache_cache_hits_total{tier="l1"}'),
      1,
      'unsubscribed',
    );
  });

  it('every labelled engine series the collector knows of exists at 0 from the start, so a first event is an increase', async () => {
    const prefix = uniquePrefix('metrics-zero');
    const a = await res.readyEngine(prefix);
    const b = await res.readyEngine(prefix);
    const registry = new Registry();
    const stop = collectEngineMetrics(b, registry);
    const before = await registry.metrics();
    for (const tier of ['l1', 'l2']) {
      assert.equal(sample(before, `walcache_cache_hits_total{tier="${tier}"}`), 0, tier);
      assert.equal(sample(before, `walcache_cache_stale_served_total{tier="${tier}"}`), 0, tier);
    }
    for (const operation of L2_OPERATIONS)
      assert.equal(
        sample(before, `walcache_redis_errors_total{operation="${operation}"}`),
        0,
        operation,
      );
    for (const reason of REFRESH_REASONS)
      assert.equal(sample(before, `walcache_cache_refreshes_total{reason="${reason}"}`), 0);
    for (const reason of L1_RESET_REASONS)
      assert.equal(sample(before, `walcache_l1_resets_total{reason="${reason}"}`), 0, reason);
    for (const outcome of ['filled', 'gave-up'])
      assert.equal(
        sample(before, `walcache_lease_wait_seconds_count{outcome="${outcome}"}`),
        0,
        outcome,
      );
    await a.getOrLoad('k', () => 1);
    await b.getOrLoad('k', () => 2); // l2 hit
    const hit = await registry.metrics();
    assert.equal(sample(hit, 'walcache_cache_hits_total{tier="l2"}'), 1);
    assert.equal(sample(hit, 'walcache_cache_hits_total{tier="l1"}'), 0);
    stop();
  });
});

describe('worker metrics', () => {
  const res = new Resources();
  const scope = new PgScope('wmetrics');
  const workers: InvalidationWorker[] = [];
  after(async () => {
    for (const w of workers) await w.stop();
    await res.close();
    await scope.close();
  });

  it('carry the slot, exist at 0 before the worker starts, and count its start epoch bump as 0 -> 1', async () => {
    await scope.create(`
      CREATE TABLE users (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
      CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL DEFAULT 0);
      INSERT INTO users VALUES (1, 0);`);
    const slot = scope.slot('_m');
    const worker = new InvalidationWorker({
      config: resolveConfig({
        prefix: res.track(uniquePrefix('wmetrics')),
        defaultSchema: scope.schema,
        entities: {
          users: { table: 'users', key: 'id' },
          counters: { table: 'counters', key: 'id', writeBehind: true },
        },
      }),
      slot,
    });
    workers.push(worker);
    const registry = new Registry();
    const startedAt = Date.now() / 1000;
    collectWorkerMetrics(worker, registry);
    const s = `slot="${slot}"`;
    const before = await registry.metrics();
    for (const reason of EPOCH_BUMP_REASONS)
      assert.equal(
        sample(before, `walcache_worker_epoch_bumps_total{${s},reason="${reason}"}`),
        0,
        reason,
      );
    for (const kind of WORKER_FAILURE_KINDS)
      assert.equal(sample(before, `walcache_worker_errors_total{${s},kind="${kind}"}`), 0, kind);
    assert.equal(
      sample(before, `walcache_worker_write_behind_outside_writes_total{${s},entity="counters"}`),
      0,
    );
    for (const name of [
      'walcache_worker_changes_total',
      'walcache_worker_transactions_total',
      'walcache_worker_keys_tombstoned_total',
      'walcache_worker_reconnects_total',
      'walcache_worker_lag_seconds_count',
      'walcache_worker_active',
    ])
      assert.equal(sample(before, `${name}{${s}}`), 0, name);
    const start = sample(before, `walcache_worker_start_time_seconds{${s}}`);
    assert.ok(start >= startedAt - 1 && start <= Date.now() / 1000, `start time ${start}`);

    await worker.start(); // a new slot: the epoch is bumped before the worker is active
    const started = await registry.metrics();
    assert.equal(
      sample(started, `walcache_worker_epoch_bumps_total{${s},reason="slot-created"}`),
      1,
    );
    assert.equal(
      sample(started, `walcache_worker_epoch_bumps_total{${s},reason="no-heartbeat"}`),
      0,
    );
    assert.equal(sample(started, `walcache_worker_active{${s}}`), 1);
    assert.ok(sample(started, `walcache_worker_acknowledged_lsn{${s}}`) > 0, 'the slot position');
    assert.ok(sample(started, `walcache_slot_retained_wal_bytes{${s}}`) >= 0);

    await scope.q('UPDATE $schema.users SET n = n + 1 WHERE id = 1');
    await waitFor(
      'the change counted',
      async () => sample(await registry.metrics(), `walcache_worker_changes_total{${s}}`) === 1,
      10_000,
    );
  });
});
