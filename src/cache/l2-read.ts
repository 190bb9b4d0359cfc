import type { Keyring } from '../codec/keyring.js';
import { OpenError } from '../codec/keyring.js';
import type { Codec } from '../codec/value-codec.js';
import type { ResolvedConfig } from '../config/config.js';
import { CorruptEntryError } from '../errors/typed-errors.js';
import type { Keys } from '../keys/redis-keys.js';
import type { CacheEvents } from './cache-events.js';
import { type EntryState, type Envelope, parseEntry } from './envelope.js';
import type { L2Tier } from './l2-tier.js';
import { type SharedValue, share } from './shared-value.js';
import type { VersionTrust } from './version-trust.js';

export interface L2Read {
  readonly state: EntryState;
  /** Current version of every tag named by the call or by the entry (null: missing). */
  readonly versions: Map<string, string | null>;
  readonly epoch: string;
}

/** fresh; stale (refresh it); early (XFetch says refresh now); refreshing (stale, a refresh is under way). */
export type Verdict =
  | {
      readonly kind: 'fresh' | 'stale' | 'early' | 'refreshing';
      /** Decoded and made read-only (`share`). */
      readonly value: unknown;
      readonly shared: SharedValue;
    }
  | { readonly kind: 'invalid' };

export const INVALID: Verdict = { kind: 'invalid' };
const EMPTY_STATE: EntryState = { kind: 'empty' };

/** `again`: the value is settled (gone, corrupt, or its tags unreadable): nothing to judge. */
export const RESOLVED = Symbol('resolved');

export interface L2ReaderOptions {
  readonly l2: L2Tier;
  readonly keys: Keys;
  readonly versions: VersionTrust;
  readonly codec: Codec;
  readonly keyring: Keyring | null;
  readonly events: CacheEvents;
  readonly config: ResolvedConfig;
  /** Deletes a corrupt entry (only if it still holds the same bytes). */
  readonly dropCorrupt: (key: string, state: EntryState) => void;
}

/**
 * The L2 read path: an entry with the epoch and tag versions it must match (from memory
 * while they are trusted, else read in the same round trip), and the verdict on it:
 * fresh, stale, early (XFetch), refreshing or invalid, decrypted and decoded.
 */
export class L2Reader {
  constructor(private readonly o: L2ReaderOptions) {}

  async read(key: string, tags: readonly string[] | null, verify = false): Promise<L2Read> {
    const redisKey = this.o.keys.entry(key);
    const versions = new Map<string, string | null>();
    let state: EntryState;
    let epoch: string;
    const trusted = verify ? undefined : this.o.versions.trustedEpoch();
    if (tags === null && trusted !== undefined) {
      // The common hit: one GET, nothing else to wait for.
      state = parseEntry(await this.o.l2.get(redisKey));
      epoch = trusted;
    } else {
      // Tag versions this process already trusts (see #trustVersions) need no read.
      const unknown = tags ? (verify ? [...tags] : this.o.versions.collect(tags, versions)) : [];
      if (unknown.length === 0 && trusted !== undefined) {
        state = parseEntry(await this.o.l2.get(redisKey));
        epoch = trusted;
      } else {
        const generations = this.o.versions.generations(unknown);
        const [buffer, tagVersions, current] = await Promise.all([
          this.o.l2.get(redisKey),
          unknown.length > 0
            ? this.o.l2.getVersions(unknown.map((t) => this.o.keys.tagVersion(t)))
            : null,
          verify ? this.o.l2.initVersion(this.o.keys.epoch(), 0) : this.o.versions.currentEpoch(),
        ]);
        if (tagVersions) {
          for (let i = 0; i < unknown.length; i++)
            versions.set(unknown[i] as string, tagVersions[i] ?? null);
          this.o.versions.trust(unknown, tagVersions, generations);
        }
        state = parseEntry(buffer);
        epoch = current;
      }
    }
    if (state.kind === 'data' && state.envelope.tags !== null)
      await this.o.versions.addEntryTagVersions(state, versions, verify);
    return { state, versions, epoch };
  }

