import { ConfigError } from '../errors/typed-errors.js';
import { assertTls, seedUrl } from './redis-endpoint.js';
import type { ResolvedConfig } from './resolved-config.js';
import { configSchema, NODE_ADDRESS, type WalcacheConfigInput } from './schema.js';
import { closestName, suggestOptions } from './suggest.js';

export type { ResolvedConfig };

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_DATABASE_URL = 'postgres://127.0.0.1:5432/test';

/**
 * Validates a config once, fills in defaults and environment variables
 * (`REDIS_URL`, `DATABASE_URL`, `WALCACHE_PREFIX`) and freezes the result.
 *
 * @throws {ConfigError} naming the first bad option and its value.
 * @example
 * const config = resolveConfig({ prefix: 'shop', cache: { ttlMs: 30_000 } });
 */
export function resolveConfig(
  input: WalcacheConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
): ResolvedConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError('(config)', input, 'expected an object');
  }
  const withEnv = {
    ...input,
    prefix: input.prefix ?? env.WALCACHE_PREFIX ?? 'walcache',
    databaseUrl: input.databaseUrl ?? env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    redis: withTopology(input.redis, env),
  };
  const result = configSchema.safeParse(withEnv);
  if (!result.success) {
    // An unknown option explains the rest (a misspelt required one is also "missing").
    const unknown = unknownKeys(result.error.issues, []);
    if (unknown !== null) throw unknownOptions(withEnv, unknown.path, unknown.keys);
    const issue = result.error.issues[0];
    const path = issue?.path.map(String) ?? [];
    const option = path.length > 0 ? path.join('.') : '(config)';
    throw new ConfigError(option, valueAt(withEnv, path), issue?.message ?? 'invalid');
  }
  const parsed = result.data;
  if (parsed.lease.waitMs >= parsed.lease.ttlMs) {
    throw new ConfigError(
      'lease.waitMs',
      parsed.lease.waitMs,
      `must be below lease.ttlMs (${parsed.lease.ttlMs})`,
    );
  }
  for (const [name, entity] of Object.entries(parsed.entities)) {
    const ttlMs = entity.ttlMs ?? parsed.cache.ttlMs;
    if (entity.sliding !== undefined && entity.sliding.maxAgeMs < ttlMs)
      throw new ConfigError(
        `entities.${name}.sliding.maxAgeMs`,
        entity.sliding.maxAgeMs,
        `must be at least the entity's TTL (${ttlMs} ms): an entry lives that long anyway`,
      );
  }
  const jobsTopologies = [
    parsed.jobs.redisUrl && 'jobs.redisUrl',
    parsed.jobs.redisCluster && 'jobs.redisCluster',
    parsed.jobs.redisSentinel && 'jobs.redisSentinel',
  ].filter((o): o is string => typeof o === 'string');
  if (jobsTopologies.length > 1)
    throw new ConfigError(
      jobsTopologies[1] as string,
      '(set)',
      `give one of jobs.redisUrl, jobs.redisCluster and jobs.redisSentinel (also set: ${jobsTopologies[0]})`,
    );
  // A warmer of an entity the config lacks would fail only when its schedule fires.
  const entityNames = Object.keys(parsed.entities);
  for (const [name, warmer] of Object.entries(parsed.warmers)) {
    if (Object.hasOwn(parsed.entities, warmer.entity)) continue;
    const meant = closestName(entityNames, warmer.entity);
    throw new ConfigError(
      `warmers.${name}.entity`,
      warmer.entity,
      `not an entity of the config${meant ? ` (did you mean \`${meant}\`?)` : ''}; it declares ${entityNames.length > 0 ? entityNames.map((e) => `\`${e}\``).join(', ') : 'none'}`,
    );
  }
  const redisUrl = parsed.redis.url as string; // filled in from the environment above
  assertTls('redis.tls', redisUrl, parsed.redis.tls);
  if (parsed.jobs.redisTls !== undefined)
    assertTls('jobs.redisTls', parsed.jobs.redisUrl ?? redisUrl, parsed.jobs.redisTls);
  return deepFreeze(parsed) as ResolvedConfig;
}

type RedisInput = WalcacheConfigInput['redis'];

/**
 * `redis` with its topology settled: one of `url`, `cluster` and `sentinel` given, or
 * else the environment's (`REDIS_CLUSTER_NODES`, comma-separated, or `REDIS_URL`), else
 * the local default. `url` is always filled: for a cluster or sentinel set-up it names the
 * first seed (messages and ACL user parsing use it; connections use the topology).
 */
function withTopology(input: RedisInput, env: NodeJS.ProcessEnv): RedisInput & { url: string } {
  const given = [
    input?.url !== undefined && input.url !== derivedUrl(input) && 'redis.url',
    input?.cluster !== undefined && 'redis.cluster',
    input?.sentinel !== undefined && 'redis.sentinel',
  ].filter((o): o is string => typeof o === 'string');
  if (given.length > 1)
    throw new ConfigError(
      given[1] as string,
      '(set)',
      `give one of redis.url, redis.cluster and redis.sentinel (also set: ${given[0]})`,
    );
  const redis = { ...input };
  const envNodes = env.REDIS_CLUSTER_NODES?.trim();
  if (given.length === 0 && envNodes) {
    if (env.REDIS_URL)
      throw new ConfigError(
        'REDIS_CLUSTER_NODES',
        envNodes,
        'REDIS_URL is set too: a cache uses one Redis set-up, unset one of them',
      );
    redis.cluster = { nodes: envNodes.split(',').map((n) => n.trim()) };
  }
  const url = redis.url ?? derivedUrl(redis) ?? env.REDIS_URL ?? DEFAULT_REDIS_URL;
  return { ...redis, url };
}

/**
 * The `url` resolution fills in for a cluster or sentinel set-up: its first seed's. A
 * resolved config holds it beside the topology, so the same `url` in an input is that
 * copy being resolved again (`{ ...resolved, l1: ... }`), not a second set-up.
 */
function derivedUrl(redis: RedisInput): string | undefined {
  const seed = redis?.cluster?.nodes?.[0] ?? redis?.sentinel?.sentinels?.[0];
  return typeof seed === 'string' && NODE_ADDRESS.test(seed)
    ? seedUrl(seed, redis?.tls !== undefined)
    : undefined;
}

/**
 * The longest an entry may live: the longest TTL (the cache's or an entity's; an
 * entity's `sliding.maxAgeMs` when it slides), with jitter, plus the stale-while-revalidate
 * grace. A worker away longer than this bumps the epoch at start; tag versions live a
 * multiple of it.
 */
export function maxEntryLifetimeMs(config: ResolvedConfig): number {
  const ttls = [
    config.cache.ttlMs,
    ...Object.values(config.entities).map((e) => e.sliding?.maxAgeMs ?? e.ttlMs ?? 0),
  ];
  return Math.max(...ttls) * (1 + config.cache.jitter) + config.cache.staleWhileRevalidateMs;
}

/**
 * How long a tag version key lives after it is created or bumped: twice the longest
 * entry lifetime plus a minute. A version that expired reads as missing, which makes the
 * entries filled under it misses (never stale), so the bound only trades a rare extra
 * miss for not keeping one Redis key per distinct value ever changed.
 */
export function tagVersionTtlMs(config: ResolvedConfig): number {
  return Math.ceil(2 * maxEntryLifetimeMs(config) + 60_000);
}

/**
 * Unknown options are named one by one (the first is `option`), with the option most
 * likely meant; the value shown is the unknown option's own (redacted), never the
 * object around it, which holds the URLs and their passwords.
 */
function unknownOptions(input: unknown, parent: readonly string[], keys: readonly string[]) {
  const [first = '(config)', ...more] = keys.map((k) => [...parent, k].join('.'));
  const hint = (name: string) => {
    const meant = suggestOptions(parent, name.slice(name.lastIndexOf('.') + 1));
    return meant.length === 0
      ? ''
      : ` (did you mean ${meant.map((m) => `\`${m}\``).join(' or ')}?)`;
  };
  const others =
    more.length > 0 ? `; also unknown: ${more.map((k) => `\`${k}\`${hint(k)}`).join(', ')}` : '';
  return new ConfigError(
    first,
    valueAt(input, first.split('.')),
    `no such option${hint(first)}${others}`,
  );
}

interface IssueLike {
  readonly code: string;
  readonly path: readonly PropertyKey[];
  readonly keys?: readonly string[];
  readonly errors?: ReadonlyArray<readonly IssueLike[]>;
}

/**
 * The first unknown option among zod's issues, with its parent's path: at any depth,
 * and inside a union (`warmers.<name>.schedule`) when every branch refuses the same key.
 */
function unknownKeys(
  issues: readonly IssueLike[],
  base: readonly string[],
): { path: string[]; keys: string[] } | null {
  for (const issue of issues) {
    const path = [...base, ...issue.path.map(String)];
    if (issue.code === 'unrecognized_keys' && issue.keys) return { path, keys: [...issue.keys] };
    if (issue.code === 'invalid_union' && issue.errors && issue.errors.length > 0) {
      const branches = issue.errors.map((branch) => unknownKeys(branch, path));
      const first = branches[0];
      if (first && branches.every((b) => b !== null && b.path.join('.') === first.path.join('.'))) {
        const keys = first.keys.filter((k) => branches.every((b) => b?.keys.includes(k)));
        if (keys.length > 0) return { path: first.path, keys };
      }
    }
  }
  return null;
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  return path.reduce<unknown>(
    (node, part) =>
      node !== null && typeof node === 'object'
        ? (node as Record<string, unknown>)[part]
        : undefined,
    root,
  );
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** The entities with `writeBehind: true`, in config order. */
export function writeBehindEntities(config: ResolvedConfig): string[] {
  return Object.entries(config.entities)
    .filter(([, entity]) => entity.writeBehind)
    .map(([name]) => name);
}
