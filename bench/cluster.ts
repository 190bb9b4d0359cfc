/**
 * Redis Cluster benchmark: what one server and a 3-master cluster give walcache, side by
 * side in one run, and the per-operation costs docs/capacity.md builds its model from.
 *
 *   node --import tsx bench/cluster.ts        (npm run bench:cluster)
 *
 * 1. Hit path: an engine with L1 off (every read an L2 hit), 64 reads in flight over
 *    10,000 pre-filled keys, on the standalone server and on the cluster. Reported: reads/s
 *    of one client process, its CPU per read, and the servers' CPU per read (summed over
 *    the nodes: what bounds a shard, which is single-threaded).
 * 2. Worker apply: the worker's Invalidator applying groups of 200 keys and 2 tags
 *    (tombstones, tag bumps, heartbeat, bus message; on the cluster a tombstone batch per
 *    master, one pipeline per master with the masters' rollback marks, then the heartbeat
 *    and the bus message), one group at a time as the worker applies them
 *    (BENCH_GROUPS_IN_FLIGHT to change). Server CPU counts the replicas' share (the
 *    cluster has one per master; the standalone server has none). Rows/s, client CPU per row,
 *    servers' CPU per row.
 * 3. Bus fan-out: 5,000 bus messages to S subscriber connections (S = 1 and 8, standing for
 *    app processes): PUBLISH on the standalone server, SPUBLISH on the cluster (the bus's
 *    way: the shard of the channel only) and plain PUBLISH on the cluster (which every node
 *    forwards to every other). Servers' CPU per message (summed over all six nodes) and
 *    its growth per subscriber.
 *
 * Server CPU is INFO's used_cpu_user + used_cpu_sys, summed over the nodes, minus what the
 * same nodes burn idle over the same time (measured once for 2 s).
 *
 * Method: rounds alternate the order of the topologies (A B, then B A); figures are
 * medians over the rounds, ratios medians of the per-round ratios. The cluster's three
 * masters share this machine's cores with the client, so reads/s cannot scale here: the
 * scaling ratio of the model comes from the servers' CPU per operation (the capacity of a
 * shard) against the client's (the capacity of an app core).
 *
 * Needs Redis at REDIS_URL and the local cluster (scripts/redis-cluster.sh, seeds in
 * REDIS_CLUSTER_NODES). Deletes its keys at the end, also on failure; opens no child
 * process. The last line of stdout is one JSON object.
 *
 * Environment: BENCH_ROUNDS (default 5), BENCH_GROUPS_IN_FLIGHT (default 1), REDIS_URL,
 * REDIS_CLUSTER_NODES.
 */
import { Cluster, Redis } from 'ioredis';
import {
  createRedisClient,
  masters,
  type RedisClient,
  scanKeys,
} from '../src/cache/redis-client.js';
import { waitReady } from '../src/cache/redis-connection.js';
import { Invalidator } from '../src/cdc/invalidator.js';
import { CacheEngine, type WalcacheConfigInput } from '../src/index.js';
import { Keys } from '../src/keys/redis-keys.js';
import { emptyInvalidation } from '../src/model/change-mapper.js';
import { pairedRatios, sig, summarize } from './stats.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const CLUSTER_NODES = (
  process.env.REDIS_CLUSTER_NODES ?? '127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002'
).split(',');
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const KEYS = 10_000;
const READS = 40_000;
const IN_FLIGHT = 64;
const GROUPS = 150;
const GROUP_KEYS = 200;
const GROUPS_IN_FLIGHT = Number(process.env.BENCH_GROUPS_IN_FLIGHT ?? 1);
const MESSAGES = 5_000;
const PREFIX = `bench-cluster-${process.pid}`;

type Topology = 'standalone' | 'cluster';
const TOPOLOGIES: readonly Topology[] = ['standalone', 'cluster'];

const redisConfig = (t: Topology): WalcacheConfigInput['redis'] =>
  t === 'standalone' ? { url: REDIS_URL } : { cluster: { nodes: CLUSTER_NODES } };

