/**
 * PostgreSQL restarted under a running worker. Runs alone (scripts/test.sh runs
 * test/serial after the parallel suite): a restart would break the other files' connections.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { InvalidationWorker } from '../../src/cdc/invalidation-worker.js';
import { pgConfig } from '../../src/config/database.js';
import { entityKey, resolveConfig } from '../../src/index.js';
import { Resources, sleep, uniquePrefix, waitFor } from '../helpers.js';
import { DATABASE_URL, PgScope } from '../pg-helpers.js';

function restartPostgres(): void {
  const version = readdirSync('/etc/postgresql')[0] as string;
  execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'restart'], {
    stdio: 'ignore',
  });
}

async function waitForPostgres(): Promise<void> {
  await waitFor(
    'postgres back',
    async () => {
      const client = new pg.Client(pgConfig(DATABASE_URL));
      try {
        await client.connect();
        await client.query('SELECT 1');
        return true;
      } catch {
        return false;
      } finally {
        await client.end().catch(() => {});
      }
    },
    60_000,
  );
}

const canRestart =
  process.getuid?.() === 0 &&
  (() => {
    try {
      return readdirSync('/etc/postgresql').length > 0;
    } catch {
      return false;
    }
  })();

describe('worker survives a PostgreSQL restart', {
  skip: canRestart ? false : 'needs root and a local pg_ctlcluster',
}, () => {
  const res = new Resources();
  let scope: PgScope;
  let worker: InvalidationWorker;
  const prefix = uniquePrefix('pgrestart');

  before(async () => {
    scope = new PgScope('pgrestart');
    await scope.create(
      'CREATE TABLE users (id int PRIMARY KEY, n int NOT NULL DEFAULT 0); INSERT INTO users SELECT g, 0 FROM generate_series(1, 50) g;',
    );
    worker = new InvalidationWorker({
      config: resolveConfig({
        prefix,
        defaultSchema: scope.schema,
        entities: { users: { table: 'users', key: 'id' } },
      }),
      slot: scope.slot(),
      retryMs: 300,
    });
    await worker.start();
  });
  after(async () => {
    await worker?.close();
    await res.close();
    await scope.close();
  });

  it('reconnects with backoff, resumes from the slot, and misses nothing', async () => {
    const reader = await res.readyEngine(prefix, {
      l1: { enabled: false },
      cache: { earlyRefreshBeta: 0, ttlMs: 600_000 },
    });
    const load = async (id: number, s: PgScope = scope) =>
      (await s.q('SELECT n FROM $schema.users WHERE id = $1', [id])).rows[0]?.n;
    for (let id = 1; id <= 50; id++)
      await reader.getOrLoad(entityKey('users', [id]), () => load(id, scope));
    let reconnects = 0;
    worker.events.on('reconnect', () => reconnects++);

    restartPostgres();
    await waitForPostgres();
    const live = scope; // its pool replaces the connections the restart killed
    for (let id = 1; id <= 50; id++)
      await live.q('UPDATE $schema.users SET n = n + 1 WHERE id = $1', [id]);
    await waitFor('worker active again', () => worker.role === 'active' && reconnects > 0, 60_000);
    await live.waitCaughtUp(worker.slot);
    await sleep(50);
    for (let id = 1; id <= 50; id++) {
      const truth = await load(id, live);
      assert.equal(
        await reader.getOrLoad(entityKey('users', [id]), () => truth),
        truth,
        `users:${id}`,
      );
    }
  });
});
