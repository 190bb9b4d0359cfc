import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { CacheEngine } from '../src/cache/cache-engine.js';
import { createRedisClient } from '../src/cache/redis-client.js';
import { freePort, Resources, sleep, startRedis, uniquePrefix, waitFor } from './helpers.js';

describe('degradation: Redis unavailable', () => {
  const res = new Resources();
  const children: ChildProcess[] = [];
  after(async () => {
    for (const c of children) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
    await res.close();
  });

  it('a retryStrategy that gives up stops a cluster client too (doctor and stats connect once)', async () => {
    const port = await freePort();
    const seed = `127.0.0.1:${port}`;
    const client = createRedisClient(
      { url: `redis://${seed}`, cluster: { nodes: [seed] } },
      { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null },
    );
    client.on('error', () => {});
    let reconnects = 0;
    client.on('reconnecting', () => reconnects++);
    try {
      await assert.rejects(client.connect());
      await sleep(500);
      assert.equal(reconnects, 0, `${reconnects} reconnects after the strategy said stop`);
      assert.equal(client.status, 'end');
    } finally {
      client.disconnect();
    }
  });

  it('nothing listening: callers get the loader value, no error, bounded latency', async () => {
    const port = await freePort();
    const engine = res.engine(uniquePrefix('down'), {
      redis: { url: `redis://127.0.0.1:${port}`, commandTimeoutMs: 100 },
      breaker: { failureThreshold: 3, cooldownMs: 60_000 },
    });
    const opened: string[] = [];
    engine.events.on('breaker-open', () => opened.push('open'));
    let worst = 0;
    for (let i = 0; i < 50; i++) {
      const started = performance.now();
      assert.equal(await engine.getOrLoad(`k${i % 5}`, () => i), i);
      worst = Math.max(worst, performance.now() - started);
    }
    assert.ok(worst < 150, `worst read took ${worst.toFixed(1)} ms`);
    assert.deepEqual(opened, ['open']);
    assert.equal(engine.breakerState, 'open');
    assert.equal(engine.l1Active, false, 'no L1 without a bus');
    await assert.rejects(
      engine.delete('k1'),
      { code: 'E_REDIS_UNAVAILABLE' },
      'writes that would be lost are reported',
    );
  });

  it('a paused Redis: reads time out within the command timeout, then recover by themselves', async () => {
    const server = await startRedis();
    children.push(server.process);
    const engine = res.engine(uniquePrefix('paused'), {
      redis: { url: server.url, commandTimeoutMs: 100 },
      breaker: { failureThreshold: 2, cooldownMs: 300 },
      l1: { enabled: false },
      cache: { earlyRefreshBeta: 0 },
    });
    assert.ok(await engine.ready());
    await engine.getOrLoad('k', () => 'cached');
    assert.equal(await engine.getOrLoad('k', () => 'loader'), 'cached');

    server.process.kill('SIGSTOP');
    try {
      let worst = 0;
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        assert.equal(await engine.getOrLoad('k', () => 'loader'), 'loader');
        worst = Math.max(worst, performance.now() - started);
      }
      assert.ok(worst < 400, `worst read took ${worst.toFixed(1)} ms (command timeout 100 ms)`);
      assert.notEqual(engine.breakerState, 'closed');
    } finally {
      server.process.kill('SIGCONT');
    }
    await waitFor(
      'recovered',
      async () => (await engine.getOrLoad('k', () => 'loader')) === 'cached',
      5_000,
    );
    assert.equal(engine.breakerState, 'closed');
  });

  it('close() returns while Redis has stopped answering (a QUIT nobody answers is not awaited forever)', async () => {
    const server = await startRedis();
    children.push(server.process);
    const engine = new CacheEngine({
      config: { prefix: uniquePrefix('hungclose'), redis: { url: server.url } },
    });
    assert.ok(await engine.ready());
    await engine.getOrLoad('k', () => 'cached'); // the bus subscriber is connected too
    server.process.kill('SIGSTOP');
    try {
      const started = performance.now();
      const closed = await Promise.race([
        engine.close().then(() => true),
        sleep(5_000).then(() => false),
      ]);
      assert.ok(closed, 'close() still pending after 5 s');
      assert.ok(
        performance.now() - started < 3_000,
        `close took ${(performance.now() - started).toFixed(0)} ms`,
      );
    } finally {
      server.process.kill('SIGCONT');
    }
  });

  it('a Redis that comes back after being down is used again', async () => {
    const port = await freePort();
    const engine = res.engine(uniquePrefix('late'), {
      redis: { url: `redis://127.0.0.1:${port}`, commandTimeoutMs: 100 },
      breaker: { failureThreshold: 1, cooldownMs: 100 },
      cache: { earlyRefreshBeta: 0 },
    });
    assert.equal(await engine.getOrLoad('k', () => 1), 1);
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    children.push(child);
    assert.ok(await engine.ready(10_000), 'reconnected');
    await sleep(150);
    let loads = 0;
    await waitFor(
      'filled',
      async () =>
        (await engine.getOrLoad('k', () => ++loads)) !== undefined &&
        engine.breakerState === 'closed',
      5_000,
    );
    const before = loads;
    await engine.getOrLoad('k', () => ++loads);
    await engine.getOrLoad('k', () => ++loads);
    assert.equal(loads, before, 'served from cache again');
    assert.ok(engine.l1Active, 'bus resubscribed');
  });
});
