import { LogicalReplicationService, PgoutputPlugin, Wal2JsonPlugin } from 'pg-logical-replication';
import { pgConfig } from '../config/database.js';
import type { DecoderName } from '../config/schema.js';
import type { DecodedRecord } from '../model/change-event.js';
import { createPgoutputDecoder, pgoutputPluginOptions } from './pgoutput-decoder.js';
import {
  decodeWal2json,
  parseWal2jsonFast,
  WAL2JSON_OPTIONS,
  type Wal2jsonDecodeOptions,
  wal2jsonAddTables,
} from './wal2json-decoder.js';

/** One message of the stream: its records, or why it could not be decoded. */
export type StreamMessage =
  | { readonly records: readonly DecodedRecord[] }
  | { readonly error: Error };

export interface StreamHandlers {
  /** Awaited before the next message is read (flow control): slow handlers pause the stream. Must not throw. */
  onMessage(lsn: string, message: StreamMessage): Promise<void> | void;
  /** A keepalive; answer with the applied position when `shouldRespond`. */
  onKeepalive(lsn: string, shouldRespond: boolean): void;
  /** The stream ended or failed; the stream object is finished. */
  onEnd(error: Error): void;
}

/**
 * Wraps a library plugin (which sends START_REPLICATION with its options) but decodes the
 * raw bytes itself: int8 stays exact, and a bad message becomes an error value instead of
 * an exception thrown inside the socket's event handler.
 */
type LibraryPlugin = Parameters<LogicalReplicationService['subscribe']>[0];

class DecodingPlugin implements LibraryPlugin {
  readonly options: unknown;
  readonly #inner: LibraryPlugin;
  readonly #decode: (buffer: Buffer) => readonly DecodedRecord[];

  constructor(inner: LibraryPlugin, decode: (buffer: Buffer) => readonly DecodedRecord[]) {
    this.options = inner.options;
    this.#inner = inner;
    this.#decode = decode;
  }

  get name(): string {
    return this.#inner.name;
  }

  start(
    client: Parameters<LibraryPlugin['start']>[0],
    slotName: string,
    lastLsn: string,
  ): Promise<unknown> {
    return this.#inner.start(client, slotName, lastLsn);
  }

  parse(buffer: Buffer): StreamMessage {
    try {
      return { records: this.#decode(buffer) };
    } catch (error) {
      return { error: error instanceof Error ? error : new Error(String(error)) };
    }
  }
}

function createPlugin(
  decoder: DecoderName,
  publication: string,
  wal2json: Wal2jsonDecodeOptions,
  tables: readonly string[] | undefined,
): DecodingPlugin {
  if (decoder === 'wal2json') {
    const options = {
      ...WAL2JSON_OPTIONS,
      // The library puts the value in a quoted literal of START_REPLICATION unescaped.
      ...(tables !== undefined && { addTables: wal2jsonAddTables(tables).replaceAll("'", "''") }),
    };
    return new DecodingPlugin(new Wal2JsonPlugin(options), (buffer) => [
      decodeWal2json(parseWal2jsonFast(buffer), wal2json),
    ]);
  }
  return new DecodingPlugin(
    new PgoutputPlugin(pgoutputPluginOptions([publication])),
    createPgoutputDecoder(),
  );
}

/**
 * One replication connection on one slot, with the traps of pg-logical-replication
 * disarmed (PITFALLS.md): no timer that acknowledges received positions
 * (`timeoutSeconds: 0`), no automatic acknowledgement, flow control on, and a fresh
 * service per connection, started from `0/0` so the server resumes at the slot's
 * confirmed position. Acknowledge only what has been applied.
 */
export class ReplicationStream {
  readonly #service: LogicalReplicationService;
  readonly #plugin: DecodingPlugin;
  readonly #slot: string;
  #ended = false;
  #handlers: StreamHandlers | undefined;
  /** The promise of `onMessage` being waited for (the socket is paused meanwhile). */
  #waiting: Promise<void> | null = null;
  /** Messages received while waiting: lsn, message, lsn, message, ... */
  #queue: unknown[] = [];

