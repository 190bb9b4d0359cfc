/**
 * readYourWrites must not return the pre-write value when the bus is slower than the
 * heartbeat: the receipt wait reads the worker's position on the command connection,
 * while L1 entries and trusted tag versions are dropped by messages on the bus
 * connection, and which socket Node reads first is not ordered. Here the reader's bus
 * delivers every message 300 ms late (the real connection, its events held back).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Cluster, Redis, type RedisOptions } from 'ioredis';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { CacheEngine, createRepository, defineConfig, resolveConfig } from '../src/index.js';
import {
  ON_CLUSTER,
  REDIS_CONFIG,
  REDIS_URL,
  Resources,
  testRedis,
  uniquePrefix,
} from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

/** How late the reader's bus delivers each message. */
const BUS_DELAY_MS = 300;

/** A client whose bus connection (a duplicate of it) delivers every message late. */
function slowBusRedis(): Redis {
  const client = new Redis(REDIS_URL);
  const duplicate = client.duplicate.bind(client);
  client.duplicate = ((...args: Parameters<Redis['duplicate']>) => {
    const sub = duplicate(...args);
    const emit = sub.emit.bind(sub);
    sub.emit = ((event: string | symbol, ...rest: unknown[]) => {
      if (event !== 'messageBuffer') return emit(event, ...rest);
      setTimeout(() => emit(event, ...rest), BUS_DELAY_MS);
      return true;
    }) as Redis['emit'];
    return sub;
  }) as Redis['duplicate'];
  return client;
}

/**
 * The same on a cluster: the bus opens a `Redis` of its own on its slot's master, with the
 * cluster's node options; a marker among them tells the patched emit which connection's
 * shard messages to hold back.
 */
const SLOW_BUS = 'walcacheTestSlowBus';
function slowBusCluster(): Cluster {
  const emit = Redis.prototype.emit;
  Redis.prototype.emit = function (this: Redis, event: string | symbol, ...rest: unknown[]) {
    const slow = (this.options as Record<string, unknown>)[SLOW_BUS] === true;
    if (!slow || event !== 'smessageBuffer') return emit.call(this, event, ...rest);
    setTimeout(() => emit.call(this, event, ...rest), BUS_DELAY_MS);
    return true;
  } as Redis['emit'];
  return testRedis({ [SLOW_BUS]: true } as RedisOptions) as Cluster;
}

describe('readYourWrites with a slow bus', () => {
  const res = new Resources();
  const scope = new PgScope('rywbus');
  const prefix = res.track(uniquePrefix('rywbus'));
  const writerDb = countingDb(scope.schema);
  const readerDb = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    repository: { readYourWritesTimeoutMs: 5_000 },
    entities: { users: { table: 'users', key: 'id' }, orders: { table: 'orders', key: 'id' } },
    invalidateBy: { orders: ['user_id'] },
  });
  // The reader's own Redis client: its bus connection is a duplicate whose messages we delay.
  const client = ON_CLUSTER ? slowBusCluster() : slowBusRedis();
  const engine = new CacheEngine({ config, redis: client });
  const writer = createRepository({ db: writerDb.db, config });
  const reader = createRepository({ db: readerDb.db, config, cache: engine });
  let worker: InvalidationWorker | undefined;

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`INSERT INTO $schema.users (id, email, name) VALUES (1, 'a@x', 'before');
      INSERT INTO $schema.orders (id, user_id, total) VALUES (1, 7, 10);`);
    worker = new InvalidationWorker({
      config: resolveConfig(config),
      slot: scope.slot(),
      heartbeatIntervalMs: 100,
    });
    await worker.start();
    assert.ok(await engine.ready());
  });
  after(async () => {
    await worker?.close();
    await writer.close();
    await reader.close();
    await engine.close();
    client.disconnect();
    await writerDb.db.destroy();
    await readerDb.db.destroy();
    await res.close();
    await scope.close();
  });

  it('an entity read with a receipt sees the write, not the L1 copy the late bus has not dropped yet', async () => {
    assert.equal((await reader.users.findById(1))?.name, 'before');
    assert.equal((await reader.users.findById(1))?.name, 'before', 'now in L1');
    const { receipt } = await writer.users.update(1, { name: 'after' });
    assert.equal((await reader.users.findById(1, { readYourWrites: receipt }))?.name, 'after');
  });

  it('a cached query read with a receipt sees the write, not a version of its tag trusted in memory', async () => {
    const q = () => readerDb.db.selectFrom('orders').select('id').where('user_id', '=', 7);
    assert.deepEqual(
      (await reader.cached(q())).map((r) => r.id),
      [1],
    );
    await new Promise((r) => setTimeout(r, 400)); // older bus messages have landed
    assert.deepEqual(
      (await reader.cached(q())).map((r) => r.id),
      [1],
    );
    const { receipt } = await writer.transaction(async (tx) => {
      await tx.orders.insert({ id: 2, user_id: 7 });
    });
    const rows = await reader.cached(q(), { readYourWrites: receipt });
    assert.deepEqual(rows.map((r) => r.id).sort(), [1, 2]);
  });
});
