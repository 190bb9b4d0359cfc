import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { Keyring } from '../codec/keyring.js';
import { Codec } from '../codec/value-codec.js';
import { type ResolvedConfig, resolveConfig, tagVersionTtlMs } from '../config/config.js';
import { cacheEndpoint, describeEndpoint } from '../config/redis-endpoint.js';
import type { WalcacheConfigInput } from '../config/schema.js';
import {
  ClosedError,
  ConfigError,
  EncryptionKeyError,
  RedisUnavailableError,
} from '../errors/typed-errors.js';
import { assertLogicalKey, Keys } from '../keys/redis-keys.js';
import { Bus, type BusMessage } from './bus.js';
import { type BusConnection, openBusConnection } from './bus-connection.js';
import { CacheEvents } from './cache-events.js';
import { CircuitBreaker } from './circuit-breaker.js';
import {
  AT_CREATED_AT,
  AT_FLAGS,
  AT_FRESH_UNTIL,
  AT_LOAD_MS,
  AT_STALE_UNTIL,
  dataPrefix,
  type EntryState,
  type Envelope,
  type EnvelopeMeta,
  encodeEntry,
  FLAG_COMPRESSED,
  FLAG_ENCRYPTED,
  FLAG_NEGATIVE,
  leaseValue,
  MARK_REFRESHING,
  newToken,
  PREFIX_LENGTH,
  parseEntry,
  refreshValuePrefix,
  tombstoneValue,
  untaggedPayloadAt,
} from './envelope.js';
import type { Heartbeat } from './heartbeat.js';
import { L1Tier } from './l1-tier.js';
import { INVALID, type L2Read, L2Reader, RESOLVED, type Verdict } from './l2-read.js';
import { isBumpVersion, L2Tier, versionTime, versionXids } from './l2-tier.js';
import { logRedisOutages, type WalcacheLogger } from './outage-log.js';
import { closeClient, isCluster, type RedisClient } from './redis-client.js';
import { createCacheRedis, firstConnection, waitReady } from './redis-connection.js';
import { copyForCaller, forCaller, type SharedValue, share } from './shared-value.js';
import { allVisible, compactSnapshot } from './snapshot.js';
import { VersionTrust } from './version-trust.js';
import { WorkerLag } from './worker-lag.js';

/** Per-call options of `getOrLoad`. Every one falls back to the config. */
export interface LoadOptions {
  /** Fresh lifetime of a value filled by this call (jitter is applied). */
  readonly ttlMs?: number;
  /** Tags the value depends on; bumping any of them invalidates it. */
  readonly tags?: readonly string[];
  /** Grace after expiry in which the stale value is served while one refresh runs. */
  readonly staleWhileRevalidateMs?: number;
  /** Cache `undefined` from the loader for this long (negative caching). */
  readonly negativeTtlMs?: number;
  /** Skip both tiers, load, and fill them with the new value. */
  readonly forceFresh?: boolean;
  /**
   * Serve from the cache only if the invalidation worker has applied every commit older
   * than this (by its heartbeat); otherwise, or if it is silent, load from the database
   * without touching the cache. Keep it above the worker's heartbeat interval (5 s).
   */
  readonly maxStalenessMs?: number;
  /**
   * Tags derived from the loaded value, added to `tags`. A derived tag whose version was
   * not read before the load makes the fill read it, then load again, so an invalidation
   * during the first load is never recorded as seen. When the second load derives tags
   * still unknown, the value is returned without being cached.
   */
  readonly tagsOf?: (value: never) => readonly string[];
  /** Neither read nor fill L1 (L2 only): for values whose readers must never see an older copy. */
  readonly skipL1?: boolean;
  /**
   * Read the epoch and every tag version from Redis, trusting none this process holds in
   * memory, and join no load already in flight. For a read that must reflect everything
   * the worker has applied, such as one after a write receipt: the bus message that would
   * drop a trusted version may still be on its way. Combine with `skipL1`.
   */
  readonly verifyTags?: boolean;
  /**
   * Encrypt the value in Redis (AES-256-GCM, the keys of `encryption.keysEnv`), and take
   * only an encrypted entry for it: one in the clear, or one this process cannot decrypt,
   * is a miss (`decrypt-failed` event) that the fill replaces. L1 holds the value decrypted.
   * @default config.encryption.all
   * @throws {EncryptionKeyError} (synchronously) when this process has no keys.
   */
  readonly encrypt?: boolean;
  /**
   * Fences this call's fill by the database's own order: resolves with the text of
   * `pg_current_snapshot()`, read from the database the loader reads, before the loader
   * runs (the engine awaits it first). An invalidation that lands during the load then
   * no longer refuses the fill when the snapshot shows its commits visible (the load saw
   * them), and the stored value keeps the snapshot, so the worker leaves it in place for
   * commits it already holds. A rejection or undefined means no fence (as without it).
   * The repository passes one; see docs/consistency.md.
   */
  readonly snapshot?: () => Promise<string | undefined>;
  /**
   * Sliding expiration: a fresh hit on an entry with less than half of `ttlMs` left
   * extends it to now + `ttlMs`, never past `maxAgeMs` after it was loaded (then it is
   * reloaded as usual). In L1 at once, in L2 in the background (only while it holds the
   * same fill). Invalidation is unaffected; negative entries do not slide.
   * `maxAgeMs` must be at least the TTL.
   */
  readonly sliding?: { readonly maxAgeMs: number };
  /**
   * Called with the key when this read waits on a load it does not run: another
   * process's (its lease is held) or one already in flight in this process. A batch of
   * loads (the repository's findMany) then stops holding its query for that key.
   */
  readonly onWait?: (key: string) => void;
}

export interface EngineOptions {
  /** Config input, validated here; or an already resolved config. */
  readonly config?: WalcacheConfigInput | ResolvedConfig;
  /** Share a Redis client instead of connecting to `config.redis.url`. The engine never closes it. */
  readonly redis?: RedisClient;
  /** Where the encryption keys are read (`config.encryption.keysEnv`). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Where a cache Redis outage is logged (pino, or anything with `error` and `info`):
   * once at error level when reads start going to the database, once at info level when
   * Redis answers again. Nothing is logged without one; the events report it all.
   */
  readonly logger?: WalcacheLogger;
}

/** The options of a call that passes none (one object, not one per call). */
const NO_OPTIONS: LoadOptions = Object.freeze({});
/** `#untaggedHit`: the entry goes the ordinary way. */
const NOT_IN_PLACE = Symbol('not in place');
/** `#flyOn`: the GET failed. */
const L2_FAILED = Symbol('L2 failed');
/** Largest clock difference between processes that derived tags (`tagsOf`) tolerate. */
const CLOCK_SKEW_MS = 1_000;

/**
 * The two-tier cache: an in-process L1 and a Redis L2 whose fills are protected by a
 * lease, so a value loaded before an invalidation can never be stored after it.
 *
 * @example
 * const cache = new CacheEngine({ config: { prefix: 'shop' } });
 * const user = await cache.getOrLoad(key('users', 42), () => db.findUser(42), { tags: ['users'] });
 * await cache.close();
 */
