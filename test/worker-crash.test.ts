/**
 * The worker as a real child process (the CLI), killed with SIGKILL in the middle of a
 * burst of commits, and a standby taking over: at-least-once invalidation, end to end.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { entityKey } from '../src/index.js';
import { Resources, redisEnv, sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';

interface WorkerProcess {
  child: ChildProcess;
  port: Promise<number>;
  output: string[];
}

function startWorker(configFile: string, slot: string): WorkerProcess {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'worker',
      '--config',
      configFile,
      '--slot',
      slot,
      '--create-slot', // the test's own slot, new: no walcache setup ran
      '--port',
      '0',
      '--log-level',
      'info',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: redisEnv(),
    },
  );
  const output: string[] = [];
  const port = new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output.push(chunk.toString());
      const m = /"port":(\d+)/.exec(chunk.toString());
      if (m) resolve(Number(m[1]));
    });
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.once('exit', () => reject(new Error(`worker exited early:\n${output.join('')}`)));
  });
  port.catch(() => {});
  return { child, port, output };
}

async function readyz(w: WorkerProcess): Promise<{ ready: boolean; role: string }> {
  const port = await w.port;
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return (await res.json()) as { ready: boolean; role: string };
}

describe('worker process: crash and takeover', () => {
  const res = new Resources();
  const scope = new PgScope('crash');
  const prefix = uniquePrefix('crash');
  const children: ChildProcess[] = [];
  let configFile = '';
  const ROWS = 200;

  before(async () => {
    await scope.create(`CREATE TABLE users (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
      INSERT INTO users SELECT g, 0 FROM generate_series(1, ${ROWS}) g;`);
    configFile = join(tmpdir(), `${prefix}.config.mjs`);
    writeFileSync(
      configFile,
      `export default ${JSON.stringify({ prefix, defaultSchema: scope.schema, entities: { users: { table: 'users', key: 'id' } } })};\n`,
    );
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await sleep(200);
    await res.close();
    await scope.close();
  });

  /** Reads every row through a fresh engine (no L1) and counts cached values that differ from the database. */
  async function staleCount(): Promise<number> {
    const engine = await res.readyEngine(prefix, {
      l1: { enabled: false },
      cache: { earlyRefreshBeta: 0 },
    });
    const { rows } = await scope.q<{ id: number; n: number }>('SELECT id, n FROM $schema.users');
    let stale = 0;
    for (const row of rows) {
      const cached = await engine.getOrLoad(entityKey('users', [row.id]), () => row);
      if ((cached as { n: number }).n !== row.n) stale++;
    }
    return stale;
  }

  async function fillCache(): Promise<void> {
    const engine = await res.readyEngine(prefix, {
      cache: { earlyRefreshBeta: 0, ttlMs: 600_000 },
    });
    const { rows } = await scope.q<{ id: number; n: number }>('SELECT id, n FROM $schema.users');
    for (const row of rows) await engine.getOrLoad(entityKey('users', [row.id]), () => row);
  }

  it('SIGKILL in the middle of a burst, restart: every committed change is invalidated', async () => {
    const slot = scope.slot('_kill');
    const first = startWorker(configFile, slot);
    children.push(first.child);
    await first.port;
    await waitFor(
      'first worker active',
      async () => (await readyz(first)).role === 'active',
      20_000,
    );
    await fillCache();

    let commits = 0;
    const burst = (async () => {
      for (let i = 0; i < 600; i++) {
        const id = 1 + ((i * 7) % ROWS);
        await scope.q('UPDATE $schema.users SET n = n + 1 WHERE id = $1', [id]);
        commits++;
        // Readers keep refilling the cache during the burst (and the outage).
        if (i % 3 === 0) {
          const engine = await res.readyEngine(prefix, { l1: { enabled: false } });
          const { rows } = await scope.q<{ id: number; n: number }>(
            'SELECT id, n FROM $schema.users WHERE id = $1',
            [id],
          );
          await engine.getOrLoad(entityKey('users', [id]), () => rows[0]);
          await engine.close();
        }
      }
    })();
    await waitFor('burst under way', () => commits >= 150, 20_000);
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    await burst;
    assert.ok(
      (await staleCount()) > 0,
      'with the worker dead, stale entries are really there (the test can fail)',
    );

    const second = startWorker(configFile, slot);
    children.push(second.child);
    await waitFor(
      'second worker active',
      async () => (await readyz(second).catch(() => ({ role: '' }))).role === 'active',
      20_000,
    );
    await scope.waitCaughtUp(slot);
    await sleep(100);
    assert.equal(await staleCount(), 0, 'no committed change was missed');
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
  });

  it('two workers on one slot: the standby takes over when the active one dies', async () => {
    const slot = scope.slot('_ha');
    const a = startWorker(configFile, slot);
    children.push(a.child);
    await waitFor(
      'a active',
      async () => (await readyz(a).catch(() => ({ role: '' }))).role === 'active',
      20_000,
    );
    const b = startWorker(configFile, slot);
    children.push(b.child);
    await waitFor(
      'b standby',
      async () => (await readyz(b).catch(() => ({ role: '' }))).role === 'standby',
      20_000,
    );
    const bReady = await fetch(`http://127.0.0.1:${await b.port}/readyz`);
    assert.equal(bReady.status, 503, 'a standby is not ready');

    await fillCache();
    a.child.kill('SIGKILL');
    await scope.q('UPDATE $schema.users SET n = n + 100 WHERE id <= 20');
    await waitFor('b takes over', async () => (await readyz(b)).role === 'active', 20_000);
    await scope.waitCaughtUp(slot);
    await sleep(100);
    assert.equal(await staleCount(), 0, 'the changes made while a was dying were invalidated by b');
    b.child.kill('SIGTERM');
    await new Promise((r) => b.child.once('exit', r));
  });
});
