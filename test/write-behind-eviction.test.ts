import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import {
  createRepository,
  defineConfig,
  JobsRunner,
  resolveConfig,
  type WalcacheConfigInput,
} from '../src/index.js';
import { flushWriteBehind } from '../src/write-behind/write-behind-flush.js';
import {
  CLUSTER_NODES,
  ON_CLUSTER,
  REDIS_CONFIG,
  REDIS_URL,
  Resources,
  startRedis,
  uniquePrefix,
} from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

interface DB {
  counters: { id: number; value: number };
}

/**
 * Write-behind state and the cache's eviction policy (issue 14, case 1). The cache wants
 * `allkeys-lru`; pending writes must not live where it evicts. Each test runs its own
 * redis-server with a small `maxmemory`, so eviction happens for real.
 */
describe('write-behind and eviction', () => {
  const res = new Resources();
  const scope = new PgScope('wbevict');
  const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 4 });
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  const servers: ChildProcess[] = [];
  const closers: Array<() => Promise<void>> = [];
  const lru = ['--maxmemory', '4mb', '--maxmemory-policy', 'allkeys-lru'];
  /** The cache and the queues on the given private servers, else on the Redis under test. */
  const input = (prefix: string, redis: { cache?: string; jobs?: string }) =>
    ({
      prefix,
      databaseUrl: DATABASE_URL,
      redis: redis.cache === undefined ? REDIS_CONFIG : { url: redis.cache },
      jobs: {
        ...(redis.jobs !== undefined
          ? { redisUrl: redis.jobs }
          : ON_CLUSTER
            ? { redisCluster: { nodes: CLUSTER_NODES } }
            : { redisUrl: REDIS_URL }),
        shutdownTimeoutMs: 5_000,
      },
      defaultSchema: scope.schema,
      accessLog: { sampleRate: 0 },
      writeBehind: { batchSize: 1_000_000 },
      entities: { counters: { table: 'counters', key: 'id', writeBehind: true } },
    }) satisfies WalcacheConfigInput;
  const dbValues = async () =>
    new Map(
      (
        await scope.q<{ id: number; value: number }>('SELECT id, value FROM $schema.counters')
      ).rows.map((r) => [r.id, r.value]),
    );

  before(async () => {
    await scope.create(`CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL);
      INSERT INTO counters SELECT g, 0 FROM generate_series(1, 300) g;`);
  });
  after(async () => {
    for (const close of closers) await close().catch(() => {});
    for (const server of servers) server.kill('SIGKILL');
    await db.destroy();
    await res.close();
    await scope.close();
  });

  it('an allkeys-lru cache server filled by cache traffic loses no acknowledged write', async () => {
    const cache = await startRedis(lru);
    servers.push(cache.process);
    const prefix = res.track(uniquePrefix('wbevict'));
    const config = defineConfig(input(prefix, { cache: cache.url }));
    const repo = createRepository({ db, config });
    closers.push(() => repo.close());
    for (let id = 1; id <= 300; id++) await repo.counters.writeBehind(id, { value: 1000 + id });
    // Ordinary cache traffic: 12 MB of entries through a 4 MB server.
    for (let i = 0; i < 3_000; i++)
      await repo.engine.set(`filler:${i}`, randomBytes(3_000).toString('base64'));
    const admin = new Redis(cache.url);
    const evicted = Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))?.[1]);
    admin.disconnect();
    assert.ok(evicted > 1_000, `the cache server evicted (${evicted} keys)`);
    // Reads still overlay the pending values.
    for (const id of [1, 150, 300])
      assert.equal((await repo.counters.findById(id))?.value, 1000 + id, `read of ${id}`);
    const resolved = resolveConfig(config);
    for (let i = 0; i < 100; i++) {
      const result = await flushWriteBehind({
        engine: repo.engine,
        db,
        config: resolved,
        entity: 'counters',
      });
      if (result.remaining === 0) break;
    }
    const values = await dbValues();
    const lost = [...values].filter(([id, value]) => value !== 1000 + id).map(([id]) => id);
    assert.deepEqual(lost, [], `${lost.length} of 300 acknowledged writes lost`);
  });

  it('write-behind is refused on a jobs Redis that may evict it: typed error, nothing queued, the runner does not start', async () => {
    const jobs = await startRedis(lru);
    servers.push(jobs.process);
    const prefix = uniquePrefix('wbevict');
    const config = defineConfig(input(prefix, { jobs: jobs.url }));
    const repo = createRepository({ db, config });
    closers.push(() => repo.close());
    const refused = (error: unknown) => {
      const e = error as { code?: string; message?: string };
      assert.equal(e.code, 'E_EVICTION_POLICY', String(error));
      assert.match(e.message ?? '', /allkeys-lru/);
      assert.match(e.message ?? '', /fix: .*maxmemory-policy noeviction/);
      return true;
    };
    await assert.rejects(repo.counters.writeBehind(1, { value: 5 }), refused);
    const admin = new Redis(jobs.url);
    closers.push(async () => admin.disconnect());
    assert.deepEqual(await admin.keys(`${prefix}:wb:*`), [], 'nothing queued');

    const runner = new JobsRunner({ config, db, schedule: false });
    closers.push(() => runner.close());
    await assert.rejects(runner.start(), refused);

    // A policy that cannot evict write-behind keys (they never carry a TTL) is accepted.
    await admin.config('SET', 'maxmemory-policy', 'volatile-lru');
    const again = createRepository({ db, config });
    closers.push(() => again.close());
    await again.counters.writeBehind(2, { value: 6 });
    assert.equal((await again.counters.findById(2))?.value, 6);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
  });
});
