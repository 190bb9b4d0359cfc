import { createHash } from 'node:crypto';
import { InvalidKeyError } from '../errors/typed-errors.js';

/**
 * The only module that builds Redis keys. Layout, under a validated prefix:
 *
 *   <prefix>:k:<key>        cache entry (lease | data | tombstone)
 *   <prefix>:t:<tag>        tag version
 *   <prefix>:epoch          global cache epoch
 *   <prefix>:hb             worker heartbeat
 *   <prefix>:bus            pub/sub channel for L1 coherence (on a Redis Cluster the
 *                           shard channel <prefix>:{<prefix>:bus}, and :fills after it)
 *   <prefix>:al:{<start>}   access-log counts of the time bucket starting at <start> (ms),
 *                           a hash of `<entity>\0<key>` -> hits
 *   <prefix>:al:{<start>}:flushing
 *                           the same bucket, renamed away while it is moved to Postgres
 *                           (the `{}` hash tag keeps both in one Redis Cluster slot)
 *   <prefix>:al:index       set of the bucket starts that have counts
 *   <prefix>:wb:{<prefix>.<entity>}:w:<key>   write-behind: a row's pending writes (hash,
 *                           one field per write: sequence number -> encoded patch)
 *   <prefix>:wb:{<prefix>.<entity>}:pending   rows with pending writes (sorted set by age)
 *   <prefix>:wb:{<prefix>.<entity>}:seq       write sequence counter
 *   <prefix>:wb:{<prefix>.<entity>}:dead      dead-letter list; :d:<seq> the dead writes
 *                           (one hash tag per entity: every write-behind script is one slot;
 *                           these live on the jobs Redis, never on the cache's)
 *
 * Logical keys keep `:` as a readable separator; every other byte outside
 * `[A-Za-z0-9_.-]` is percent-encoded, so no input can leave its namespace, form a
 * glob pattern (`* ? [ ]`) or a Cluster hash tag (`{ }`).
 */
export const MAX_KEY_LENGTH = 1024;

const SAFE_LOGICAL = /^[A-Za-z0-9_.:-]*$/;
const SAFE_PART = /^[A-Za-z0-9_.-]*$/;

/** Percent-encodes one key part completely (including `:`), so parts cannot collide. */
export function encodeKeyPart(part: string | number | bigint): string {
  const s = typeof part === 'string' ? part : String(part);
  if (SAFE_PART.test(s)) return s;
  return percentEncode(s, SAFE_PART_CHAR);
}

/**
 * Builds a logical cache key from parts, each encoded: `key('users', 42)` is `users:42`,
 * `key('users', 'a:b')` is `users:a%3Ab`.
 */
export function key(...parts: ReadonlyArray<string | number | bigint>): string {
  if (parts.length === 0) throw new InvalidKeyError(parts, 'a key needs at least one part');
  return parts.map(encodeKeyPart).join(':');
}

/** Builds a tag from parts, the same way as `key`: `tag('orders', 'user_id', 7)`. */
export const tag = key;

const SAFE_PART_CHAR = /[A-Za-z0-9_.-]/;
const SAFE_LOGICAL_CHAR = /[A-Za-z0-9_.:-]/;

function percentEncode(s: string, safe: RegExp): string {
  let out = '';
  for (const ch of s) {
    if (safe.test(ch)) {
      out += ch;
    } else {
      for (const byte of Buffer.from(ch, 'utf8'))
        out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  return out;
}

export function assertLogicalKey(k: unknown, what = 'key'): asserts k is string {
  if (typeof k !== 'string') throw new InvalidKeyError(k, `a ${what} must be a string`);
  if (k.length === 0) throw new InvalidKeyError(k, `a ${what} must not be empty`);
  if (k.length > MAX_KEY_LENGTH)
    throw new InvalidKeyError(k, `a ${what} must be at most ${MAX_KEY_LENGTH} characters`);
}

/**
 * Tags the worker bumps and readers depend on, per table (`schema.table`):
 * - `tableTag`: bumped by every change to the table; a query that reads the table
 *   without a narrowing WHERE depends on it.
 * - `tableResetTag`: bumped only when per-row invalidation is impossible (TRUNCATE, a
 *   transaction collapsed past the row cap); entity entries and narrowed queries depend
 *   on it, so they survive ordinary writes to other rows.
 * - `columnTag`: `schema.table:column=value`, bumped from the old and the new row.
 */
export function tableTag(qualifiedTable: string): string {
  return encodeKeyPart(qualifiedTable);
}

export function tableResetTag(qualifiedTable: string): string {
  return `${encodeKeyPart(qualifiedTable)}:reset`;
}

export function columnTag(qualifiedTable: string, column: string, value: unknown): string {
  return `${encodeKeyPart(qualifiedTable)}:${encodeKeyPart(column)}=${valuePart(value)}`;
}

/** Longest encoded value kept readable in a column tag or a unique key. */
export const MAX_READABLE_VALUE = 128;

/**
 * A column value as one part of a tag or key: encoded (`encodeKeyPart`), or, when that
 * is longer than `MAX_READABLE_VALUE` (200 non-ASCII characters encode to over 1,000),
 * `~` and the SHA-256 of the value (base64url), so the tag or key stays under
 * `MAX_KEY_LENGTH`. The worker and the readers both build tags and unique keys here, so
 * they agree on the hash; `~` never starts an encoded part, so the two forms cannot meet.
 */
export function valuePart(value: unknown): string {
  const text = keyValue(value);
  const encoded = encodeKeyPart(text);
  if (encoded.length <= MAX_READABLE_VALUE) return encoded;
  return `~${createHash('sha256').update(text, 'utf8').digest('base64url')}`;
}

/** The cache key of an entity row: `users:42`, or `memberships:7:3` for a composite key. */
export function entityKey(entity: string, keyValues: readonly unknown[]): string {
  let key = encodeKeyPart(entity);
  for (const value of keyValues) key += `:${encodeKeyPart(keyValue(value))}`;
  return key;
}

/**
 * The key values of an entity key, the inverse of `entityKey`: `users:42` gives `['42']`.
 * Null for a key of another entity, of another arity, or with a malformed escape.
 */
export function parseEntityKey(entity: string, arity: number, key: string): string[] | null {
  const prefix = `${encodeKeyPart(entity)}:`;
  if (!key.startsWith(prefix)) return null;
  const parts = key.slice(prefix.length).split(':');
  if (parts.length !== arity) return null;
  try {
    return parts.map(decodeURIComponent);
  } catch {
    return null;
  }
}

/**
 * The cache key of a row found by a secondary unique column: `users:by:email:a%40b.c`
 * (a long value is hashed: `valuePart`).
 */
export function uniqueKey(entity: string, column: string, value: unknown): string {
  return `${encodeKeyPart(entity)}:by:${encodeKeyPart(column)}:${valuePart(value)}`;
}

/**
 * The string form of a key value. The same row must give the same string whether it
 * came from a pg query (int8 as string, int4 as number) or from the change stream.
 */
export function keyValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value);
    default:
      if (value instanceof Date) return value.toISOString();
      if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
      throw new InvalidKeyError(
        value,
        'a key value must be a string, number, bigint, boolean, Date or Buffer',
      );
  }
}

