import calculateSlot from 'cluster-key-slot';
import type { BusMessage } from '../cache/bus.js';
import { publishOn } from '../cache/bus-connection.js';
import { tombstoneValue } from '../cache/envelope.js';
import { type Heartbeat, parseHeartbeat } from '../cache/heartbeat.js';
import { newVersion } from '../cache/l2-tier.js';
import {
  type AnyPipeline,
  execByNode,
  isCluster,
  type KeyedCommand,
  type RedisClient,
} from '../cache/redis-client.js';
import { defineScripts, type ScriptCommands } from '../cache/scripts.js';
import type { Keys } from '../keys/redis-keys.js';
import type { Invalidation } from '../model/change-mapper.js';
import { ShardMarks } from './shard-marks.js';
import type { EpochBumpReason } from './worker-events.js';

/** Above this many keys a bus message tells every process to drop its whole L1 instead. */
const MAX_BUS_KEYS = 5_000;
/** Keys per tombstone-n call. */
const TOMBSTONE_BATCH = 500;
/** At most this many transactions per key fence a fill (as lua/lib/fence.lua's MAX_XIDS). */
const MAX_FENCE_XIDS = 16;

/**
 * Applies invalidations to Redis: every key becomes a tombstone carrying the commit LSN,
 * every tag gets a new version, the heartbeat moves, and one bus message tells every
 * process to drop those L1 entries. One pipeline; it resolves only if every command
 * succeeded, so the caller acknowledges only what was applied. Replays are harmless:
 * tombstones keep the newest LSN, a tag bumped twice is still bumped.
 */
/**
 * The xids of a key's tombstone or a tag's version: its transactions' ids, or '' when one
 * is unknown (0) or there are too many to fence by (a tombstone then refuses every fill
 * in flight; a version then proves nothing, as before fences).
 */
function xidList(xids: readonly number[] | undefined): string {
  if (xids === undefined || xids.length === 0 || xids.length > MAX_FENCE_XIDS) return '';
  for (const x of xids) if (!(x > 0)) return '';
  return xids.join(',');
}

export class Invalidator {
  readonly runId: string;
  readonly #redis: RedisClient & ScriptCommands;
  readonly #keys: Keys;
  /** On a cluster: a mark per master, to see one that lost acknowledged writes. */
  readonly #marks: ShardMarks | undefined;
  readonly #tombstoneTtlMs: number;
  readonly #tagTtlMs: number;
  #seq = 0;

  constructor(
    redis: RedisClient,
    keys: Keys,
    runId: string,
    tombstoneTtlMs: number,
    /** Lifetime of a bumped tag version (`tagVersionTtlMs`): one key per value ever changed otherwise. */
    tagTtlMs: number,
  ) {
    this.#redis = defineScripts(redis);
    this.#keys = keys;
    this.#marks = isCluster(redis) ? new ShardMarks(redis, keys) : undefined;
    this.runId = runId;
    this.#tombstoneTtlMs = tombstoneTtlMs;
    this.#tagTtlMs = tagTtlMs;
  }

  /**
   * Applies everything in one pipeline; resolves with the heartbeat this one replaced
   * (read and written in one `SET ... GET`): behind what the worker acknowledged, or
   * missing, it says Redis lost acknowledged invalidations.
   */
  async apply(
    invalidation: Invalidation,
    heartbeat: Omit<Heartbeat, 'runId' | 'appliedAt'>,
    bumpEpoch = false,
    /** The tombstones and versions are in Redis already ({@link writeAhead} succeeded). */
    written = false,
  ): Promise<Heartbeat | null> {
    const writes = written ? [] : this.#writes(invalidation, heartbeat.lsn);
    return this.#finish(invalidation, heartbeat, bumpEpoch, writes);
  }

