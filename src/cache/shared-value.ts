/**
 * Values walcache hands out are shared: every L1 hit returns the object L1 holds, and
 * callers coalesced on one load get the object it produced. So a value is made read-only
 * once, when it enters the engine (loaded, or decoded from L2), and never copied on a hit:
 *
 * - plain objects and arrays: `Object.freeze`, all the way down;
 * - Dates, Maps and Sets: frozen, and their prototype becomes a subclass whose mutators
 *   (`setTime`, `set`, `add`, `delete`, `clear`...) throw a TypeError. `instanceof Date`,
 *   `.constructor === Date`, JSON and MessagePack are unchanged; `assert.deepStrictEqual`
 *   against a plain Date does see the other prototype (use `deepEqual`, or compare times);
 * - byte arrays (Buffer, typed arrays, DataView) cannot be made read-only in JavaScript:
 *   a value holding one is marked `copyOnRead`, and each caller gets a copy of the byte
 *   arrays (and of the containers above them; the rest stays shared).
 *
 * The same walk measures the value (`bytes`: an estimate of its heap size), which is what
 * `l1.maxBytes` counts. An object that is already frozen is taken as read-only as it is
 * (and not walked again), which also stops the walk on a cycle.
 */
export interface SharedValue {
  /** Estimated heap bytes of the value (V8, 64-bit), for L1's size bound. */
  readonly bytes: number;
  /** It holds byte arrays: each caller must get `copyForCaller(value)`. */
  readonly copyOnRead: boolean;
}

const MAX_DEPTH = 64;

function refuse(this: unknown): never {
  throw new TypeError(
    'Cannot modify a value walcache returned: it is shared with other callers (copy it first)',
  );
}

function readonlyPrototype<T extends object>(base: { prototype: T }, mutators: readonly string[]) {
  const proto = Object.create(base.prototype) as T;
  for (const name of mutators) Object.defineProperty(proto, name, { value: refuse });
  // `value.constructor === Date` stays true, and the codec accepts it as the base class.
  Object.defineProperty(proto, 'constructor', { value: base });
  return Object.freeze(proto);
}

const DATE_MUTATORS = Object.getOwnPropertyNames(Date.prototype).filter((n) => n.startsWith('set'));
const READONLY_DATE = readonlyPrototype(Date, DATE_MUTATORS);
const READONLY_MAP = readonlyPrototype(Map, ['set', 'delete', 'clear']);
const READONLY_SET = readonlyPrototype(Set, ['add', 'delete', 'clear']);

/** Values found to hold byte arrays (for callers coalesced on one load). */
const withByteArrays = new WeakSet<object>();

/** Makes `value` read-only in place and measures it. */
export function share(value: unknown): SharedValue {
  const walk = { bytes: 0, byteArrays: false };
  visit(value, walk, 0);
  if (walk.byteArrays) withByteArrays.add(value as object);
  return { bytes: walk.bytes, copyOnRead: walk.byteArrays };
}

/** What a caller may have of a shared value: itself, or a copy of its byte arrays. */
export function forCaller<T>(value: T): T {
  return typeof value === 'object' && value !== null && withByteArrays.has(value)
    ? copyForCaller(value)
    : value;
}