  /**
   * An L2 read of a key known to be invalidated, from memory alone: no entry, the trusted
   * epoch and tag versions. Undefined when one of them is not trusted (then L2 is read).
   */
  fromMemory(tags: readonly string[] | null): L2Read | undefined {
    const epoch = this.o.versions.trustedEpoch();
    if (epoch === undefined) return undefined;
    const versions = new Map<string, string | null>();
    if (tags !== null && this.o.versions.collect(tags, versions).length > 0) return undefined;
    return { state: EMPTY_STATE, versions, epoch };
  }

  /** Re-reads versions for a value that arrived later (another process's fill). */
  async again(
    key: string,
    buffer: Buffer,
    previous: L2Read,
    verify: boolean,
  ): Promise<L2Read | typeof RESOLVED> {
    const state = parseEntry(buffer);
    if (state.kind !== 'data') {
      if (state.kind === 'corrupt') this.o.dropCorrupt(key, state);
      return RESOLVED;
    }
    const versions = new Map(previous.versions);
    try {
      await this.o.versions.addEntryTagVersions(state, versions, verify);
    } catch {
      return RESOLVED;
    }
    return { state, versions, epoch: previous.epoch };
  }
  /**
   * Is an L2 entry usable, and how fresh? Decrypts and decodes the value. `encrypted`:
   * the read takes only an encrypted entry.
   */
  judge(key: string, read: L2Read, encrypted: boolean): Verdict {
    const { state } = read;
    if (state.kind === 'corrupt') {
      this.o.events.emit('corrupt-entry', key, state.reason);
      return INVALID;
    }
    if (state.kind !== 'data') return INVALID;
    const envelope = state.envelope;
    if (envelope.epoch !== read.epoch) return INVALID;
    if (envelope.tags !== null) {
      for (const t in envelope.tags) if (read.versions.get(t) !== envelope.tags[t]) return INVALID;
    }
    const now = Date.now();
    if (now >= envelope.staleUntil) return INVALID;
    const payload = this.#decrypt(key, envelope, encrypted);
    if (payload === null) return INVALID;
    let value: unknown;
    let sharedValue: SharedValue;
    try {
      value = envelope.negative ? undefined : this.o.codec.decode(payload, envelope.compressed);
      sharedValue = share(value);
    } catch (error) {
      const reason = new CorruptEntryError(key, 'payload does not decode', error).message;
      this.o.events.emit('corrupt-entry', key, reason);
      this.o.dropCorrupt(key, { kind: 'corrupt', prefix: state.prefix, reason });
      return INVALID;
    }
    const decoded = { value, shared: sharedValue };
    if (now >= envelope.freshUntil)
      return { kind: state.refreshing ? 'refreshing' : 'stale', ...decoded };
    if (!state.refreshing && this.refreshEarly(now, envelope.freshUntil, envelope.loadMs))
      return { kind: 'early', ...decoded };
    return { kind: 'fresh', ...decoded };
  }

  /** The plain payload of an entry, or null (a `decrypt-failed` miss). */
  #decrypt(key: string, envelope: Envelope, required: boolean): Buffer | null {
    let reason: string;
    if (!envelope.encrypted) {
      if (!required) return envelope.payload;
      reason = 'the entry is not encrypted, and this read requires it';
    } else if (this.o.keyring === null) {
      reason = `the entry is encrypted, and this process has no encryption keys (${this.o.config.encryption.keysEnv})`;
    } else {
      try {
        return this.o.keyring.open(envelope.payload, this.o.keys.entry(key));
      } catch (error) {
        reason = `the entry ${error instanceof OpenError ? error.message : 'does not decrypt'}`;
      }
    }
    this.o.events.emit('decrypt-failed', key, reason);
    return null;
  }
  /** XFetch: refresh before expiry with a probability that grows as expiry nears. */
  refreshEarly(now: number, freshUntil: number, loadMs: number): boolean {
    const beta = this.o.config.cache.earlyRefreshBeta;
    if (beta <= 0 || loadMs <= 0) return false;
    return now - loadMs * beta * Math.log(Math.random()) >= freshUntil;
  }
}
