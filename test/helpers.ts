import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { masters, scanKeys } from '../src/cache/redis-client.js';
import { waitReady } from '../src/cache/redis-connection.js';
import { CacheEngine, type EngineOptions, type WalcacheConfigInput } from '../src/index.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * `WALCACHE_TEST_REDIS=cluster` runs the suite against the local Redis Cluster
 * (scripts/redis-cluster.sh; seeds from `REDIS_CLUSTER_NODES`) instead of the standalone
 * server: `REDIS_CONFIG` and `testRedis()` point there. Tests that start a private
 * redis-server keep it.
 */
export const ON_CLUSTER = process.env.WALCACHE_TEST_REDIS === 'cluster';
export const CLUSTER_NODES = (
  process.env.REDIS_CLUSTER_NODES ?? '127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002'
).split(',');

/** The `redis` config of the Redis under test. */
export const REDIS_CONFIG: { url: string } | { cluster: { nodes: string[] } } = ON_CLUSTER
  ? { cluster: { nodes: CLUSTER_NODES } }
  : { url: REDIS_URL };

/** A plain client of the Redis under test (a `Cluster` under `WALCACHE_TEST_REDIS=cluster`). */
export function testRedis(options: RedisOptions = {}): Redis | Cluster {
  if (!ON_CLUSTER) return new Redis(REDIS_URL, options);
  // The queueing, connecting and retry settings are the cluster's own (ioredis reads them
  // there, not from each node's options); the rest applies to each node's connection.
  const { enableOfflineQueue, lazyConnect, retryStrategy, ...node } = options;
  return new Cluster(
    CLUSTER_NODES.map((n) => {
      const [host, port] = n.split(':');
      return { host: host as string, port: Number(port) };
    }),
    {
      redisOptions: node,
      scaleReads: 'master',
      ...(enableOfflineQueue !== undefined && { enableOfflineQueue }),
      ...(lazyConnect !== undefined && { lazyConnect }),
      ...(retryStrategy !== undefined && { clusterRetryStrategy: retryStrategy }),
    },
  );
}

/**
 * An environment for a child process (CLI, demo, bench) pointing at the Redis under
 * test: `REDIS_CLUSTER_NODES` and no `REDIS_URL` on the cluster (config resolution
 * refuses both), `REDIS_URL` and no `REDIS_CLUSTER_NODES` otherwise. `extra` wins.
 */
export function redisEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (ON_CLUSTER) {
    delete env.REDIS_URL;
    env.REDIS_CLUSTER_NODES = CLUSTER_NODES.join(',');
  } else {
    delete env.REDIS_CLUSTER_NODES;
    env.REDIS_URL = REDIS_URL;
  }
  return { ...env, ...extra };
}

/**
 * A test's `redis` settings on the Redis under test, unless they name a Redis of their own
 * (a private server's `url`): then they are used as given (a topology and a `url`
 * together are a ConfigError).
 */
export function withRedisUnderTest(
  redis: WalcacheConfigInput['redis'] = {},
): NonNullable<WalcacheConfigInput['redis']> {
  const own =
    redis.url !== undefined || redis.cluster !== undefined || redis.sentinel !== undefined;
  return own ? redis : { ...REDIS_CONFIG, ...redis };
}

/** A prefix no other test uses, so tests can run in any order and in parallel. */
export function uniquePrefix(name: string): string {
  return `t-${name}-${randomBytes(4).toString('hex')}`;
}

/** Tracks what a test opened and closes it all. */
export class Resources {
  readonly #engines: CacheEngine[] = [];
  readonly #clients: Array<Redis | Cluster> = [];
  readonly #prefixes = new Set<string>();

  engine(
    prefix: string,
    config: WalcacheConfigInput = {},
    options: Omit<EngineOptions, 'config'> = {},
  ): CacheEngine {
    this.#prefixes.add(prefix);
    const engine = new CacheEngine({
      ...options,
      config: { ...config, prefix, redis: withRedisUnderTest(config.redis) },
    });
    this.#engines.push(engine);
    return engine;
  }

  /** Deletes the prefix's keys at close (for prefixes only a worker writes to). */
  track(prefix: string): string {
    this.#prefixes.add(prefix);
    return prefix;
  }

