import { isCluster, type RedisClient } from '../cache/redis-client.js';
import type { ResolvedConfig } from '../config/config.js';
import type { Keys } from '../keys/redis-keys.js';

/**
 * What the cache's Redis user must be allowed, and a check that it is. Redis ACLs apply
 * to every command, those run inside walcache's Lua scripts included, and to key and
 * channel patterns. The check runs each command once, harmlessly: on a string key of its
 * own under the prefix (a hash, set, list or sorted-set command then answers WRONGTYPE,
 * which proves the permission without writing), a script SHA that does not exist
 * (NOSCRIPT), a rename of a key that does not exist. Only NOPERM means "not allowed".
 */

/** Commands walcache runs on the cache's Redis, and who needs them. */
export const CACHE_REDIS_COMMANDS: ReadonlyArray<readonly [command: string, usedBy: string]> = [
  ['get', 'reads'],
  ['set', 'fills, tag bumps, heartbeat'],
  ['del', 'scripts'],
  ['exists', 'scripts, access-log flush'],
  ['pexpire', 'scripts'],
  ['pttl', 'scripts'],
  ['getrange', 'sliding expiration (touch script)'],
  ['setrange', 'sliding expiration (touch script)'],
  ['incr', 'write-behind scripts'],
  ['eval', 'scripts (first run)'],
  ['evalsha', 'scripts'],
  ['publish', 'the L1 bus'],
  ['subscribe', 'the L1 bus'],
  ['ping', 'the L1 bus (liveness)'],
  ['scan', 'operators, doctor'],
  ['multi', 'access log'],
  ['exec', 'access log'],
  ['hincrby', 'access log, write-behind'],
  ['hget', 'write-behind'],
  ['hset', 'write-behind'],
  ['hsetnx', 'write-behind'],
  ['hgetall', 'access-log flush'],
  ['sadd', 'access log'],
  ['srem', 'access-log flush'],
  ['smembers', 'access-log flush'],
  ['rename', 'write-behind'],
  ['renamenx', 'access-log flush'],
  ['rpush', 'write-behind'],
  ['llen', 'write-behind'],
  ['lrange', 'write-behind'],
  ['zadd', 'write-behind'],
  ['zcard', 'write-behind'],
  ['zrem', 'write-behind'],
  ['zrange', 'write-behind'],
  ['info', 'doctor, stats'],
];

/** What a Redis Cluster needs besides (on every node of it). */
export const CLUSTER_REDIS_COMMANDS: ReadonlyArray<readonly [command: string, usedBy: string]> = [
  ['spublish', 'the L1 bus (sharded pub/sub)'],
  ['ssubscribe', 'the L1 bus (sharded pub/sub)'],
  ['cluster|slots', 'the client (the slot map)'],
  ['wait', 'write-behind (writeBehind.replicas)'],
];

/** The ACL rule that gives `user` what walcache needs under `prefix` (and nothing else). */
export function recommendedAcl(user: string, prefix: string, cluster = false): string {
  const commands = [...CACHE_REDIS_COMMANDS, ...(cluster ? CLUSTER_REDIS_COMMANDS : [])]
    .map(([c]) => `+${c}`)
    .join(' ');
  const unsubscribe = cluster ? '+unsubscribe +sunsubscribe' : '+unsubscribe';
  return `ACL SETUSER ${user} on resetkeys resetchannels ~${prefix}:* &${prefix}:* -@all ${commands} ${unsubscribe} +client|setname`;
}

export interface AclResult {
  /** Commands answered NOPERM for the command itself. */
  readonly commands: readonly string[];
  /** Key families or the bus channel answered NOPERM for the key or channel. */
  readonly patterns: readonly string[];
}

/**
 * Runs every command of `CACHE_REDIS_COMMANDS` that the client's topology uses once, as
 * the connected user (SPUBLISH and CLUSTER SLOTS on a cluster only). `subscriber` is a
 * second connection (a subscribed one can run nothing else), closed here.
 */
