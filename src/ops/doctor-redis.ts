import { parseHeartbeat } from '../cache/heartbeat.js';
import { isCluster, masters, type RedisClient } from '../cache/redis-client.js';
import { type ResolvedConfig, writeBehindEntities } from '../config/config.js';
import { redactUrl } from '../config/database.js';
import {
  cacheEndpoint,
  describeEndpoint,
  endpointUser,
  queuesEndpoint,
  type RedisEndpoint,
} from '../config/redis-endpoint.js';
import type { SlotInfo } from '../database/slot.js';
import { Keys } from '../keys/redis-keys.js';
import { queueRedisUrl } from '../queues/walcache-queues.js';
import { EVICTION_POLICY_FIX, mayEvictWriteBehind } from '../write-behind/eviction-policy.js';
import { WriteBehindStore } from '../write-behind/write-behind-store.js';
import {
  check,
  type DoctorCheck,
  HEARTBEAT_MAX_AGE_MS,
  ok,
  WORKER_LAG_WARN_MS,
  WRITE_BEHIND_OLDEST_WARN_MS,
} from './doctor-check.js';
import { formatBytes, formatMs } from './format.js';
import { probeAcl, recommendedAcl } from './redis-acl.js';
import { connectRedis, openRedis } from './redis-probe.js';

// doctor's Redis checks: reachable, topology, persistence and eviction policies of the
// cache and the queues, ACLs, the worker's heartbeat and the write-behind backlog.

interface RedisInfo {
  readonly runId: string | undefined;
  readonly version: string | undefined;
  readonly aof: boolean;
  readonly maxmemory: number;
  readonly policy: string | undefined;
}