  async readyEngine(prefix: string, config: WalcacheConfigInput = {}): Promise<CacheEngine> {
    const engine = this.engine(prefix, config);
    if (!(await engine.ready(5_000))) throw new Error('engine did not become ready');
    return engine;
  }

  /** A client of the Redis under test, or of `url`; disconnected at close. */
  redis(url?: string): Redis | Cluster {
    const client =
      url === undefined
        ? testRedis({ maxRetriesPerRequest: 1 })
        : new Redis(url, { maxRetriesPerRequest: 1 });
    this.#clients.push(client);
    return client;
  }

  async close(): Promise<void> {
    await Promise.all(this.#engines.map((e) => e.close()));
    const admin = testRedis({ maxRetriesPerRequest: 1 });
    try {
      for (const prefix of this.#prefixes) await deleteByPrefix(admin, prefix);
    } finally {
      admin.disconnect();
    }
    for (const client of this.#clients) client.disconnect();
  }
}

/** Every string value under the prefix, as stored (entries, tag versions...), read back raw. */
export async function storedUnder(
  redis: Redis | Cluster,
  prefix: string,
): Promise<Array<[string, Buffer]>> {
  const found: Array<[string, Buffer]> = [];
  for await (const keys of scanKeys(await ready(redis), `${prefix}:*`, 1000))
    for (const k of keys) {
      if ((await redis.type(k)) !== 'string') continue;
      const value = await redis.getBuffer(k);
      if (value !== null) found.push([k, value]);
    }
  return found;
}

export async function deleteByPrefix(redis: Redis | Cluster, prefix: string): Promise<void> {
  // One UNLINK per key: on a cluster, a multi-key UNLINK must stay in one slot.
  for await (const keys of scanKeys(await ready(redis), `${prefix}:*`, 1000))
    await Promise.all(keys.map((k) => redis.unlink(k)));
}

/** Every key matching `pattern` (SCAN over every master), sorted. */
export async function keysMatching(redis: Redis | Cluster, pattern: string): Promise<string[]> {
  const found = new Set<string>();
  for await (const keys of scanKeys(await ready(redis), pattern, 1000))
    for (const k of keys) found.add(k);
  return [...found].sort();
}

/** The masters of a client (`masters`), once a cluster client knows them. */
export async function readyMasters(redis: Redis | Cluster): Promise<Redis[]> {
  return masters(await ready(redis));
}

/** The client, once a cluster client knows its slot table (one server: at once). */
async function ready<C extends Redis | Cluster>(redis: C): Promise<C> {
  if (redis instanceof Cluster && !(await waitReady(redis, 10_000)))
    throw new Error('the test cluster is not ready');
  return redis;
}

export interface Deferred<T = void> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until `check` is true; throws with `what` after the timeout. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 3_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

/** A loopback port nothing listens on (for a server a test starts, or for "Redis is down"). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A throwaway redis-server on a loopback port, so a test can stop, pause or misconfigure
 * it without touching the shared one (no persistence; `args` are added, e.g.
 * `['--maxmemory', '4mb', '--maxmemory-policy', 'allkeys-lru']`). The test kills `process`.
 */
export async function startRedis(
  args: readonly string[] = [],
): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => {});
  await waitFor(
    'redis-server up',
    async () => {
      try {
        if (probe.status !== 'ready') await probe.connect();
        return (await probe.ping()) === 'PONG';
      } catch {
        probe.disconnect();
        return false;
      }
    },
    10_000,
  );
  probe.disconnect();
  return { url, process: child };
}

/** The repository root (the CLI runs from there). */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts `walcache <args>` (src/cli/main.ts through tsx) with its output collected.
 * stdin 'pipe' is a pipe that never ends (not a TTY).
 */
export function startCli(
  args: readonly string[],
  stdin: 'ignore' | 'pipe' = 'ignore',
): { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<CliRun> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: redisEnv(),
    stdio: [stdin, 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout?.on('data', (d) => {
    out.stdout += d;
  });
  child.stderr?.on('data', (d) => {
    out.stderr += d;
  });
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, ...out }));
  });
  return { child, out, done };
}

/** Runs `walcache <args>` to the end. */
export function runCli(
  args: readonly string[],
  stdin: 'ignore' | 'pipe' = 'ignore',
): Promise<CliRun> {
  return startCli(args, stdin).done;
}
