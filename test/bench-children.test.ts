/**
 * A benchmark ends its child processes on every way out: `npm run bench:write-behind`
 * (a flusher in its own process holding a pool and, mid-flush, a transaction) is killed
 * with SIGTERM, SIGINT or SIGKILL in the middle of a write-behind round, or loses its
 * flusher; no flusher may be left running, and the bench must not hang.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import {
  deleteByPrefix,
  ON_CLUSTER,
  REDIS_URL,
  ROOT,
  sleep,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { alive, descendants } from './proc-helpers.js';

// A SIGKILLed bench cannot clean up: its keys go with the test.
const PREFIX = uniquePrefix('bench-children');

function startBench(): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/write-behind.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      ROUNDS: '1',
      ROUND_MS: '3000',
      CONCURRENCY: '4',
      ROWS: '1000',
      PREFIX,
    },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited };
}

async function flusherOf(bench: ChildProcess): Promise<number> {
  let pids: number[] = [];
  await waitFor(
    'the flusher started',
    () => {
      pids = descendants(bench.pid as number, 'write-behind-flusher');
      return pids.length > 0;
    },
    60_000,
  );
  await sleep(1_000); // mid-round: the flusher is flushing
  return pids[0] as number;
}

// bench/write-behind.ts connects to REDIS_URL only (it knows no cluster), so on the
// cluster run this would test the standalone Redis again; what it tests is process
// clean-up, which the topology does not change.
describe('bench:write-behind leaves no child behind', {
  skip: ON_CLUSTER && 'bench/write-behind.ts connects to REDIS_URL only',
}, () => {
  after(async () => {
    const redis = new Redis(REDIS_URL);
    await deleteByPrefix(redis, PREFIX);
    redis.disconnect();
  });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGKILL'] as const) {
    it(`when the bench gets ${signal} mid-round`, { timeout: 90_000 }, async () => {
      const { child, exited } = startBench();
      const flusher = await flusherOf(child);
      child.kill(signal);
      await exited;
      await waitFor(`flusher ${flusher} gone`, () => !alive(flusher), 15_000);
    });
  }

  it('when the flusher dies mid-round, the bench fails instead of waiting for it', {
    timeout: 120_000,
  }, async () => {
    const { child, exited } = startBench();
    const flusher = await flusherOf(child);
    process.kill(flusher, 'SIGKILL');
    const code = await exited;
    assert.notEqual(code, 0, 'the bench reports the failure');
  });
});