export async function redisChecks(
  config: ResolvedConfig,
  slot: string,
  checks: DoctorCheck[],
  /** The configured slot as PostgreSQL showed it; undefined when it could not be read. */
  slotInfo: SlotInfo | undefined,
): Promise<void> {
  const cacheUrl = config.redis.url;
  const queuesUrl = queueRedisUrl(config);
  const cacheWhere = whereIs(cacheEndpoint(config));
  const queuesWhere = whereIs(queuesEndpoint(config));
  const clients: RedisClient[] = [];
  const open = async (endpoint: RedisEndpoint, role: string): Promise<RedisClient> => {
    const client = openRedis(
      endpoint,
      `walcache:${config.prefix}:doctor:${role}`,
      config.redis.connectTimeoutMs,
      false,
    );
    clients.push(client);
    await connectRedis(client);
    return client;
  };
  try {
    const writeBehind = writeBehindEntities(config);
    let cache: RedisClient | undefined;
    let cacheInfo: RedisInfo | undefined;
    await check(
      checks,
      'redis',
      'check redis.url in the config (or REDIS_URL) and that Redis is running',
      async () => {
        cache = await open(cacheEndpoint(config), 'cache');
        cacheInfo = await readRedisInfo(cache);
        return ok('redis', `Redis ${cacheInfo.version ?? ''} reachable at ${cacheWhere} (cache)`);
      },
      (message) => `cannot reach the cache Redis at ${cacheWhere}: ${message}`,
    );
    if (cache !== undefined) {
      const client = cache;
      await check(checks, 'redis-topology', 'see the Redis error', () => topologyCheck(client));
    }

    if (cacheInfo) {
      const info = cacheInfo;
      // The cache refills from PostgreSQL: its server needs no persistence. What must
      // survive a restart (queued jobs, pending write-behind writes) lives on the queues'
      // server, checked below.
      checks.push(
        ok(
          'redis-persistence',
          `cache Redis: appendonly ${info.aof ? 'yes' : 'no'} (a cache needs none: a restart empties it and it refills from PostgreSQL)`,
        ),
      );
      checks.push(
        info.policy === 'noeviction' && info.maxmemory > 0
          ? {
              name: 'redis-eviction',
              status: 'warn',
              detail: `the cache Redis has maxmemory ${formatBytes(info.maxmemory)} with maxmemory-policy noeviction: once full, every cache write fails instead of evicting old entries`,
              fix: 'CONFIG SET maxmemory-policy allkeys-lru on the cache server (and keep the job queues and write-behind on a noeviction server: jobs.redisUrl)',
            }
          : ok(
              'redis-eviction',
              `cache Redis: maxmemory-policy ${info.policy ?? 'unknown'}, maxmemory ${info.maxmemory > 0 ? formatBytes(info.maxmemory) : 'unlimited'}`,
            ),
      );
    }

    let queuesInfo: RedisInfo | undefined;
    if (queuesUrl === cacheUrl) {
      queuesInfo = cacheInfo;
    } else {
      await check(
        checks,
        'queues-redis',
        'check jobs.redisUrl in the config and that its Redis is running',
        async () => {
          const queues = await open(queuesEndpoint(config), 'queues');
          queuesInfo = await readRedisInfo(queues);
          return ok(
            'queues-redis',
            `Redis ${queuesInfo.version ?? ''} reachable at ${queuesWhere} (job queues)`,
          );
        },
        (message) => `cannot reach the job queues' Redis at ${queuesWhere}: ${message}`,
      );
    }
    if (queuesInfo) checks.push(...queuesRoleChecks(queuesInfo, writeBehind));
    if (cacheInfo && queuesInfo) {
      const shared =
        queuesInfo === cacheInfo ||
        (cacheInfo.runId !== undefined && cacheInfo.runId === queuesInfo.runId);
      if (shared) {
        const cost =
          cacheInfo.policy === 'noeviction'
            ? 'with noeviction the cache cannot evict, so a full server refuses cache fills and job writes alike'
            : `with ${cacheInfo.policy ?? 'its policy'} Redis may evict BullMQ's keys (lost jobs)${writeBehind.length > 0 ? ' and pending write-behind writes' : ''}`;
        checks.push({
          name: 'redis-shared',
          status: 'warn',
          detail: `the cache and the job queues share one Redis server, and one maxmemory-policy: ${cost} (fine in development)`,
          fix: 'in production, point jobs.redisUrl at a Redis with maxmemory-policy noeviction, and give the cache an LRU policy',
        });
      }
    }

    if (writeBehind.length > 0 && queuesInfo) await writeBehindChecks(config, writeBehind, checks);

    const redis = cache;
    if (redis === undefined) return;
    await check(checks, 'redis-acl', 'see the Redis error', async () => {
      const endpoint = cacheEndpoint(config);
      const user = endpointUser(endpoint);
      const subscriber = openRedis(
        endpoint,
        `walcache:${config.prefix}:doctor:acl`,
        config.redis.connectTimeoutMs,
        false,
      );
      const denied = await probeAcl(redis, subscriber, new Keys(config.prefix), config);
      if (denied.commands.length === 0 && denied.patterns.length === 0)
        return ok(
          'redis-acl',
          `Redis user ${user} may run every command walcache needs on ${config.prefix}:* and its bus channel`,
        );
      if (denied.patterns.length === 0 && denied.commands.every((c) => c === 'info'))
        return {
          name: 'redis-acl',
          status: 'warn',
          detail: `Redis user ${user} may not run INFO: walcache works, but doctor and stats cannot read the server's settings`,
          fix: `ACL SETUSER ${user} +info`,
        };
      const parts = [
        denied.commands.length > 0 ? `may not run ${denied.commands.join(', ')}` : '',
        denied.patterns.length > 0
          ? `may not use the keys or channel of ${denied.patterns.join(', ')}`
          : '',
      ].filter((p) => p !== '');
      return {
        name: 'redis-acl',
        status: 'fail',
        detail: `Redis user ${user} ${parts.join('; ')}: walcache needs them on ${config.prefix}:*`,
        fix: recommendedAcl(user, config.prefix, isCluster(redis)),
      };
    });
    await check(checks, 'worker', `start walcache worker --slot ${slot}`, async () => {
      const key = new Keys(config.prefix).heartbeat();
      const raw = await redis.get(key);
      const beat = parseHeartbeat(raw);
      if (beat === null)
        return {
          name: 'worker',
          status: 'fail',
          detail:
            raw === null
              ? `worker not running: no heartbeat at ${key} (prefix ${config.prefix})`
              : `worker heartbeat at ${key} is not one walcache wrote`,
          fix: `start walcache worker --slot ${slot} with this config (same prefix and Redis)`,
        };
      const now = Date.now();
      const age = Math.max(0, now - beat.appliedAt);
      // Commit time 0: the worker has applied no commit yet (a new slot, an idle database).
      const lag = beat.commitTime > 0 ? Math.max(0, now - beat.commitTime) : null;
      // A fresh heartbeat outlives its worker by up to HEARTBEAT_MAX_AGE_MS; the slot
      // knows at once whether anything streams it.
      if (slotInfo !== undefined && !slotInfo.active)
        return {
          name: 'worker',
          status: 'fail',
          detail: `worker not running on slot ${slot}: nothing streams it (pg_replication_slots.active is false), although the last heartbeat is ${formatMs(age)} old (at ${beat.lsn}): the worker stopped since, or runs on another slot`,
          fix: `start walcache worker --slot ${slot} (or read its logs and /readyz if one should be running: it may be failing to connect)`,
        };
      if (age > HEARTBEAT_MAX_AGE_MS)
        return {
          name: 'worker',
          status: 'fail',
          detail: `worker not running: its last heartbeat is ${formatMs(age)} old (above ${formatMs(HEARTBEAT_MAX_AGE_MS)}; it writes one every 5 s), at ${beat.lsn}`,
          fix: `start walcache worker --slot ${slot} (or read its logs and /readyz: it may be stuck or standing by without an active peer)`,
        };
      if (lag === null)
        return ok(
          'worker',
          `worker alive: heartbeat ${formatMs(age)} ago, no commit applied yet, at ${beat.lsn}`,
        );
      if (lag > WORKER_LAG_WARN_MS)
        return {
          name: 'worker',
          status: 'warn',
          detail: `worker alive (heartbeat ${formatMs(age)} ago) but ${formatMs(lag)} behind: it applied up to ${beat.lsn}`,
          fix: 'check the worker logs and walcache_worker_lag_seconds; a large transaction or a slow Redis holds it back',
        };
      return ok(
        'worker',
        `worker alive: heartbeat ${formatMs(age)} ago, lag ${formatMs(lag)}, applied up to ${beat.lsn}`,
      );
    });
  } finally {
    for (const client of clients) client.disconnect();
  }
}

