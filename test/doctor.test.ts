import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import {
  type DoctorCheck,
  type DoctorReport,
  doctor,
  resolveConfig,
  setup,
  type WalcacheConfigInput,
} from '../src/index.js';
import { Keys } from '../src/keys/redis-keys.js';
import { allowListFix, parsePluginList } from '../src/ops/doctor-postgres.js';
import {
  freePort,
  REDIS_CONFIG,
  Resources,
  readyMasters,
  runCli,
  startRedis,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { startMastersOnly } from './redis-cluster-servers.js';

const cli = runCli;

function show(report: DoctorReport): string {
  return report.checks.map((c) => `${c.status} ${c.name}: ${c.detail}`).join('\n');
}

function find(report: DoctorReport, name: string, detail?: RegExp): DoctorCheck {
  const found = report.checks.find((c) => c.name === name && (!detail || detail.test(c.detail)));
  assert.ok(found, `no ${name} check${detail ? ` matching ${detail}` : ''} in:\n${show(report)}`);
  return found;
}

function heartbeat(appliedAgoMs: number, lagMs: number): string {
  const now = Date.now();
  return JSON.stringify({
    lsn: '0/16B3748',
    commitTime: now - appliedAgoMs - lagMs,
    appliedAt: now - appliedAgoMs,
    runId: 'doctor-test',
  });
}

const TABLES = `
  CREATE TABLE users (id bigint PRIMARY KEY, email text);
  CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric(12,2));`;

describe('walcache doctor', () => {
  const res = new Resources();
  const good = new PgScope('doctor');
  const bad = new PgScope('doctorbad');
  const dir = mkdtempSync(join(tmpdir(), 'walcache-doctor-'));
  const goodPrefix = res.track(uniquePrefix('doctor'));
  const badPrefix = res.track(uniquePrefix('doctorbad'));
  const goodSlot = good.slot();
  const badSlot = bad.slot();
  const publication = `${good.schema}_pub`;
  let appendonly = false;
  /**
   * Streams the good slot (under a prefix of its own, so the heartbeats the tests write
   * stay theirs): doctor reports a worker as running only while its slot has a consumer.
   */
  let slotHolder: InvalidationWorker | undefined;

  const goodInput: WalcacheConfigInput = {
    prefix: goodPrefix,
    databaseUrl: DATABASE_URL,
    redis: REDIS_CONFIG,
    defaultSchema: good.schema,
    entities: {
      users: { table: 'users', key: 'id' },
      orders: { table: 'orders', key: 'id' },
    },
    invalidateBy: { orders: ['user_id'] },
  };
  const badInput: WalcacheConfigInput = {
    prefix: badPrefix,
    databaseUrl: DATABASE_URL,
    redis: REDIS_CONFIG,
    defaultSchema: bad.schema,
    entities: {
      items: { table: 'items', key: 'id' },
      ghosts: { table: 'ghosts', key: 'id' },
    },
    // a non-key column: the worker needs its old value, so items needs REPLICA IDENTITY FULL
    invalidateBy: { items: ['owner_id'] },
  };

  const writeConfig = (name: string, value: unknown) => {
    const file = join(dir, name);
    writeFileSync(file, `export default ${JSON.stringify(value)};\n`);
    return file;
  };

  before(async () => {
    await good.create(TABLES);
    await bad.create('CREATE TABLE items (id int PRIMARY KEY, owner_id int);');
    const report = await setup({
      config: resolveConfig(goodInput),
      slot: goodSlot,
      publication,
      walcacheSchema: good.schema,
    });
    assert.ok(report.ok, JSON.stringify(report.steps));
    slotHolder = new InvalidationWorker({
      config: resolveConfig({ ...goodInput, prefix: res.track(uniquePrefix('doctorhold')) }),
      slot: goodSlot,
    });
    await slotHolder.start();
    // Every master's (each keeps its own slots' entries).
    const answers = await Promise.all(
      (await readyMasters(res.redis())).map((node) => node.config('GET', 'appendonly')),
    );
    appendonly = answers.every((answer) => answer[1] === 'yes');
  });

  after(async () => {
    await slotHolder?.stop();
    rmSync(dir, { recursive: true, force: true });
    await good.q(`DROP PUBLICATION IF EXISTS "${publication}"`);
    await res.close();
    await good.close();
    await bad.close();
  });

  /** The good config with `users` written behind. */
  const writeBehindInput = (
    prefix: string,
    extra: Partial<WalcacheConfigInput> = {},
  ): WalcacheConfigInput => ({
    ...goodInput,
    ...extra,
    prefix,
    entities: {
      users: { table: 'users', key: 'id', writeBehind: true },
      orders: { table: 'orders', key: 'id' },
    },
  });

  const beat = async (prefix: string, appliedAgoMs: number, lagMs = 40) => {
    await res.redis().set(new Keys(prefix).heartbeat(), heartbeat(appliedAgoMs, lagMs));
  };

  it('a good setup (slot, replica identity, fresh heartbeat) is ok, with warnings only', async () => {
    await beat(goodPrefix, 200);
    const report = await doctor({ config: resolveConfig(goodInput), slot: goodSlot });
    assert.equal(report.ok, true, show(report));
    assert.deepEqual(
      report.checks.filter((c) => c.status === 'fail'),
      [],
    );
    assert.equal(find(report, 'postgres').status, 'ok');
    assert.equal(find(report, 'wal_level').status, 'ok');
    assert.match(find(report, 'slot').detail, new RegExp(`slot ${goodSlot} exists \\(wal2json\\)`));
    assert.match(find(report, 'output-plugin').detail, /wal2json is usable/);
    assert.match(
      find(report, 'slot-active').detail,
      new RegExp(`slot ${goodSlot} is streamed by a worker \\(pid \\d+\\)`),
    );
    assert.equal(find(report, 'slot-wal-status').status, 'ok');
    assert.equal(find(report, 'slot-retained-wal').status, 'ok');
    assert.match(
      find(report, 'replica-identity').detail,
      new RegExp(
        `2 of 2 configured tables found, keys and tags match their columns; REPLICA IDENTITY FULL on ${good.schema}\\.orders`,
      ),
    );
    assert.equal(find(report, 'redis').status, 'ok');
    const worker = find(report, 'worker');
    assert.equal(worker.status, 'ok');
    assert.match(worker.detail, /heartbeat \d+ ms ago, lag \d+ ms/);
    // Every warning says what to do.
    for (const c of report.checks) if (c.status === 'warn') assert.ok(c.fix, c.detail);
  });

  it('warns when the queues Redis runs without appendonly (the local Redis has no persistence); the cache needs none', async () => {
    await beat(goodPrefix, 100);
    const report = await doctor({ config: resolveConfig(goodInput), slot: goodSlot });
    assert.equal(find(report, 'redis-persistence').status, 'ok');
    const persistence = find(report, 'queues-persistence');
    if (appendonly) {
      assert.equal(persistence.status, 'ok');
      return;
    }
    assert.equal(persistence.status, 'warn');
    assert.match(persistence.detail, /appendonly no: a restart loses queued jobs/);
    assert.match(persistence.fix ?? '', /appendonly yes/);
    // Cache and queues on one server: said, with what it costs.
    assert.equal(find(report, 'redis-shared').status, 'warn');
  });

  it('the CLI prints one line per check and exits 0 when nothing fails', async () => {
    const file = writeConfig('good.mjs', goodInput);
    await beat(goodPrefix, 100);
    const { code, stdout, stderr } = await cli(['doctor', '--config', file, '--slot', goodSlot]);
    assert.equal(code, 0, stderr + stdout);
    const lines = stdout.trim().split('\n');
    assert.ok(lines.includes(`✔ slot ${goodSlot} exists (wal2json)`), stdout);
    assert.ok(lines.includes('✔ wal_level = logical'), stdout);
    assert.ok(
      lines.some((l) => l.startsWith('! ')),
      stdout,
    );
    assert.match(lines.at(-1) ?? '', /^no problems, \d+ warnings?$/);

    const json = await cli(['doctor', '--config', file, '--slot', goodSlot, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as DoctorReport;
    assert.equal(report.ok, true);
    assert.ok(report.checks.length >= 10);
  });

  it('a misconfigured setup: missing slot, no heartbeat, a table without REPLICA IDENTITY FULL, a missing table', async () => {
    const report = await doctor({ config: resolveConfig(badInput), slot: badSlot });
    assert.equal(report.ok, false);
    const slot = find(report, 'slot');
    assert.equal(slot.status, 'fail');
    assert.match(slot.detail, new RegExp(`slot ${badSlot} does not exist`));
    assert.match(slot.fix ?? '', new RegExp(`walcache setup --slot ${badSlot}`));
    // The plugin was tested with a temporary slot, which is gone again.
    assert.match(find(report, 'output-plugin').detail, /tested with a temporary slot/);
    const { rows } = await bad.q(
      "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'walcache\\_doctor\\_%'",
    );
    assert.deepEqual(rows, []);

    const identity = find(report, 'replica-identity', /needs REPLICA IDENTITY FULL/);
    assert.equal(identity.status, 'fail');
    assert.match(identity.detail, new RegExp(`${bad.schema}\\.items`));
    assert.match(identity.detail, /owner_id/);
    assert.equal(
      identity.fix?.split(';')[0],
      `ALTER TABLE "${bad.schema}"."items" REPLICA IDENTITY FULL`,
    );
    const missing = find(report, 'table');
    assert.equal(missing.status, 'fail');
    assert.match(missing.detail, new RegExp(`${bad.schema}\\.ghosts does not exist`));

    const worker = find(report, 'worker');
    assert.equal(worker.status, 'fail');
    assert.match(worker.detail, /worker not running: no heartbeat/);
    assert.match(worker.fix ?? '', /walcache worker/);

    for (const c of report.checks)
      if (c.status === 'fail') assert.ok(c.fix && c.fix.length > 0, `${c.name} has a fix`);

    const file = writeConfig('bad.mjs', badInput);
    const run = await cli(['doctor', '--config', file, '--slot', badSlot]);
    assert.equal(run.code, 1, run.stderr + run.stdout);
    assert.equal(run.stderr, '');
    const lines = run.stdout.split('\n');
    const at = lines.findIndex((l) => l.startsWith(`✖ replication slot ${badSlot} does not exist`));
    assert.ok(at >= 0, run.stdout);
    assert.match(lines[at + 1] ?? '', /^ {2}fix: walcache setup/);
    assert.ok(
      lines.some((l) => /^✖ worker not running/.test(l)),
      run.stdout,
    );
    assert.match(run.stdout, /\n4 problems to fix, \d+ warnings?\n$/);
  });

  it('a worker stopped a moment ago is not running, although its heartbeat is fresh: the slot has no consumer', async () => {
    const prefix = res.track(uniquePrefix('doctorstop'));
    const slot = good.slot('_stop');
    const config = resolveConfig({ ...goodInput, prefix });
    const worker = new InvalidationWorker({ config, slot, heartbeatIntervalMs: 200 });
    try {
      await worker.start();
      await waitFor(
        'a heartbeat after a commit',
        async () => {
          const raw = await res.redis().get(new Keys(prefix).heartbeat());
          return raw !== null && (JSON.parse(raw) as { commitTime: number }).commitTime > 0;
        },
        10_000,
      );
      const running = await doctor({ config, slot });
      assert.equal(find(running, 'worker').status, 'ok', show(running));
      assert.match(find(running, 'worker').detail, /^worker alive/);
    } finally {
      await worker.stop();
    }
    const report = await doctor({ config, slot });
    const check = find(report, 'worker');
    assert.equal(check.status, 'fail', show(report));
    assert.match(
      check.detail,
      new RegExp(
        `^worker not running on slot ${slot}: nothing streams it \\(pg_replication_slots\\.active is false\\), although the last heartbeat is \\d+ ms old`,
      ),
    );
    assert.match(check.fix ?? '', new RegExp(`walcache worker --slot ${slot}`));
    assert.equal(report.ok, false);
  });

  it('a heartbeat older than 15 s fails; a lagging worker warns', async () => {
    await beat(goodPrefix, 20_000);
    let report = await doctor({ config: resolveConfig(goodInput), slot: goodSlot });
    let worker = find(report, 'worker');
    assert.equal(worker.status, 'fail');
    assert.match(worker.detail, /last heartbeat is 2\d\.\d s old/);
    assert.equal(report.ok, false);

    await beat(goodPrefix, 500, 120_000);
    report = await doctor({ config: resolveConfig(goodInput), slot: goodSlot });
    worker = find(report, 'worker');
    assert.equal(worker.status, 'warn');
    assert.match(worker.detail, /2\.0 min behind/);
    assert.equal(report.ok, true, show(report));

    // A worker that has applied no commit yet (a new slot, an idle database) writes commit
    // time 0: no lag to speak of, not 57 years of it.
    const now = Date.now();
    await res
      .redis()
      .set(
        new Keys(goodPrefix).heartbeat(),
        JSON.stringify({ lsn: '0/16B3748', commitTime: 0, appliedAt: now - 300, runId: 'd' }),
      );
    report = await doctor({ config: resolveConfig(goodInput), slot: goodSlot });
    worker = find(report, 'worker');
    assert.equal(worker.status, 'ok', show(report));
    assert.match(
      worker.detail,
      /^worker alive: heartbeat \d+ ms ago, no commit applied yet, at 0\/16B3748$/,
    );
  });

  it('write-behind: backlog and dead letters warn, and appendonly off fails', async () => {
    const prefix = res.track(uniquePrefix('doctorwb'));
    const input = writeBehindInput(prefix);
    await beat(prefix, 100);
    let report = await doctor({ config: resolveConfig(input), slot: goodSlot });
    let wb = find(report, 'write-behind');
    assert.equal(wb.status, 'ok', show(report));
    assert.equal(wb.detail, 'write-behind users: 0 pending, oldest 0 ms, 0 dead letters');
    if (!appendonly) {
      const persistence = find(report, 'queues-persistence');
      assert.equal(persistence.status, 'fail');
      assert.match(persistence.detail, /pending write-behind writes \(users\)/);
      assert.match(persistence.fix ?? '', /appendonly yes/);
    }

    const keys = new Keys(prefix);
    const redis = res.redis();
    await redis.zadd(keys.writeBehindQueue('users'), Date.now() - 90_000, 'users:1');
    report = await doctor({ config: resolveConfig(input), slot: goodSlot });
    wb = find(report, 'write-behind');
    assert.equal(wb.status, 'warn');
    assert.match(
      wb.detail,
      /users: 1 pending, oldest 1\.5 min, 0 dead letters: flushes are not keeping up/,
    );
    assert.match(wb.fix ?? '', /walcache jobs/);

    await redis.zrem(keys.writeBehindQueue('users'), 'users:1');
    await redis.rpush(keys.writeBehindDead('users'), JSON.stringify({ seq: 1, key: 'users:1' }));
    report = await doctor({ config: resolveConfig(input), slot: goodSlot });
    wb = find(report, 'write-behind');
    assert.equal(wb.status, 'warn');
    assert.match(wb.detail, /0 pending, oldest 0 ms, 1 dead letter: PostgreSQL refused/);
    assert.match(wb.fix ?? '', /deadLetters\('users'\)/);
  });

  it('write-behind on a jobs Redis that may evict its pending writes fails, with the fix', async () => {
    const server = await startRedis(['--maxmemory', '8mb', '--maxmemory-policy', 'allkeys-lru']);
    const admin = res.redis(server.url);
    try {
      const prefix = res.track(uniquePrefix('doctorevict'));
      const input = writeBehindInput(prefix, { jobs: { redisUrl: server.url } });
      await beat(prefix, 100);
      let report = await doctor({ config: resolveConfig(input), slot: goodSlot });
      const eviction = find(report, 'queues-eviction');
      assert.equal(eviction.status, 'fail', show(report));
      assert.match(
        eviction.detail,
        /allkeys-lru: it may evict the pending write-behind writes of users/,
      );
      assert.match(eviction.fix ?? '', /CONFIG SET maxmemory-policy noeviction/);
      assert.equal(report.ok, false);
      // Persistence is asked of the server that keeps the pending writes, not of the cache.
      const persistence = find(report, 'queues-persistence');
      assert.equal(persistence.status, 'fail');
      assert.match(persistence.detail, /pending write-behind writes \(users\)/);
      assert.equal(find(report, 'redis-persistence').status, 'ok');
      assert.match(find(report, 'write-behind').detail, /users: 0 pending/);
      // volatile-* keeps keys without a TTL (write-behind's): BullMQ still wants noeviction.
      await admin.config('SET', 'maxmemory-policy', 'volatile-lru');
      report = await doctor({ config: resolveConfig(input), slot: goodSlot });
      assert.equal(find(report, 'queues-eviction').status, 'warn', show(report));
    } finally {
      server.process.kill('SIGKILL');
    }
  });

  it('a cluster is judged by every master: one without appendonly, one that may evict', async () => {
    // Master 0 persists but evicts, master 1 keeps keys but does not persist: whichever
    // one INFO was read from, only both together show the two failures.
    const cluster = await startMastersOnly(2, (i) =>
      i === 0
        ? ['--appendonly', 'yes', '--maxmemory-policy', 'allkeys-lru']
        : ['--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
    );
    try {
      const prefix = uniquePrefix('doctorcluster');
      const input = writeBehindInput(prefix, { redis: { cluster: { nodes: cluster.nodes } } });
      const report = await doctor({ config: resolveConfig(input), slot: goodSlot });
      const persistence = find(report, 'queues-persistence');
      assert.equal(persistence.status, 'fail', show(report));
      assert.match(persistence.detail, /appendonly no/);
      const eviction = find(report, 'queues-eviction');
      assert.equal(eviction.status, 'fail', show(report));
      assert.match(eviction.detail, /allkeys-lru/);
      // Masters without replicas: a failover of either would lose its shard.
      const topology = find(report, 'redis-topology');
      assert.equal(topology.status, 'warn', show(report));
      assert.match(
        topology.detail,
        /^cluster ok: 2 masters, 0 replicas, 16384\/16384 slots served; no replica for /,
      );
    } finally {
      await cluster.stop();
    }
  });

  it('unreachable PostgreSQL and Redis are failed checks, not exceptions, and nothing is left open', async () => {
    const [pgPort, redisPort] = await Promise.all([freePort(), freePort()]);
    const config = resolveConfig({
      prefix: uniquePrefix('doctordown'),
      databaseUrl: `postgres://127.0.0.1:${pgPort}/test`,
      redis: { url: `redis://127.0.0.1:${redisPort}`, connectTimeoutMs: 500 },
      entities: { users: { table: 'users', key: 'id', writeBehind: true } },
    });
    const started = Date.now();
    const report = await doctor({ config });
    assert.ok(Date.now() - started < 10_000, 'answers quickly');
    assert.equal(report.ok, false);
    const postgres = find(report, 'postgres');
    assert.equal(postgres.status, 'fail');
    assert.match(
      postgres.detail,
      new RegExp(`cannot connect to PostgreSQL at postgres://127\\.0\\.0\\.1:${pgPort}/test: .+`),
    );
    assert.match(postgres.fix ?? '', /databaseUrl/);
    const redis = find(report, 'redis');
    assert.equal(redis.status, 'fail');
    assert.match(
      redis.detail,
      new RegExp(`cannot reach the cache Redis at redis://127\\.0\\.0\\.1:${redisPort}`),
    );
    assert.match(redis.fix ?? '', /redis\.url/);
    // Checks that need a connection are left out rather than guessed.
    assert.equal(
      report.checks.some((c) => c.name === 'slot' || c.name === 'worker'),
      false,
    );
  });

  it('bad options throw; the allow-list fix keeps the defaults and what is listed', async () => {
    await assert.rejects(
      doctor({ config: resolveConfig(goodInput), slot: 'Bad-Slot' }),
      /Invalid replication slot name/,
    );
    assert.deepEqual(parsePluginList('pgoutput, test_decoding'), ['pgoutput', 'test_decoding']);
    assert.ok(
      allowListFix(parsePluginList('pgoutput, test_decoding'), 'wal2json').startsWith(
        "ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'wal2json'; SELECT pg_reload_conf();",
      ),
    );
    assert.ok(
      allowListFix(['decoderbufs'], 'wal2json').startsWith(
        "ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'decoderbufs', 'wal2json';",
      ),
    );
  });
});