function client(t: Topology): RedisClient {
  const endpoint =
    t === 'standalone'
      ? { url: REDIS_URL }
      : { url: `redis://${CLUSTER_NODES[0]}`, cluster: { nodes: CLUSTER_NODES } };
  return createRedisClient(endpoint, { maxRetriesPerRequest: 1 });
}

async function ready(c: RedisClient): Promise<void> {
  if (!(await waitReady(c, 10_000))) throw new Error('Redis not ready after 10 s');
}

/** Every node of a topology (a cluster's replicas too: they replicate what masters do). */
function nodesOf(c: RedisClient): Redis[] {
  return c instanceof Cluster ? c.nodes('all') : [c];
}

/** Server CPU seconds (user + sys) summed over nodes. */
async function serverCpu(nodes: readonly Redis[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const info = await node.info('cpu');
    const f = (name: string) => Number(new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1] ?? 0);
    total += f('used_cpu_user') + f('used_cpu_sys');
  }
  return total;
}

/** Server CPU µs per ms the nodes burn idle (cron, a cluster's gossip), per node set. */
const idleUsPerMs = new Map<readonly Redis[], number>();

async function idleRate(nodes: readonly Redis[]): Promise<number> {
  const known = idleUsPerMs.get(nodes);
  if (known !== undefined) return known;
  const s0 = await serverCpu(nodes);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 2_000));
  const rate = (((await serverCpu(nodes)) - s0) * 1e6) / (performance.now() - t0);
  idleUsPerMs.set(nodes, rate);
  return rate;
}

/**
 * Runs `fn`, returning wall ms, client CPU µs and server CPU µs over `nodes` (what they
 * burn idle over the same time subtracted: the work's own cost).
 */
async function measure(
  nodes: readonly Redis[],
  fn: () => Promise<void>,
): Promise<{ ms: number; clientUs: number; serverUs: number }> {
  const idle = await idleRate(nodes);
  const s0 = await serverCpu(nodes);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const s1 = await serverCpu(nodes);
  return { ms, clientUs: c.user + c.system, serverUs: Math.max(0, (s1 - s0) * 1e6 - idle * ms) };
}

/** A measurement per operation: operations/s, client and server CPU µs per operation. */
interface PerOp {
  readonly perS: number;
  readonly clientUs: number;
  readonly serverUs: number;
}

function perOp(m: { ms: number; clientUs: number; serverUs: number }, ops: number): PerOp {
  return { perS: (ops / m.ms) * 1000, clientUs: m.clientUs / ops, serverUs: m.serverUs / ops };
}

/**
 * Prints and records one part: per topology the medians of its rounds, then the median of
 * the per-round ratios cluster / standalone.
 */
function reportPart(
  report: Record<string, unknown>,
  key: string,
  unit: string,
  runs: Record<Topology, PerOp[]>,
): void {
  const med = (xs: number[]) => summarize(xs).median;
  for (const t of TOPOLOGIES) {
    const r = runs[t];
    const line = {
      [`${unit}s_per_s`]: sig(med(r.map((x) => x.perS))),
      [`client_us_per_${unit}`]: sig(med(r.map((x) => x.clientUs)), 3),
      [`server_us_per_${unit}`]: sig(med(r.map((x) => x.serverUs)), 3),
    };
    report[`${key}_${t}`] = line;
    console.log(
      `   ${t.padEnd(10)} ${line[`${unit}s_per_s`]} ${unit}s/s; client ${line[`client_us_per_${unit}`]} µs CPU/${unit}; servers ${line[`server_us_per_${unit}`]} µs CPU/${unit}`,
    );
  }
  const scaling = med(
    pairedRatios(
      runs.cluster.map((x) => x.perS),
      runs.standalone.map((x) => x.perS),
    ),
  );
  report[`${key}_scaling_ratio`] = sig(scaling, 3);
  console.log(`   cluster / standalone ${unit}s/s (one client process): ${sig(scaling, 3)}`);
}

async function deleteAll(c: RedisClient): Promise<void> {
  for await (const keys of scanKeys(c, `${PREFIX}*`, 1000))
    await Promise.all(keys.map((k) => c.unlink(k)));
}

// --- 1. hit path ----------------------------------------------------------------------

