import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Heartbeat } from '../cache/heartbeat.js';
import { createRedisClient, type RedisClient } from '../cache/redis-client.js';
import { maxEntryLifetimeMs, type ResolvedConfig, tagVersionTtlMs } from '../config/config.js';
import { pgConfig } from '../config/database.js';
import { cacheEndpoint, redactedEndpoint } from '../config/redis-endpoint.js';
import type { DecoderName } from '../config/schema.js';
import { applyCatalog, checkModel, quoteTable } from '../database/model-check.js';
import {
  assertSlotName,
  checkWalLevel,
  createSlot,
  dropSlot,
  explainServerError,
  isSlotBusy,
  readSlot,
} from '../database/slot.js';
import { poolQuery, readCatalog, unpublishedTables } from '../database/table-catalog.js';
import { SetupError } from '../errors/typed-errors.js';
import { Keys } from '../keys/redis-keys.js';
import type { DecodedTransaction } from '../model/change-event.js';
import { emptyInvalidation, type Invalidation, mapTransaction } from '../model/change-mapper.js';
import { buildChangeModel, type ChangeModel, columnsWantedBy } from '../model/table-model.js';
import { formatLsn, lsnToBigInt } from '../protocol/lsn.js';
import { Invalidator } from './invalidator.js';
import { OutsideWriteDetector } from './outside-writes.js';
import { ReplicationStream, type StreamMessage } from './replication-stream.js';
import { TransactionAssembler } from './transaction-assembler.js';
import { type EpochBumpReason, WorkerEvents, type WorkerRole } from './worker-events.js';

export interface WorkerOptions {
  readonly config: ResolvedConfig;
  /** Replication slot (one active worker per slot). @default 'walcache' */
  readonly slot?: string;
  /** @default 'wal2json' */
  readonly decoder?: DecoderName;
  /** Publication for pgoutput. @default 'walcache' */
  readonly publication?: string;
  /** Create the slot when it is missing (and bump the epoch). @default true */
  readonly createSlot?: boolean;
  /** A group is applied when this many commits are waiting... @default 256 */
  readonly groupMaxTransactions?: number;
  /** ...or this many rows... @default 5000 */
  readonly groupMaxRows?: number;
  /** ...or this long after its first commit. @default 5 */
  readonly groupWindowMs?: number;
  /** Rows kept per transaction; past it its tables' reset tags are bumped instead. @default 10000 */
  readonly transactionRowCap?: number;
  /** Interval of heartbeat messages through the WAL (keeps an idle slot moving, measures lag). @default 5000 */
  readonly heartbeatIntervalMs?: number;
  /**
   * How often the heartbeat in Redis is compared with the acknowledged position (and at
   * every Redis reconnect): behind or missing, Redis lost acknowledged invalidations and
   * the epoch is bumped. @default 1000
   */
  readonly rollbackCheckMs?: number;
  /** Standby status updates with the applied position, at least this often. @default 10000 */
  readonly statusIntervalMs?: number;
  /** Wait between attempts to take the slot (standby) or reconnect. @default 1000 */
  readonly retryMs?: number;
  readonly logger?: Logger;
}

interface Group {
  invalidation: Invalidation;
  transactions: number;
  rows: number;
  lastLsn: string | null;
  lastCommitTime: number;
  bumpEpoch: boolean;
  commitTimes: number[];
}

const HEARTBEAT_PREFIX = 'walcache';
/** Groups being applied at once before the stream waits (see #flush). */
const MAX_GROUPS_IN_FLIGHT = 2;
/**
 * How long `close()` keeps applying what was received. Past it (Redis away), the worker
 * stops with those changes unacknowledged: the slot holds them for the next worker.
 */
const CLOSE_APPLY_MS = 3_000;

/**
 * The invalidation worker: replication stream → decode → transactions → keys and tags →
 * one Redis pipeline per group of commits → acknowledge. It acknowledges a commit only
 * after everything up to it was applied (docs/design.md, Contract 3); on any failure it holds
 * the position and retries, and on reconnect the server replays from the slot.
 *
 * @example
 * const worker = new InvalidationWorker({ config, slot: 'walcache' });
 * await worker.start();   // returns once active or standing by
 * process.on('SIGTERM', () => worker.close());
 */
