import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { collectEngineMetrics } from '../src/index.js';
import { Resources, uniquePrefix } from './helpers.js';

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
});