  constructor(options: {
    connectionString: string;
    slot: string;
    decoder: DecoderName;
    publication: string;
    applicationName?: string;
    /** wal2json decoding options (the worker passes the columns its mapping reads). */
    wal2json?: Wal2jsonDecodeOptions;
    /**
     * `schema.table` names to decode (wal2json's `add-tables`; pgoutput follows its
     * publication instead). Undefined decodes every table.
     */
    tables?: readonly string[];
  }) {
    this.#slot = options.slot;
    this.#service = new LogicalReplicationService(
      pgConfig(options.connectionString, {
        application_name: options.applicationName ?? 'walcache-worker',
      }),
      // Flow control is ours (#deliver): the library's awaits every message twice.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.#plugin = createPlugin(
      options.decoder,
      options.publication,
      options.wal2json ?? {},
      options.tables,
    );
  }

  /** Resolves once the server streams; rejects if it refuses (slot in use, missing, plugin not allowed). */
  start(handlers: StreamHandlers): Promise<void> {
    this.#handlers = handlers;
    const service = this.#service;
    service.on('data', (lsn: string, message: StreamMessage) => this.#deliver(lsn, message));
    service.on('heartbeat', (lsn: string, _timestamp: number, shouldRespond: boolean) =>
      handlers.onKeepalive(lsn, shouldRespond),
    );
    return new Promise<void>((resolve, reject) => {
      let started = false;
      service.on('start', () => {
        started = true;
        resolve();
      });
      service.on('error', (error: Error) => {
        if (!started) reject(error);
        else this.#end(error);
      });
      // subscribe() settles only when the stream ends: never await it inline.
      service.subscribe(this.#plugin, this.#slot, '0/00000000').then(
        () =>
          started
            ? this.#end(new Error('replication stream ended'))
            : reject(new Error('replication stream ended before it started')),
        (error: Error) => (started ? this.#end(error) : reject(error)),
      );
    });
  }

  /**
   * true when every message received so far has been handed to `onMessage` and its
   * promise settled.
   */
  get drained(): boolean {
    return this.#waiting === null && this.#queue.length === 0;
  }

  /**
   * Flow control: hands each message to `onMessage` in order, synchronously while it
   * returns nothing (no promise, no microtask per message); when it returns a promise,
   * the socket is paused and what was already received waits in a queue until the promise
   * settles. A rejected promise ends the stream (as the library's flow control does).
   */
  #deliver(lsn: string, message: StreamMessage): void {
    if (this.#waiting !== null) {
      this.#queue.push(lsn, message);
      return;
    }
    const pending = this.#handlers?.onMessage(lsn, message);
    if (pending) this.#wait(pending);
  }

  #wait(pending: Promise<void>): void {
    this.#waiting = pending;
    this.#socket()?.pause?.();
    pending.then(
      () => this.#drain(),
      (error: unknown) => {
        this.#waiting = null;
        this.#queue = [];
        this.#end(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  #drain(): void {
    this.#waiting = null;
    const queue = this.#queue;
    let i = 0;
    while (i < queue.length && !this.#ended) {
      const lsn = queue[i] as string;
      const message = queue[i + 1] as StreamMessage;
      i += 2;
      const pending = this.#handlers?.onMessage(lsn, message);
      if (pending) {
        this.#queue = queue.slice(i);
        this.#wait(pending);
        return;
      }
    }
    this.#queue = [];
    if (!this.#ended) this.#socket()?.resume?.();
  }

  /** The replication connection's socket (pg-logical-replication keeps it private). */
  #socket(): { pause?: () => void; resume?: () => void } | undefined {
    return (
      this.#service as unknown as {
        _connection?: { stream?: { pause?: () => void; resume?: () => void } } | null;
      }
    )._connection?.stream;
  }

  /** Confirms everything up to `lsn` as applied (the server may then recycle that WAL). */
  async acknowledge(lsn: string): Promise<boolean> {
    if (this.#ended) return false;
    return this.#service.acknowledge(lsn);
  }

  async stop(): Promise<void> {
    this.#ended = true;
    await this.#service.destroy().catch(() => {});
  }

  #end(error: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    void this.#service.destroy().catch(() => {});
    this.#handlers?.onEnd(error);
  }
}