  /**
   * On a standalone Redis: sends the tombstones and tag versions of a group now, ahead of
   * {@link apply} (which then sends only the heartbeat and the bus message, with
   * `written`), so Redis works on them while earlier groups are being acknowledged. Safe
   * in any order: a tombstone keeps the newest LSN, a version bumped early is still
   * bumped; only the heartbeat claims a position. Resolves false on a cluster (then apply
   * everything); rejects when any write failed (apply everything too).
   */
  async writeAhead(invalidation: Invalidation, lsn: string): Promise<boolean> {
    if (isCluster(this.#redis)) return false;
    const pipeline = this.#redis.pipeline();
    for (const write of this.#writes(invalidation, lsn)) write.add(pipeline);
    const results = await pipeline.exec();
    for (const [error] of results ?? []) if (error) throw error;
    return results !== null;
  }

  /** The tombstone and tag-version commands of an invalidation (no heartbeat, no bus message). */
  #writes(invalidation: Invalidation, lsn: string): KeyedCommand[] {
    const tombstone = tombstoneValue(lsn);
    const xids = (key: string) => xidList(invalidation.xids.get(key));
    const now = Date.now();
    const writes: KeyedCommand[] = [];
    const script = (p: AnyPipeline) => p as AnyPipeline & ScriptCommands;
    if (isCluster(this.#redis)) {
      // A batch per node: tombstone-node-1 reaches keys of many slots on the node that
      // serves them (bench:cluster: a call per key cost ~7x the client CPU per row).
      const byNode = new Map<string, { keys: string[]; entries: string[] }>();
      for (const key of invalidation.keys) {
        const entry = this.#keys.entry(key);
        const node = this.#redis.slots[calculateSlot(entry)]?.[0] ?? '';
        const group = byNode.get(node);
        if (group === undefined) byNode.set(node, { keys: [key], entries: [entry] });
        else {
          group.keys.push(key);
          group.entries.push(entry);
        }
      }
      for (const { keys, entries: all } of byNode.values())
        for (let i = 0; i < keys.length; i += TOMBSTONE_BATCH) {
          const entries = all.slice(i, i + TOMBSTONE_BATCH);
          const first = entries[0] as string;
          const args = [
            tombstone,
            this.#tombstoneTtlMs,
            now,
            entries.length,
            ...entries.slice(1),
            ...keys.slice(i, i + TOMBSTONE_BATCH).map(xids),
          ];
          writes.push({
            key: first,
            add: (p) => script(p).walcache_tombstone_node(first, ...args),
          });
        }
    } else {
      // Standalone Redis: batches, ~10x less client CPU per key than a call each (bench:cdc).
      let batch: string[] = [];
      let batchXids: string[] = [];
      const send = () => {
        const keys = batch;
        const keyXids = batchXids;
        writes.push({
          key: keys[0] as string,
          add: (p) =>
            script(p).walcache_tombstone_n(
              keys.length,
              ...keys,
              tombstone,
              this.#tombstoneTtlMs,
              now,
              ...keyXids,
            ),
        });
        batch = [];
        batchXids = [];
      };
      for (const key of invalidation.keys) {
        batch.push(this.#keys.entry(key));
        batchXids.push(xids(key));
        if (batch.length === TOMBSTONE_BATCH) send();
      }
      if (batch.length > 0) send();
    }
    for (const tag of invalidation.tags) {
      const key = this.#keys.tagVersion(tag);
      const version = newVersion('', xidList(invalidation.tagXids.get(tag)));
      writes.push({ key, add: (p) => p.set(key, version, 'PX', this.#tagTtlMs) });
    }
    return writes;
  }

  async #finish(
    invalidation: Invalidation,
    heartbeat: Omit<Heartbeat, 'runId' | 'appliedAt'>,
    bumpEpoch: boolean,
    writes: KeyedCommand[],
  ): Promise<Heartbeat | null> {
    let epoch: string | undefined;
    if (bumpEpoch) {
      const key = this.#keys.epoch();
      const value = newVersion();
      epoch = value;
      writes.push({ key, add: (p) => p.set(key, value) });
    }
    const keys = [...invalidation.keys];
    const message: BusMessage = {
      src: this.runId,
      kind: 'worker',
      seq: ++this.#seq,
      keys: keys.length > MAX_BUS_KEYS ? [] : keys,
      tags: [...invalidation.tags],
      ...(epoch ? { epoch } : {}),
      ...(keys.length > MAX_BUS_KEYS ? { flush: true } : {}),
    };
    const beat = (): string =>
      JSON.stringify({ ...heartbeat, appliedAt: Date.now(), runId: this.runId } as Heartbeat);
    const channel = this.#keys.busChannel(isCluster(this.#redis));
    if (!isCluster(this.#redis)) {
      // One server: one round trip, applied in order (tombstones before the heartbeat
      // and the bus message that tells readers to look again).
      const pipeline = this.#redis.pipeline();
      for (const write of writes) write.add(pipeline);
      const heartbeatAt = pipeline.length;
      pipeline.set(this.#keys.heartbeat(), beat(), 'GET');
      pipeline.publish(channel, JSON.stringify(message));
      const results = await pipeline.exec();
      for (const [error] of results ?? []) if (error) throw error;
      return parseHeartbeat((results?.[heartbeatAt]?.[1] as string | null | undefined) ?? null);
    }
    // A cluster: the tombstones and versions first, one pipeline per master at once; then,
    // once every master has them, the heartbeat and the bus message. In one round trip a
    // reader told by the bus could read a key whose master had not yet written it.
    const marks = this.#marks?.commands(writes, heartbeat.lsn) ?? [];
    const replies = await execByNode(this.#redis, [...writes, ...marks]);
    this.#marks?.settle(marks, replies.slice(writes.length), heartbeat.lsn);
    for (const [error] of replies) if (error) throw error;
    const [replaced] = await Promise.all([
      this.#redis.set(this.#keys.heartbeat(), beat(), 'GET'),
      publishOn(this.#redis, channel, JSON.stringify(message)),
    ]);
    return parseHeartbeat(replaced);
  }

  /**
   * Records a position reached without a transaction to apply (an idle keepalive);
   * resolves with the heartbeat it replaced, as `apply` does.
   */
  async writeHeartbeat(beat: Omit<Heartbeat, 'runId' | 'appliedAt'>): Promise<Heartbeat | null> {
    const value: Heartbeat = { ...beat, appliedAt: Date.now(), runId: this.runId };
    return parseHeartbeat(
      await this.#redis.set(this.#keys.heartbeat(), JSON.stringify(value), 'GET'),
    );
  }

  /**
   * On a cluster: why a master lost acknowledged invalidations, seen in the replies of the
   * last groups applied, or (`read`) by reading every master's mark now. Null on one
   * server (the heartbeat tells) and when none did.
   */
  async shardLoss(read: boolean): Promise<EpochBumpReason | null> {
    if (this.#marks === undefined) return null;
    return read ? this.#marks.check() : this.#marks.takeLoss();
  }

  async readHeartbeat(): Promise<Heartbeat | null> {
    return parseHeartbeat(await this.#redis.get(this.#keys.heartbeat()));
  }
}
