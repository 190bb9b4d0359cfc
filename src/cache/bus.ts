import { LRUCache } from 'lru-cache';
import type { BusConnection } from './bus-connection.js';
import type { L1ResetReason } from './cache-events.js';

/** One invalidation broadcast. `seq` counts per source, so a receiver can see a gap. */
export interface BusMessage {
  /** The publisher's run id. */
  readonly src: string;
  /** 'worker' for the invalidation worker, 'engine' for a service's own writes. */
  readonly kind: 'worker' | 'engine';
  readonly seq: number;
  readonly keys: readonly string[];
  readonly tags: readonly string[];
  /** Set when the global epoch moved: receivers drop all of L1. */
  readonly epoch?: string;
  /** Too many keys to list: receivers drop all of L1. */
  readonly flush?: boolean;
}

export interface BusHandlers {
  /** Drop these keys and tags (they are never the receiver's own messages). */
  onInvalidate(message: BusMessage): void;
  /** Drop all of L1: the bus went down, a gap was seen, a worker restarted, the epoch moved. */
  onReset(reason: L1ResetReason): void;
  onHealth(healthy: boolean): void;
  /**
   * Another process filled (or gave up) a key this process may be waiting for: a hint
   * to look again, outside the sequence (one lost costs a poll interval, nothing else).
   */
  onFilled?(key: string): void;
}

/**
 * L1 coherence over Redis pub/sub, on a dedicated subscriber connection. The bus is
 * healthy only while subscribed; every transition to or from healthy clears L1 (a
 * message may have been missed), and so do a sequence gap and a new worker run id.
 */
export class Bus {
  readonly runId: string;
  readonly #sub: BusConnection;
  readonly #channel: string;
  readonly #fillChannel: string | undefined;
  readonly #handlers: BusHandlers;
  /**
   * Last sequence number per publisher. Every process that ever published has an entry,
   * so it is bounded: a publisher forgotten here is treated as new (no gap check for its
   * next message), which only matters for one silent for the longest.
   */
  readonly #lastSeq = new LRUCache<string, number>({ max: 4096 });
  #workerRunId: string | undefined;
  #seq = 0;
  #healthy = false;
  #closed = false;
  /** Subscribed: the connection delivered the subscription (health also needs the pings). */
  #subscribed = false;
  /** The last liveness PING went unanswered past its deadline. */
  #stalled = false;
  #pinging = false;
  readonly #liveness: NodeJS.Timeout | undefined;
  readonly #pingTimeoutMs: number;

  constructor(
    subscriber: BusConnection,
    channel: string,
    runId: string,
    handlers: BusHandlers,
    /**
     * Liveness: a PING on the subscriber every `pingIntervalMs`; one unanswered after
     * `pingTimeoutMs` marks the bus down. A frozen or partitioned Redis keeps the socket
     * open, so connection events alone would keep trusting L1 while invalidations stop
     * arriving. 0 disables.
     */
    liveness: { readonly pingIntervalMs: number; readonly pingTimeoutMs: number } = {
      pingIntervalMs: 250,
      pingTimeoutMs: 500,
    },
    /** The channel of fill notices (`BusHandlers.onFilled`); none when undefined. */
    fillChannel?: string,
  ) {
    this.#sub = subscriber;
    this.#channel = channel;
    this.#fillChannel = fillChannel;
    this.runId = runId;
    this.#handlers = handlers;
    this.#pingTimeoutMs = liveness.pingTimeoutMs;
    if (liveness.pingIntervalMs > 0) {
      this.#liveness = setInterval(() => void this.#ping(), liveness.pingIntervalMs);
      this.#liveness.unref();
    }
    subscriber.on('message', (name, payload) => {
      if (name === this.#channel) this.#receive(payload);
      else if (name === this.#fillChannel) this.#handlers.onFilled?.(payload.toString('utf8'));
    });
    subscriber.on('ready', () => void this.#subscribe());
    subscriber.on('down', () => this.#down());
    if (subscriber.isReady) void this.#subscribe();
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** The next message this process publishes (its `seq` advances only when it is sent). */
  message(keys: readonly string[], tags: readonly string[], epoch?: string): string {
    const message: BusMessage = {
      src: this.runId,
      kind: 'engine',
      seq: ++this.#seq,
      keys,
      tags,
      ...(epoch ? { epoch } : {}),
    };
    return JSON.stringify(message);
  }

  close(): void {
    this.#closed = true;
    if (this.#liveness) clearInterval(this.#liveness);
    this.#down();
  }

  /**
   * One PING at a time: past its deadline the bus is down (`stalled`); the answer, when it
   * comes, brings it back up (with a reset: messages may have been missed meanwhile).
   */
  async #ping(): Promise<void> {
    if (this.#pinging || this.#closed || !this.#subscribed) return;
    this.#pinging = true;
    const deadline = setTimeout(() => {
      if (this.#closed || !this.#healthy) return;
      this.#stalled = true;
      this.#down('stalled');
    }, this.#pingTimeoutMs);
    try {
      await this.#sub.ping();
      clearTimeout(deadline);
      if (this.#stalled && !this.#closed) {
        this.#stalled = false;
        this.#up();
      }
    } catch {
      clearTimeout(deadline); // the connection failed: its events mark the bus down
    } finally {
      this.#pinging = false;
    }
  }

  async #subscribe(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#sub.subscribe(
        this.#fillChannel === undefined ? [this.#channel] : [this.#channel, this.#fillChannel],
      );
    } catch {
      return; // the connection dropped again; 'ready' brings us back here
    }
    if (this.#closed) return;
    this.#subscribed = true;
    this.#stalled = false;
    this.#up();
  }

  #up(): void {
    if (this.#healthy || !this.#subscribed) return;
    this.#lastSeq.clear();
    this.#healthy = true;
    this.#handlers.onReset('up');
    this.#handlers.onHealth(true);
  }

  #down(reason: 'down' | 'stalled' = 'down'): void {
    if (reason === 'down') this.#subscribed = false;
    if (!this.#healthy) return;
    this.#healthy = false;
    this.#handlers.onReset(reason);
    this.#handlers.onHealth(false);
  }

  #receive(payload: Buffer): void {
    let message: BusMessage;
    try {
      message = JSON.parse(payload.toString('utf8')) as BusMessage;
      if (typeof message.src !== 'string' || typeof message.seq !== 'number')
        throw new TypeError('bad message');
    } catch {
      // Something we cannot read may have been an invalidation: treat it as a gap.
      this.#handlers.onReset('gap');
      return;
    }
    if (message.src === this.runId) return;
    const last = this.#lastSeq.get(message.src);
    this.#lastSeq.set(message.src, message.seq);
    if (message.kind === 'worker') {
      const previous = this.#workerRunId;
      this.#workerRunId = message.src;
      if (previous !== undefined && previous !== message.src) {
        this.#handlers.onReset('worker-restart');
        return;
      }
    }
    if (last !== undefined && message.seq !== last + 1) {
      this.#handlers.onReset('gap');
      return;
    }
    if (message.epoch !== undefined) this.#handlers.onReset('epoch');
    else if (message.flush === true) this.#handlers.onReset('flush');
    this.#handlers.onInvalidate(message);
  }
}
