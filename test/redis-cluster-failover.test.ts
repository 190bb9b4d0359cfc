/**
 * walcache on a Redis Cluster of the test's own (6 nodes on loopback ports), with masters
 * killed: a replica promoted without its master's last writes is a Redis rollback the
 * worker must see (docs/redis-cluster.md, "Failover"), and a master killed under load
 * costs callers no error and leaves nothing stale once the cluster has settled.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import {
  createRepository,
  defineConfig,
  RedisUnavailableError,
  resolveConfig,
} from '../src/index.js';
import { WriteBehindStore } from '../src/write-behind/write-behind-store.js';
import { sleep, uniquePrefix, waitFor } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { type PrivateCluster, startCluster } from './redis-cluster-servers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

const ROWS = 200;

describe('Redis Cluster failover', () => {
  const scope = new PgScope('clfail');
  const prefix = uniquePrefix('clfail');
  let cluster: PrivateCluster;
  let worker: InvalidationWorker | undefined;
  const closers: Array<() => Promise<unknown>> = [];
  const bumps: string[] = [];

  const configFor = (nodes: readonly string[]) =>
    defineConfig({
      prefix,
      redis: { cluster: { nodes: [...nodes] } },
      defaultSchema: scope.schema,
      cache: { earlyRefreshBeta: 0, ttlMs: 600_000 },
      accessLog: { sampleRate: 0 },
      entities: { users: { table: 'users', key: 'id', unique: ['email'] } },
    });

  before(async () => {
    cluster = await startCluster(3, 1_000);
    await scope.create(TEST_TABLES);
    await scope.q(
      `INSERT INTO $schema.users (id, email, name) SELECT g, 'u' || g || '@x', 'v0' FROM generate_series(1, ${ROWS}) g`,
    );
    worker = new InvalidationWorker({
      config: resolveConfig(configFor(cluster.nodes)),
      slot: scope.slot(),
      rollbackCheckMs: 200,
    });
    worker.events.on('epoch-bump', (reason) => bumps.push(reason));
    let failures = 0;
    worker.events.on('failure', (what, error) => {
      if (failures++ < 20) console.log(`# worker failure ${what}: ${(error as Error)?.message}`);
    });
    await worker.start();
  });
  after(async () => {
    try {
      await worker?.close();
      for (const close of closers.reverse()) await close().catch(() => {});
    } finally {
      await cluster?.stop();
      await scope.close();
    }
  });

  /** A repository of its own (a process of its own: its own L1 and connections). */
  const service = async (l1 = true) => {
    const config = configFor(cluster.nodes);
    const { db } = countingDb(scope.schema);
    closers.push(() => db.destroy());
    const repo = createRepository({
      db,
      config: l1 ? config : { ...config, l1: { enabled: false } },
    });
    closers.push(() => repo.close());
    await repo.ready();
    return repo;
  };

  const rawNode = (port: number) => {
    const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    r.on('error', () => {});
    closers.push(async () => r.disconnect());
    return r;
  };

  it('a replica promoted without the last tombstones of its master: the worker bumps the epoch and reads come back fresh', async () => {
    const repo = await service();
    const keys = repo.engine.keys;
    const heartbeatOwner = await cluster.ownerOf(keys.heartbeat());
    // A row on another master than the heartbeat's: there, only the shard's own mark
    // can show that the promoted replica lacks the tombstone.
    let id = 1;
    let owner = await cluster.ownerOf(keys.entry(`users:${id}`));
    while (owner.master === heartbeatOwner.master) {
      id++;
      owner = await cluster.ownerOf(keys.entry(`users:${id}`));
    }
    assert.equal((await repo.users.findById(id))?.name, 'v0');
    await scope.waitCaughtUp(scope.slot());
    const replica = owner.replica;
    assert.ok(replica, 'the master has a replica');
    const entryKey = keys.entry(`users:${id}`);
    const onReplica = rawNode(replica.port);
    await onReplica.readonly();
    await waitFor(
      'the entry on the replica',
      async () => (await onReplica.getBuffer(entryKey))?.[0] === 0x44,
    );
    // The replica lags: stopped, and its link cut by the master (what the master had
    // already sent stays in the replica's socket buffer; nothing after the cut reaches it).
    replica.signal('SIGSTOP');
    try {
      await rawNode(owner.master.port).call('CLIENT', 'KILL', 'TYPE', 'replica');
      await scope.q("UPDATE $schema.users SET name = 'v1' WHERE id = $1", [id]);
      await scope.waitCaughtUp(scope.slot()); // tombstoned on the master, and acknowledged
      const onMaster = await rawNode(owner.master.port).get(keys.entry(`users:${id}`));
      assert.match(onMaster ?? '', /^T/, 'the master holds the tombstone');
    } finally {
      owner.master.signal('SIGKILL');
      replica.signal('SIGCONT');
    }
    // Promote the replica at once, whatever it missed (an async replica's failover).
    await rawNode(replica.port).cluster('FAILOVER', 'TAKEOVER');
    await cluster.settled();
    const revived = await rawNode(replica.port).getBuffer(entryKey);
    assert.equal(revived?.[0], 0x44, 'the promoted replica brought the old entry back (D…)');

    // The worker sees that this master lost what it acknowledged (its mark is behind)...
    await waitFor(
      `the worker to see the shard's loss (epoch bumps so far: ${bumps.join(', ')})`,
      () => bumps.some((r) => r.startsWith('redis-shard')),
      10_000,
    );
    // ...so a service that starts now (nothing in L1) is not served the revived v0.
    const reader = await service(false);
    for (let i = 0; i < 5; i++) {
      assert.equal((await reader.users.findById(id))?.name, 'v1');
      await sleep(50);
    }
  });

  it('a master killed under load: no caller error, reads answer throughout, nothing stale once settled', async () => {
    await cluster.settled();
    const readers = [await service(), await service()];
    const errors: unknown[] = [];
    let reads = 0;
    let longest = 0;
    let running = true;
    const read = async (repo: (typeof readers)[number]) => {
      while (running) {
        const id = 1 + Math.floor(Math.random() * ROWS);
        const started = performance.now();
        try {
          await repo.users.findById(id);
          reads++;
        } catch (error) {
          errors.push(error);
        }
        longest = Math.max(longest, performance.now() - started);
        // An L1 hit resolves without a macrotask: without this the loop would starve the
        // event loop (timers, the bus, the writer) once the bus went quiet in the failover.
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    let written = 0;
    const write = async () => {
      while (running) {
        const id = 1 + Math.floor(Math.random() * ROWS);
        await scope.q('UPDATE $schema.users SET name = $2 WHERE id = $1', [id, `w${written++}`]);
        await sleep(5);
      }
    };
    const loops = [...readers.map(read), write()];
    await sleep(500);
    // A master with a replica to take over (the first test's promoted one has none).
    let victim = await cluster.ownerOf(readers[0]?.engine.keys.entry('users:1') ?? '');
    for (let id = 2; victim.replica === undefined; id++)
      victim = await cluster.ownerOf(readers[0]?.engine.keys.entry(`users:${id}`) ?? '');
    const readsBefore = reads;
    victim.master.signal('SIGKILL');
    await cluster.settled(30_000);
    await sleep(500);
    running = false;
    await Promise.all(loops);
    assert.deepEqual(errors, [], 'no read failed');
    assert.ok(reads > readsBefore, 'reads went on during the failover');
    assert.ok(longest < 2_000, `the slowest read took ${longest.toFixed(0)} ms`);

    await scope.waitCaughtUp(scope.slot(), 60_000);
    await sleep(300);
    const { rows } = await scope.q<{ id: string; name: string }>(
      'SELECT id::text, name FROM $schema.users ORDER BY id',
    );
    const stale: string[] = [];
    for (const repo of readers)
      for (const row of rows) {
        const cached = await repo.users.findById(Number(row.id));
        if (cached?.name !== row.name) stale.push(`${row.id}: ${cached?.name} != ${row.name}`);
      }
    assert.deepEqual(stale, [], 'stale_after_settle is 0');
    console.log(
      `# failover under load: ${reads} reads, ${written} writes, slowest read ${longest.toFixed(0)} ms`,
    );
  });
});