export async function probeAcl(
  client: RedisClient,
  subscriber: RedisClient,
  keys: Keys,
  config: ResolvedConfig,
): Promise<AclResult> {
  const probe = `${config.prefix}:doctor:acl-probe`;
  const missing = `${config.prefix}:doctor:acl-missing`;
  const commands = new Set<string>();
  const patterns = new Set<string>();
  /** `what`: the key family or channel the attempt touches, reported if that is refused. */
  const run = async (
    command: string,
    attempt: () => Promise<unknown>,
    what: string = command,
  ): Promise<void> => {
    try {
      await attempt();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (!/NOPERM/.test(message)) return; // WRONGTYPE, NOSCRIPT, no such key: allowed
      if (/\bcommand\b/i.test(message)) commands.add(command);
      else patterns.add(what);
    }
  };
  const underPrefix = `keys under ${config.prefix}:*`;
  const call = (command: string, ...args: Array<string | number>) =>
    run(command, () => client.call(command, ...args), underPrefix);

  await call('set', probe, 'walcache doctor', 'PX', 10_000);
  await call('get', probe);
  // Every key family walcache writes, and the bus channel: the patterns must cover them.
  for (const [family, key] of [
    ['entries', keys.entry('doctor')],
    ['tag versions', keys.tagVersion('doctor')],
    ['the epoch', keys.epoch()],
    ['the heartbeat', keys.heartbeat()],
    ['the access log', keys.accessLogIndex()],
    ['write-behind', keys.writeBehindQueue('doctor')],
  ] as const) {
    await run('exists', () => client.call('exists', key), `${family} (${key})`);
  }
  await call('del', missing);
  await call('exists', probe);
  await call('pexpire', probe, 10_000);
  await call('pttl', probe);
  await call('getrange', probe, 0, 16);
  await call('setrange', probe, 0, 'w');
  await call('incr', missing);
  await call('del', missing);
  await call('eval', 'return 0', 1, probe);
  await call('evalsha', '0'.repeat(40), 1, probe);
  // A message every bus reader takes for an empty invalidation from a new publisher.
  await run(
    'publish',
    () => client.publish(keys.busChannel(), emptyMessage()),
    `the bus channel (${keys.busChannel()})`,
  );
  await run(
    'subscribe',
    async () => {
      try {
        await subscriber.connect();
        await subscriber.subscribe(keys.busChannel());
      } finally {
        subscriber.disconnect();
      }
    },
    `the bus channel (${keys.busChannel()})`,
  );
  await call('ping');
  // The bus of a cluster: a shard channel (SPUBLISH; SSUBSCRIBE is checked with the bus),
  // the slot map, and WAIT (writeBehind.replicas). One server or a Sentinel-managed one
  // never runs SPUBLISH and CLUSTER SLOTS: a user without them is not refused there.
  if (isCluster(client)) {
    const shard = keys.busChannel(true);
    await run(
      'spublish',
      () => client.spublish(shard, emptyMessage()),
      `the bus channel (${shard})`,
    );
    await call('cluster', 'slots');
    await call('wait', 0, 1);
  }
  await call('scan', 0, 'MATCH', `${config.prefix}:*`, 'COUNT', 10);
  await run('multi', () => client.multi().exists(probe).exec(), underPrefix);
  for (const command of ['hget', 'hgetall', 'smembers', 'llen', 'zcard'])
    await call(command, probe, ...(command === 'hget' ? ['f'] : []));
  await call('hincrby', probe, 'f', 0);
  await call('hset', probe, 'f', 'v');
  await call('hsetnx', probe, 'f', 'v');
  await call('sadd', probe, 'm');
  await call('srem', probe, 'm');
  await call('rpush', probe, 'v');
  await call('lrange', probe, 0, 0);
  await call('zadd', probe, 0, 'm');
  await call('zrem', probe, 'm');
  await call('zrange', probe, 0, 0);
  await call('rename', missing, `${missing}:2`);
  await call('renamenx', missing, `${missing}:2`);
  await call('info', 'server');
  await client.call('del', probe).catch(() => {});
  if (commands.has('multi')) commands.add('exec');
  // No key under the prefix at all: the families say nothing more.
  const shown = patterns.has(underPrefix)
    ? [...patterns].filter((p) => p === underPrefix || p.startsWith('the bus'))
    : [...patterns];
  return { commands: [...commands], patterns: shown };
}

/** A message every bus reader takes for an empty invalidation from a new publisher. */
function emptyMessage(): string {
  return JSON.stringify({
    src: `doctor-${Date.now()}`,
    kind: 'engine',
    seq: 1,
    keys: [],
    tags: [],
  });
}