async function hitPath(engine: CacheEngine, nodes: readonly Redis[]) {
  let next = 0;
  const m = await measure(nodes, async () => {
    const worker = async () => {
      while (next < READS) {
        const i = next++;
        await engine.getOrLoad(`users:${i % KEYS}`, () => {
          throw new Error('a miss after the pre-fill');
        });
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  });
  return perOp(m, READS);
}

// --- 2. worker apply ------------------------------------------------------------------

async function apply(invalidator: Invalidator, nodes: readonly Redis[], round: number) {
  let group = 0;
  let lsn = round * 1_000_000;
  const m = await measure(nodes, async () => {
    const worker = async () => {
      while (group < GROUPS) {
        const g = group++;
        const inv = emptyInvalidation();
        for (let k = 0; k < GROUP_KEYS; k++) inv.keys.add(`orders:${g * GROUP_KEYS + k}`);
        inv.tags.add(`orders:user_id:${g}`);
        inv.tags.add('orders');
        lsn += 100;
        await invalidator.apply(inv, {
          lsn: `0/${lsn.toString(16).toUpperCase()}`,
          commitTime: Date.now(),
        });
      }
    };
    await Promise.all(Array.from({ length: GROUPS_IN_FLIGHT }, worker));
  });
  return perOp(m, GROUPS * GROUP_KEYS);
}

// --- 3. bus fan-out -------------------------------------------------------------------

type FanoutMode = 'standalone-publish' | 'cluster-spublish' | 'cluster-publish';

async function fanout(mode: FanoutMode, subscribers: number, allNodes: readonly Redis[]) {
  const keys = new Keys(PREFIX);
  const sharded = mode === 'cluster-spublish';
  const channel = keys.busChannel(sharded);
  const publisher = client(mode === 'standalone-publish' ? 'standalone' : 'cluster');
  await ready(publisher);
  const subs: Redis[] = [];
  let received = 0;
  try {
    for (let i = 0; i < subscribers; i++) {
      let sub: Redis;
      if (mode === 'standalone-publish') sub = new Redis(REDIS_URL);
      else {
        // An app process's bus connection: on the channel's master for SSUBSCRIBE; on any
        // node (spread over them) for plain SUBSCRIBE, which the cluster forwards everywhere.
        const cluster = publisher as Cluster;
        const node = sharded
          ? (cluster.slots[(await cluster.cluster('KEYSLOT', channel)) as number]?.[0] ?? '')
          : `${allNodes[i % allNodes.length]?.options.host}:${allNodes[i % allNodes.length]?.options.port}`;
        const [host, port] = node.split(':');
        sub = new Redis(Number(port), host ?? '127.0.0.1');
      }
      subs.push(sub);
      sub.on(sharded ? 'smessageBuffer' : 'messageBuffer', () => {
        received++;
      });
      if (sharded) await sub.ssubscribe(channel);
      else await sub.subscribe(channel);
    }
    const payload = JSON.stringify({
      src: 'bench',
      kind: 'worker',
      seq: 1,
      keys: Array.from({ length: 5 }, (_, i) => `orders:${i}`),
      tags: ['orders'],
    });
    const expected = MESSAGES * subscribers;
    const m = await measure(allNodes, async () => {
      const sends: Array<Promise<unknown>> = [];
      for (let i = 0; i < MESSAGES; i++) {
        if (sharded) sends.push((publisher as Cluster).spublish(channel, payload));
        else sends.push(publisher.publish(channel, payload));
        if (sends.length >= 256) await Promise.all(sends.splice(0));
      }
      await Promise.all(sends);
      const deadline = Date.now() + 30_000;
      while (received < expected && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      if (received < expected) throw new Error(`${mode}: ${received} of ${expected} delivered`);
    });
    return { serverUsPerMessage: m.serverUs / MESSAGES, ms: m.ms };
  } finally {
    for (const sub of subs) sub.disconnect();
    publisher.disconnect();
  }
}

// --- main -----------------------------------------------------------------------------

async function main(): Promise<void> {
  const clients = { standalone: client('standalone'), cluster: client('cluster') };
  const engines: CacheEngine[] = [];
  try {
    await ready(clients.standalone);
    await ready(clients.cluster).catch(() => {
      throw new Error(
        `no Redis Cluster at ${CLUSTER_NODES.join(',')}: start it with bash scripts/redis-cluster.sh`,
      );
    });
    const nodes = { standalone: nodesOf(clients.standalone), cluster: nodesOf(clients.cluster) };
    const clusterMasters = masters(clients.cluster).length;
    const engine = (t: Topology) => {
      const e = new CacheEngine({
        config: {
          prefix: `${PREFIX}-${t}`,
          redis: redisConfig(t),
          l1: { enabled: false },
          cache: { ttlMs: 600_000 },
        },
      });
      engines.push(e);
      return e;
    };
    const hit = { standalone: engine('standalone'), cluster: engine('cluster') };
    for (const t of TOPOLOGIES) {
      if (!(await hit[t].ready(10_000))) throw new Error(`${t}: engine not ready`);
      for (let i = 0; i < KEYS; i += 500)
        await Promise.all(
          Array.from({ length: 500 }, (_, j) =>
            hit[t].getOrLoad(`users:${i + j}`, () => ({ id: i + j, name: `user ${i + j}` })),
          ),
        );
    }
    const invalidators = {
      standalone: new Invalidator(
        clients.standalone,
        new Keys(`${PREFIX}-w-standalone`),
        'bench',
        60_000,
        60_000,
      ),
      cluster: new Invalidator(
        clients.cluster,
        new Keys(`${PREFIX}-w-cluster`),
        'bench',
        60_000,
        60_000,
      ),
    };
    const hitRuns: Record<Topology, PerOp[]> = { standalone: [], cluster: [] };
    const applyRuns: Record<Topology, PerOp[]> = { standalone: [], cluster: [] };
    console.log(
      `bench:cluster: standalone ${REDIS_URL} vs a cluster of ${clusterMasters} masters (${nodes.cluster.length} nodes); ${ROUNDS} rounds`,
    );
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? TOPOLOGIES : [...TOPOLOGIES].reverse();
      for (const t of order) hitRuns[t].push(await hitPath(hit[t], nodes[t]));
      for (const t of order) applyRuns[t].push(await apply(invalidators[t], nodes[t], round));
      process.stdout.write('.');
    }
    process.stdout.write('\n');

    const med = (xs: number[]) => summarize(xs).median;
    const report: Record<string, unknown> = { rounds: ROUNDS, masters: clusterMasters };
    console.log('\n1. L2 hit path (L1 off, 64 in flight)');
    reportPart(report, 'hit', 'read', hitRuns);
    console.log(
      `\n2. Worker apply (groups of ${GROUP_KEYS} keys + 2 tags, ${GROUPS_IN_FLIGHT} in flight)`,
    );
    reportPart(report, 'apply', 'row', applyRuns);

    console.log(`\n3. Bus fan-out (${MESSAGES} messages; servers' CPU per message)`);
    const fan: Record<string, number> = {};
    for (const mode of ['standalone-publish', 'cluster-spublish', 'cluster-publish'] as const) {
      const allNodes = mode === 'standalone-publish' ? nodes.standalone : nodes.cluster;
      const runs: Record<number, number[]> = { 1: [], 8: [] };
      for (let round = 0; round < Math.min(ROUNDS, 3); round++)
        for (const s of [1, 8]) runs[s]?.push((await fanout(mode, s, allNodes)).serverUsPerMessage);
      const one = med(runs[1] ?? []);
      const eight = med(runs[8] ?? []);
      fan[`${mode}_us_per_message_1_sub`] = sig(one, 3);
      fan[`${mode}_us_per_message_8_subs`] = sig(eight, 3);
      fan[`${mode}_us_per_extra_subscriber`] = sig((eight - one) / 7, 3);
      console.log(
        `   ${mode.padEnd(18)} 1 subscriber ${sig(one, 3)} µs; 8 subscribers ${sig(eight, 3)} µs; +${sig((eight - one) / 7, 3)} µs per extra subscriber`,
      );
    }
    report.fanout = fan;
    console.log(JSON.stringify(report));
  } finally {
    for (const e of engines) await e.close().catch(() => {});
    for (const c of Object.values(clients)) {
      await deleteAll(c).catch(() => {});
      c.disconnect();
    }
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