/**
 * The queues' server keeps BullMQ's jobs and write-behind's pending writes: it must not
 * evict them (BullMQ needs noeviction; write-behind keys have no TTL, so volatile-*
 * policies keep them too, and walcache refuses write-behind on any other), and it needs
 * persistence for them to survive a restart.
 */
function queuesRoleChecks(info: RedisInfo, writeBehind: readonly string[]): DoctorCheck[] {
  const entities = writeBehind.join(', ');
  const policy = info.policy ?? 'unknown';
  const eviction: DoctorCheck =
    writeBehind.length > 0 && mayEvictWriteBehind(info.policy ?? null)
      ? {
          name: 'queues-eviction',
          status: 'fail',
          detail: `the job queues' Redis has maxmemory-policy ${policy}: it may evict the pending write-behind writes of ${entities} (acknowledged writes lost), so walcache refuses write-behind there (E_EVICTION_POLICY); BullMQ needs noeviction too`,
          fix: EVICTION_POLICY_FIX,
        }
      : info.policy === 'noeviction'
        ? ok('queues-eviction', 'job queues Redis: maxmemory-policy noeviction')
        : {
            name: 'queues-eviction',
            status: 'warn',
            detail: `the job queues' Redis has maxmemory-policy ${policy}: BullMQ needs noeviction, or it can lose jobs and queue state under memory pressure`,
            fix: 'CONFIG SET maxmemory-policy noeviction on the queues server, and point jobs.redisUrl at it (the cache wants an LRU policy on a server of its own)',
          };
  const persistence: DoctorCheck = info.aof
    ? ok('queues-persistence', 'job queues Redis: appendonly yes')
    : writeBehind.length > 0
      ? {
          name: 'queues-persistence',
          status: 'fail',
          detail: `the job queues' Redis runs with appendonly no: pending write-behind writes (${entities}) live only there until flushed, and a restart loses them`,
          fix: 'appendonly yes on the queues server (CONFIG SET appendonly yes, and in redis.conf; appendfsync everysec loses at most a second on a crash)',
        }
      : {
          name: 'queues-persistence',
          status: 'warn',
          detail:
            "the job queues' Redis runs with appendonly no: a restart loses queued jobs (walcache jobs upserts its schedulers again at start); write-behind would lose pending writes",
          fix: 'appendonly yes on the queues server (CONFIG SET appendonly yes, and in redis.conf), required before enabling writeBehind',
        };
  return [eviction, persistence];
}

/** Backlog and dead letters of each write-behind entity, read where they live (the queues' Redis). */
async function writeBehindChecks(
  config: ResolvedConfig,
  writeBehind: readonly string[],
  checks: DoctorCheck[],
): Promise<void> {
  const store = new WriteBehindStore(config);
  try {
    for (const entity of writeBehind) {
      await check(checks, 'write-behind', 'see the Redis error', async () => {
        const s = await store.stats(entity);
        const detail = `write-behind ${entity}: ${s.pending} pending, oldest ${formatMs(s.oldestAgeMs)}, ${s.dead} dead letter${s.dead === 1 ? '' : 's'}`;
        if (s.dead > 0)
          return {
            name: 'write-behind',
            status: 'warn',
            detail: `${detail}: PostgreSQL refused some writes for good`,
            fix: `new WriteBehindStore(config).deadLetters('${entity}') lists them with their errors; fix the rows, then re-apply or delete ${store.keys.writeBehindDead(entity)} (on the queues' Redis)`,
          };
        if (s.oldestAgeMs > WRITE_BEHIND_OLDEST_WARN_MS)
          return {
            name: 'write-behind',
            status: 'warn',
            detail: `${detail}: flushes are not keeping up (above ${formatMs(WRITE_BEHIND_OLDEST_WARN_MS)})`,
            fix: 'is walcache jobs running? Check its logs and walcache_jobs_failures_total',
          };
        return ok('write-behind', detail);
      });
    }
  } finally {
    await store.close();
  }
}

