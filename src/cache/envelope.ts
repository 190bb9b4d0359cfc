import { randomBytes } from 'node:crypto';
import { lsnToBigInt } from '../protocol/lsn.js';

/**
 * The L2 value of a cache key is a small state machine, told apart by its first byte:
 *
 *   L<token>[:<xids>][!]     lease: one process is loading this key
 *   D<token><envelope>       data, filled under lease <token>
 *   R<token><envelope>       data being refreshed under lease <token> (still served)
 *   T<lsn: 16 hex digits>[/L<token>@<ms>][:<xids>][!]
 *                            tombstone: invalidated at that LSN; blocks stale fills,
 *                            except the one of lease <token> (until <ms>) if its
 *                            snapshot proves it saw the commits <xids>
 *
 * `!` marks a key other processes wait for. The fences (xids, snapshots) are described
 * in src/cache/lua/lib/fence.lua and docs/consistency.md.
 *
 * The first 17 bytes (marker + token) identify one fill, so scripts can compare them
 * instead of whole values. The envelope is a fixed binary header then the payload:
 *
 *   u8 format (2) | u8 flags | f64 createdAt | f64 freshUntil | f64 staleUntil |
 *   u32 loadMs | str8 snapshot | str8 epoch | u16 tag count | (str16 tag, str8 version)* |
 *   payload
 *
 * The snapshot (at byte 47, Lua's 48) is the `pg_current_snapshot()` the fill's load was
 * fenced by, '' for none; format 1 (read, never written) has no snapshot field.
 *
 * Flags: 1 compressed, 2 negative (a cached "not found"), 4 encrypted (the payload is a
 * sealed box of the keyring, naming its key id; compression happens before encryption).
 */
export const MARK_LEASE = 0x4c; // L
export const MARK_DATA = 0x44; // D
export const MARK_REFRESHING = 0x52; // R
export const MARK_TOMBSTONE = 0x54; // T
export const PREFIX_LENGTH = 17;
export const ENVELOPE_FORMAT = 2;
/** Longest snapshot an envelope holds (longer ones are narrowed: `compactSnapshot`). */
export const MAX_SNAPSHOT_BYTES = 255;

export const FLAG_COMPRESSED = 1;
export const FLAG_NEGATIVE = 2;
export const FLAG_ENCRYPTED = 4;
const FIXED_HEADER = 1 + 1 + 8 + 8 + 8 + 4;

/**
 * Byte offsets of the fixed header of a data entry, the same in both formats: for reads
 * in place (`untaggedPayloadAt`) and for scripts that rewrite the times (touch-1.lua;
 * Lua positions are one more).
 */
export const AT_FORMAT = PREFIX_LENGTH;
export const AT_FLAGS = PREFIX_LENGTH + 1;
export const AT_CREATED_AT = PREFIX_LENGTH + 2;
export const AT_FRESH_UNTIL = PREFIX_LENGTH + 10;
export const AT_STALE_UNTIL = PREFIX_LENGTH + 18;
export const AT_LOAD_MS = PREFIX_LENGTH + 26;
/** Format 2's `str8 snapshot` (the variable part of the header starts here). */
export const AT_SNAPSHOT = PREFIX_LENGTH + 30;

export interface EnvelopeMeta {
  readonly createdAt: number;
  readonly freshUntil: number;
  readonly staleUntil: number;
  readonly loadMs: number;
  readonly epoch: string;
  /** Tag versions read before the load; null when the entry has no tags. */
  readonly tags: Readonly<Record<string, string>> | null;
  /** A cached "not found". */
  readonly negative: boolean;
  /** The snapshot the load was fenced by (`compactSnapshot` text); '' for none. */
  readonly snapshot?: string;
}

export interface Envelope extends EnvelopeMeta {
  readonly compressed: boolean;
  readonly encrypted: boolean;
  readonly payload: Buffer;
}

export type EntryState =
  | { readonly kind: 'empty' }
  | { readonly kind: 'lease' }
  | {
      readonly kind: 'tombstone';
      readonly lsn: string;
      /** Fenced for a lease whose fill may still land: readers wait for it as for a lease. */
      readonly fenced: boolean;
    }
  | {
      readonly kind: 'data';
      readonly prefix: string;
      readonly envelope: Envelope;
      readonly refreshing: boolean;
    }
  | { readonly kind: 'corrupt'; readonly prefix: string; readonly reason: string };

