/**
 * `npm run bench:contention` in miniature: a run with tiny durations prints a JSON line
 * with every key of each setting it ran (two of the five defaults, one with two app
 * processes and one with a loader delay, to stay well under a minute on a busy machine:
 * most of the time goes to starting the five child processes), and a SIGTERM mid-run
 * leaves no app process, writer, worker or slot behind.
 *
 * Runs with the serial tests: its two benches start a dozen processes, and beside the
 * parallel suite they starved the other bench tests' children of CPU.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { REDIS_URL, ROOT, sleep, waitFor } from '../helpers.js';
import { PgScope } from '../pg-helpers.js';
import { alive, descendants } from '../proc-helpers.js';

const SETTINGS = ['p2_d0', 'p1_d5'];
const CHILDREN = ['contention-app.ts', 'contention-writer.ts', 'contention-worker.ts'];

// The two runs are independent (own schema, slot and key prefix): run side by side, as
// most of each one's time is starting its child processes.
describe('bench:contention', { concurrency: true }, () => {
  const scope = new PgScope('benchct'); // its pool only: the bench makes its own schema
  const schemas: string[] = [];
  const newSchema = () => {
    const schema = `t_benchct_${randomBytes(4).toString('hex')}`;
    schemas.push(schema);
    return schema;
  };
  after(async () => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    for (const schema of schemas) {
      await scope.pool
        .query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active',
          [schema],
        )
        .catch(() => {});
      await scope.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
      // The bench deletes its keys (`wcbench-ct-<schema>-<round>:...`) unless it was killed.
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(
          cursor,
          'MATCH',
          `wcbench-ct-${schema}*`,
          'COUNT',
          1000,
        );
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
    }
    redis.disconnect();
    await scope.pool.end();
  });
  const slotRows = async (schema: string, active = false) =>
    (
      await scope.pool.query(
        `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1${active ? ' AND active' : ''}`,
        [schema],
      )
    ).rowCount;
  const run = (schema: string, env: Record<string, string>, stdout: 'pipe' | 'ignore') =>
    spawn(process.execPath, ['--import', 'tsx', 'bench/contention.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        BENCH_CONTENTION_SCHEMA: schema,
        BENCH_CONTENTION_CONCURRENCY: '4',
        ...env,
      },
      stdio: ['ignore', stdout, 'ignore'],
    });

  it('a tiny run prints every key, stale_after_settle numbers included', {
    timeout: 120_000,
  }, async () => {
    const schema = newSchema();
    const bench = run(
      schema,
      {
        BENCH_CONTENTION_ROUNDS: '1',
        BENCH_CONTENTION_SECONDS: '0.5',
        BENCH_CONTENTION_WARMUP_MS: '200',
        BENCH_CONTENTION_SETTINGS: SETTINGS.join(','),
      },
      'pipe',
    );
    let out = '';
    bench.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const code = await new Promise((resolve) => bench.on('exit', resolve));
    const last = out.trim().split('\n').at(-1) as string;
    assert.equal(code, 0, last);
    const json = JSON.parse(last) as Record<string, unknown>;
    for (const s of SETTINGS) {
      for (const key of [
        'vs_bentocache',
        'vs_direct',
        'stale_after_settle',
        'bentocache_stale_after_settle',
        'walcache_reads_s',
        'bentocache_reads_s',
        'direct_reads_s',
        'walcache_loads',
        'walcache_fills',
        'walcache_fills_rejected',
        'walcache_lease_waits',
        'walcache_lease_waits_gave_up',
      ])
        assert.ok(`${s}_${key}` in json, `${s}_${key} missing`);
      assert.equal(typeof json[`${s}_stale_after_settle`], 'number');
      assert.equal(typeof json[`${s}_bentocache_stale_after_settle`], 'number');
      // Counts only: a tiny window on a busy machine may see few reads.
      for (const c of ['walcache', 'bentocache', 'direct'])
        assert.ok((json[`${s}_${c}_reads_s`] as number) >= 0, `${s}_${c}_reads_s`);
      assert.deepEqual(json[`${s}_errors`], { walcache: 0, bentocache: 0, direct: 0 });
    }
    assert.equal(typeof json.stale_after_settle, 'number');
    assert.equal(await slotRows(schema), 0, 'the slot is dropped');
  });

  it('a SIGTERM mid-run ends every child and drops the slot', { timeout: 120_000 }, async () => {
    const schema = newSchema();
    const bench = run(
      schema,
      { BENCH_CONTENTION_SECONDS: '60', BENCH_CONTENTION_SETTINGS: 'p1_d0' },
      'pipe',
    );
    let out = '';
    bench.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exited = new Promise((resolve) => bench.on('exit', resolve));
    const pid = bench.pid as number;
    try {
      // The bench prints `setup:` once its children are ready and its slot made; two
      // seconds later the first round is under way (the worker starting on the slot, the
      // app process and the writer opening or running).
      await waitFor('the bench set up', () => /^setup:/m.test(out), 90_000);
      const started = CHILDREN.flatMap((name) => descendants(pid, name));
      assert.equal(started.length, 3, 'an app process, the writer and the worker');
      assert.equal(await slotRows(schema), 1, 'the slot is made');
      await sleep(2_000);
      bench.kill('SIGTERM');
      assert.equal(await exited, 130);
      await waitFor('every child gone', () => started.every((p) => !alive(p)), 20_000);
      assert.equal(await slotRows(schema), 0, 'the slot is dropped');
    } finally {
      bench.kill('SIGKILL');
    }
  });
});
