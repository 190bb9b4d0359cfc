import { existsSync, readFileSync } from 'node:fs';
import type { RedisOptions } from 'ioredis';
import { redactText } from '../errors/redact.js';
import { ConfigError } from '../errors/typed-errors.js';
import type { ResolvedConfig } from './resolved-config.js';

/**
 * Where and as whom walcache connects to one Redis: the URL (`redis://` or `rediss://`,
 * possibly with an ACL user and password), credentials that override the URL's, and TLS
 * options. Every client walcache opens (engine, bus, worker, job queues, doctor, stats)
 * is built from one of these, so a deployment's TLS and ACL settings apply everywhere.
 */
export interface RedisEndpoint {
  readonly url: string;
  /** A Redis Cluster: `url` is then only its first seed. */
  readonly cluster?: ClusterTopology | undefined;
  /** A Sentinel-managed Redis: `url` is then only its first sentinel. */
  readonly sentinel?: SentinelTopology | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly tls?: TlsOptions | undefined;
}

export type TlsOptions = NonNullable<ResolvedConfig['redis']['tls']>;
export type ClusterTopology = NonNullable<ResolvedConfig['redis']['cluster']>;
export type SentinelTopology = NonNullable<ResolvedConfig['redis']['sentinel']>;

/** The cache's Redis (`redis.*`). */
export function cacheEndpoint(config: ResolvedConfig): RedisEndpoint {
  const { url, cluster, sentinel, username, password, tls } = config.redis;
  return { url, cluster, sentinel, username, password, tls };
}

/**
 * The job queues' Redis: `jobs.redisUrl`, `jobs.redisCluster` or `jobs.redisSentinel`
 * (with `jobs.redisTls`), else the cache's.
 */
export function queuesEndpoint(config: ResolvedConfig): RedisEndpoint {
  const { redisUrl, redisCluster, redisSentinel, redisTls } = config.jobs;
  if (redisUrl === undefined && redisCluster === undefined && redisSentinel === undefined) {
    const cache = cacheEndpoint(config);
    return redisTls === undefined ? cache : { ...cache, tls: redisTls };
  }
  const seed = redisCluster?.nodes[0] ?? redisSentinel?.sentinels[0];
  const url = redisUrl ?? seedUrl(seed ?? '127.0.0.1:6379', redisTls !== undefined);
  return { url, cluster: redisCluster, sentinel: redisSentinel, tls: redisTls };
}

/** `host:port` as a URL (`rediss://` under TLS); a URL as it is. */
export function seedUrl(node: string, tls: boolean): string {
  if (/^rediss?:\/\//i.test(node)) return node;
  return `${tls ? 'rediss' : 'redis'}://${node}`;
}

/** `{ host, port }` of a node address (`host:port` or a URL). */
export function nodeHostPort(node: string): { host: string; port: number } {
  const url = new URL(seedUrl(node, false));
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 6379) };
}

/** How an endpoint reads in messages, without credentials: `127.0.0.1:6379`, `cluster 10.0.0.5:6379,…`. */
export function describeEndpoint(endpoint: RedisEndpoint): string {
  const hosts = (nodes: readonly string[]) =>
    nodes.map((n) => {
      const { host, port } = nodeHostPort(n);
      return `${host}:${port}`;
    });
  if (endpoint.cluster) return `cluster ${hosts(endpoint.cluster.nodes).join(',')}`;
  if (endpoint.sentinel)
    return `sentinel master "${endpoint.sentinel.name}" via ${hosts(endpoint.sentinel.sentinels).join(',')}`;
  try {
    const u = new URL(endpoint.url);
    return `${u.hostname}:${u.port || '6379'}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * How logs name an endpoint: its URL with the password redacted
 * (`rediss://walcache:***@cache.internal:6380/0`), a cluster's nodes, a sentinel master's
 * name and its sentinels (`describeEndpoint`, which never shows credentials).
 */
export function redactedEndpoint(endpoint: RedisEndpoint): string {
  return endpoint.cluster || endpoint.sentinel
    ? describeEndpoint(endpoint)
    : redactText(endpoint.url);
}

/**
 * The URL and ioredis options of an endpoint. Credentials given apart replace the URL's
 * (ioredis would otherwise prefer the URL's); PEM files are read now.
 */
export function endpointOptions(endpoint: RedisEndpoint): {
  url: string;
  options: Pick<RedisOptions, 'username' | 'password' | 'tls'>;
} {
  let { url } = endpoint;
  const options: Pick<RedisOptions, 'username' | 'password' | 'tls'> = {};
  if (endpoint.username !== undefined || endpoint.password !== undefined) {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    url = parsed.toString();
    options.username = endpoint.username ?? decodeURIComponent(new URL(endpoint.url).username);
    if (endpoint.password !== undefined) options.password = endpoint.password;
  }
  const tls = endpoint.tls;
  if (tls !== undefined) {
    options.tls = {
      rejectUnauthorized: tls.rejectUnauthorized,
      ...(tls.ca !== undefined && { ca: pem(tls.ca) }),
      ...(tls.cert !== undefined && { cert: pem(tls.cert) }),
      ...(tls.key !== undefined && { key: pem(tls.key) }),
      ...(tls.servername !== undefined && { servername: tls.servername }),
    };
  }
  return { url, options };
}

/** The ACL user an endpoint connects as (`default` when none is named). */
export function endpointUser(endpoint: RedisEndpoint): string {
  if (endpoint.username !== undefined) return endpoint.username;
  try {
    return decodeURIComponent(new URL(endpoint.url).username) || 'default';
  } catch {
    return 'default';
  }
}

/**
 * Checks an endpoint's TLS options where the config is resolved: TLS needs a `rediss://`
 * URL, a client certificate goes with its key, and a file must exist.
 *
 * @throws {ConfigError} naming the option.
 */
export function assertTls(option: string, url: string, tls: TlsOptions | undefined): void {
  if (tls === undefined) return;
  if (!/^rediss:\/\//i.test(url))
    throw new ConfigError(option, tls, 'TLS options need a rediss:// URL (redis:// is plain TCP)');
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw new ConfigError(
      option,
      tls,
      'a client cert and its key go together: give both or neither',
    );
  for (const part of ['ca', 'cert', 'key'] as const) {
    const value = tls[part];
    if (value !== undefined && !isPem(value) && !existsSync(value))
      throw new ConfigError(
        `${option}.${part}`,
        value,
        'no such file (give PEM text or the path of a PEM file)',
      );
  }
}

function isPem(value: string): boolean {
  return value.trimStart().startsWith('-----BEGIN');
}

function pem(value: string): string | Buffer {
  return isPem(value) ? value : readFileSync(value);
}
