import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import type { KeyedCommand } from '../cache/redis-client.js';
import type { Keys } from '../keys/redis-keys.js';
import { isLsn, lsnToBigInt } from '../protocol/lsn.js';
import type { EpochBumpReason } from './worker-events.js';

/**
 * Rollback detection per master of a Redis Cluster (docs/redis-cluster.md, "Failover").
 *
 * On one server the heartbeat proves what Redis kept: it is written after the commit
 * group's tombstones, in the same pipeline. On a cluster the tombstones of one group land
 * on several masters, and each fails over on its own: a replica promoted before it
 * received the last writes of its master brings back entries the worker had tombstoned
 * and acknowledged, while the heartbeat (on another master) shows nothing wrong.
 *
 * So each master gets a mark: a key whose slot it serves, set to the group's LSN at the
 * end of that master's pipeline (`SET … GET`). Redis replicates a master's writes in order,
 * so a replica that holds the mark holds every write before it. A mark that comes back
 * behind what this worker last wrote to it (or missing) means that master lost
 * acknowledged invalidations: the worker bumps the epoch, as for a whole Redis rollback.
 */
export class ShardMarks {
  readonly #cluster: Cluster;
  readonly #keys: Keys;
  /** Mark key per master (`host:port`), found by probing hash tags. */
  readonly #markOf = new Map<string, string>();
  /** The LSN this worker last wrote to each mark (and Redis confirmed). */
  readonly #written = new Map<string, string>();
  /** Why a mark was found behind, until the worker takes it. */
  #loss: EpochBumpReason | null = null;

  constructor(cluster: Cluster, keys: Keys) {
    this.#cluster = cluster;
    this.#keys = keys;
  }

  /**
   * The mark commands for a group whose writes are `writes`: one per master those writes
   * go to, to run after them (execByNode keeps each master's commands in order). Each
   * records the mark's previous value when it succeeds.
   */
  commands(writes: readonly KeyedCommand[], lsn: string): KeyedCommand[] {
    const nodes = new Set<string>();
    for (const write of writes) {
      const node = this.#nodeOf(write.key);
      if (node !== undefined) nodes.add(node);
    }
    const marks: KeyedCommand[] = [];
    for (const node of nodes) {
      const key = this.#markFor(node);
      if (key === undefined) continue;
      marks.push({ key, add: (p) => p.set(key, lsn, 'GET') });
    }
    return marks;
  }

  /**
   * Takes the replies of `commands`: a previous value behind what was last written there
   * is a loss (kept until `takeLoss`); the new value becomes what was written.
   */
  settle(
    marks: readonly KeyedCommand[],
    replies: ReadonlyArray<[Error | null, unknown]>,
    lsn: string,
  ): void {
    marks.forEach((mark, i) => {
      const [error, previous] = replies[i] ?? [new Error('no reply'), null];
      if (error) return;
      this.#compare(mark.key, typeof previous === 'string' ? previous : null);
      this.#written.set(mark.key, lsn);
    });
  }

  /** Reads every mark written so far and compares (the periodic rollback check). */
  async check(): Promise<EpochBumpReason | null> {
    const keys = [...this.#written.keys()];
    const values = await Promise.all(keys.map((k) => this.#cluster.get(k)));
    for (const [i, key] of keys.entries()) this.#compare(key, values[i] ?? null);
    return this.takeLoss();
  }

  /** The reason of a loss seen since the last call, or null. */
  takeLoss(): EpochBumpReason | null {
    const loss = this.#loss;
    this.#loss = null;
    return loss;
  }

  #compare(key: string, found: string | null): void {
    const written = this.#written.get(key);
    if (written === undefined) return;
    if (found === null) this.#loss ??= 'redis-shard-mark-missing';
    else if (!isLsn(found) || lsnToBigInt(found) < lsnToBigInt(written))
      this.#loss ??= 'redis-shard-behind-acknowledged';
  }

  #nodeOf(key: string): string | undefined {
    return this.#cluster.slots[calculateSlot(key)]?.[0];
  }

  /** A key under the heartbeat whose slot `node` serves now (cached while it does). */
  #markFor(node: string): string | undefined {
    const known = this.#markOf.get(node);
    if (known !== undefined && this.#nodeOf(known) === node) return known;
    const base = this.#keys.heartbeat();
    for (let i = 0; i < 4096; i++) {
      const key = `${base}:{${base}:${i}}`;
      if (this.#nodeOf(key) === node) {
        this.#markOf.set(node, key);
        return key;
      }
    }
    return undefined; // a node serving almost no slots: its writes go unmarked
  }
}