export class CacheEngine {
  readonly config: ResolvedConfig;
  readonly events = new CacheEvents();
  readonly keys: Keys;
  readonly #redis: RedisClient;
  readonly #ownsRedis: boolean;
  readonly #subscriber: BusConnection | undefined;
  /** On a Redis Cluster: the bus uses sharded pub/sub. */
  readonly #sharded: boolean;
  readonly #l1: L1Tier | undefined;
  readonly #l2: L2Tier;
  readonly #bus: Bus | undefined;
  readonly #breaker: CircuitBreaker;
  readonly #codec: Codec;
  /** Encryption keys from the environment; null when there are none. */
  readonly #keyring: Keyring | null;
  readonly #flights = new Map<string, Promise<unknown>>();
  /**
   * Keys this process saw invalidated (a bus message, a local delete) and has not read
   * since: their L2 entry is most likely a tombstone, so the next read goes straight to
   * the lease script (which answers with the data if someone filled it meanwhile),
   * saving the GET that would only find the tombstone.
   */
  readonly #invalidated = new LRUCache<string, true>({ max: 10_000 });
  /** Wake-ups of reads waiting for another process's fill, by key (see #awaitOthersFill). */
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #refreshing = new Set<string>();
  /** The epoch and tag versions trusted from memory while the bus is healthy. */
  readonly #versions: VersionTrust;
  readonly #workerLag: WorkerLag;
  readonly #reader: L2Reader;
  /** Values loaded, by key, for `cache.graceMs` (undefined when grace is off). */
  readonly #lastGood:
    | LRUCache<string, { readonly value: unknown; readonly at: number }>
    | undefined;
  /** The UTF-8 bytes of an epoch (`#untaggedHit` compares them in place). */
  #epochText: string | undefined;
  #epochBytes: Buffer = Buffer.alloc(0);
  #closing: Promise<void> | undefined;

