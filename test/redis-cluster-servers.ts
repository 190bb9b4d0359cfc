import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './helpers.js';
import { type PrivateRedis, startRedis } from './redis-servers.js';

const run = promisify(execFile);

/** One command on one node, over a connection of its own (closed after). */
async function ask<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  r.on('error', () => {});
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** A Redis Cluster of the test's own: masters with one replica each, on loopback ports. */
export interface PrivateCluster {
  /** `host:port` of every node, masters first as created. */
  readonly nodes: readonly string[];
  /** The node serving `key`'s slot now, and its replica. */
  ownerOf(key: string): Promise<{ master: PrivateRedis; replica: PrivateRedis | undefined }>;
  /** The node serving the port. */
  node(port: number): PrivateRedis;
  /** Waits until every slot is served, the cluster says ok on every live node, and every replica is in sync. */
  settled(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `masters` × 2 redis-servers in cluster mode (node timeout `nodeTimeoutMs`, so a
 * killed master is replaced in a few seconds) and joins them with
 * `redis-cli --cluster create … --cluster-replicas 1`.
 */
export async function startCluster(masters = 3, nodeTimeoutMs = 1_000): Promise<PrivateCluster> {
  const servers: PrivateRedis[] = [];
  try {
    for (let i = 0; i < masters * 2; i++) {
      const busPort = await freePort();
      servers.push(
        await startRedis((_dir, port) => [
          '--port',
          String(port),
          '--cluster-enabled',
          'yes',
          '--cluster-port',
          String(busPort),
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          // Replicas sync at once (the default waits 5 s for more of them).
          '--repl-diskless-sync-delay',
          '0',
        ]),
      );
    }
    // Bounded: a node that cannot be reached on its bus port would keep redis-cli
    // "waiting for the cluster to join" for ever (and the test file to its timeout).
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...servers.map((s) => `127.0.0.1:${s.port}`),
        '--cluster-replicas',
        '1',
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    );
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    throw error;
  }
  const byPort = new Map(servers.map((s) => [s.port, s]));
  const live = () => servers.filter((s) => !stopped.has(s.port));
  const stopped = new Set<number>();
  const cluster: PrivateCluster = {
    nodes: servers.map((s) => `127.0.0.1:${s.port}`),
    node: (port) => {
      const s = byPort.get(port);
      if (s === undefined) throw new Error(`no node on ${port}`);
      return s;
    },
    ownerOf: async (key) => {
      for (const s of live()) {
        try {
          const slot = await ask(s.port, (r) => r.cluster('KEYSLOT', key));
          const nodes = String(await ask(s.port, (r) => r.cluster('NODES')))
            .trim()
            .split('\n')
            .map((l) => l.split(' '));
          const master = nodes.find(
            (n) =>
              n[2]?.includes('master') &&
              !n[2]?.includes('fail') &&
              n.slice(8).some((range) => {
                const [lo, hi = lo] = range.split('-').map(Number);
                return lo !== undefined && hi !== undefined && slot >= lo && slot <= hi;
              }),
          );
          const replica = nodes.find((n) => n[3] === master?.[0]);
          const portOf = (n: string[] | undefined) => Number(n?.[1]?.split('@')[0]?.split(':')[1]);
          return {
            master: cluster.node(portOf(master)),
            replica: replica === undefined ? undefined : cluster.node(portOf(replica)),
          };
        } catch {
          // that node is down: ask another
        }
      }
      throw new Error('no live cluster node answers');
    },
    settled: (timeoutMs = 20_000) =>
      waitFor(
        'the cluster to settle',
        async () => {
          for (const s of live()) {
            try {
              const info = String(await ask(s.port, (r) => r.cluster('INFO')));
              if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info))
                return false;
              // A replica counts once it is in sync with its master.
              const role = (await ask(s.port, (r) => r.role())) as unknown[];
              if (role[0] === 'slave' && role[3] !== 'connected') return false;
            } catch {
              return false;
            }
          }
          return true;
        },
        timeoutMs,
      ),
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
  // A SIGKILLed node is stopped for good: settled() asks only the others.
  for (const s of servers) {
    const signal = s.signal;
    (s as { signal: PrivateRedis['signal'] }).signal = (sig) => {
      if (sig === 'SIGKILL') stopped.add(s.port);
      signal(sig);
    };
  }
  await cluster.settled();
  return cluster;
}

