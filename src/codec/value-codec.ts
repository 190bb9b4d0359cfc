import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { addExtension, Packr, Unpackr } from 'msgpackr';
import { SerializationError, ValueTooLargeError } from '../errors/typed-errors.js';

/**
 * Values are MessagePack (msgpackr): Date, BigInt, Buffer and typed arrays, Map, Set,
 * undefined, NaN and ±Infinity round-trip. Objects are plain MessagePack maps (records
 * decoded ~40% slower in the hit-path benchmark). msgpackr would then read a `Map` back
 * as an object, so a value holding Maps is copied with each Map boxed in an extension
 * type that decodes to a real Map; values without Maps (nearly all rows) are packed as
 * they are. msgpackr also quietly drops functions and flattens class instances, so
 * `encode` first walks the value and refuses what would not come back as it went in.
 */
class BoxedMap {
  constructor(readonly entries: Array<[unknown, unknown]>) {}
}
addExtension({
  Class: BoxedMap,
  type: 0x40,
  write: (boxed: BoxedMap) => boxed.entries,
  read: (entries: Array<[unknown, unknown]>) => new Map(entries),
});

export interface EncodedValue {
  readonly bytes: Buffer;
  readonly compressed: boolean;
}

const PACK_OPTIONS = { useRecords: false, moreTypes: true } as const;
const MAX_DEPTH = 64;

export class Codec {
  readonly #packr = new Packr(PACK_OPTIONS);
  readonly #unpackr = new Unpackr(PACK_OPTIONS);
  readonly #maxBytes: number;
  readonly #compressAbove: number;

  constructor(options: { maxValueBytes: number; compressThresholdBytes: number }) {
    this.#maxBytes = options.maxValueBytes;
    this.#compressAbove = options.compressThresholdBytes;
  }

  /**
   * @throws {SerializationError} for a value that cannot round-trip.
   * @throws {ValueTooLargeError} above `cache.maxValueBytes`, counted before compression:
   *   the bound is on what a reader inflates and holds, not on what Redis stores.
   */
  encode(key: string, value: unknown): EncodedValue {
    const walk = { maps: false };
    assertSerializable(key, value, '$', 0, new Set(), walk);
    let bytes: Buffer;
    try {
      bytes = this.#packr.pack(walk.maps ? boxMaps(value) : value);
    } catch (error) {
      throw new SerializationError(key, '$', 'could not be encoded', error);
    }
    if (bytes.length > this.#maxBytes)
      throw new ValueTooLargeError(key, bytes.length, this.#maxBytes);
    let compressed = false;
    if (this.#compressAbove > 0 && bytes.length > this.#compressAbove) {
      const deflated = deflateRawSync(bytes);
      if (deflated.length < bytes.length) {
        bytes = deflated;
        compressed = true;
      }
    }
    return { bytes, compressed };
  }

  /**
   * Never inflates or decodes more than `cache.maxValueBytes`: a larger payload (a
   * deflate bomb, a corrupted length, an entry from a process with a larger limit) throws.
   *
   * @throws whatever msgpackr or zlib throw on bad bytes; callers map that to a corrupt entry.
   */
  decode(bytes: Uint8Array, compressed: boolean): unknown {
    return this.decodeAt(bytes, 0, compressed);
  }

  /** `decode` of the payload at `bytes[start..]`, without a view of it (the L2 hit path). */
  decodeAt(bytes: Uint8Array, start: number, compressed: boolean): unknown {
    const length = bytes.length - start;
    if (length > this.#maxBytes)
      throw new RangeError(`payload of ${length} bytes is over cache.maxValueBytes`);
    if (compressed) {
      const view = start === 0 ? bytes : bytes.subarray(start);
      return this.#unpackr.unpack(inflateRawSync(view, { maxOutputLength: this.#maxBytes }));
    }
    return start === 0
      ? this.#unpackr.unpack(bytes)
      : this.#unpackr.unpack(bytes, { start, end: bytes.length });
  }
}

const ALLOWED_CLASSES = new Set<unknown>([Date, Map, Set, Array, Object]);

function assertSerializable(
  key: string,
  value: unknown,
  path: string,
  depth: number,
  seen: Set<object>,
  walk: { maps: boolean },
): void {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return;
    case 'function':
      throw new SerializationError(key, path, 'is a function');
    case 'symbol':
      throw new SerializationError(key, path, 'is a symbol');
  }
  if (value === null) return;
  const object = value as object;
  if (depth > MAX_DEPTH)
    throw new SerializationError(key, path, `is nested deeper than ${MAX_DEPTH} levels`);
  if (ArrayBuffer.isView(object)) return;
  if (seen.has(object)) throw new SerializationError(key, path, 'is a circular reference');
  const proto = Object.getPrototypeOf(object);
  if (proto !== null && !ALLOWED_CLASSES.has(proto.constructor)) {
    const name = typeof proto.constructor === 'function' ? proto.constructor.name : 'unknown';
    throw new SerializationError(
      key,
      path,
      `is an instance of ${name || 'an anonymous class'}; cache plain objects, arrays, Date, Map, Set, Buffer or typed arrays`,
    );
  }
  if (object instanceof Date) {
    if (Number.isNaN(object.getTime()))
      throw new SerializationError(key, path, 'is an invalid Date');
    return;
  }
  seen.add(object);
  if (object instanceof Map) {
    walk.maps = true;
    for (const [k, v] of object) {
      assertSerializable(key, k, `${path}<key>`, depth + 1, seen, walk);
      assertSerializable(
        key,
        v,
        `${path}.get(${typeof k === 'string' ? JSON.stringify(k) : String(k)})`,
        depth + 1,
        seen,
        walk,
      );
    }
  } else if (object instanceof Set) {
    for (const v of object) assertSerializable(key, v, `${path}<member>`, depth + 1, seen, walk);
  } else if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++)
      assertSerializable(key, object[i], `${path}[${i}]`, depth + 1, seen, walk);
  } else {
    if (Object.getOwnPropertySymbols(object).length > 0) {
      throw new SerializationError(key, path, 'has symbol-keyed properties');
    }
    for (const k in object) {
      assertSerializable(
        key,
        (object as Record<string, unknown>)[k],
        `${path}.${k}`,
        depth + 1,
        seen,
        walk,
      );
    }
  }
  seen.delete(object);
}

/** A copy of `value` with every Map boxed (only called when the walk saw one). */
function boxMaps(value: unknown): unknown {
  if (
    value === null ||
    typeof value !== 'object' ||
    ArrayBuffer.isView(value) ||
    value instanceof Date
  )
    return value;
  if (value instanceof Map)
    return new BoxedMap([...value].map(([k, v]) => [boxMaps(k), boxMaps(v)]));
  if (value instanceof Set) return new Set([...value].map(boxMaps));
  if (Array.isArray(value)) return value.map(boxMaps);
  const out: Record<string, unknown> = {};
  for (const k in value) out[k] = boxMaps((value as Record<string, unknown>)[k]);
  return out;
}
