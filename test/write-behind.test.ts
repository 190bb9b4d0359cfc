import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { pgConfig } from '../src/config/database.js';
import {
  ConfigError,
  createRepository,
  defineConfig,
  InvalidWriteError,
  resolveConfig,
  SerializationError,
  ValueTooLargeError,
} from '../src/index.js';
import { flushWriteBehind } from '../src/write-behind/write-behind-flush.js';
import { WriteBehindStore } from '../src/write-behind/write-behind-store.js';
import { REDIS_CONFIG, Resources, redisEnv, uniquePrefix, waitFor } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

interface DB {
  counters: { id: number; value: number; note: string | null; secret: string | null };
  plain: { id: number; value: number };
}

describe('write-behind', () => {
  const res = new Resources();
  const scope = new PgScope('wb');
  const prefix = res.track(uniquePrefix('wb'));
  const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 8 });
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    accessLog: { sampleRate: 0 },
    writeBehind: { batchSize: 1_000_000, maxAttempts: 2 },
    jobs: { shutdownTimeoutMs: 5_000 },
    entities: {
      counters: { table: 'counters', key: 'id', writeBehind: true, deny: ['secret'] },
      plain: { table: 'plain', key: 'id' },
    },
  });
  const resolved = resolveConfig(config);
  const store = new WriteBehindStore(resolved);
  const repos: Array<{ close(): Promise<void> }> = [];
  const newRepo = () => {
    const repo = createRepository({ db, config });
    repos.push(repo);
    return repo;
  };
  const flush = (repo: ReturnType<typeof newRepo>) =>
    flushWriteBehind({ engine: repo.engine, db, config: resolved, entity: 'counters', store });
  const flushAll = async (repo: ReturnType<typeof newRepo>) => {
    for (let i = 0; i < 1000; i++) if ((await flush(repo)).remaining === 0) return;
    throw new Error('still pending');
  };
  const dbValue = async (id: number) =>
    (await scope.q('SELECT value FROM $schema.counters WHERE id = $1', [id])).rows[0]?.value;

  before(async () => {
    await scope.create(`
      CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL CHECK (value >= 0), note text, secret text);
      CREATE TABLE plain (id int PRIMARY KEY, value int);
      CREATE TABLE history (id int, old int, new int, at timestamptz DEFAULT clock_timestamp());
      CREATE FUNCTION record_history() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        BEGIN INSERT INTO history (id, old, new) VALUES (NEW.id, OLD.value, NEW.value); RETURN NEW; END $$;
      CREATE TRIGGER counters_history AFTER UPDATE ON counters FOR EACH ROW EXECUTE FUNCTION record_history();
      INSERT INTO counters (id, value) SELECT g, 0 FROM generate_series(1, 500) g;`);
  });
  after(async () => {
    for (const repo of repos) await repo.close();
    await store.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  it('reads see a pending write until it is flushed, then the database has it', async () => {
    const repo = newRepo();
    assert.equal((await repo.counters.findById(1))?.value, 0);
    const { seq, pending } = await repo.counters.writeBehind(1, { value: 41, note: 'n' });
    assert.ok(seq > 0 && pending >= 1);
    assert.deepEqual(await repo.counters.findById(1), { id: 1, value: 41, note: 'n' });
    assert.equal(await dbValue(1), 0, 'not flushed yet');
    await repo.counters.writeBehind(1, { value: 42 });
    assert.deepEqual(await repo.counters.findById(1), { id: 1, value: 42, note: 'n' });
    const { rows: many } = await repo.counters.findMany([2, 1]);
    assert.deepEqual(
      many.map((r) => r?.value),
      [0, 42],
    );
    const result = await flush(repo);
    assert.equal(result.rows, 1);
    assert.equal(result.remaining, 0);
    assert.equal(await dbValue(1), 42);
    assert.deepEqual(await repo.counters.findById(1), { id: 1, value: 42, note: 'n' });
    const stats = await store.stats('counters');
    assert.deepEqual(stats, { pending: 0, oldestAgeMs: 0, dead: 0 });
  });

  it('10k writes over 500 keys from 4 producers, flushed while they write: the last value per key lands', async () => {
    const producers = [newRepo(), newRepo(), newRepo(), newRepo()];
    const last = new Map<number, { seq: number; value: number }>();
    let writing = true;
    const flushers = [newRepo(), newRepo()].map(async (repo) => {
      while (writing) await flush(repo);
    });
    let value = 0;
    await Promise.all(
      producers.map(async (repo, p) => {
        for (let i = 0; i < 2500; i++) {
          const id = 1 + ((i * 7 + p * 131) % 500);
          const v = ++value;
          const { seq } = await repo.counters.writeBehind(id, { value: v });
          const seen = last.get(id);
          if (!seen || seen.seq < seq) last.set(id, { seq, value: v });
        }
      }),
    );
    writing = false;
    await Promise.all(flushers);
    await flushAll(producers[0] as ReturnType<typeof newRepo>);
    const { rows } = await scope.q<{ id: number; value: number }>(
      'SELECT id, value FROM $schema.counters WHERE id <= 500 ORDER BY id',
    );
    assert.equal(rows.length, 500);
    for (const row of rows) assert.equal(row.value, last.get(row.id)?.value, `counter ${row.id}`);
    for (const row of rows.slice(0, 50))
      assert.equal((await producers[1]?.counters.findById(row.id))?.value, row.value);
  });

  it('a flusher SIGKILLed mid-flush loses nothing and applies nothing out of order', async () => {
    const repo = newRepo();
    await scope.q('TRUNCATE $schema.history');
    const ids = Array.from({ length: 100 }, (_, i) => 101 + i);
    let v = 1_000_000;
    for (const id of ids) await repo.counters.writeBehind(id, { value: ++v });
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/wb-flusher.ts', JSON.stringify(config), '5000'],
      { env: redisEnv(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('in-flush')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`flusher exited early (${code})`)));
    });
    // Newer writes arrive while the child is inside its flush transaction.
    for (const id of ids) await repo.counters.writeBehind(id, { value: ++v });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const pending = await store.stats('counters');
    assert.equal(pending.pending, 100, 'everything still pending after the crash');
    await flushAll(repo);
    for (const [i, id] of ids.entries()) assert.equal(await dbValue(id), 1_000_101 + i, `id ${id}`);
    const { rows } = await scope.q<{ id: number; old: number; new: number }>(
      'SELECT id, old, new FROM $schema.history ORDER BY at',
    );
    for (const row of rows) assert.ok(row.new >= row.old, `id ${row.id}: ${row.old} -> ${row.new}`);
  });

  it('a record the database refuses goes to the dead-letter list, and its key reads the database', async () => {
    const repo = newRepo();
    await repo.counters.writeBehind(300, { value: 5 });
    await flushAll(repo);
    await repo.counters.writeBehind(300, { value: -1 }); // violates the CHECK
    await repo.counters.writeBehind(301, { value: 6 });
    assert.equal((await repo.counters.findById(300))?.value, -1, 'pending, as written');
    const first = await flush(repo);
    assert.deepEqual([first.rows, first.failed, first.dead], [1, 1, 0]);
    assert.equal(await dbValue(301), 6, 'the rest of the batch was written');
    const second = await flush(repo);
    assert.deepEqual([second.failed, second.dead, second.remaining], [1, 1, 0]);
    const dead = await store.deadLetters('counters');
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.key, 'counters:300');
    assert.equal(dead[0]?.code, '23514');
    assert.match(dead[0]?.error ?? '', /check constraint/);
    assert.deepEqual(dead[0]?.values, { value: -1 });
    assert.equal((await repo.counters.findById(300))?.value, 5, 'the database value');
    assert.equal((await store.stats('counters')).dead, 1);
  });

  it('bad patches are refused before anything is queued', async () => {
    const repo = newRepo();
    const before = await store.stats('counters');
    await assert.rejects(
      repo.counters.writeBehind(5, { nope: 1 } as never),
      (e: unknown) => e instanceof InvalidWriteError && /nope/.test(e.message),
    );
    await assert.rejects(repo.counters.writeBehind(5, { secret: 'x' }), InvalidWriteError);
    await assert.rejects(repo.counters.writeBehind(5, { id: 6 } as never), InvalidWriteError);
    await assert.rejects(repo.counters.writeBehind(5, {}), InvalidWriteError);
    await assert.rejects(repo.counters.writeBehind(5, { note: undefined }), InvalidWriteError);
    await assert.rejects(
      repo.counters.writeBehind(5, { note: (() => 'x') as never }),
      SerializationError,
    );
    await assert.rejects(
      repo.counters.writeBehind(5, { note: randomBytes(2 * 1024 * 1024).toString('base64') }),
      ValueTooLargeError,
    );
    await assert.rejects(repo.plain.writeBehind(5, { value: 1 }), InvalidWriteError);
    await assert.rejects(
      flushWriteBehind({ engine: repo.engine, db, config: resolved, entity: 'plain' }),
      ConfigError,
    );
    assert.deepEqual(await store.stats('counters'), before);
  });

  it('close() drains what the repository wrote', async () => {
    const repo = createRepository({ db, config });
    await repo.counters.writeBehind(400, { value: 4000 });
    await repo.counters.writeBehind(401, { value: 4010 });
    await repo.close();
    assert.equal(await dbValue(400), 4000);
    assert.equal(await dbValue(401), 4010);
  });

  it('the worker invalidating a flushed row does not lose a newer pending write', async () => {
    const worker = new InvalidationWorker({ config: resolved, slot: scope.slot() });
    await worker.start();
    try {
      const repo = newRepo();
      await repo.counters.writeBehind(450, { value: 1 });
      await flushAll(repo);
      await repo.counters.writeBehind(450, { value: 2 }); // pending while the worker applies 1
      await scope.waitCaughtUp(scope.slot());
      assert.equal((await repo.counters.findById(450))?.value, 2);
      await flushAll(repo);
      await scope.waitCaughtUp(scope.slot());
      await waitFor(
        'row 450 reads 2',
        async () => (await repo.counters.findById(450))?.value === 2,
      );
      assert.equal(await dbValue(450), 2);
    } finally {
      await worker.close();
    }
  });
});