/** A Sentinel-managed Redis of the test's own: a master, its replica, three sentinels. */
export interface PrivateSentinel {
  readonly name: string;
  /** `host:port` of the sentinels. */
  readonly sentinels: readonly string[];
  readonly master: PrivateRedis;
  readonly replica: PrivateRedis;
  /** The master's port as the sentinels name it now. */
  currentMasterPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts a master, a replica of it and three sentinels watching it (quorum 2, down after
 * `downAfterMs`), and waits until every sentinel sees the replica and the others.
 */
export async function startSentinel(downAfterMs = 1_000): Promise<PrivateSentinel> {
  const name = 'walcache-test';
  const started: PrivateRedis[] = [];
  try {
    const master = await startRedis((_dir, port) => [
      '--port',
      String(port),
      '--repl-diskless-sync-delay',
      '0',
    ]);
    started.push(master);
    const replica = await startRedis((_dir, port) => [
      '--port',
      String(port),
      '--replicaof',
      '127.0.0.1',
      String(master.port),
    ]);
    started.push(replica);
    for (let i = 0; i < 3; i++) {
      const sentinel = await startRedis(
        (dir, port) => [`${dir}/sentinel.conf`, '--sentinel', '--port', String(port)],
        {
          'sentinel.conf': [
            `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
            `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
            `sentinel failover-timeout ${name} 5000`,
            `sentinel parallel-syncs ${name} 1`,
            '',
          ].join('\n'),
        },
      );
      started.push(sentinel);
    }
    const sentinels = started.slice(2);
    await waitFor(
      'the sentinels to see the replica and each other',
      async () => {
        for (const s of sentinels) {
          const info = (await ask(s.port, (r) => r.call('SENTINEL', 'MASTER', name))) as string[];
          const field = (f: string) => info[info.indexOf(f) + 1];
          if (field('num-slaves') !== '1' || field('num-other-sentinels') !== '2') return false;
        }
        return true;
      },
      20_000,
    );
    return {
      name,
      sentinels: sentinels.map((s) => `127.0.0.1:${s.port}`),
      master,
      replica,
      currentMasterPort: async () => {
        for (const s of sentinels) {
          try {
            const addr = (await ask(s.port, (r) =>
              r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name),
            )) as string[];
            return Number(addr[1]);
          } catch {
            // that sentinel is down: ask another
          }
        }
        throw new Error('no sentinel answers');
      },
      stop: async () => {
        await Promise.all(started.map((s) => s.stop()));
      },
    };
  } catch (error) {
    await Promise.all(started.map((s) => s.stop()));
    throw error;
  }
}

/**
 * A Redis Cluster of the test's own: `masters` private servers (no replicas), the slots
 * split evenly between them; `args(i)` are added to server i's (its own settings, to make
 * masters differ). `nodes` are their `host:port` seeds, `servers` the servers (to pause one).
 */
export async function startMastersOnly(
  masters: number,
  args: (i: number) => string[] = () => [],
): Promise<{ nodes: string[]; servers: readonly PrivateRedis[]; stop(): Promise<void> }> {
  const servers = await Promise.all(
    Array.from({ length: masters }, (_, i) =>
      startRedis((_dir, port) => [
        '--port',
        String(port),
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        ...args(i),
      ]),
    ),
  );
  const stopAll = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  const admins = servers.map((s) => new Redis(s.port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
  try {
    for (const [i, admin] of admins.entries()) {
      const from = Math.floor((16384 * i) / masters);
      const to = Math.floor((16384 * (i + 1)) / masters) - 1;
      await admin.cluster('ADDSLOTSRANGE', from, to);
      if (i > 0) await admin.cluster('MEET', '127.0.0.1', (servers[0] as PrivateRedis).port);
    }
    await waitFor(
      'the private cluster ok',
      async () => {
        const states = await Promise.all(admins.map((a) => a.cluster('INFO')));
        return states.every((info) => String(info).includes('cluster_state:ok'));
      },
      15_000,
    );
  } catch (error) {
    await stopAll();
    throw error;
  } finally {
    for (const admin of admins) admin.disconnect();
  }
  return { nodes: servers.map((s) => `127.0.0.1:${s.port}`), servers, stop: stopAll };
}
