import { LRUCache } from 'lru-cache';

/** What L1 keeps per key: the decoded value and the times that govern it. */
export interface L1Entry {
  /** Read-only (`share`): every hit returns this very object. */
  readonly value: unknown;
  /** The value holds byte arrays: a hit returns `copyForCaller(value)`. */
  readonly copyOnRead: boolean;
  readonly freshUntil: number;
  readonly staleUntil: number;
  readonly loadMs: number;
  readonly tags: readonly string[] | null;
  readonly negative: boolean;
  /** When the value was loaded (ms since epoch): sliding expiration counts its age from it. */
  readonly createdAt: number;
  /** The first 17 bytes of the L2 entry it came from or went to (`D<token>`); '' for none. */
  readonly fill: string;
}

const GENERATION_SLOTS = 4096; // power of two
const TWO_32 = 4294967296;

/** What an entry costs besides its value: the entry object, its key, lru-cache's slots. */
const ENTRY_OVERHEAD = 160;

/**
 * The in-process tier: lru-cache bounded by entry count and by the estimated heap bytes
 * of what it holds (`SharedValue.bytes`), with a per-entry TTL. `get` is synchronous and
 * allocates nothing.
 *
 * Generations (docs/design.md, Contract 2): every invalidation of a key or tag bumps a
 * counter in a fixed array indexed by its hash, and `clear()` bumps a global one. A
 * fill takes a snapshot before it starts and is stored only if the snapshot still
 * matches, so a fill that began before an invalidation never lands. Hash collisions
 * only drop some fills; memory stays fixed however many keys there are.
 */
export class L1Tier {
  readonly #lru: LRUCache<string, L1Entry>;
  readonly #maxTtlMs: number;
  readonly #maxBytes: number;
  #indexed = 0;
  readonly #generations = new Uint32Array(GENERATION_SLOTS);
  #global = 0;
  /** tag -> keys cached under it, so a tag bump drops exactly those L1 entries. */
  readonly #byTag = new Map<string, Set<string>>();

  constructor(options: { maxEntries: number; maxBytes: number; ttlMs: number }) {
    this.#maxTtlMs = options.ttlMs;
    this.#maxBytes = options.maxBytes;
    this.#lru = new LRUCache<string, L1Entry>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      ttl: options.ttlMs,
      ttlAutopurge: false,
      updateAgeOnGet: false,
      dispose: (entry, key) => this.#unindex(key, entry),
    });
  }

  get size(): number {
    return this.#lru.size;
  }

  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  /** (tag, key) pairs in the tag index: never more than the entries' tags. */
  get indexed(): number {
    return this.#indexed;
  }

  /** Synchronous lookup; undefined when absent or past its stale limit. */
  get(key: string): L1Entry | undefined {
    return this.#lru.get(key);
  }

  /** A tag's generation alone: moves with every invalidation of the tag and every clear. */
  tagGeneration(tag: string): number {
    return this.#global * TWO_32 + (this.#generations[slot(tag, 1)] as number);
  }

  /** A snapshot of the key's generation (and its tags') to pass to `set` later. */
  snapshot(key: string, tags: readonly string[] | null): number {
    let sum = this.#generations[slot(key, 0)] as number;
    if (tags) for (const t of tags) sum += this.#generations[slot(t, 1)] as number;
    return this.#global * TWO_32 + (sum % TWO_32);
  }

  /**
   * Stores an entry if nothing invalidated its key or tags since `snapshot`; `bytes` is
   * its value's estimated size. Returns false when the fill was dropped: invalidated, past
   * its stale limit, or alone larger than `maxBytes` (then an older entry of the key goes
   * too, and nothing is indexed for it).
   */
  set(key: string, entry: L1Entry, bytes: number, snapshot: number): boolean {
    if (this.snapshot(key, entry.tags) !== snapshot) return false;
    const ttl = Math.min(this.#maxTtlMs, entry.staleUntil - Date.now());
    const size = bytes + key.length + ENTRY_OVERHEAD;
    if (ttl <= 0 || size > this.#maxBytes) {
      this.#lru.delete(key);
      return false;
    }
    this.#lru.set(key, entry, { ttl, size });
    if (entry.tags) {
      for (const t of entry.tags) {
        const keys = this.#byTag.get(t);
        if (keys === undefined) this.#byTag.set(t, new Set([key]));
        else if (!keys.has(key)) keys.add(key);
        else continue;
        this.#indexed++;
      }
    }
    return true;
  }

  /**
   * Puts `next` (the same value, other times) in place of `entry`, keeping its L1
   * lifetime and its size; false when L1 no longer holds `entry` (dropped, invalidated or
   * replaced since it was read). For sliding expiration.
   */
  replace(key: string, entry: L1Entry, next: L1Entry): boolean {
    if (this.#lru.peek(key) !== entry) return false;
    const size = this.#lru.info(key)?.size;
    if (size === undefined) return false;
    this.#lru.set(key, next, { size, noUpdateTTL: true, noDisposeOnSet: true });
    return true;
  }

  /** Drops keys and every entry under the tags, and bumps their generations. */
  invalidate(keys: readonly string[], tags: readonly string[]): void {
    for (const k of keys) {
      this.#bump(slot(k, 0));
      this.#lru.delete(k);
    }
    for (const t of tags) {
      this.#bump(slot(t, 1));
      const tagged = this.#byTag.get(t);
      if (tagged) for (const k of [...tagged]) this.#lru.delete(k);
    }
  }

  /** Drops everything; fills in flight anywhere are dropped too. */
  clear(): void {
    this.#global++;
    this.#lru.clear();
    this.#byTag.clear();
    this.#indexed = 0;
  }

  #bump(i: number): void {
    this.#generations[i] = ((this.#generations[i] as number) + 1) >>> 0;
  }

  #unindex(key: string, entry: L1Entry): void {
    if (!entry.tags) return;
    for (const t of entry.tags) {
      const keys = this.#byTag.get(t);
      if (!keys?.delete(key)) continue;
      this.#indexed--;
      if (keys.size === 0) this.#byTag.delete(t);
    }
  }
}

/** FNV-1a, seeded so keys and tags use different slots for the same string. */
function slot(s: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & (GENERATION_SLOTS - 1);
}
