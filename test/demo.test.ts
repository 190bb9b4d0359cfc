/**
 * `npm start -- --duration 10`: the demo runs, exits 0, and its summary shows cache hits
 * and every plain-SQL write invalidated. It uses the fixed schema `walcache_demo`, prefix
 * `walcache-demo` and slot `walcache_demo`: nothing else uses them, and this file must not
 * run twice at once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('npm start -- --duration 10 exits 0 with hits and every write invalidated', {
  timeout: 120_000,
}, async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'examples/demo.ts', '--duration', '10'],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test',
        REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const report = `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`;
  assert.equal(code, 0, report);

  const summary = stdout.slice(stdout.lastIndexOf('\nsummary'));
  assert.ok(summary.length > 1, report);
  const hit = /hit rate\s+L1 [\d.]+%\s+L2 [\d.]+%\s+overall ([\d.]+)%/.exec(summary);
  assert.ok(hit, report);
  assert.ok(Number(hit[1]) > 0, `hit rate is zero\n${report}`);
  const inv = /writes invalidated (\d+) of (\d+)/.exec(summary);
  assert.ok(inv, report);
  assert.ok(Number(inv[2]) > 0, `no writes\n${report}`);
  assert.equal(inv[1], inv[2], `not every write was invalidated\n${report}`);
  assert.match(summary, /stale reads found 0 /, report);
  assert.match(summary, /result: ok/, report);
});
