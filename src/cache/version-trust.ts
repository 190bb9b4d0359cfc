import { LRUCache } from 'lru-cache';
import type { Keys } from '../keys/redis-keys.js';
import type { BusMessage } from './bus.js';
import type { EntryState } from './envelope.js';
import type { L1Tier } from './l1-tier.js';
import type { L2Tier } from './l2-tier.js';

/**
 * Which epoch and tag versions this process may use without reading Redis (see
 * docs/design.md, contract 2). They are trusted like L1 entries: only while the bus is
 * healthy, so a bump reaches this process as a bus message (which drops what it changed)
 * within the same delay as it drops L1 entries; a bus reset forgets everything.
 */
export class VersionTrust {
  /** Tag versions read from Redis and trusted while the bus is healthy. */
  readonly #tags = new LRUCache<string, string>({ max: 50_000 });
  #epoch: string | undefined;
  /** Moves on every reset, so an epoch read that straddles one is not kept. */
  #generation = 0;

  constructor(
    private readonly l2: L2Tier,
    private readonly keys: Keys,
    /** Without L1 nothing is trusted: no generations tell a version read before a bump. */
    private readonly l1: L1Tier | undefined,
    private readonly busHealthy: () => boolean,
    /** Lifetime of a tag version key created or bumped (`tagVersionTtlMs`). */
    readonly tagTtlMs: number,
  ) {}

  /** The epoch in memory, if it may be trusted: only while the bus is healthy. */
  trustedEpoch(): string | undefined {
    return this.busHealthy() ? this.#epoch : undefined;
  }

  /** The global epoch: trusted from memory while the bus is healthy, else read from Redis. */
  async currentEpoch(): Promise<string> {
    const trusted = this.trustedEpoch();
    if (trusted !== undefined) return trusted;
    const generation = this.#generation;
    const epoch = await this.l2.initVersion(this.keys.epoch(), 0);
    if (this.busHealthy() && generation === this.#generation) this.#epoch = epoch;
    return epoch;
  }

  /** The epoch was bumped here: the next read takes it from Redis. */
  forgetEpoch(): void {
    this.#epoch = undefined;
  }

  /** Tags bumped here: their versions are read again. */
  forgetTags(tags: readonly string[]): void {
    for (const t of tags) this.#tags.delete(t);
  }

  /** A bus message: its epoch is the new one, its tags' versions moved. */
  apply(message: BusMessage): void {
    if (message.epoch !== undefined) this.#epoch = message.epoch;
    this.forgetTags(message.tags);
  }

  /** A bus reset: anything may have been missed. */
  reset(): void {
    this.#epoch = undefined;
    this.#generation++;
    this.#tags.clear();
  }

  /** Puts the trusted versions of `tags` into `versions`; returns the tags still unknown. */
  collect(tags: readonly string[], versions: Map<string, string | null>): string[] {
    if (!this.busHealthy() || this.l1 === undefined) return [...tags];
    const unknown: string[] = [];
    for (const t of tags) {
      const v = this.#tags.get(t);
      if (v === undefined) unknown.push(t);
      else versions.set(t, v);
    }
    return unknown;
  }

  /** The L1 generations of `tags`, taken before their versions are read (see `trust`). */
  generations(tags: readonly string[]): number[] | null {
    const l1 = this.l1;
    if (l1 === undefined || tags.length === 0) return null;
    return tags.map((t) => l1.tagGeneration(t));
  }

  /**
   * Keeps versions just read, unless an invalidation of the tag (a bus message, a local
   * bump, an L1 reset) arrived since `generations` were taken: the version read may
   * predate it.
   */
  trust(
    tags: readonly string[],
    found: ReadonlyArray<string | null | undefined>,
    generations: readonly number[] | null,
  ): void {
    const l1 = this.l1;
    if (generations === null || l1 === undefined || !this.busHealthy()) return;
    for (let i = 0; i < tags.length; i++) {
      const version = found[i];
      const t = tags[i] as string;
      if (typeof version === 'string' && l1.tagGeneration(t) === generations[i])
        this.#tags.set(t, version);
    }
  }

  /** Reads the versions of the tags an entry names that `versions` does not hold yet. */
  async addEntryTagVersions(
    state: EntryState,
    versions: Map<string, string | null>,
    verify = false,
  ): Promise<void> {
    if (state.kind !== 'data' || state.envelope.tags === null) return;
    const notRead = Object.keys(state.envelope.tags).filter((t) => !versions.has(t));
    const missing = verify ? notRead : this.collect(notRead, versions);
    if (missing.length === 0) return;
    const generations = this.generations(missing);
    const found = await this.l2.getVersions(missing.map((t) => this.keys.tagVersion(t)));
    for (let i = 0; i < missing.length; i++) versions.set(missing[i] as string, found[i] ?? null);
    this.trust(missing, found, generations);
  }

  /** A tag's version, created when it has none. */
  initTagVersion(tag: string): Promise<string> {
    return this.l2.initVersion(this.keys.tagVersion(tag), this.tagTtlMs);
  }

  /** Versions to record in a fill: those read before the load, creating missing ones. */
  async versionsForFill(
    read: ReadonlyMap<string, string | null>,
  ): Promise<Record<string, string> | null> {
    if (read.size === 0) return null;
    const out: Record<string, string> = {};
    await Promise.all(
      [...read].map(async ([t, v]) => {
        out[t] = v ?? (await this.initTagVersion(t));
      }),
    );
    return out;
  }

  /** The current version of each tag, creating missing ones. */
  async currentVersions(tags: readonly string[]): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    await Promise.all(tags.map(async (t) => (out[t] = await this.initTagVersion(t))));
    return out;
  }
}