/** Redis key names for one prefix. */
export class Keys {
  readonly prefix: string;
  readonly #entry: string;
  readonly #tag: string;

  constructor(prefix: string) {
    if (!SAFE_PART.test(prefix) || prefix.length === 0)
      throw new InvalidKeyError(prefix, 'invalid prefix');
    this.prefix = prefix;
    this.#entry = `${prefix}:k:`;
    this.#tag = `${prefix}:t:`;
  }

  /** Redis key of a cache entry. */
  entry(logicalKey: string): string {
    return (
      this.#entry +
      (SAFE_LOGICAL.test(logicalKey) ? logicalKey : percentEncode(logicalKey, SAFE_LOGICAL_CHAR))
    );
  }

  /** Redis key holding a tag's current version. */
  tagVersion(tagName: string): string {
    return (
      this.#tag + (SAFE_LOGICAL.test(tagName) ? tagName : percentEncode(tagName, SAFE_LOGICAL_CHAR))
    );
  }

  epoch(): string {
    return `${this.prefix}:epoch`;
  }

  heartbeat(): string {
    return `${this.prefix}:hb`;
  }

  /**
   * The bus channel. On a Redis Cluster (`sharded`) it is a shard channel named with a
   * hash tag, so it and the fill channel share one slot (one SSUBSCRIBE, one node).
   */
  busChannel(sharded = false): string {
    return sharded ? `${this.prefix}:{${this.prefix}:bus}` : `${this.prefix}:bus`;
  }

  /** Fill notices: the key a process filled or gave up while others waited for it. */
  fillChannel(sharded = false): string {
    return sharded ? `${this.prefix}:{${this.prefix}:bus}:fills` : `${this.prefix}:fills`;
  }

  /** Hash of the access-log counts of the bucket starting at `bucketStartMs`. */
  accessLogBucket(bucketStartMs: number): string {
    return `${this.prefix}:al:{${bucketStart(bucketStartMs)}}`;
  }

  /** The bucket's hash while a flush moves it to Postgres (same Cluster slot as the bucket). */
  accessLogFlushing(bucketStartMs: number): string {
    return `${this.prefix}:al:{${bucketStart(bucketStartMs)}}:flushing`;
  }

  /** A row's pending write-behind writes (hash). */
  writeBehindRecord(entity: string, logicalKey: string): string {
    return `${this.#writeBehind(entity)}:w:${SAFE_LOGICAL.test(logicalKey) ? logicalKey : percentEncode(logicalKey, SAFE_LOGICAL_CHAR)}`;
  }

  /** The entity's rows with pending writes, scored by the time the first arrived. */
  writeBehindQueue(entity: string): string {
    return `${this.#writeBehind(entity)}:pending`;
  }

  writeBehindSequence(entity: string): string {
    return `${this.#writeBehind(entity)}:seq`;
  }

  /** The entity's dead-letter list. */
  writeBehindDead(entity: string): string {
    return `${this.#writeBehind(entity)}:dead`;
  }

  /** Where dead writes are kept (hash, like a pending record). */
  writeBehindDeadRecord(entity: string, seq: string | number): string {
    return `${this.#writeBehind(entity)}:d:${encodeKeyPart(String(seq))}`;
  }

  #writeBehind(entity: string): string {
    return `${this.prefix}:wb:{${this.prefix}.${encodeKeyPart(entity)}}`;
  }

  /** Set of the bucket starts (ms, as decimal strings) that have access-log counts. */
  accessLogIndex(): string {
    return `${this.prefix}:al:index`;
  }
}

function bucketStart(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 0)
    throw new InvalidKeyError(ms, 'a bucket start must be a non-negative integer (ms)');
  return ms;
}