const EMPTY: EntryState = { kind: 'empty' };
const LEASE: EntryState = { kind: 'lease' };

/** A random 16-character lease token (96 bits). */
export function newToken(): string {
  return randomBytes(12).toString('base64url');
}

export function leaseValue(token: string): string {
  return `L${token}`;
}

/** The first 17 bytes of the entry a fill under `token` stores (what identifies it). */
export function dataPrefix(token: string): string {
  return `D${token}`;
}

export function refreshValuePrefix(token: string): string {
  return `R${token}`;
}

/** A tombstone for `lsn` (a `X/Y` LSN string or a bigint); '0' for local deletes. */
export function tombstoneValue(lsn: string | bigint = 0n): string {
  const n = typeof lsn === 'bigint' ? lsn : lsnToBigInt(lsn);
  return `T${n.toString(16).padStart(16, '0')}`;
}

export function encodeEntry(
  token: string,
  meta: EnvelopeMeta,
  payload: Buffer,
  compressed: boolean,
  encrypted = false,
): Buffer {
  const epoch = Buffer.from(meta.epoch, 'utf8');
  const snapshot = meta.snapshot ?? '';
  if (snapshot.length > MAX_SNAPSHOT_BYTES) throw new RangeError('snapshot too long');
  const tagEntries = meta.tags ? Object.entries(meta.tags) : [];
  const tagBuffers = tagEntries.map(
    ([t, v]) => [Buffer.from(t, 'utf8'), Buffer.from(v, 'utf8')] as const,
  );
  let size =
    PREFIX_LENGTH + FIXED_HEADER + 1 + snapshot.length + 1 + epoch.length + 2 + payload.length;
  for (const [t, v] of tagBuffers) size += 2 + t.length + 1 + v.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = MARK_DATA;
  out.write(token, 1, 16, 'latin1');
  let o = PREFIX_LENGTH;
  out[o++] = ENVELOPE_FORMAT;
  out[o++] =
    (compressed ? FLAG_COMPRESSED : 0) |
    (meta.negative ? FLAG_NEGATIVE : 0) |
    (encrypted ? FLAG_ENCRYPTED : 0);
  o = out.writeDoubleBE(meta.createdAt, o);
  o = out.writeDoubleBE(meta.freshUntil, o);
  o = out.writeDoubleBE(meta.staleUntil, o);
  o = out.writeUInt32BE(Math.min(Math.max(0, Math.round(meta.loadMs)), 0xffffffff), o);
  out[o++] = snapshot.length;
  o += out.write(snapshot, o, 'latin1');
  if (epoch.length > 255) throw new RangeError('epoch too long');
  out[o++] = epoch.length;
  o += epoch.copy(out, o);
  o = out.writeUInt16BE(tagBuffers.length, o);
  for (const [t, v] of tagBuffers) {
    if (t.length > 0xffff || v.length > 255) throw new RangeError('tag or tag version too long');
    o = out.writeUInt16BE(t.length, o);
    o += t.copy(out, o);
    out[o++] = v.length;
    o += v.copy(out, o);
  }
  payload.copy(out, o);
  return out;
}