export class InvalidationWorker {
  readonly runId = randomBytes(8).toString('hex');
  readonly events = new WorkerEvents();
  readonly slot: string;
  readonly decoder: DecoderName;
  readonly #options: WorkerOptions;
  readonly #config: ResolvedConfig;
  readonly #model: ChangeModel;
  readonly #pool: pg.Pool;
  readonly #redis: RedisClient;
  readonly #invalidator: Invalidator;
  readonly #keys: Keys;
  readonly #log: Logger | undefined;
  readonly #outsideWrites: OutsideWriteDetector | undefined;
  /** The cache Redis as logs name it (password redacted). */
  readonly #redisWhere: string;
  #role: WorkerRole = 'starting';
  #stream: ReplicationStream | null = null;
  #assembler: TransactionAssembler;
  #group: Group = newGroup();
  #flushTimer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #appliedLsn: string | null = null;
  #taintedTransaction = false;
  /**
   * Commit time of the newest transaction applied (ms): what the heartbeat may claim.
   * A keepalive moves the position, never this: the first one of every connection comes
   * before the backlog, and claiming "now" then would make a catching-up worker look current.
   */
  #lastCommitTime = 0;
  #lastError: Error | null = null;
  #checkingRollback = false;
  /** Groups handed to #flush (and epoch bumps queued) and not yet acknowledged. */
  #applying = 0;
  /** The #flushing chain before its last link: settles when at most one is in flight. */
  #beforeLast: Promise<void> = Promise.resolve();
  /** Epoch bumps queued and not yet applied: no group writes ahead of them. */
  #bumpsQueued = 0;
  /** Redis connections closed so far: writes ahead count only on the connection still open. */
  #redisCloses = 0;
  #stopping = false;
  #closing: Promise<void> | undefined;
  /** Aborted by close(): the reconnect loop's waits end at once. */
  readonly #stopSignal = new AbortController();
  /** Aborted by close() past its budget: applies in flight are abandoned, unacknowledged. */
  readonly #giveUp = new AbortController();
  #loop: Promise<void> | null = null;
  #timers: NodeJS.Timeout[] = [];
  #streamEnded: ((error: Error) => void) | null = null;
  #firstStart = true;