  constructor(options: EngineOptions = {}) {
    this.config = isResolved(options.config) ? options.config : resolveConfig(options.config);
    const { config } = this;
    this.keys = new Keys(config.prefix);
    this.#codec = new Codec(config.cache);
    // Keys are checked before any connection is opened.
    const { keysEnv } = config.encryption;
    this.#keyring = Keyring.fromEnv(keysEnv, options.env ?? process.env);
    if (config.encryption.all && this.#keyring === null)
      throw new EncryptionKeyError(
        keysEnv,
        `${keysEnv} is not set, and encryption.all asks to encrypt every entry`,
      );
    this.#ownsRedis = options.redis === undefined;
    this.#redis = options.redis ?? createCacheRedis(config.redis, `walcache:${config.prefix}`);
    this.#sharded = isCluster(this.#redis);
    this.#breaker = new CircuitBreaker(config.breaker, (state) => {
      if (state === 'open') this.events.emit('breaker-open');
      if (state === 'closed') this.events.emit('breaker-close');
    });
    this.#l2 = new L2Tier(this.#redis, this.#breaker, (op, error) =>
      this.events.emit('l2-error', op, error),
    );
    // Calls made while the first connection is coming up wait for it (at most
    // `redis.connectTimeoutMs`; a refused connection ends the wait at once) instead of
    // failing as an outage (l2-tier.ts, holdUntil).
    if (this.#redis.status !== 'ready')
      this.#l2.holdUntil(firstConnection(this.#redis, config.redis.connectTimeoutMs));
    if (options.logger)
      logRedisOutages(this.events, options.logger, describeEndpoint(cacheEndpoint(config)));
    this.#l1 = config.l1.enabled ? new L1Tier(config.l1) : undefined;
    this.#versions = new VersionTrust(
      this.#l2,
      this.keys,
      this.#l1,
      () => this.#bus?.healthy === true,
      tagVersionTtlMs(config),
    );
    this.#workerLag = new WorkerLag(this.#l2, this.keys.heartbeat());
    this.#reader = new L2Reader({
      l2: this.#l2,
      keys: this.keys,
      versions: this.#versions,
      codec: this.#codec,
      keyring: this.#keyring,
      events: this.events,
      config,
      dropCorrupt: (key, state) => this.#dropCorrupt(key, state),
    });
    this.#lastGood =
      config.cache.graceMs > 0
        ? new LRUCache({ max: config.l1.maxEntries, ttl: config.cache.graceMs })
        : undefined;
    if (config.bus.enabled) {
      // A subscribed connection can run nothing else, so the bus gets its own. It may
      // queue commands while offline: the bus reports health from connection events.
      this.#subscriber = openBusConnection(this.#redis, `walcache:${config.prefix}:bus`);
      this.#bus = new Bus(
        this.#subscriber,
        this.keys.busChannel(this.#sharded),
        newToken(),
        {
          onInvalidate: (message) => this.#applyBusMessage(message),
          onReset: (reason) => {
            // Redis stopped answering the bus's PING: every L2 call would wait a command
            // timeout until enough failed to open the breaker; open it now.
            if (reason === 'stalled') this.#breaker.trip();
            this.#versions.reset();
            this.#l1?.clear();
            this.#flights.clear(); // every load in flight may predate what was missed
            this.events.emit('l1-reset', reason);
          },
          onHealth: (healthy) => this.events.emit(healthy ? 'bus-up' : 'bus-down'),
          onFilled: (key) => this.#wake(key),
        },
        config.bus,
        this.keys.fillChannel(this.#sharded),
      );
    }
  }

  /** Resolves true once Redis (and the bus, if enabled) is connected, false after `timeoutMs`. */
  async ready(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (!(await waitReady(this.#redis, timeoutMs))) return false;
    while (this.#bus && !this.#bus.healthy) {
      if (Date.now() >= deadline) return false;
      await sleep(5);
    }
    return true;
  }

  /** Is L1 in use right now? Only while the bus is healthy (or disabled by config). */
  get l1Active(): boolean {
    return this.#l1 !== undefined && (this.#bus === undefined || this.#bus.healthy);
  }

  /** L1 size: entries, their estimated heap bytes, and (tag, key) pairs in its tag index. */
  get l1Stats(): { entries: number; bytes: number; indexed: number } {
    return {
      entries: this.#l1?.size ?? 0,
      bytes: this.#l1?.bytes ?? 0,
      indexed: this.#l1?.indexed ?? 0,
    };
  }

  /** The id of the key that encrypts (`encrypt` reads and fills), or null without keys. */
  get encryptionKeyId(): string | null {
    return this.#keyring?.activeId ?? null;
  }

  get breakerState(): CircuitBreaker['state'] {
    return this.#breaker.state;
  }

  get busHealthy(): boolean {
    return this.#bus?.healthy ?? false;
  }

  /**
   * Synchronous L1 lookup: the value if L1 holds it fresh, else undefined. No await,
   * no allocation; the cheapest read walcache has.
   */
  peek<T = unknown>(key: string): T | undefined {
    if (!this.l1Active) return undefined;
    const entry = (this.#l1 as L1Tier).get(key);
    if (entry === undefined || entry.freshUntil <= Date.now()) return undefined;
    this.events.emit('hit', 'l1', key);
    return (entry.copyOnRead ? copyForCaller(entry.value) : entry.value) as T;
  }

  /**
   * Reads through both tiers; on a miss, loads once (per process, and across processes
   * through the L2 lease) and fills both tiers.
   *
   * Redis errors never reach the caller: without Redis the loader answers directly.
   * The loader's own errors do reach the caller, and nothing is cached.
   *
   * @example
   * const user = await cache.getOrLoad('users:42', () => findUser(42), { ttlMs: 30_000 });
   */
  getOrLoad<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions = NO_OPTIONS,
  ): Promise<T> {
    if (this.#closing) return Promise.reject(new ClosedError('CacheEngine'));
    assertLogicalKey(key);
    if (options.encrypt === true && this.#keyring === null) throw this.#noKeys();
    if (options.sliding !== undefined) {
      const bad = this.#badSliding(options);
      if (bad !== undefined) return Promise.reject(bad);
    }
    if (options.maxStalenessMs !== undefined)
      return this.#boundedRead(key, loader, options, options.maxStalenessMs);
    // 1. L1: synchronous, fresh or inside its grace period.
    if (!options.forceFresh && !options.skipL1 && this.l1Active) {
      const entry = (this.#l1 as L1Tier).get(key);
      if (entry !== undefined) {
        const now = Date.now();
        if (now < entry.freshUntil) {
          this.events.emit('hit', 'l1', key);
          const slid =
            options.sliding !== undefined &&
            !entry.negative &&
            this.#slide(
              key,
              options,
              now,
              entry.createdAt,
              entry.freshUntil,
              entry.staleUntil,
              entry.fill,
            );
          if (!slid && this.#reader.refreshEarly(now, entry.freshUntil, entry.loadMs))
            this.#refreshInBackground(key, loader, options, 'early');
        } else {
          this.events.emit('stale-served', 'l1', key);
          this.#refreshInBackground(key, loader, options, 'stale');
        }
        return Promise.resolve((entry.copyOnRead ? copyForCaller(entry.value) : entry.value) as T);
      }
    }
    // 2. Single flight: one load per key in this process.
    // A read that trusts nothing in memory must not take a load that began before it either.
    const flightKey = options.forceFresh
      ? `\0fresh\0${key}`
      : options.verifyTags
        ? `\0verify\0${key}`
        : key;
    const running = this.#flights.get(flightKey);
    if (running) {
      this.events.emit('coalesced', key);
      options.onWait?.(key);
      // The value is read-only; only byte arrays (which cannot be) are copied per caller.
      return (running as Promise<T>).then(forCaller);
    }
    const slot: FlightSlot = { flight: undefined };
    let flight =
      this.#untaggedFlight(flightKey, key, loader, options, slot) ??
      this.#fly(flightKey, key, loader, options, slot);
    if (this.#lastGood !== undefined) flight = this.#withGrace(key, flight, this.#lastGood);
    slot.flight = flight;
    this.#flights.set(flightKey, flight);
    return flight;
  }

  /**
   * `cache.graceMs`: remembers what each load returned, and answers a load that failed
   * with a connection error with it while it is young enough (marked by an event).
   */
  async #withGrace<T>(
    key: string,
    flight: Promise<T>,
    lastGood: LRUCache<string, { readonly value: unknown; readonly at: number }>,
  ): Promise<T> {
    try {
      const value = await flight;
      lastGood.set(key, { value, at: Date.now() });
      return value;
    } catch (error) {
      const known = lastGood.get(key);
      const age = known === undefined ? Number.POSITIVE_INFINITY : Date.now() - known.at;
      if (age > this.config.cache.graceMs || !isConnectionFailure(error)) throw error;
      this.events.emit('grace-served', key, age);
      return known?.value as T;
    }
  }

  /**
   * The invalidation worker's last heartbeat (position applied, commit time), read from
   * Redis now. Null when there is none or Redis cannot say.
   */
  workerHeartbeat(): Promise<Heartbeat | null> {
    return this.#workerLag.heartbeat();
  }

  /**
   * The engine's Redis connection, for walcache components that share it (the access-log
   * sampler, jobs). Do not close it; `close()` does.
   */
  get redis(): RedisClient {
    return this.#redis;
  }

  /**
   * How far behind the invalidation worker may be, in ms: now minus the commit time of
   * the last transaction it applied (its heartbeat). Infinity when it has never run or
   * Redis cannot say. Read from Redis at most every 250 ms.
   */
  workerLagMs(): Promise<number> {
    return this.#workerLag.lagMs();
  }

  async #boundedRead<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    maxStalenessMs: number,
  ): Promise<T> {
    const lag = await this.workerLagMs();
    if (lag <= maxStalenessMs)
      return this.getOrLoad(key, loader, { ...options, maxStalenessMs: undefined });
    this.events.emit('bypass', key, lag);
    return shared(await loader());
  }

  /** Reads a value from L1 or L2 without loading. Undefined when absent, stale or invalid. */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    this.#assertOpen();
    assertLogicalKey(key);
    if (this.l1Active) {
      const entry = (this.#l1 as L1Tier).get(key);
      if (entry !== undefined && entry.freshUntil > Date.now()) {
        this.events.emit('hit', 'l1', key);
        return (entry.copyOnRead ? copyForCaller(entry.value) : entry.value) as T;
      }
    }
    const snapshot = this.#l1?.snapshot(key, null) ?? 0;
    let read: L2Read;
    try {
      read = await this.#reader.read(key, null);
    } catch {
      return undefined;
    }
    const verdict = this.#reader.judge(key, read, this.config.encryption.all);
    if (verdict.kind === 'invalid') {
      this.#dropCorrupt(key, read.state);
      this.events.emit('miss', key);
      return undefined;
    }
    this.events.emit(
      verdict.kind === 'stale' || verdict.kind === 'refreshing' ? 'stale-served' : 'hit',
      'l2',
      key,
    );
    this.#storeL1(key, read.state, verdict, snapshot);
    return verdict.value as T;
  }

  /** `get` for many keys; the L2 reads go out together (one round trip with auto-pipelining). */
  getMany<T = unknown>(keys: readonly string[]): Promise<Array<T | undefined>> {
    return Promise.all(keys.map((k) => this.get<T>(k)));
  }

  /**
   * Writes a value to both tiers unconditionally and tells other processes to drop
   * their L1 copy. Prefer letting the database's log invalidate; `set` is for values
   * that have no row behind them.
   *
   * @throws {SerializationError | ValueTooLargeError} before anything is written.
   * @throws {RedisUnavailableError} when Redis did not take the write.
   */
  async set(
    key: string,
    value: unknown,
    options: Pick<LoadOptions, 'ttlMs' | 'tags' | 'staleWhileRevalidateMs' | 'encrypt'> = {},
  ): Promise<void> {
    this.#assertOpen();
    assertLogicalKey(key);
    const tags = this.#checkTags(options.tags);
    const encrypt = this.#encrypts(options);
    if (encrypt && this.#keyring === null) throw this.#noKeys();
    const { bytes, compressed } = this.#codec.encode(key, value);
    const token = newToken();
    const versions = tags.length > 0 ? await this.#versions.currentVersions(tags) : null;
    const epoch = await this.#versions.currentEpoch();
    const meta = this.#meta(options, 0, epoch, versions, false);
    const entry = encodeEntry(
      token,
      meta,
      encrypt ? (this.#keyring as Keyring).seal(bytes, this.keys.entry(key)) : bytes,
      compressed,
      encrypt,
    );
    this.#l1?.invalidate([key], []);
    await this.#l2.set(this.keys.entry(key), entry, meta.staleUntil - meta.createdAt);
    await this.#publish([key], []);
    const tagList = tags.length > 0 ? tags : null;
    if (this.l1Active) {
      // L1 holds what other processes would decode, read-only; the caller keeps its object.
      const copy = this.#codec.decode(bytes, compressed);
      const snapshot = this.#l1?.snapshot(key, tagList) ?? 0;
      this.#keepInL1(key, copy, meta, tagList, share(copy), snapshot, dataPrefix(token));
    }
  }

  /**
   * Invalidates keys: each becomes a tombstone in L2 (so fills in flight are refused)
   * and every process drops it from L1.
   *
   * @throws {RedisUnavailableError} when Redis did not take the tombstones.
   */
  async delete(keys: string | readonly string[]): Promise<void> {
    this.#assertOpen();
    const list = typeof keys === 'string' ? [keys] : [...keys];
    for (const k of list) assertLogicalKey(k);
    this.#l1?.invalidate(list, []);
    this.#detachFlights(list);
    for (const k of list) this.#invalidated.set(k, true);
    await this.#l2.tombstone(
      list.map((k) => this.keys.entry(k)),
      tombstoneValue(0n),
      this.config.tombstoneTtlMs,
    );
    await this.#publish(list, []);
  }

  /**
   * Bumps tag versions (O(1) per tag): every entry filled under an older version reads
   * as a miss, in every process.
   *
   * @throws {RedisUnavailableError} when Redis did not take the bump.
   */
  async invalidateTags(tags: readonly string[]): Promise<void> {
    this.#assertOpen();
    const list = this.#checkTags(tags);
    this.#l1?.invalidate([], list);
    this.#versions.forgetTags(list);
    await this.#l2.bumpVersions(
      list.map((t) => this.keys.tagVersion(t)),
      this.#versions.tagTtlMs,
    );
    // Again once the bump landed: a read between the two may have kept the old version
    // (this process does not hear its own bus messages).
    this.#l1?.invalidate([], list);
    this.#versions.forgetTags(list);
    await this.#publish([], list);
  }

  /**
   * Moves the global epoch: every entry filled before reads as a miss, everywhere.
   * For gaps in invalidation (and `walcache invalidate --all`).
   */
  async bumpEpoch(): Promise<string> {
    this.#assertOpen();
    this.#l1?.clear();
    this.#flights.clear();
    await this.#l2.bumpVersions([this.keys.epoch()], 0);
    this.#versions.forgetEpoch();
    const epoch = await this.#versions.currentEpoch();
    await this.#publish([], [], epoch);
    return epoch;
  }

  /** Closes the connections the engine opened. Idempotent; later calls share the promise. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#bus?.close();
      await this.#subscriber?.close();
      if (this.#ownsRedis) await closeClient(this.#redis);
      this.#l1?.clear();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- the read path -------------------------------------------------------------

  /**
   * One flight: resolves the key, then leaves the single-flight map (no extra promise
   * layer), unless an invalidation already detached it (`#detachFlights`) and a newer
   * flight holds the place.
   */
  async #fly<T>(
    flightKey: string,
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    slot: FlightSlot,
  ): Promise<T> {
    try {
      return await this.#resolve(key, loader, options);
    } finally {
      this.#leave(flightKey, slot);
    }
  }

  /** A flight ends: it leaves the single-flight map, unless a newer one took its place. */
  #leave(flightKey: string, slot: FlightSlot): void {
    if (this.#flights.get(flightKey) === slot.flight) this.#flights.delete(flightKey);
  }

  /**
   * An invalidation of `keys` arrived: loads in flight for them may have read the rows
   * before it, so reads that begin from now on do not join them (they load anew); the
   * reads that joined earlier, which began before the invalidation, still take them.
   */
  #detachFlights(keys: readonly string[]): void {
    if (this.#flights.size === 0) return;
    for (const key of keys) {
      this.#flights.delete(key);
      this.#flights.delete(`\0fresh\0${key}`);
      this.#flights.delete(`\0verify\0${key}`);
    }
  }

  async #resolve<T>(key: string, loader: () => Promise<T> | T, options: LoadOptions): Promise<T> {
    const tags = this.#checkTags(options.tags);
    const tagList = tags.length > 0 ? tags : null;
    // The generation snapshot comes first: any invalidation after it drops our L1 fill.
    const snapshot = this.#snapshot(key, tagList, options);
    if (!options.forceFresh && !options.verifyTags && this.#invalidated.delete(key)) {
      const known = this.#reader.fromMemory(tagList);
      if (known !== undefined) {
        this.events.emit('miss', key);
        return this.#fill(key, loader, options, snapshot, '', known);
      }
    }
    // 3. L2: the entry, the versions of its tags and the epoch, in one round trip.
    let read: L2Read;
    try {
      read = await this.#reader.read(key, tagList, options.verifyTags === true);
    } catch {
      return this.#loadWithoutL2(key, loader, options, snapshot);
    }
    return this.#afterRead(key, loader, options, snapshot, read);
  }

  /** A hit, or a miss that loads: what a read does once L2 answered. */
  #afterRead<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
    read: L2Read,
  ): T | Promise<T> {
    let replace = '';
    if (read.state.kind === 'data' || read.state.kind === 'corrupt') {
      const verdict = options.forceFresh
        ? INVALID
        : this.#reader.judge(key, read, this.#encrypts(options));
      if (verdict.kind !== 'invalid') {
        const stale = verdict.kind === 'stale' || verdict.kind === 'refreshing';
        this.events.emit(stale ? 'stale-served' : 'hit', 'l2', key);
        this.#storeL1(key, read.state, verdict, snapshot);
        const slid = !stale && options.sliding !== undefined && this.#slideRead(key, options, read);
        if (verdict.kind === 'stale' || (verdict.kind === 'early' && !slid))
          this.#refreshInBackground(key, loader, options, verdict.kind);
        return verdict.value as T;
      }
      replace = read.state.prefix;
    }
    // 4. Miss: take the lease (or find another process's) and load.
    this.events.emit('miss', key);
    return this.#fill(key, loader, options, snapshot, replace, read);
  }

  // --- the untagged L2 hit (the common read; measured by bench:hitpath) -----------

  /**
   * The common read as one GET and one callback, no async layer: a call that names no
   * tags, trusts the epoch in memory (the bus is healthy), and is neither `forceFresh`
   * nor `verifyTags`. An untagged entry of that epoch is judged in place
   * (`#untaggedHit`); anything else goes on along the ordinary path (`#flyOn`) with the
   * value read. Undefined when the call is not one of these.
   */
  #untaggedFlight<T>(
    flightKey: string,
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    slot: FlightSlot,
  ): Promise<T> | undefined {
    const { tags } = options;
    if (
      options.forceFresh ||
      options.verifyTags ||
      (tags !== undefined && !(Array.isArray(tags) && tags.length === 0))
    )
      return undefined;
    const epoch = this.#versions.trustedEpoch();
    if (epoch === undefined) return undefined;
    // The generation snapshot comes first: any invalidation after it drops our L1 fill.
    const snapshot = this.#snapshot(key, null, options);
    return this.#l2.getThen(
      this.keys.entry(key),
      (buffer) => {
        let value: unknown;
        try {
          value = this.#untaggedHit(key, buffer, epoch, loader, options, snapshot);
        } catch (error) {
          this.#leave(flightKey, slot);
          throw error;
        }
        if (value === NOT_IN_PLACE)
          return this.#flyOn(flightKey, slot, key, loader, options, snapshot, buffer, epoch);
        this.#leave(flightKey, slot);
        return value as T;
      },
      () => this.#flyOn(flightKey, slot, key, loader, options, snapshot, L2_FAILED, epoch),
    );
  }

  /**
   * An untagged entry of the trusted epoch, judged as `#judge` would, read in place; the
   * value served (events, L1, refresh as `#afterRead`). NOT_IN_PLACE for any other entry,
   * and for one this path leaves to `#judge` to report: expired, not decrypting, not
   * decoding, in the clear where encryption is required.
   */
  #untaggedHit<T>(
    key: string,
    buffer: Buffer | null,
    epoch: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
  ): unknown {
    if (epoch !== this.#epochText) {
      this.#epochText = epoch;
      this.#epochBytes = Buffer.from(epoch, 'utf8');
    }
    const at = untaggedPayloadAt(buffer, this.#epochBytes);
    if (at < 0) return NOT_IN_PLACE;
    const entry = buffer as Buffer;
    const now = Date.now();
    const staleUntil = entry.readDoubleBE(AT_STALE_UNTIL);
    if (now >= staleUntil) return NOT_IN_PLACE;
    const flags = entry[AT_FLAGS] as number;
    let payload = entry;
    let start = at;
    if ((flags & FLAG_ENCRYPTED) !== 0) {
      if (this.#keyring === null) return NOT_IN_PLACE;
      try {
        payload = this.#keyring.open(entry.subarray(at), this.keys.entry(key));
      } catch {
        return NOT_IN_PLACE;
      }
      start = 0;
    } else if (this.#encrypts(options)) return NOT_IN_PLACE;
    const negative = (flags & FLAG_NEGATIVE) !== 0;
    let value: unknown;
    let sharedValue: SharedValue;
    try {
      value = negative
        ? undefined
        : this.#codec.decodeAt(payload, start, (flags & FLAG_COMPRESSED) !== 0);
      sharedValue = share(value);
    } catch {
      return NOT_IN_PLACE;
    }
    const freshUntil = entry.readDoubleBE(AT_FRESH_UNTIL);
    const loadMs = entry.readUInt32BE(AT_LOAD_MS);
    const createdAt = entry.readDoubleBE(AT_CREATED_AT);
    const refreshing = entry[0] === MARK_REFRESHING;
    const stale = now >= freshUntil;
    // The fill's identity, for sliding expiration only (a string per hit otherwise).
    const sliding = options.sliding !== undefined && !stale && !negative && !refreshing;
    const fill = sliding ? entry.toString('latin1', 0, PREFIX_LENGTH) : '';
    this.events.emit(stale ? 'stale-served' : 'hit', 'l2', key);
    if (this.l1Active)
      this.#keepInL1(
        key,
        value,
        { createdAt, freshUntil, staleUntil, loadMs, negative },
        null,
        sharedValue,
        snapshot,
        fill,
      );
    if (refreshing) return value;
    if (stale) this.#refreshInBackground(key, loader, options, 'stale');
    else if (
      !(sliding && this.#slide(key, options, now, createdAt, freshUntil, staleUntil, fill)) &&
      this.#reader.refreshEarly(now, freshUntil, loadMs)
    )
      this.#refreshInBackground(key, loader, options, 'early');
    return value;
  }

  /** The rest of an untagged flight, on the ordinary path, from the value it read. */
  async #flyOn<T>(
    flightKey: string,
    slot: FlightSlot,
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
    buffer: Buffer | null | typeof L2_FAILED,
    epoch: string,
  ): Promise<T> {
    try {
      let read: L2Read;
      try {
        if (buffer === L2_FAILED) throw buffer;
        const state = parseEntry(buffer);
        const versions = new Map<string, string | null>();
        await this.#versions.addEntryTagVersions(state, versions);
        read = { state, versions, epoch };
      } catch {
        return await this.#loadWithoutL2(key, loader, options, snapshot);
      }
      return await this.#afterRead(key, loader, options, snapshot, read);
    } finally {
      this.#leave(flightKey, slot);
    }
  }

  async #fill<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
    replace: string,
    read: L2Read,
  ): Promise<T> {
    const redisKey = this.keys.entry(key);
    const token = newToken();
    // Missing tag versions are created in the same round trip as the lease is taken
    // (creating one invalidates nothing, so it need not wait for the lease).
    const settling = this.#versions.versionsForFill(read.versions);
    settling.catch(() => {});
    // The fence's snapshot is read beside the lease (it must only precede the load).
    const fence = this.#fenceSnapshot(options);
    let acquired: Awaited<ReturnType<L2Tier['acquire']>>;
    try {
      acquired = await this.#l2.acquire(redisKey, token, this.config.lease.ttlMs, replace, 'fill');
    } catch {
      return this.#loadWithoutL2(key, loader, options, snapshot);
    }
    if (acquired.kind === 'data') {
      // Filled by another process between our GET and the script.
      const fresh = await this.#reader.again(
        key,
        acquired.value,
        read,
        options.verifyTags === true,
      );
      if (fresh !== RESOLVED) {
        const verdict = this.#reader.judge(key, fresh, this.#encrypts(options));
        if (verdict.kind !== 'invalid') {
          this.events.emit('hit', 'l2', key);
          this.#storeL1(key, fresh.state, verdict, snapshot);
          return verdict.value as T;
        }
      }
      return shared(await this.#loadWithoutFill(key, loader));
    }
    if (acquired.kind !== 'acquired')
      return this.#awaitOthersFill(key, loader, options, snapshot, read);
    // 5. We hold the lease. Versions are settled before the database is read.
    const lease = leaseValue(token);
    let versions: Record<string, string> | null;
    try {
      versions = await settling;
    } catch {
      this.#release(key, lease);
      return this.#loadWithoutL2(key, loader, options, snapshot);
    }
    const pg = await fence;
    return this.#loadAndFill(
      key,
      loader,
      options,
      snapshot,
      token,
      lease,
      read.epoch,
      versions,
      pg,
    );
  }

  /** Does `snapshot` show every commit the worker's versions in `versions` stand for? */
  #versionsSeen(versions: Record<string, string> | null, snapshot: string): boolean {
    if (versions === null) return true;
    for (const tag in versions) {
      const xids = versionXids(versions[tag] as string);
      if (xids.length > 0 && !allVisible(snapshot, xids)) return false;
    }
    return true;
  }

  /** The fence snapshot of a call (`LoadOptions.snapshot`), compacted; '' for none. */
  async #fenceSnapshot(options: LoadOptions): Promise<string> {
    if (options.snapshot === undefined) return '';
    try {
      return compactSnapshot((await options.snapshot()) ?? '');
    } catch {
      return '';
    }
  }

  /** Gives a lease back (in the background) and tells waiting processes. */
  #release(key: string, lease: string): void {
    void this.#l2.release(this.keys.entry(key), lease).then(
      ({ waiters }) => waiters && this.#notifyFilled(key),
      () => {},
    );
  }

  /** Tells processes waiting for `key` to look again (they asked: the lease says so). */
  #notifyFilled(key: string): void {
    if (this.#bus === undefined) return;
    void this.#l2.publish(this.keys.fillChannel(this.#sharded), key).catch(() => {});
  }

  /** Wakes this process's reads waiting for `key`. */
  #wake(key: string): void {
    const list = this.#waiters.get(key);
    if (list === undefined) return;
    this.#waiters.delete(key);
    for (const wake of list) wake();
  }

  /** Resolves after `ms`, or earlier when a fill notice or invalidation of `key` arrives. */
  #nextLook(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let list = this.#waiters.get(key);
      if (list === undefined) {
        list = new Set();
        this.#waiters.set(key, list);
      }
      const done = () => {
        clearTimeout(timer);
        const current = this.#waiters.get(key);
        current?.delete(done);
        if (current?.size === 0) this.#waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      list.add(done);
    });
  }

  async #loadAndFill<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
    token: string,
    lease: string,
    epoch: string,
    versions: Record<string, string> | null,
    fence = '',
  ): Promise<T> {
    const redisKey = this.keys.entry(key);
    const started = performance.now();
    const startedAt = Date.now();
    let value: T;
    let encoded: ReturnType<Codec['encode']>;
    let sharedValue: SharedValue;
    try {
      value = await loader();
      this.events.emit('load', key, performance.now() - started);
      // Read-only before anyone else can see it (coalesced callers, L1).
      sharedValue = share(value);
      if (options.tagsOf !== undefined && value !== undefined) {
        const derived = await this.#derivedTags(
          key,
          loader,
          options,
          value,
          versions,
          snapshot,
          startedAt,
        );
        if (derived.value !== value) sharedValue = share(derived.value);
        value = derived.value;
        if (!derived.fill) {
          this.#release(key, lease);
          return value;
        }
        versions = derived.versions;
        snapshot = derived.snapshot;
      }
      if (fence !== '' && !this.#versionsSeen(versions, fence)) {
        // A tag version read before the load stands for a commit the load did not see
        // (decoded and bumped a moment before it became visible): do not store the value.
        this.#release(key, lease);
        this.events.emit('fill-rejected', key, 'not-proven');
        return value;
      }
      const negativeTtl = options.negativeTtlMs ?? this.config.cache.negativeTtlMs;
      if (value === undefined && negativeTtl <= 0) {
        this.#release(key, lease);
        return value;
      }
      encoded = this.#codec.encode(key, value);
    } catch (error) {
      this.#release(key, lease);
      throw error;
    }
    // 6. Fill L2 only if our lease survived; L1 only if no invalidation arrived since the snapshot.
    const loadMs = performance.now() - started;
    const negative = value === undefined;
    const meta = this.#meta(
      negative ? { ttlMs: options.negativeTtlMs ?? this.config.cache.negativeTtlMs } : options,
      loadMs,
      epoch,
      versions,
      negative,
      fence,
    );
    const encrypt = this.#encrypts(options);
    const payload = encrypt
      ? (this.#keyring as Keyring).seal(encoded.bytes, redisKey)
      : encoded.bytes;
    const entry = encodeEntry(token, meta, payload, encoded.compressed, encrypt);
    let filled: Awaited<ReturnType<L2Tier['fill']>>;
    try {
      filled = await this.#l2.fill(redisKey, lease, entry, meta.staleUntil - meta.createdAt, fence);
    } catch {
      // Redis failed mid-fill: we cannot know whether it landed, so L1 stays out of it.
      return value;
    }
    if (filled.waiters) this.#notifyFilled(key);
    if (filled.stored === null) {
      this.events.emit('fill-rejected', key, fence === '' ? 'lease-lost' : 'not-proven');
      return value;
    }
    this.events.emit('fill', key);
    if (filled.stored === 'fenced') this.events.emit('fill-fenced', key);
    this.#keepInL1(
      key,
      value,
      meta,
      versions ? Object.keys(versions) : null,
      sharedValue,
      snapshot,
      dataPrefix(token),
    );
    return value;
  }

  /**
   * Settles the versions of tags derived from a loaded value (`tagsOf`). Tags not read
   * before the load are read now; if one may have moved during the load, the value is
   * loaded again under them.
   * `fill` false: the second load derived tags still unknown (the row moved meanwhile).
   */
  async #derivedTags<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    value: T,
    versions: Record<string, string> | null,
    snapshot: number,
    loadStartedAt: number,
  ): Promise<{
    value: T;
    versions: Record<string, string> | null;
    snapshot: number;
    fill: boolean;
  }> {
    const tagsOf = options.tagsOf as (value: T) => readonly string[];
    const unknown = this.#checkTags(tagsOf(value)).filter(
      (t) => versions === null || !(t in versions),
    );
    if (unknown.length === 0) return { value, versions, snapshot, fill: true };
    const staticTags = versions ? Object.keys(versions) : null;
    const all = [...(staticTags ?? []), ...new Set(unknown)];
    // The L1 snapshot moves to the wider tag set, unless an invalidation already landed.
    const valid = this.#l1 === undefined || this.#l1.snapshot(key, staticTags) === snapshot;
    const wider = valid ? (this.#l1?.snapshot(key, all) ?? 0) : -1;
    // A version created where none was, or bumped before the load began (by more than
    // any clock skew), cannot stand for an invalidation the load missed: no reload.
    const extra: Record<string, string> = {};
    let settled = true;
    try {
      await Promise.all(
        [...new Set(unknown)].map(async (t) => {
          const current = await this.#versions.initTagVersion(t);
          extra[t] = current;
          if (isBumpVersion(current) && !(versionTime(current) < loadStartedAt - CLOCK_SKEW_MS))
            settled = false;
        }),
      );
    } catch {
      // Redis away, or a version key it cannot read (another type): the loaded value
      // answers, and is not stored under versions nobody could check.
      return { value, versions, snapshot, fill: false };
    }
    const merged = { ...versions, ...extra };
    if (settled) return { value, versions: merged, snapshot: wider, fill: true };
    const again = await this.#loadWithoutFill(key, loader); // shared by #loadAndFill
    const fill = again === undefined || this.#checkTags(tagsOf(again)).every((t) => t in merged);
    return { value: again, versions: merged, snapshot: wider, fill };
  }

  /** Another process holds the lease: poll briefly for its fill, then load without filling. */
  async #awaitOthersFill<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
    read: L2Read,
  ): Promise<T> {
    options.onWait?.(key);
    const redisKey = this.keys.entry(key);
    const started = Date.now();
    const deadline = started + this.config.lease.waitMs;
    let delay = 2;
    // A fill notice (or the key's invalidation) wakes us; the timer is the fallback, rarer
    // while the bus that carries the notices is up.
    const longest = this.#bus?.healthy ? 100 : 25;
    while (Date.now() < deadline) {
      await this.#nextLook(key, Math.min(delay, deadline - Date.now()));
      delay = Math.min(delay * 2, longest);
      let buffer: Buffer | null;
      try {
        buffer = await this.#l2.get(redisKey);
      } catch {
        break;
      }
      const state = parseEntry(buffer);
      if (state.kind === 'lease' || (state.kind === 'tombstone' && state.fenced)) continue;
      if (state.kind === 'empty' || state.kind === 'tombstone') {
        // The holder gave up or was invalidated: try to become the filler.
        this.events.emit('lease-wait', key, Date.now() - started, false);
        return this.#fill(key, loader, options, snapshot, '', read);
      }
      const again = await this.#reader.again(
        key,
        buffer as Buffer,
        read,
        options.verifyTags === true,
      );
      if (again !== RESOLVED) {
        const verdict = this.#reader.judge(key, again, this.#encrypts(options));
        if (verdict.kind !== 'invalid') {
          this.events.emit('lease-wait', key, Date.now() - started, true);
          this.#storeL1(key, again.state, verdict, snapshot);
          return verdict.value as T;
        }
      }
      break;
    }
    this.events.emit('lease-wait', key, Date.now() - started, false);
    return shared(await this.#loadWithoutFill(key, loader));
  }

  /**
   * Runs the loader and reports its duration, nothing else: for answers that do not fill
   * L2 (its lease belongs to someone else) and for the second load of derived tags. The
   * caller makes the value read-only (`share`).
   */
  async #loadWithoutFill<T>(key: string, loader: () => Promise<T> | T): Promise<T> {
    const started = performance.now();
    const value = await loader();
    this.events.emit('load', key, performance.now() - started);
    return value;
  }

  /** Redis is unavailable: the loader answers; L1 keeps it only while the bus is healthy. */
  async #loadWithoutL2<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    snapshot: number,
  ): Promise<T> {
    const started = performance.now();
    const value = await loader();
    const loadMs = performance.now() - started;
    this.events.emit('load', key, loadMs);
    const sharedValue = share(value);
    if (value !== undefined && this.l1Active) {
      this.#codec.encode(key, value); // L1 takes only what L2 would take
      const meta = this.#meta(options, loadMs, '', null, false);
      const tags = this.#checkTags(options.tags);
      this.#keepInL1(key, value, meta, tags.length > 0 ? tags : null, sharedValue, snapshot);
    }
    return value;
  }

  /** Background refresh for stale-while-revalidate and early (XFetch) expiry: one per key. */
  #refreshInBackground<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
    reason: 'stale' | 'early',
  ): void {
    if (this.#refreshing.has(key) || this.#closing) return;
    this.#refreshing.add(key);
    this.events.emit('refresh', key, reason);
    void this.#refresh(key, loader, options)
      .catch(() => {})
      .finally(() => this.#refreshing.delete(key));
  }

  async #refresh<T>(
    key: string,
    loader: () => Promise<T> | T,
    options: LoadOptions,
  ): Promise<void> {
    const tags = this.#checkTags(options.tags);
    const tagList = tags.length > 0 ? tags : null;
    const snapshot = this.#snapshot(key, tagList, options);
    const read = await this.#reader.read(key, tagList);
    const verdict =
      read.state.kind === 'data' ? this.#reader.judge(key, read, this.#encrypts(options)) : INVALID;
    if (verdict.kind === 'fresh') {
      this.#storeL1(key, read.state, verdict, snapshot); // someone else refreshed it
      return;
    }
    if (read.state.kind !== 'data' || verdict.kind === 'invalid') {
      await this.#fill(
        key,
        loader,
        options,
        snapshot,
        read.state.kind === 'corrupt' || read.state.kind === 'data' ? read.state.prefix : '',
        read,
      );
      return;
    }
    // Stale or early: mark the entry as being refreshed; it stays readable meanwhile.
    const redisKey = this.keys.entry(key);
    const token = newToken();
    const acquired = await this.#l2.acquire(
      redisKey,
      token,
      this.config.lease.ttlMs,
      read.state.prefix,
      'refresh',
    );
    if (acquired.kind !== 'acquired') return;
    const lease = refreshValuePrefix(token);
    try {
      const [versions, fence] = await Promise.all([
        this.#versions.versionsForFill(read.versions),
        this.#fenceSnapshot(options),
      ]);
      await this.#loadAndFill(
        key,
        loader,
        options,
        snapshot,
        token,
        lease,
        read.epoch,
        versions,
        fence,
      );
    } catch (error) {
      this.#release(key, lease);
      throw error;
    }
  }

  // --- sliding expiration ---------------------------------------------------------

  /**
   * `LoadOptions.sliding` on a fresh hit of the entry loaded at `createdAt`, fresh until
   * `freshUntil`: once less than half the TTL is left, moves it to now + TTL (at most
   * createdAt + maxAgeMs), keeping its stale-while-revalidate grace. L1's copy of the same
   * fill is replaced at once (its L1 lifetime unchanged); L2's is touched in the background
   * (touch-1.lua), only while it still holds `fill` (its first 17 bytes; '' for none).
   * True when it moved the entry.
   */
  #slide(
    key: string,
    options: LoadOptions,
    now: number,
    createdAt: number,
    freshUntil: number,
    staleUntil: number,
    fill: string,
  ): boolean {
    const ttl = options.ttlMs ?? this.config.cache.ttlMs;
    if (freshUntil - now >= ttl / 2) return false;
    const maxAgeMs = (options.sliding as { maxAgeMs: number }).maxAgeMs;
    const nextFresh = Math.min(now + ttl, createdAt + maxAgeMs);
    if (nextFresh <= freshUntil) return false;
    const nextStale = staleUntil + (nextFresh - freshUntil);
    const held = this.l1Active ? (this.#l1 as L1Tier).get(key) : undefined;
    if (held !== undefined && held.createdAt === createdAt && held.fill === fill)
      (this.#l1 as L1Tier).replace(key, held, {
        ...held,
        freshUntil: nextFresh,
        staleUntil: nextStale,
      });
    if (fill !== '')
      this.#l2
        .touch(this.keys.entry(key), fill, nextFresh, nextStale, nextStale - now)
        .catch((error: unknown) => this.events.emit('slide-failed', key, error));
    this.events.emit('slide', key, nextFresh);
    return true;
  }

  /** `#slide` for a fresh hit read from L2 on the ordinary path (not a refreshing entry). */
  #slideRead(key: string, options: LoadOptions, read: L2Read): boolean {
    const { state } = read;
    if (state.kind !== 'data' || state.refreshing || state.envelope.negative) return false;
    const e = state.envelope;
    return this.#slide(
      key,
      options,
      Date.now(),
      e.createdAt,
      e.freshUntil,
      e.staleUntil,
      state.prefix,
    );
  }

  /** What is wrong with a call's `sliding` option, if anything. */
  #badSliding(options: LoadOptions): ConfigError | undefined {
    const { sliding } = options;
    if (sliding === null || typeof sliding !== 'object')
      return new ConfigError('sliding', sliding, 'expected { maxAgeMs }');
    const { maxAgeMs } = sliding;
    if (typeof maxAgeMs !== 'number' || !Number.isFinite(maxAgeMs) || maxAgeMs <= 0)
      return new ConfigError('sliding.maxAgeMs', maxAgeMs, 'must be a positive number of ms');
    const ttl = options.ttlMs ?? this.config.cache.ttlMs;
    if (maxAgeMs < ttl)
      return new ConfigError(
        'sliding.maxAgeMs',
        maxAgeMs,
        `must be at least the TTL (${ttl} ms): an entry lives that long anyway`,
      );
    return undefined;
  }

  // --- helpers -------------------------------------------------------------------

  /** `verify`: trust no epoch or tag version held in memory (see `LoadOptions.verifyTags`). */
  #encrypts(options: Pick<LoadOptions, 'encrypt'>): boolean {
    return options.encrypt ?? this.config.encryption.all;
  }

  #noKeys(): EncryptionKeyError {
    const name = this.config.encryption.keysEnv;
    return new EncryptionKeyError(name, `${name} is not set, and a read or write asks to encrypt`);
  }

  /** An L1 generation snapshot; one that never matches when the call skips L1. */
  #snapshot(key: string, tags: readonly string[] | null, options: LoadOptions): number {
    if (options.skipL1) return -1;
    return this.#l1?.snapshot(key, tags) ?? 0;
  }

  /** Keeps a value read from L2 in L1 (see #keepInL1). */
  #storeL1(key: string, state: EntryState, verdict: Verdict, snapshot: number): void {
    if (state.kind !== 'data' || verdict.kind === 'invalid') return;
    const e: Envelope = state.envelope;
    const tags = e.tags ? Object.keys(e.tags) : null;
    this.#keepInL1(key, verdict.value, e, tags, verdict.shared, snapshot, state.prefix);
  }

  /**
   * Keeps a read-only value (`share`) in L1 while the bus is healthy, unless an
   * invalidation arrived since `snapshot`. A value holding byte arrays is kept as a copy
   * of its own, so no caller can write into L1's bytes.
   */
  #keepInL1(
    key: string,
    value: unknown,
    meta: Pick<EnvelopeMeta, 'createdAt' | 'freshUntil' | 'staleUntil' | 'loadMs' | 'negative'>,
    tags: readonly string[] | null,
    sharedValue: SharedValue,
    snapshot: number,
    fill = '',
  ): void {
    if (!this.l1Active) return;
    const { createdAt, freshUntil, staleUntil, loadMs, negative } = meta;
    const { copyOnRead } = sharedValue;
    (this.#l1 as L1Tier).set(
      key,
      {
        value: copyOnRead ? copyForCaller(value) : value,
        copyOnRead,
        freshUntil,
        staleUntil,
        loadMs,
        tags,
        negative,
        createdAt,
        fill,
      },
      sharedValue.bytes,
      snapshot,
    );
  }

  #dropCorrupt(key: string, state: EntryState): void {
    if (state.kind !== 'corrupt') return;
    void this.#l2.deleteIf(this.keys.entry(key), state.prefix).catch(() => {});
  }

  #meta(
    options: Pick<LoadOptions, 'ttlMs' | 'staleWhileRevalidateMs'>,
    loadMs: number,
    epoch: string,
    tags: Record<string, string> | null,
    negative: boolean,
    snapshot = '',
  ) {
    const base = options.ttlMs ?? this.config.cache.ttlMs;
    const jitter = this.config.cache.jitter;
    const ttl = Math.max(1, Math.round(base * (1 + jitter * (2 * Math.random() - 1))));
    const grace = options.staleWhileRevalidateMs ?? this.config.cache.staleWhileRevalidateMs;
    const createdAt = Date.now();
    return {
      createdAt,
      freshUntil: createdAt + ttl,
      staleUntil: createdAt + ttl + grace,
      loadMs,
      epoch,
      tags,
      negative,
      snapshot,
    };
  }

  #checkTags(tags: readonly string[] | undefined): readonly string[] {
    if (tags === undefined) return [];
    if (!Array.isArray(tags)) throw new ConfigError('tags', tags, 'expected an array of strings');
    for (const t of tags) assertLogicalKey(t, 'tag');
    return tags;
  }

  async #publish(keys: readonly string[], tags: readonly string[], epoch?: string): Promise<void> {
    if (!this.#bus) return;
    try {
      await this.#l2.publish(
        this.keys.busChannel(this.#sharded),
        this.#bus.message(keys, tags, epoch),
      );
    } catch (error) {
      throw error instanceof RedisUnavailableError
        ? error
        : new RedisUnavailableError('publish', error);
    }
  }

  #applyBusMessage(message: BusMessage): void {
    this.#versions.apply(message);
    this.#l1?.invalidate(message.keys, message.tags);
    this.#detachFlights(message.keys);
    for (const k of message.keys) this.#invalidated.set(k, true);
    // A waiter's holder may have just lost its lease to this invalidation: look again.
    for (const k of message.keys) this.#wake(k);
    this.events.emit('bus-invalidate', message.keys.length, message.tags.length);
  }

  #assertOpen(): void {
    if (this.#closing) throw new ClosedError('CacheEngine');
  }
}

/** Where a flight finds its own promise (set right after it starts). */
interface FlightSlot {
  flight: Promise<unknown> | undefined;
}

function isResolved(config: EngineOptions['config']): config is ResolvedConfig {
  return (
    config !== undefined &&
    Object.isFrozen(config) &&
    typeof (config as ResolvedConfig).prefix === 'string'
  );
}

/** Makes a value read-only (see shared-value.ts) and returns it. */
function shared<T>(value: T): T {
  share(value);
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * A loader error that says the database could not be reached or went away (the server
 * restarting, the network), as opposed to an error of the query itself.
 */
function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code.startsWith('08')) return true; // connection exception
    if (['57P01', '57P02', '57P03'].includes(code)) return true; // shutdown, crash, starting
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH'].includes(code))
      return true;
  }
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(
    message,
  );
}