/** Reads an L2 value (or null) into its state. Never throws: bad bytes are `corrupt`. */
export function parseEntry(value: Buffer | null): EntryState {
  if (value === null || value.length === 0) return EMPTY;
  const marker = value[0];
  if (marker === MARK_LEASE && isControl(value)) return LEASE;
  if (marker === MARK_TOMBSTONE && isControl(value)) {
    return {
      kind: 'tombstone',
      lsn: value.toString('latin1', 1, PREFIX_LENGTH),
      fenced: value[PREFIX_LENGTH] === SLASH && fenceDeadline(value) > Date.now(),
    };
  }
  const prefix = value.toString('latin1', 0, Math.min(PREFIX_LENGTH, value.length));
  if (
    (marker !== MARK_DATA && marker !== MARK_REFRESHING) ||
    value.length < PREFIX_LENGTH + FIXED_HEADER + 3
  ) {
    return { kind: 'corrupt', prefix, reason: 'not a walcache entry' };
  }
  try {
    let o = PREFIX_LENGTH;
    const format = value[o++];
    if (format !== ENVELOPE_FORMAT && format !== 1)
      return { kind: 'corrupt', prefix, reason: `unknown envelope format ${format}` };
    const flags = value[o++] as number;
    const createdAt = value.readDoubleBE(o);
    const freshUntil = value.readDoubleBE(o + 8);
    const staleUntil = value.readDoubleBE(o + 16);
    const loadMs = value.readUInt32BE(o + 24);
    o += 28;
    let snapshot = '';
    if (format === 2) {
      const snapshotLength = value[o++] as number;
      snapshot = value.toString('latin1', o, o + snapshotLength);
      o += snapshotLength;
    }
    const epochLength = value[o++] as number;
    const epoch = value.toString('utf8', o, o + epochLength);
    o += epochLength;
    const tagCount = value.readUInt16BE(o);
    o += 2;
    let tags: Record<string, string> | null = null;
    if (tagCount > 0) {
      tags = {};
      for (let i = 0; i < tagCount; i++) {
        const tl = value.readUInt16BE(o);
        o += 2;
        const t = value.toString('utf8', o, o + tl);
        o += tl;
        const vl = value[o++] as number;
        if (o + vl > value.length) throw new RangeError('truncated tag list');
        tags[t] = value.toString('utf8', o, o + vl);
        o += vl;
      }
    }
    if (o > value.length || !(freshUntil <= staleUntil))
      throw new RangeError('truncated or inconsistent header');
    return {
      kind: 'data',
      prefix,
      refreshing: marker === MARK_REFRESHING,
      envelope: {
        createdAt,
        freshUntil,
        staleUntil,
        loadMs,
        epoch,
        tags,
        snapshot,
        negative: (flags & FLAG_NEGATIVE) !== 0,
        compressed: (flags & FLAG_COMPRESSED) !== 0,
        encrypted: (flags & FLAG_ENCRYPTED) !== 0,
        payload: value.subarray(o),
      },
    };
  } catch (error) {
    return {
      kind: 'corrupt',
      prefix,
      reason: error instanceof Error ? error.message : String(error),
    };
  }
}

/**
 * The hit path's read of an L2 value, in place (no string, no object): where the payload
 * of a format-2 data entry (`D` or `R`) without tags, filled under `epoch` (its UTF-8
 * bytes), starts; -1 for anything else: another state, tags, another epoch, format 1, or a
 * header `parseEntry` would not take as it is. Read those with `parseEntry`, which tells
 * them apart. The times, flags and marker are then read at the `AT_*` offsets.
 */
export function untaggedPayloadAt(value: Buffer | null, epoch: Uint8Array): number {
  if (value === null) return -1;
  const length = value.length;
  const marker = value[0];
  if (
    (marker !== MARK_DATA && marker !== MARK_REFRESHING) ||
    length < AT_SNAPSHOT + 4 ||
    value[AT_FORMAT] !== ENVELOPE_FORMAT
  )
    return -1;
  let o = AT_SNAPSHOT + 1 + (value[AT_SNAPSHOT] as number);
  const epochLength = epoch.length;
  if (value[o] !== epochLength || o + 1 + epochLength + 2 > length) return -1;
  o++;
  for (let i = 0; i < epochLength; i++) if (value[o + i] !== epoch[i]) return -1;
  o += epochLength;
  if (value[o] !== 0 || value[o + 1] !== 0) return -1;
  if (!(value.readDoubleBE(AT_FRESH_UNTIL) <= value.readDoubleBE(AT_STALE_UNTIL))) return -1;
  return o + 2;
}

const SLASH = 0x2f;
const AT = 0x40;

/** A lease or tombstone: 17 bytes, then only the fence's ASCII suffix (`/`, `:`, `!`). */
function isControl(value: Buffer): boolean {
  if (value.length < PREFIX_LENGTH) return false;
  if (value.length === PREFIX_LENGTH) return true;
  const next = value[PREFIX_LENGTH];
  return (next === SLASH || next === 0x3a || next === 0x21) && value.length < 512;
}

/** The fence deadline of a tombstone `T<lsn>/L<token>@<ms>...` (Redis clock, ms); 0 if none. */
function fenceDeadline(value: Buffer): number {
  const at = PREFIX_LENGTH + 1 + PREFIX_LENGTH;
  if (value[at] !== AT) return 0;
  let n = 0;
  for (let i = at + 1; i < value.length; i++) {
    const c = value[i] as number;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  return n;
}