function visit(value: unknown, walk: { bytes: number; byteArrays: boolean }, depth: number): void {
  switch (typeof value) {
    case 'string':
      walk.bytes += 16 + charBytes(value) * value.length;
      return;
    case 'number':
      walk.bytes += 8;
      return;
    case 'bigint':
      walk.bytes += 16 + 8 * Math.ceil(value.toString(16).length / 16);
      return;
    case 'object':
      break;
    default:
      return;
  }
  if (value === null) return;
  // Plain arrays and objects first (nearly every value), without the class checks.
  if (Array.isArray(value)) {
    if (Object.isFrozen(value) || depth > MAX_DEPTH) return;
    Object.freeze(value);
    walk.bytes += 32 + 8 * value.length;
    for (let i = 0; i < value.length; i++) visit(value[i], walk, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) {
    visitOther(value, walk, depth);
    return;
  }
  if (Object.isFrozen(value) || depth > MAX_DEPTH) return;
  Object.freeze(value);
  const record = value as Record<string, unknown>;
  walk.bytes += 32;
  for (const key in record) {
    walk.bytes += 16;
    visit(record[key], walk, depth + 1);
  }
}

function visitOther(
  value: object,
  walk: { bytes: number; byteArrays: boolean },
  depth: number,
): void {
  if (ArrayBuffer.isView(value)) {
    walk.bytes += 96 + value.byteLength;
    walk.byteArrays = true;
    return;
  }
  if (Object.isFrozen(value) || depth > MAX_DEPTH) return;
  if (value instanceof Date) {
    Object.setPrototypeOf(value, READONLY_DATE);
    Object.freeze(value);
    walk.bytes += 32;
    return;
  }
  if (value instanceof Map) {
    Object.setPrototypeOf(value, READONLY_MAP);
    Object.freeze(value);
    walk.bytes += 64 + 32 * value.size;
    for (const [k, v] of value) {
      visit(k, walk, depth + 1);
      visit(v, walk, depth + 1);
    }
    return;
  }
  if (value instanceof Set) {
    Object.setPrototypeOf(value, READONLY_SET);
    Object.freeze(value);
    walk.bytes += 64 + 16 * value.size;
    for (const v of value) visit(v, walk, depth + 1);
    return;
  }
  Object.freeze(value);
  const record = value as Record<string, unknown>;
  walk.bytes += 32;
  for (const key in record) {
    walk.bytes += 16;
    visit(record[key], walk, depth + 1);
  }
}

/** A character beyond Latin-1 (V8 then stores the string two bytes per character). */
const TWO_BYTE = /[^\x20-\xff\t\n\r]/;

/**
 * Bytes per character of a string as estimated: 2 when it matches TWO_BYTE, else 1.
 * Short strings (nearly all) are scanned by a loop, cheaper than the regular expression.
 */
function charBytes(s: string): number {
  if (s.length > 64) return TWO_BYTE.test(s) ? 2 : 1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d)) return 2;
  }
  return 1;
}

/**
 * A copy of a shared value for one caller: fresh byte arrays, and fresh (read-only)
 * containers on the way to them; everything else is the shared, read-only original.
 */
export function copyForCaller<T>(value: T): T {
  return copy(value, 0) as T;
}

function copy(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return value;
  if (ArrayBuffer.isView(value)) {
    if (Buffer.isBuffer(value)) return Buffer.from(value);
    if (value instanceof DataView)
      return new DataView(
        value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength),
      );
    return (value as unknown as { slice(): unknown }).slice();
  }
  if (value instanceof Date) return value;
  if (value instanceof Map) {
    let changed = false;
    const entries = [...value].map(([k, v]) => {
      const ck = copy(k, depth + 1);
      const cv = copy(v, depth + 1);
      if (ck !== k || cv !== v) changed = true;
      return [ck, cv] as const;
    });
    if (!changed) return value;
    const out = new Map(entries);
    share(out);
    return out;
  }
  if (value instanceof Set) {
    let changed = false;
    const members = [...value].map((v) => {
      const cv = copy(v, depth + 1);
      if (cv !== v) changed = true;
      return cv;
    });
    if (!changed) return value;
    const out = new Set(members);
    share(out);
    return out;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const c = copy(value[i], depth + 1);
      if (c !== value[i]) {
        out ??= [...value];
        out[i] = c;
      }
    }
    return out === undefined ? value : Object.freeze(out);
  }
  const record = value as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const key in record) {
    const c = copy(record[key], depth + 1);
    if (c !== record[key]) {
      out ??= { ...record };
      out[key] = c;
    }
  }
  return out === undefined ? value : Object.freeze(out);
}
