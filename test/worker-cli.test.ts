/**
 * `walcache worker` fails loudly: a start that cannot succeed (a config the database
 * refutes, a database that does not exist) exits non-zero instead of idling with a 200
 * /healthz that keeps systemd or Kubernetes from restarting it; a database that is only
 * unreachable is retried, with /readyz saying why.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WalcacheConfigInput } from '../src/index.js';
import {
  freePort,
  REDIS_CONFIG,
  Resources,
  runCli,
  startCli,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

describe('walcache worker fails loudly', () => {
  const res = new Resources();
  const scope = new PgScope('wcli');
  const dir = mkdtempSync(join(tmpdir(), 'walcache-wcli-'));
  const write = (name: string, input: WalcacheConfigInput) => {
    const file = join(dir, name);
    writeFileSync(file, `export default ${JSON.stringify(input)};\n`);
    return file;
  };
  before(() => scope.create('CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL);'));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await res.close();
    await scope.close();
  });

  it('exits 1 with the fix when the config needs REPLICA IDENTITY FULL', {
    timeout: 60_000,
  }, async () => {
    const file = write('identity.mjs', {
      prefix: res.track(uniquePrefix('wcli')),
      redis: REDIS_CONFIG,
      databaseUrl: DATABASE_URL,
      defaultSchema: scope.schema,
      invalidateBy: { orders: ['user_id'] },
    });
    const port = await freePort();
    const run = await runCli([
      'worker',
      '--config',
      file,
      '--slot',
      scope.slot('_a'),
      '--port',
      String(port),
    ]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(`${run.stdout}${run.stderr}`, /REPLICA IDENTITY FULL/);
  });

  it('exits 1 when the database does not exist', { timeout: 60_000 }, async () => {
    const url = new URL(DATABASE_URL);
    url.pathname = '/walcache_no_such_db';
    const file = write('nodb.mjs', {
      prefix: res.track(uniquePrefix('wcli')),
      redis: REDIS_CONFIG,
      databaseUrl: url.toString(),
      defaultSchema: scope.schema,
      entities: { orders: { table: 'orders', key: 'id' } },
    });
    const run = await runCli([
      'worker',
      '--config',
      file,
      '--slot',
      scope.slot('_b'),
      '--port',
      '0',
    ]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(`${run.stdout}${run.stderr}`, /walcache_no_such_db/);
  });

  it('a slot that does not exist is an error, not a new slot, unless --create-slot; slot and decoder come from the config', {
    timeout: 60_000,
  }, async () => {
    const slot = scope.slot('_cfg');
    const file = write('slot.mjs', {
      prefix: res.track(uniquePrefix('wcli')),
      redis: REDIS_CONFIG,
      databaseUrl: DATABASE_URL,
      defaultSchema: scope.schema,
      entities: { orders: { table: 'orders', key: 'id' } },
      worker: { slot },
    });
    const exists = async () =>
      (await scope.q('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows
        .length > 0;
    const run = await runCli(['worker', '--config', file, '--port', '0']);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(`${run.stdout}${run.stderr}`, new RegExp(`slot "${slot}" does not exist`));
    assert.equal(await exists(), false, 'no slot was created');
    const doctor = await runCli(['doctor', '--config', file, '--json']);
    assert.match(doctor.stdout, new RegExp(slot), 'doctor reads the slot from the config');

    const port = await freePort();
    const cli = startCli(['worker', '--config', file, '--create-slot', '--port', String(port)]);
    try {
      await waitFor(
        'active',
        async () => {
          try {
            return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
          } catch {
            return false;
          }
        },
        30_000,
      );
      assert.equal(await exists(), true, '--create-slot created the config’s slot');
      // The bump at start was counted from the 0 the metrics started at, under the slot.
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(
        metrics,
        new RegExp(
          `walcache_worker_epoch_bumps_total\\{slot="${slot}",reason="slot-created"\\} 1\n`,
        ),
      );
      assert.match(
        metrics,
        new RegExp(
          `walcache_worker_epoch_bumps_total\\{slot="${slot}",reason="no-heartbeat"\\} 0\n`,
        ),
      );
      assert.match(
        metrics,
        new RegExp(`walcache_worker_start_time_seconds\\{slot="${slot}"\\} \\d`),
      );
    } finally {
      cli.child.kill('SIGTERM');
      await cli.done;
    }
  });

  it('retries an unreachable database, and says so on /readyz', { timeout: 60_000 }, async () => {
    const dead = await freePort();
    const file = write('down.mjs', {
      prefix: res.track(uniquePrefix('wcli')),
      redis: REDIS_CONFIG,
      databaseUrl: `postgres://127.0.0.1:${dead}/test`,
      defaultSchema: scope.schema,
      entities: { orders: { table: 'orders', key: 'id' } },
    });
    const port = await freePort();
    const cli = startCli([
      'worker',
      '--config',
      file,
      '--slot',
      scope.slot('_c'),
      '--port',
      String(port),
    ]);
    try {
      let body: { ready?: boolean; error?: string } = {};
      await waitFor(
        '/readyz says why',
        async () => {
          try {
            const res = await fetch(`http://127.0.0.1:${port}/readyz`);
            body = (await res.json()) as typeof body;
            return res.status === 503 && typeof body.error === 'string';
          } catch {
            return false;
          }
        },
        20_000,
      );
      assert.match(body.error ?? '', /ECONNREFUSED|connect/);
      // Scraped before the worker ever started: its series are there, at 0 but for the
      // connect errors it is retrying.
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const slot = scope.slot('_c');
      assert.match(
        metrics,
        new RegExp(
          `walcache_worker_epoch_bumps_total\\{slot="${slot}",reason="slot-created"\\} 0\n`,
        ),
      );
      assert.match(
        metrics,
        new RegExp(`walcache_worker_errors_total\\{slot="${slot}",kind="decode"\\} 0\n`),
      );
      assert.match(
        metrics,
        new RegExp(`walcache_worker_errors_total\\{slot="${slot}",kind="connect"\\} [1-9]`),
      );
      assert.match(metrics, new RegExp(`walcache_worker_active\\{slot="${slot}"\\} 0\n`));
      assert.equal(cli.child.exitCode, null, 'still running, retrying');
    } finally {
      cli.child.kill('SIGTERM');
      await cli.done;
    }
  });
});