  constructor(options: WorkerOptions) {
    this.#options = options;
    this.#config = options.config;
    this.slot = options.slot ?? options.config.worker.slot;
    this.decoder = options.decoder ?? options.config.worker.decoder;
    assertSlotName(this.slot);
    this.#model = buildChangeModel(this.#config);
    this.#keys = new Keys(this.#config.prefix);
    this.#log = options.logger;
    this.#pool = new pg.Pool({
      ...pgConfig(this.#config.databaseUrl),
      max: 2,
      application_name: 'walcache-worker-control',
    });
    this.#pool.on('error', (error) => this.#log?.warn({ err: error }, 'postgres pool error'));
    this.#redisWhere = redactedEndpoint(cacheEndpoint(this.#config));
    this.#redis = createRedisClient(cacheEndpoint(this.#config), {
      connectionName: `walcache:${this.#config.prefix}:worker`,
      maxRetriesPerRequest: 1,
      commandTimeout: 5_000,
      retryStrategy: (n) => Math.min(100 * 2 ** n, 2_000),
    });
    this.#redis.on('error', () => {});
    this.#redis.on('close', () => {
      this.#redisCloses++;
    });
    // A Redis that comes back may have lost what was acknowledged: check at once.
    this.#redis.on('ready', () => void this.#checkRollback());
    this.#invalidator = new Invalidator(
      this.#redis,
      this.#keys,
      this.runId,
      this.#config.tombstoneTtlMs,
      tagVersionTtlMs(this.#config),
    );
    this.#assembler = this.#newAssembler();
    this.#outsideWrites = OutsideWriteDetector.create(
      this.#config,
      (entity, key) => {
        this.events.emit('write-behind-outside-write', entity, key);
        this.#log?.warn(
          { entity, key },
          'a write made outside walcache to a row with pending write-behind writes: the next flush applies them over it',
        );
      },
      (error) => this.events.emit('failure', 'write-behind', error),
    );
  }

  /** The config the worker runs with (resolved). */
  get config(): ResolvedConfig {
    return this.#config;
  }

  get role(): WorkerRole {
    return this.#role;
  }

  /** Last commit LSN applied to Redis and acknowledged. */
  get appliedLsn(): string | null {
    return this.#appliedLsn;
  }

  /** Why the worker is not streaming, while it retries (null once it streams). */
  get lastError(): Error | null {
    return this.#lastError;
  }

  /**
   * Checks the database (wal_level, replica identity the config needs) and starts the
   * loop. Resolves when the worker is active or standing by; rejects on a setup problem
   * a retry cannot fix (with the fix in the message).
   */
  async start(): Promise<void> {
    // An unreachable database is waited for (the reason in `lastError`); anything else
    // (a config the database refutes, bad credentials, no such database) is fatal.
    for (let attempt = 1; ; attempt++) {
      try {
        await checkWalLevel(this.#pool);
        await this.#checkCatalog();
        this.#lastError = null;
        break;
      } catch (error) {
        if (this.#stopping || !isTransient(error)) throw error;
        this.#lastError = error instanceof Error ? error : new Error(String(error));
        this.events.emit('failure', 'connect', error);
        this.#log?.warn({ err: error, attempt }, 'PostgreSQL unreachable at start; retrying');
        await sleep(Math.min((this.#options.retryMs ?? 1_000) * attempt, 10_000));
      }
    }
    let settle!: (error?: unknown) => void;
    const settled = new Promise<void>((resolve, reject) => {
      settle = (error) => (error ? reject(error) : resolve());
    });
    this.#loop = this.#run(settle);
    return settled;
  }

  /**
   * Applies and acknowledges what was received, stops streaming (the slot has no consumer
   * once it resolves) and closes the worker's connections. Idempotent: a second call
   * waits for the first.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** @deprecated the same as `close()`, which every walcache component has. */
  stop(): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#stopping = true;
    this.#stopSignal.abort();
    for (const t of this.#timers) clearInterval(t);
    const applied = await Promise.race([
      this.#flush().then(
        () => true,
        () => true,
      ),
      sleep(CLOSE_APPLY_MS, { unref: true }).then(() => false),
    ]);
    if (!applied) {
      // Redis did not take them in time: the applies in flight are abandoned (a command
      // queued while ioredis reconnects would wait out its timeout) and nothing past them
      // is acknowledged; the slot keeps those changes for the next worker.
      this.#giveUp.abort();
      this.#redis.disconnect();
    }
    await this.#stream?.stop();
    this.#streamEnded?.(new Error('stopped'));
    await this.#loop?.catch(() => {});
    this.#setRole('stopped');
    await this.#pool.end().catch(() => {});
    await this.#outsideWrites?.close();
    this.#redis.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Connect, stream until the stream ends, reconnect; stand by while the slot is taken. */
  async #run(settle: (error?: unknown) => void): Promise<void> {
    let settledOnce = false;
    const once = (error?: unknown) => {
      if (!settledOnce) {
        settledOnce = true;
        settle(error);
      }
    };
    let attempt = 0;
    while (!this.#stopping) {
      try {
        const { ended } = await this.#activate();
        attempt = 0;
        this.#lastError = null;
        once();
        const error = await ended;
        if (!this.#stopping)
          this.#log?.warn({ err: error }, 'replication stream ended; reconnecting');
        this.events.emit('reconnect', error.message);
      } catch (error) {
        if (isSlotBusy(error)) {
          this.#setRole('standby');
          once();
        } else if (error instanceof SetupError) {
          this.#log?.error({ err: error }, 'setup problem');
          once(error);
          if (this.#firstStart) return;
        } else {
          this.#lastError = error instanceof Error ? error : new Error(String(error));
          this.#log?.warn(
            { err: error },
            `could not start streaming (${this.#lastError.message}); retrying`,
          );
          this.events.emit('failure', 'connect', error);
        }
      }
      await this.#teardownStream();
      if (this.#stopping) break;
      attempt++;
      await sleep(
        this.#role === 'standby'
          ? (this.#options.retryMs ?? 1_000)
          : Math.min((this.#options.retryMs ?? 1_000) * attempt, 10_000),
        { signal: this.#stopSignal.signal },
      );
    }
  }

  /** One connection: slot checks, epoch decisions, then streaming. Resolves with a promise of its end. */
  async #activate(): Promise<{ ended: Promise<Error> }> {
    const bumpReason = await this.#prepareSlot();
    const stream = new ReplicationStream({
      connectionString: this.#config.databaseUrl,
      slot: this.slot,
      decoder: this.decoder,
      publication: this.#options.publication ?? this.#config.worker.publication,
      wal2json: { columnsWanted: columnsWantedBy(this.#model) },
      // Decode only the followed tables: other tables' changes would cost CPU and lag.
      ...(this.#model.size > 0 && { tables: [...this.#model.keys()] }),
    });
    const ended = new Promise<Error>((resolve) => {
      this.#streamEnded = resolve;
    });
    this.#assembler = this.#newAssembler();
    this.#group = newGroup();
    if (bumpReason) {
      // The first thing applied, before the stream can deliver a group or a keepalive can
      // be acknowledged (both wait for #applying and the #flushing chain): an
      // acknowledgement before the bump, then a crash, would lose the gap.
      this.#log?.warn({ reason: bumpReason }, 'bumping the cache epoch');
      void this.#queueEpochBump(bumpReason);
    }
    try {
      await stream.start({
        onMessage: (lsn, message) => this.#onMessage(lsn, message),
        onKeepalive: (lsn, shouldRespond) => this.#onKeepalive(stream, lsn, shouldRespond),
        onEnd: (error) => this.#streamEnded?.(error),
      });
    } catch (error) {
      await stream.stop();
      throw explainServerError(error, this.decoder);
    }
    this.#stream = stream;
    this.#firstStart = false;
    await this.#flushing; // the epoch bump, if any, is applied before the worker says active
    this.#setRole('active');
    this.#startTimers();
    return { ended }; // wrapped: an async function would flatten a returned promise
  }

  /** Finds (or creates) the slot and decides whether a gap forces an epoch bump. */
  async #prepareSlot(): Promise<EpochBumpReason | null> {
    let reason: EpochBumpReason | null = null;
    let slot = await readSlot(this.#pool, this.slot);
    if (slot?.walStatus === 'lost') {
      this.#log?.error({ slot: this.slot }, 'replication slot lost its WAL; recreating it');
      await dropSlot(this.#pool, this.slot);
      slot = null;
      reason = 'slot-lost';
    }
    if (!slot) {
      // A lost slot is recreated whatever `createSlot` says: it was this worker's.
      if (this.#options.createSlot === false && reason !== 'slot-lost') {
        throw new SetupError(
          `Replication slot "${this.slot}" does not exist`,
          'run `walcache setup` (or start the worker with --create-slot)',
        );
      }
      await createSlot(this.#pool, this.slot, this.decoder);
      slot = await readSlot(this.#pool, this.slot);
      reason ??= 'slot-created';
    } else if (slot.plugin !== this.decoder) {
      throw new SetupError(
        `Replication slot "${this.slot}" uses ${slot.plugin}, not ${this.decoder}`,
        `use --decoder ${slot.plugin}, or another --slot`,
      );
    }
    this.#appliedLsn ??= slot?.confirmedFlushLsn ?? null;
    const beat = await this.#invalidator.readHeartbeat().catch((error: unknown) => {
      throw new Error(
        `cannot read the heartbeat from the cache Redis ${this.#redisWhere}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    });
    if (beat !== null && beat.commitTime > this.#lastCommitTime)
      this.#lastCommitTime = beat.commitTime;
    if (!reason) {
      const confirmed = slot?.confirmedFlushLsn ? lsnToBigInt(slot.confirmedFlushLsn) : null;
      if (beat === null) reason = 'no-heartbeat';
      else if (Date.now() - beat.appliedAt > maxEntryLifetimeMs(this.#config))
        reason = 'away-too-long';
      // Acknowledgements go out as the heartbeat's LSN (+1 for commits). A slot confirmed
      // beyond that was recreated (dropped by hand, set up again): what happened between
      // the two was never seen.
      else if (confirmed !== null && confirmed > lsnToBigInt(beat.lsn) + 1n)
        reason = 'slot-ahead-of-heartbeat';
    }
    return reason;
  }

  /** Refuses to run silently wrong: tags or unique keys on non-key columns need the old row. */
  /**
   * Checks the config against the catalog (tables exist and are tables, columns exist
   * with types that can be keys or tags, replica identity carries the old values needed,
   * the pgoutput publication sends every table) and gives the model the column types, so
   * keys and tags are named as readers name them. Any gap would leave entries stale
   * silently: the worker refuses to start, with every gap and its fix.
   */
  async #checkCatalog(): Promise<void> {
    const query = poolQuery(this.#pool);
    const tables = [...this.#model.keys()];
    const catalog = await readCatalog(query, tables);
    const problems = checkModel(this.#model, catalog).map((p) => ({
      detail: p.detail,
      fix: p.fix,
    }));
    if (this.decoder === 'pgoutput') {
      const publication = this.#options.publication ?? this.#config.worker.publication;
      const missing = await unpublishedTables(query, publication, tables);
      if (missing === null)
        problems.push({
          detail: `the publication ${publication} does not exist`,
          fix: `run walcache setup --decoder pgoutput --publication ${publication}`,
        });
      else if (missing.length > 0)
        problems.push({
          detail: `the publication ${publication} does not send ${missing.join(', ')}: their changes would never reach the worker`,
          fix: `ALTER PUBLICATION ${publication} ADD TABLE ${missing.map(quoteTable).join(', ')};  (or run walcache setup again)`,
        });
    }
    if (problems.length > 0)
      throw new SetupError(
        `the config does not match the database: ${problems.map((p) => p.detail).join('; ')}`,
        problems.map((p) => p.fix).join('; '),
      );
    applyCatalog(this.#model, catalog);
  }

  // --- the stream ------------------------------------------------------------------

  /** Synchronous unless the stream must wait: no promise per row on the common path. */
  #onMessage(lsn: string, message: StreamMessage): Promise<void> | undefined {
    if ('error' in message) {
      // We cannot tell what this message invalidated. Contract 4: a gap is never silent.
      this.#taintedTransaction = true;
      this.events.emit('failure', 'decode', message.error);
      this.#log?.error(
        { lsn, err: message.error },
        'undecodable replication message; the cache epoch will be bumped at its commit',
      );
      return undefined;
    }
    for (const record of message.records) {
      const tx = this.#assembler.push(record);
      if (tx) this.#addTransaction(tx, record.kind === 'commit' && record.lsn ? record.lsn : lsn);
    }
    const g = this.#group;
    if (g.transactions === 0) return undefined;
    if (
      g.transactions >= (this.#options.groupMaxTransactions ?? 256) ||
      g.rows >= (this.#options.groupMaxRows ?? 5_000)
    ) {
      // Up to MAX_GROUPS_IN_FLIGHT groups apply while the next fills: the stream waits
      // (flow control) only when that many are still being applied. Acknowledgements stay
      // in order: #flush chains every group's acknowledgement behind the one before.
      if (this.#applying >= MAX_GROUPS_IN_FLIGHT)
        return this.#beforeLast.then(() => void this.#flush());
      void this.#flush();
    } else if (this.#flushTimer === null) {
      this.#flushTimer = setTimeout(() => void this.#flush(), this.#options.groupWindowMs ?? 5);
    }
    return undefined;
  }

  #addTransaction(tx: DecodedTransaction, commitLsn: string): void {
    const g = this.#group;
    mapTransaction(tx, this.#model, g.invalidation);
    this.#outsideWrites?.observe(tx);
    for (const [table, count] of g.invalidation.unknownTables)
      this.events.emit('unknown-table', table, count);
    g.invalidation.unknownTables.clear();
    for (const problem of g.invalidation.problems) {
      this.events.emit('failure', 'mapping', new Error(problem.reason));
      this.#log?.warn(
        { lsn: commitLsn, ...problem },
        'change could not be mapped precisely; bumped its table tag',
      );
    }
    g.invalidation.problems.length = 0;
    if (this.#taintedTransaction) {
      g.bumpEpoch = true;
      this.#taintedTransaction = false;
    }
    g.transactions++;
    g.rows += tx.rowCount;
    // Lag is measured on followed commits and this worker's own heartbeats: with
    // add-tables, other tables' transactions arrive as empty begin/commit pairs, and other
    // workers' heartbeat messages reach every slot of the database.
    if (tx.rowCount > 0 || tx.messages.some((m) => m.content.includes(this.runId)))
      g.commitTimes.push(tx.commitTime.getTime());
    if (g.lastLsn === null || lsnToBigInt(commitLsn) > lsnToBigInt(g.lastLsn))
      g.lastLsn = commitLsn;
    g.lastCommitTime = Math.max(g.lastCommitTime, tx.commitTime.getTime());
    this.events.emit('transaction', tx.rowCount, tx.collapsedTables.length > 0);
  }

  /** Applies the pending group, then acknowledges its last commit. Serialised. */
  #flush(): Promise<void> {
    if (this.#flushTimer) {
      clearTimeout(this.#flushTimer);
      this.#flushTimer = null;
    }
    const group = this.#group;
    if (group.transactions === 0) return this.#flushing;
    this.#group = newGroup();
    const stream = this.#stream;
    // The group's tombstones and versions go to Redis at once, even while earlier groups
    // are in flight (harmless in any order); the heartbeat, the bus message and the
    // acknowledgement wait for every earlier group (#applyGroup, chained). Not ahead of a
    // queued epoch bump, nor with one: those apply whole, in order. With nothing in
    // flight the group applies at once, whole: one round trip (the lag at a steady rate).
    const ahead =
      this.#applying > 0 &&
      this.#bumpsQueued === 0 &&
      !group.bumpEpoch &&
      stream !== null &&
      stream === this.#stream
        ? this.#invalidator
            .writeAhead(group.invalidation, group.lastLsn as string)
            .catch((error: unknown) => {
              // Reported now; #applyGroup applies the whole group again, retrying.
              this.events.emit('failure', 'redis', error);
              this.#log?.warn(
                { err: error, lsn: group.lastLsn },
                'writing invalidations ahead failed; applying them again (position held)',
              );
              return false;
            })
        : null;
    const closes = this.#redisCloses;
    this.#applying++;
    this.#beforeLast = this.#flushing;
    this.#flushing = this.#flushing
      .then(() => this.#applyGroup(group, stream, ahead, closes))
      .finally(() => {
        this.#applying--;
      });
    return this.#flushing;
  }

  /**
   * Applies a group once every earlier one is acknowledged (or given up): the heartbeat
   * and the bus message when its tombstones were written ahead, else everything (retried
   * while the position is held); then the rollback checks, then the acknowledgement.
   */
  async #applyGroup(
    group: Group,
    stream: ReplicationStream | null,
    ahead: Promise<boolean> | null,
    /** #redisCloses when the writes ahead were sent. */
    closes: number,
  ): Promise<void> {
    const started = performance.now();
    const lsn = group.lastLsn as string;
    const acknowledged = this.#appliedLsn;
    // Commit timestamps are not strictly in commit order: never move the claim back.
    const commitTime = Math.max(group.lastCommitTime, this.#lastCommitTime);
    // Written ahead on a connection that has not closed since: on the server the heartbeat
    // goes to (a restarted Redis, a promoted replica may have lost them).
    const written =
      ahead !== null &&
      (await unlessAborted(ahead, this.#giveUp.signal)) === true &&
      this.#redisCloses === closes;
    let applied = await this.#applyWithRetry(
      group.invalidation,
      { lsn, commitTime },
      group.bumpEpoch,
      stream,
      written,
    );
    if (applied !== null && written && this.#redisCloses !== closes) {
      // The connection closed before the heartbeat went: apply the whole group again. The
      // heartbeat the first attempt replaced is the one that tells whether Redis lost
      // acknowledged invalidations (the second finds the first's own).
      const first = applied.previous;
      const again = await this.#applyWithRetry(
        group.invalidation,
        { lsn, commitTime },
        group.bumpEpoch,
        stream,
      );
      applied = again === null ? null : { previous: first };
    }
    if (applied === null) return; // the stream died meanwhile: not acknowledged, it will be replayed
    const lost =
      this.#rollbackReason(applied.previous, acknowledged) ??
      (await this.#invalidator.shardLoss(false));
    if (lost !== null) {
      // Before this group is acknowledged: the entries Redis revived must become misses.
      this.#log?.error(
        { reason: lost, heartbeat: applied.previous?.lsn ?? null, acknowledged },
        'Redis lost acknowledged invalidations; bumping the cache epoch',
      );
      this.events.emit('epoch-bump', lost);
      if (
        (await this.#applyWithRetry(emptyInvalidation(), { lsn, commitTime }, true, stream)) ===
        null
      )
        return;
    }
    this.#lastCommitTime = commitTime;
    if (stream && (await stream.acknowledge(lsn))) {
      this.#advanceApplied(lsn);
      this.events.emit('acknowledged', lsn);
    }
    const now = Date.now();
    this.events.emit(
      'applied',
      group.transactions,
      group.rows,
      group.invalidation.keys.size,
      group.invalidation.tags.size,
      performance.now() - started,
      group.commitTimes.map((t) => now - t),
    );
  }

  /** Retries with backoff while holding the position; gives up only if the stream it belongs to is gone. */
  async #applyWithRetry(
    invalidation: Invalidation,
    beat: { lsn: string; commitTime: number },
    bumpEpoch: boolean,
    stream: ReplicationStream | null = null,
    /** The tombstones and versions were written ahead: only the heartbeat and bus message are left. */
    written = false,
  ): Promise<{ readonly previous: Heartbeat | null } | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        const previous = await unlessAborted(
          this.#invalidator.apply(invalidation, beat, bumpEpoch, written),
          this.#giveUp.signal,
        );
        return previous === ABANDONED ? null : { previous };
      } catch (error) {
        this.events.emit('failure', 'redis', error);
        this.#log?.warn(
          { err: error, lsn: beat.lsn, attempt, redis: this.#redisWhere },
          `applying invalidations to Redis ${this.#redisWhere} failed; retrying (position held)`,
        );
        if (stream !== null && stream !== this.#stream) return null;
        if (this.#stopping && (attempt >= 3 || this.#redis.status === 'end')) return null;
        await sleep(Math.min(50 * 2 ** attempt, 2_000));
      }
    }
  }

  /**
   * Answers a keepalive. When the worker is idle (nothing half-received, nothing waiting
   * to be applied, nothing in flight, the library's queue drained), everything the server
   * sent up to `lsn` was applied, so `lsn` itself is confirmed: the slot moves on over
   * WAL that holds no transactions of ours, and a shutting-down server (which waits for
   * its walsenders' clients to confirm everything) is not held for wal_sender_timeout.
   */
  #onKeepalive(stream: ReplicationStream, lsn: string, shouldRespond: boolean): void {
    const idle =
      !this.#assembler.inTransaction &&
      this.#group.transactions === 0 &&
      !this.#applying &&
      stream.drained;
    if (
      idle &&
      stream === this.#stream &&
      (this.#appliedLsn === null || lsnToBigInt(lsn) >= lsnToBigInt(this.#appliedLsn))
    ) {
      // The heartbeat records the position first (a recreated slot is detected by being
      // ahead of it). pg-logical-replication sends lsn + 1; a shutting-down walsender
      // waits for the exact position it sent, so hand it lsn - 1.
      const acknowledged = this.#appliedLsn;
      void this.#invalidator
        .writeHeartbeat({ lsn, commitTime: this.#lastCommitTime })
        .then((previous) => {
          const lost = this.#rollbackReason(previous, acknowledged);
          if (lost === null) return stream.acknowledge(formatLsn(lsnToBigInt(lsn) - 1n));
          this.#log?.error({ reason: lost, acknowledged }, 'Redis lost acknowledged invalidations');
          void this.#queueEpochBump(lost); // a later keepalive acknowledges, after it
          return false;
        })
        .then(
          (sent) => {
            if (sent && stream === this.#stream) this.#advanceApplied(lsn);
          },
          () => {
            if (shouldRespond) void this.#sendStatus();
          },
        );
      return;
    }
    if (shouldRespond) void this.#sendStatus();
  }

  #advanceApplied(lsn: string): void {
    if (this.#appliedLsn === null || lsnToBigInt(lsn) > lsnToBigInt(this.#appliedLsn))
      this.#appliedLsn = lsn;
  }

  async #sendStatus(): Promise<void> {
    if (this.#appliedLsn && this.#stream)
      await this.#stream.acknowledge(this.#appliedLsn).catch(() => {});
  }

  #startTimers(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [
      setInterval(() => void this.#sendStatus(), this.#options.statusIntervalMs ?? 10_000),
      setInterval(() => void this.#emitHeartbeat(), this.#options.heartbeatIntervalMs ?? 5_000),
      setInterval(() => void this.#checkRollback(), this.#options.rollbackCheckMs ?? 1_000),
    ];
    for (const t of this.#timers) t.unref();
  }

  /**
   * Why a heartbeat found in Redis shows that Redis lost invalidations the worker had
   * acknowledged (up to `acknowledged`): missing, or behind. Null when it did not. The
   * worker acknowledges a commit as the heartbeat's LSN + 1, hence the tolerance of one.
   */
  #rollbackReason(previous: Heartbeat | null, acknowledged: string | null): EpochBumpReason | null {
    if (acknowledged === null) return null;
    if (previous === null) return 'redis-heartbeat-missing';
    return lsnToBigInt(previous.lsn) + 1n < lsnToBigInt(acknowledged)
      ? 'redis-behind-acknowledged'
      : null;
  }

  /**
   * Queues an epoch bump behind what is being applied and ahead of every later group; it
   * counts in #applying, so no keepalive is acknowledged before it either. Retried until
   * Redis takes it (or the worker stops).
   */
  #queueEpochBump(reason: EpochBumpReason): Promise<void> {
    this.events.emit('epoch-bump', reason);
    this.#applying++;
    this.#bumpsQueued++;
    this.#beforeLast = this.#flushing;
    this.#flushing = this.#flushing
      .then(async () => {
        await this.#applyWithRetry(
          emptyInvalidation(),
          { lsn: this.#appliedLsn ?? '0/0', commitTime: this.#lastCommitTime },
          true,
        );
      })
      .finally(() => {
        this.#applying--;
        this.#bumpsQueued--;
      });
    return this.#flushing;
  }

  /**
   * Redis lost invalidations the worker already acknowledged (restarted from a snapshot,
   * an AOF `everysec` tail lost, an async replica promoted) when its heartbeat is behind
   * the acknowledged position, or gone. Those commits will never be replayed, so the only
   * safe answer is the epoch: every older entry becomes a miss.
   */
  async #checkRollback(): Promise<void> {
    if (this.#role !== 'active' || this.#appliedLsn === null || this.#checkingRollback) return;
    this.#checkingRollback = true;
    try {
      // Captured first: a group writes the heartbeat before the position advances.
      const acknowledged = this.#appliedLsn;
      const beat = await this.#invalidator.readHeartbeat();
      const reason =
        this.#rollbackReason(beat, acknowledged) ?? (await this.#invalidator.shardLoss(true));
      if (reason === null) return;
      this.#log?.error(
        { reason, heartbeat: beat?.lsn ?? null, acknowledged: this.#appliedLsn },
        'Redis lost acknowledged invalidations; bumping the cache epoch',
      );
      await this.#queueEpochBump(reason);
    } catch {
      // Redis unreachable: the next check (or its 'ready') tries again.
    } finally {
      this.#checkingRollback = false;
    }
  }

  /** A transactional message through the WAL: gives an idle slot a commit to acknowledge. */
  async #emitHeartbeat(): Promise<void> {
    try {
      await this.#pool.query('SELECT pg_logical_emit_message(true, $1, $2)', [
        HEARTBEAT_PREFIX,
        JSON.stringify({ runId: this.runId, at: Date.now() }),
      ]);
    } catch (error) {
      this.events.emit('failure', 'heartbeat', error);
    }
  }

  async #teardownStream(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    await this.#flushing.catch(() => {});
    this.#group = newGroup();
    await this.#stream?.stop();
    this.#stream = null;
    if (!this.#stopping && this.#role === 'active') this.#setRole('starting');
  }

  #newAssembler(): TransactionAssembler {
    return new TransactionAssembler({ rowCap: this.#options.transactionRowCap ?? 10_000 });
  }

  #setRole(role: WorkerRole): void {
    if (this.#role === role) return;
    this.#role = role;
    this.events.emit('role', role);
    this.#log?.info({ role, slot: this.slot, runId: this.runId }, `worker ${role}`);
  }

  /** Retained WAL of the slot, for metrics. */
  async slotInfo(): Promise<Awaited<ReturnType<typeof readSlot>>> {
    return readSlot(this.#pool, this.slot);
  }
}

function newGroup(): Group {
  return {
    invalidation: emptyInvalidation(),
    transactions: 0,
    rows: 0,
    lastLsn: null,
    lastCommitTime: 0,
    bumpEpoch: false,
    commitTimes: [],
  };
}

/** Errors of a connection that may work on the next try (the server down, restarting, full). */
function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return (
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'EAI_AGAIN',
      'ENOTFOUND',
    ].includes(code) ||
    code === '57P03' || // the database system is starting up / shutting down
    code === '53300' // too many connections
  );
}

const ABANDONED = Symbol('abandoned');

/** `promise`'s value, or ABANDONED as soon as `signal` aborts (its outcome is then ignored). */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof ABANDONED> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.resolve(ABANDONED);
  }
  return new Promise((resolve, reject) => {
    const abandon = () => {
      promise.catch(() => {});
      resolve(ABANDONED);
    };
    signal.addEventListener('abort', abandon, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', abandon);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abandon);
        reject(error);
      },
    );
  });
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, options: { unref?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  return new Promise((resolve) => {
    if (options.signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    if (options.unref) timer.unref();
    options.signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