describe('Redis Cluster failover and write-behind', () => {
  const prefix = uniquePrefix('clwb');
  let cluster: PrivateCluster;
  const stores: WriteBehindStore[] = [];
  const clients: Redis[] = [];

  before(async () => {
    cluster = await startCluster(3, 1_000);
  });
  after(async () => {
    for (const store of stores) await store.close().catch(() => {});
    for (const client of clients) client.disconnect();
    await cluster?.stop();
  });

  const newStore = async () => {
    const store = new WriteBehindStore(
      resolveConfig({
        prefix,
        redis: { cluster: { nodes: [...cluster.nodes] } },
        writeBehind: { replicaTimeoutMs: 500 },
        entities: { counters: { table: 'counters', key: 'id', writeBehind: true } },
      }),
    );
    stores.push(store);
    await store.ready();
    return store;
  };

  it('a write is acknowledged only once a replica holds it: none acknowledged is lost when its master dies', async () => {
    const store = await newStore();
    const owner = await cluster.ownerOf(store.keys.writeBehindQueue('counters'));
    const replica = owner.replica;
    assert.ok(replica, 'the master has a replica');
    await store.put('counters', '1', { value: 1 });
    const acknowledged = new Set(['1']);
    replica.signal('SIGSTOP');
    let refused: unknown;
    try {
      const master = new Redis(owner.master.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      clients.push(master);
      await master.call('CLIENT', 'KILL', 'TYPE', 'replica');
      // The replica is cut off: this write cannot reach it.
      await store.put('counters', '2', { value: 2 }).then(
        () => acknowledged.add('2'),
        (error: unknown) => {
          refused = error;
        },
      );
    } finally {
      owner.master.signal('SIGKILL');
      replica.signal('SIGCONT');
    }
    const promoted = new Redis(replica.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    clients.push(promoted);
    await promoted.cluster('FAILOVER', 'TAKEOVER');
    await cluster.settled();
    const after = await newStore();
    const found = await after.read('counters', ['1', '2']);
    for (const [i, key] of ['1', '2'].entries())
      if (acknowledged.has(key)) assert.ok(found[i], `acknowledged write ${key} survived`);
    assert.ok(refused instanceof RedisUnavailableError, 'the unreplicated write was refused');
    assert.match(String((refused as Error).cause), /replica/);
  });
});
