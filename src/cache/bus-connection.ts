import { EventEmitter } from 'node:events';
import calculateSlot from 'cluster-key-slot';
import { type Cluster, Redis, type RedisOptions } from 'ioredis';
import { closeClient, type RedisClient } from './redis-client.js';

/**
 * The bus's subscribed connection, one server or a cluster alike. Events: `ready` (the
 * connection can subscribe), `down` (it was lost: whatever was published meanwhile is
 * missed), `message` (channel, payload).
 */
export interface BusConnection extends EventEmitter<BusConnectionEvents> {
  readonly isReady: boolean;
  /** Subscribes to the channels (one SSUBSCRIBE slot on a cluster). */
  subscribe(channels: readonly string[]): Promise<void>;
  /** A round trip on the subscribed connection itself (liveness). */
  ping(): Promise<unknown>;
  close(): Promise<void>;
}

export type BusConnectionEvents = {
  ready: [];
  down: [];
  message: [channel: string, payload: Buffer];
};

/** Settings of the subscribed connection: it queues while offline; the bus reports health. */
const SUBSCRIBER_OPTIONS = {
  enableOfflineQueue: true,
  enableAutoPipelining: false,
  commandTimeout: undefined,
} satisfies RedisOptions;

/** Opens the bus's connection beside a client: SUBSCRIBE on one server, SSUBSCRIBE on a cluster. */
export function openBusConnection(client: RedisClient, name: string): BusConnection {
  if (client instanceof Redis)
    return new PlainBusConnection(
      client.duplicate({ ...SUBSCRIBER_OPTIONS, connectionName: name }),
      'subscribe',
    );
  return new ShardedBusConnection(client, name);
}

/** Publishes on the bus's channels: PUBLISH on one server, SPUBLISH (to one shard) on a cluster. */
export async function publishOn(
  client: RedisClient,
  channel: string,
  message: string,
): Promise<void> {
  if (client instanceof Redis) await client.publish(channel, message);
  else await client.spublish(channel, message);
}

/** One subscribed `Redis`: plain pub/sub, or sharded pub/sub on one cluster node. */
class PlainBusConnection extends EventEmitter<BusConnectionEvents> implements BusConnection {
  readonly redis: Redis;
  readonly #mode: 'subscribe' | 'ssubscribe';

  constructor(redis: Redis, mode: 'subscribe' | 'ssubscribe') {
    super();
    this.redis = redis;
    this.#mode = mode;
    // Reconnect errors are reported as `down`; an unhandled 'error' must not crash.
    redis.on('error', () => {});
    redis.on(mode === 'subscribe' ? 'messageBuffer' : 'smessageBuffer', (ch: Buffer, p: Buffer) =>
      this.emit('message', ch.toString(), p),
    );
    redis.on('ready', () => this.emit('ready'));
    redis.on('close', () => this.emit('down'));
    redis.on('end', () => this.emit('down'));
  }

  get isReady(): boolean {
    return this.redis.status === 'ready';
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    if (this.#mode === 'subscribe') await this.redis.subscribe(...channels);
    else await this.redis.ssubscribe(...channels);
  }

  ping(): Promise<unknown> {
    return this.redis.ping();
  }

  close(): Promise<void> {
    return closeClient(this.redis);
  }
}

/**
 * Sharded pub/sub on a cluster. A shard channel lives on the master of its slot, and
 * SPUBLISH reaches only the subscribers of that node (plain PUBLISH would be copied to
 * every node of the cluster). So the bus subscribes on a connection of its own to that
 * master, and follows the slot: when the master fails (the connection closes) or the slot
 * moves (the server unsubscribes us), it asks the cluster where the slot is now and
 * reconnects there. Every switch is a `down` then a `ready`: the bus resets L1, since
 * messages published in between went to a node this connection was not on.
 */
class ShardedBusConnection extends EventEmitter<BusConnectionEvents> implements BusConnection {
  readonly #cluster: Cluster;
  readonly #name: string;
  #node: { key: string; connection: PlainBusConnection } | undefined;
  #channels: readonly string[] = [];
  #closed = false;
  #retargeting = false;

  constructor(cluster: Cluster, name: string) {
    super();
    this.#cluster = cluster;
    this.#name = name;
    if (cluster.status === 'ready') this.#retarget();
    cluster.on('ready', () => this.#retarget());
    // The cluster refreshes its slot table on MOVED replies and failovers.
    cluster.on('refresh', () => this.#retarget());
  }

  get isReady(): boolean {
    return this.#node?.connection.isReady === true;
  }

  /** The node this connection is subscribed on (`host:port`), for tests and doctor. */
  get nodeKey(): string | undefined {
    return this.#node?.key;
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    this.#channels = channels;
    const node = this.#node;
    if (node === undefined) throw new Error('the bus has no cluster node yet');
    await node.connection.subscribe(channels);
  }

  ping(): Promise<unknown> {
    const node = this.#node;
    if (node === undefined) return Promise.reject(new Error('the bus has no cluster node yet'));
    // A slot that moved while the connection stayed up: look again on every liveness check.
    if (this.#owner() !== node.key) this.#retarget();
    return node.connection.ping();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const node = this.#node;
    this.#node = undefined;
    await node?.connection.close();
  }

  /** The master of the channels' slot, per the cluster's slot table. */
  #owner(): string | undefined {
    const channel = this.#channels[0];
    const slot = channel === undefined ? undefined : calculateSlot(channel);
    return slot === undefined ? undefined : this.#cluster.slots[slot]?.[0];
  }

  /** Connects to the slot's master when not already there (at most one switch at a time). */
  #retarget(): void {
    if (this.#closed || this.#retargeting) return;
    const owner = this.#owner() ?? this.#cluster.slots.find((s) => s?.[0])?.[0];
    if (owner === undefined || owner === this.#node?.key) return;
    this.#retargeting = true;
    const previous = this.#node;
    const [host = '127.0.0.1', port = '6379'] = splitNodeKey(owner);
    const base = this.#cluster.options.redisOptions ?? {};
    const redis = new Redis({
      ...base,
      ...SUBSCRIBER_OPTIONS,
      host,
      port: Number(port),
      connectionName: this.#name,
      lazyConnect: false,
      // A lost node: retry briefly, and ask the cluster after each failure where the slot went.
      retryStrategy: (attempt) => {
        this.#cluster.refreshSlotsCache();
        return Math.min(50 * 2 ** Math.min(attempt, 5), 1_000);
      },
    });
    const connection = new PlainBusConnection(redis, 'ssubscribe');
    connection.on('ready', () => {
      if (this.#node?.connection === connection) this.emit('ready');
    });
    connection.on('down', () => {
      if (this.#node?.connection !== connection) return;
      this.emit('down');
    });
    connection.on('message', (channel, payload) => {
      if (this.#node?.connection === connection) this.emit('message', channel, payload);
    });
    // The server unsubscribed us: the slot moved to another node.
    redis.on('moved', () => {
      this.#cluster.refreshSlotsCache();
      if (this.#node?.connection === connection) this.emit('down');
    });
    this.#node = { key: owner, connection };
    this.#retargeting = false;
    if (previous !== undefined) {
      this.emit('down');
      void previous.connection.close();
    }
  }
}

/** `host:port` (IPv6 hosts keep their colons). */
function splitNodeKey(key: string): [string, string] {
  const at = key.lastIndexOf(':');
  return [key.slice(0, at), key.slice(at + 1)];
}
