/**
 * `npm start -- --duration 5 --drop-slot`, the way a user meets it on a machine where other
 * work wrote a lot since the last demo: the slot the demo keeps has hundreds of MB of WAL
 * behind it. The demo must catch up before its load starts, invalidate every write, find
 * no stale read, and drop its slot when asked. It runs under a name of its own
 * (WALCACHE_DEMO_NAME: schema, slot, publication, key prefix), so a person's demo can run
 * beside it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deleteByPrefix, redisEnv, testRedis } from './helpers.js';
import { PgScope } from './pg-helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scope = new PgScope('demo');
const SLOT = scope.slot('_demo'); // dropped by scope.close() if the demo does not
const PREFIX = SLOT.replaceAll('_', '-');
after(async () => {
  await scope.q(`DROP SCHEMA IF EXISTS ${SLOT} CASCADE`);
  await scope.q(`DROP PUBLICATION IF EXISTS ${SLOT}`);
  const redis = testRedis();
  await deleteByPrefix(redis, PREFIX);
  await deleteByPrefix(redis, `{${PREFIX}}`); // the jobs runner's BullMQ queues
  redis.disconnect();
  await scope.close();
});

test('the demo catches up with a kept slot before its load, invalidates every write and drops the slot when asked', {
  timeout: 240_000,
}, async () => {
  // The slot a previous demo kept, then other work: 1M rows (~200 MB of WAL) in a table
  // the demo does not follow.
  await scope.q(
    `SELECT pg_create_logical_replication_slot($1, 'wal2json')
       WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
    [SLOT],
  );
  await scope.create(`CREATE TABLE other_work (id int PRIMARY KEY, pad text);
    INSERT INTO other_work SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g;`);

  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'examples/demo.ts', '--duration', '5', '--drop-slot'],
    {
      cwd: ROOT,
      env: redisEnv({
        DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test',
        WALCACHE_DEMO_NAME: SLOT,
      }),
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

  // The backlog was announced and caught up with before the service took any load.
  const kept = new RegExp(`slot ${SLOT} kept from an earlier run: ([\\d.]+) MiB`).exec(stdout);
  assert.ok(kept && Number(kept[1]) >= 100, `the backlog was not announced\n${report}`);
  const caughtUp = stdout.indexOf('catching up with the slot: caught up in');
  assert.ok(caughtUp > 0, `no catch-up line\n${report}`);
  assert.ok(caughtUp < stdout.indexOf('service on '), `the load started first\n${report}`);

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
  assert.ok(summary.includes(`slot ${SLOT} dropped (--drop-slot)`), report);
  assert.match(summary, /result: ok/, report);
  const { rows } = await scope.q('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [SLOT]);
  assert.equal(rows.length, 0, 'the slot is gone');
});
