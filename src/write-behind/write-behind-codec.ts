import { Codec } from '../codec/value-codec.js';
import { CorruptEntryError } from '../errors/typed-errors.js';
import type { PendingRecord, PendingWrite } from './write-behind-record.js';

type Row = Record<string, unknown>;

/**
 * The layout of a pending record in Redis, a hash: one field per accepted write (its
 * sequence number, decimal -> a flag byte, 1 when deflated, then the patch encoded with
 * the cache's codec: Dates, bigints, Buffers, JSON round-trip), `x:<xid>` per fence (->
 * the last sequence number it covers), `a` the failed attempts. The Lua scripts rely on
 * it: a field starting with a digit is a write.
 */
export class WriteBehindCodec {
  readonly #codec: Codec;

  constructor(options: { maxValueBytes: number; compressThresholdBytes: number }) {
    this.#codec = new Codec(options);
  }

  /**
   * @throws {SerializationError | ValueTooLargeError} for a patch that cannot be stored.
   */
  encode(key: string, patch: Row): Buffer {
    const { bytes, compressed } = this.#codec.encode(key, patch);
    return Buffer.concat([Buffer.from([compressed ? 1 : 0]), bytes]);
  }

  /** The record a hash holds; undefined when it holds no write. */
  decodeRecord(
    key: string,
    hash: Record<string, Buffer>,
    since: number,
  ): PendingRecord | undefined {
    const writes = this.decodeWrites(key, hash);
    if (writes.length === 0) return undefined;
    const fences = [];
    for (const [field, raw] of Object.entries(hash))
      if (field.startsWith(FENCE))
        fences.push({ xid: field.slice(FENCE.length), seq: Number(raw) });
    return { key, writes, fences, attempts: Number(hash[ATTEMPTS]?.toString() ?? 0), since };
  }

  /** The writes of a hash, in sequence order. @throws {CorruptEntryError} for one that does not decode. */
  decodeWrites(key: string, hash: Record<string, Buffer>): PendingWrite[] {
    const writes: PendingWrite[] = [];
    for (const [field, raw] of Object.entries(hash)) {
      const code = field.charCodeAt(0);
      if (code < 48 || code > 57) continue; // not a write: `a`, `x:<xid>`
      let patch: unknown;
      try {
        patch = this.#codec.decode(raw.subarray(1), raw[0] === 1);
      } catch (error) {
        throw new CorruptEntryError(key, `write-behind write ${field} does not decode`, error);
      }
      writes.push({ seq: Number(field), patch: patch as Row });
    }
    return writes.sort((a, b) => a.seq - b.seq);
  }
}

const FENCE = 'x:';
/** The field of the failed attempts. */
export const ATTEMPTS = 'a';

/** The field a fence takes in a record. */
export function fenceField(xid: string): string {
  return `${FENCE}${xid}`;
}
