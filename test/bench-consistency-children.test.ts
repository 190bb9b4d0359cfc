/**
 * `npm run bench:consistency` ends everything it started on every way out: killed with
 * SIGKILL or SIGTERM mid-run, its readers, its worker (which then drops the bench's slot)
 * and its private redis-server all go.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { ROOT, sleep, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { alive, descendants } from './proc-helpers.js';

describe('bench:consistency leaves nothing behind', () => {
  const scope = new PgScope('benchcons'); // its pool only: the bench makes its own schema
  after(async () => {
    await scope.pool.end();
  });
  const slotRows = async (schema: string, active = false) =>
    (
      await scope.pool.query(
        `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1${active ? ' AND active' : ''}`,
        [schema],
      )
    ).rowCount;

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`when the bench gets ${signal} mid-run`, { timeout: 120_000 }, async () => {
      const schema = `t_benchcons_${randomBytes(4).toString('hex')}`;
      const bench = spawn(process.execPath, ['--import', 'tsx', 'bench/consistency.ts'], {
        cwd: ROOT,
        env: {
          ...process.env,
          BENCH_CONSISTENCY_SCHEMA: schema,
          BENCH_CONSISTENCY_CLEAN_S: '60',
          BENCH_CONSISTENCY_DELAYS: '0',
          BENCH_CONSISTENCY_READ_RATE: '200',
        },
        stdio: ['ignore', 'ignore', 'ignore'],
      });
      const exited = new Promise((resolve) => bench.on('exit', resolve));
      const pid = bench.pid as number;
      try {
        // Mid-run: two readers, the worker on the slot, the private redis-server.
        let started: number[] = [];
        await waitFor(
          'readers, worker and redis-server running, the slot active',
          async () => {
            started = [
              ...descendants(pid, 'consistency-reader.ts'),
              ...descendants(pid, 'consistency-worker.ts'),
              ...descendants(pid, 'consistency-redis.ts'),
              ...descendants(pid, 'redis-server'),
            ];
            return started.length === 5 && (await slotRows(schema, true)) === 1;
          },
          90_000,
        );
        await sleep(500);
        bench.kill(signal);
        await exited;
        await waitFor('every child gone', () => started.every((p) => !alive(p)), 20_000);
        await waitFor('the slot dropped', async () => (await slotRows(schema)) === 0, 20_000);
        assert.equal(started.filter(alive).length, 0);
      } finally {
        bench.kill('SIGKILL');
        await scope.pool
          .query(
            'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active',
            [schema],
          )
          .catch(() => {});
        await scope.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      }
    });
  }
});
