/**
 * A frozen Redis (SIGSTOP: the sockets stay open, nothing answers) must not keep L1
 * serving values the worker may have invalidated meanwhile: the bus's liveness check
 * (a PING on the subscriber with a deadline) marks it down within about a second, L1 is
 * bypassed, reads go on without errors, and once Redis answers again L1 comes back
 * (cleared, as after any bus outage).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { CacheEngine } from '../src/index.js';
import { sleep, startRedis, uniquePrefix, waitFor } from './helpers.js';

describe('bus liveness', () => {
  let server: { url: string; process: ChildProcess } | undefined;
  let engine: CacheEngine | undefined;
  after(async () => {
    server?.process.kill('SIGCONT');
    await engine?.close();
    server?.process.kill('SIGKILL');
  });

  it('a frozen Redis takes L1 out of service within about a second, and back when it answers', async () => {
    server = await startRedis();
    engine = new CacheEngine({
      config: { prefix: uniquePrefix('busfreeze'), redis: { url: server.url } },
    });
    assert.ok(await engine.ready());
    const events: string[] = [];
    engine.events.on('bus-down', () => events.push('down'));
    engine.events.on('bus-up', () => events.push('up'));
    let loads = 0;
    const read = () => engine?.getOrLoad('k', () => ++loads) as Promise<number>;
    assert.equal(await read(), 1);
    assert.equal(await read(), 1, 'an L1 hit');
    assert.equal(engine.peek('k'), 1);

    server.process.kill('SIGSTOP');
    const frozenAt = Date.now();
    await waitFor('the bus marked down', () => events.includes('down'), 3_000);
    const detectedMs = Date.now() - frozenAt;
    assert.ok(detectedMs <= 1_200, `detected after ${detectedMs} ms`);
    assert.equal(engine.peek('k'), undefined, 'L1 is not consulted while the bus is down');
    const started = Date.now();
    const value = await read();
    assert.equal(value, 2, 'the read went to the loader, without an error');
    // Once the bus is down for a PING unanswered, the breaker is open too: the read does
    // not wait for an L2 command timeout.
    assert.ok(Date.now() - started < 100, `the read waited ${Date.now() - started} ms`);

    server.process.kill('SIGCONT');
    await waitFor('the bus back up', () => events.at(-1) === 'up', 5_000);
    await sleep(50);
    const after = await read();
    assert.ok(after >= 1, `read ${after}`); // from L2, or loaded while the breaker cools down
    assert.equal(engine.peek('k'), after, 'L1 serves again');
  });
});