/** Where an endpoint is, for messages: its redacted URL, or its topology. */
function whereIs(endpoint: RedisEndpoint): string {
  return endpoint.cluster || endpoint.sentinel
    ? describeEndpoint(endpoint)
    : redactUrl(endpoint.url);
}

/**
 * What the client found: one server, a Sentinel-managed master, or a cluster (its state,
 * masters, replicas per master, slots served). A cluster that is not `ok`, or a master
 * without a replica, is a warning: a failover would lose that shard's entries.
 */
async function topologyCheck(client: RedisClient): Promise<DoctorCheck> {
  if (!isCluster(client)) {
    const role = /^role:(.*)$/m.exec(await client.info('replication'))?.[1]?.trim();
    const sentinel = client.options.sentinels ? `sentinel master "${client.options.name}"` : '';
    // Behind Sentinel the options hold no address: the connection knows the master's.
    const where = `${client.stream?.remoteAddress ?? client.options.host ?? '?'}:${client.stream?.remotePort ?? client.options.port ?? '?'}`;
    return ok(
      'redis-topology',
      `${sentinel ? `${sentinel} at ${where}` : `one server`} (role ${role ?? 'unknown'})`,
    );
  }
  const info = String(await client.cluster('INFO'));
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  const nodes = String(await client.cluster('NODES'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.split(' '));
  const primaries = nodes.filter((n) => n[2]?.includes('master') && !n[2]?.includes('fail'));
  const replicasOf = (id: string) =>
    nodes.filter((n) => n[3] === id && !n[2]?.includes('fail')).length;
  const bare = primaries.filter((n) => replicasOf(n[0] ?? '') === 0).map((n) => n[1]);
  const state = field('cluster_state');
  const slots = field('cluster_slots_ok');
  const replicas = nodes.filter((n) => n[2]?.includes('slave') && !n[2]?.includes('fail')).length;
  const failed = nodes.filter((n) => n[2]?.includes('fail')).length;
  const detail = `cluster ${state ?? '?'}: ${primaries.length} masters, ${replicas} replicas${failed > 0 ? `, ${failed} failed` : ''}, ${slots ?? '?'}/16384 slots served`;
  if (state !== 'ok')
    return {
      name: 'redis-topology',
      status: 'fail',
      detail,
      fix: 'redis-cli --cluster check <node>: some slots are not served',
    };
  if (bare.length > 0)
    return {
      name: 'redis-topology',
      status: 'warn',
      detail: `${detail}; no replica for ${bare.join(', ')}`,
      fix: 'add a replica per master (redis-cli --cluster add-node --cluster-slave)',
    };
  return ok('redis-topology', `${detail}, each master replicated`);
}

/**
 * INFO of a server. Of a cluster, every master's (the settings are per node, and each
 * master holds its own share of the keys): appendonly only if every master has it, and
 * the eviction settings of the master that may lose most (one that may evict keys
 * without a TTL, else one that refuses writes once full), else the first's.
 */
async function readRedisInfo(client: RedisClient): Promise<RedisInfo> {
  const nodes = masters(client);
  const infos = await Promise.all(
    (nodes.length > 0 ? nodes : [client]).map(async (node) => parseInfo(await node.info())),
  );
  const first = infos[0] as RedisInfo;
  const worst =
    infos.find((i) => mayEvictWriteBehind(i.policy ?? null)) ??
    infos.find((i) => i.policy === 'noeviction' && i.maxmemory > 0) ??
    first;
  return {
    ...first,
    aof: infos.every((i) => i.aof),
    maxmemory: worst.maxmemory,
    policy: worst.policy,
  };
}

function parseInfo(text: string): RedisInfo {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(text)?.[1]?.trim();
  return {
    runId: field('run_id'),
    version: field('redis_version'),
    aof: field('aof_enabled') === '1',
    maxmemory: Number(field('maxmemory') ?? 0),
    policy: field('maxmemory_policy'),
  };
}
