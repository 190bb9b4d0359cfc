import { InvalidKeyError } from '../errors/typed-errors.js';
import { keyValue } from './redis-keys.js';

/**
 * The one source of truth for "the text of a value of type T" in keys and tags. The
 * reader (an id from a URL, a WHERE parameter, a row pg returned), the repository's own
 * writes and the worker (a row decoded from the WAL) all pass values through
 * {@link canonicalText} with the column's kind from the catalog, so `'042'`, `' 42'`,
 * `+42`, `42n` and the worker's `42` name one entry, and so do `1.1` and the `1.10` a
 * numeric column stored, an upper-case and a lower-case uuid, `ADA@X` and `ada@x` on
 * citext.
 *
 * Kinds and their canonical text:
 *
 * | kind          | PostgreSQL types              | canonical text                      |
 * |---------------|-------------------------------|-------------------------------------|
 * | `int2/4/8`    | smallint, integer, bigint     | decimal digits, no sign for >= 0     |
 * | `numeric`     | numeric, decimal              | shortest decimal (`1.10` -> `1.1`)   |
 * | `text`        | text, varchar, name           | the string                          |
 * | `bpchar`      | char(n)                       | without trailing spaces             |
 * | `citext`      | citext                        | lower case                          |
 * | `uuid`        | uuid                          | lower case, 8-4-4-4-12              |
 * | `bool`        | boolean                       | `true` / `false`                    |
 * | `date`        | date                          | `YYYY-MM-DD`                        |
 * | `timestamp`   | timestamp without time zone   | `YYYY-MM-DD HH:MM:SS.ffffff`        |
 * | `timestamptz` | timestamp with time zone      | UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`   |
 * | `enum`        | any enum                      | the label                           |
 * | `opaque`      | other scalar types            | as given (no canonical form known)  |
 *
 * Arrays, json/jsonb, interval, geometric and floating-point types cannot be keys or
 * tags (equality on them is structural or approximate): {@link columnKind} reports them
 * as `unsupported` and the config checks refuse them with the column named. Timestamps
 * can narrow tags but cannot be entity keys (a JavaScript Date keeps milliseconds, the
 * server microseconds, so a row pg returns cannot name its own entry).
 */
export type ColumnKind =
  | 'int2'
  | 'int4'
  | 'int8'
  | 'numeric'
  | 'text'
  | 'bpchar'
  | 'citext'
  | 'uuid'
  | 'bool'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'enum'
  | 'opaque'
  | { readonly unsupported: string };

/** A type as the catalog describes it (`pg_type` of the column, domains resolved). */
export interface CatalogType {
  /** `pg_type.typname` of the base type: `int4`, `citext`, `_int4`, ... */
  readonly name: string;
  /** `pg_type.typtype`: b base, e enum, c composite, r range, m multirange, p pseudo. */
  readonly typtype: string;
  /** `pg_type.typcategory`: A array, G geometric, T timespan, ... */
  readonly category: string;
}

const BY_NAME: Readonly<Record<string, ColumnKind>> = {
  int2: 'int2',
  int4: 'int4',
  int8: 'int8',
  numeric: 'numeric',
  text: 'text',
  varchar: 'text',
  name: 'text',
  bpchar: 'bpchar',
  citext: 'citext',
  uuid: 'uuid',
  bool: 'bool',
  date: 'date',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
  float4: { unsupported: 'a floating-point number (equality on it is approximate)' },
  float8: { unsupported: 'a floating-point number (equality on it is approximate)' },
  json: { unsupported: 'json (compared as a document, not as text)' },
  jsonb: { unsupported: 'jsonb (compared as a document, not as text)' },
  interval: { unsupported: "an interval ('1 day' equals '24 hours')" },
};

/** The kind of a column's type (see the table above). */
export function columnKind(type: CatalogType): ColumnKind {
  if (type.category === 'A') return { unsupported: 'an array' };
  if (type.typtype === 'e') return 'enum';
  const known = BY_NAME[type.name];
  if (known !== undefined) return known;
  if (type.category === 'G') return { unsupported: 'a geometric type' };
  if (type.typtype === 'c') return { unsupported: 'a composite type' };
  if (type.typtype === 'r' || type.typtype === 'm') return { unsupported: 'a range' };
  return 'opaque';
}

export function isUnsupported(kind: ColumnKind): kind is { readonly unsupported: string } {
  return typeof kind === 'object';
}

/** Why a column of this kind cannot be an entity key or unique column, or null if it can. */
export function unkeyableReason(kind: ColumnKind): string | null {
  if (isUnsupported(kind)) return kind.unsupported;
  if (kind === 'timestamp' || kind === 'timestamptz')
    return 'a timestamp (JavaScript dates keep milliseconds, PostgreSQL microseconds)';
  return null;
}

const INT_RANGE: Readonly<Record<'int2' | 'int4' | 'int8', readonly [bigint, bigint]>> = {
  int2: [-(2n ** 15n), 2n ** 15n - 1n],
  int4: [-(2n ** 31n), 2n ** 31n - 1n],
  int8: [-(2n ** 63n), 2n ** 63n - 1n],
};

const INT_TEXT = /^\s*[+-]?\d+\s*$/;
const DECIMAL_TEXT = /^\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$/;
const UUID_TEXT = /^\{?[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7}\}?$/;
const DATE_TEXT = /^\s*(\d{4})-(\d{2})-(\d{2})\s*$/;
const TIMESTAMP_TEXT =
  /^\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?\s*$/i;
const TRUE_WORDS = ['true', 'yes', 'on', '1'];
const FALSE_WORDS = ['false', 'no', 'off', '0'];

/**
 * The canonical text of `value` in a column of `kind`, as readers, writes and the worker
 * must all name it. Accepts what a caller may pass (strings in PostgreSQL's input forms,
 * numbers, bigints, booleans, Dates) and what pg returns for the type.
 *
 * @throws {InvalidKeyError} when a column of that kind cannot hold the value (PostgreSQL
 *   would refuse it), or the value has no canonical text (numeric NaN and infinities,
 *   a zone-less time for a timestamptz).
 */
export function canonicalText(kind: ColumnKind, value: unknown): string {
  if (value === null || value === undefined)
    throw new InvalidKeyError(value, 'a key needs a value');
  if (isUnsupported(kind)) throw new InvalidKeyError(value, `a column of ${kind.unsupported}`);
  switch (kind) {
    case 'int2':
    case 'int4':
    case 'int8':
      return canonicalInt(kind, value);
    case 'numeric':
      return canonicalNumeric(value);
    case 'text':
    case 'enum':
      return scalarText(kind, value);
    case 'bpchar':
      return scalarText(kind, value).replace(/ +$/, '');
    case 'citext':
      return scalarText(kind, value).toLowerCase();
    case 'uuid':
      return canonicalUuid(value);
    case 'bool':
      return canonicalBool(value);
    case 'date':
      return canonicalDate(value);
    case 'timestamp':
    case 'timestamptz':
      return canonicalTimestamp(kind, value);
    case 'opaque':
      return keyValue(value);
  }
}

function refuse(value: unknown, kind: string): never {
  const shown = typeof value === 'string' && value.length > 40 ? `${value.slice(0, 37)}...` : value;
  throw new InvalidKeyError(
    value,
    `${typeof shown === 'string' ? JSON.stringify(shown) : String(shown)} is not a valid ${kind}`,
  );
}

/** Integers already in canonical form that a double holds exactly (the common case: no BigInt). */
const SHORT_CANONICAL_INT = /^(?:0|-?[1-9]\d{0,14})$/;
const INT_RANGE_NUMBER: Readonly<Record<'int2' | 'int4' | 'int8', readonly [number, number]>> = {
  int2: [-(2 ** 15), 2 ** 15 - 1],
  int4: [-(2 ** 31), 2 ** 31 - 1],
  int8: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function canonicalInt(kind: 'int2' | 'int4' | 'int8', value: unknown): string {
  if (typeof value === 'string' && SHORT_CANONICAL_INT.test(value)) {
    const n = Number(value);
    const [min, max] = INT_RANGE_NUMBER[kind];
    if (n >= min && n <= max) return value;
  }
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
  else if (typeof value === 'string' && INT_TEXT.test(value)) n = BigInt(value.trim());
  else return refuse(value, `${kind} value`);
  const [min, max] = INT_RANGE[kind];
  if (n < min || n > max) return refuse(value, `${kind} value (out of range)`);
  return n.toString();
}

/** Shortest decimal text of a finite number: `01.100` -> `1.1`, `-0.0` -> `0`, `1e3` -> `1000`. */
function canonicalNumeric(value: unknown): string {
  let text: string;
  if (typeof value === 'number' && Number.isFinite(value)) text = String(value);
  else if (typeof value === 'bigint') text = value.toString();
  else if (typeof value === 'string') text = value;
  else return refuse(value, 'numeric value');
  const m = DECIMAL_TEXT.exec(text);
  if (m === null || (m[2] === '' && (m[3] ?? '') === ''))
    return refuse(value, 'finite numeric value');
  const [, sign, whole = '', fraction = '', exponent] = m;
  // All digits, and where the decimal point falls in them.
  const digits = whole + fraction;
  const point = whole.length + (exponent === undefined ? 0 : Number(exponent));
  if (!Number.isSafeInteger(point) || Math.abs(point) > 1_000_000)
    return refuse(value, 'numeric value (exponent out of range)');
  let intPart: string;
  let fracPart: string;
  if (point <= 0) {
    intPart = '';
    fracPart = '0'.repeat(-point) + digits;
  } else if (point >= digits.length) {
    intPart = digits + '0'.repeat(point - digits.length);
    fracPart = '';
  } else {
    intPart = digits.slice(0, point);
    fracPart = digits.slice(point);
  }
  intPart = intPart.replace(/^0+/, '');
  fracPart = fracPart.replace(/0+$/, '');
  const body = `${intPart || '0'}${fracPart ? `.${fracPart}` : ''}`;
  return sign === '-' && body !== '0' ? `-${body}` : body;
}

function scalarText(kind: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'bigint') return value.toString();
  return refuse(value, `${kind} value`);
}

function canonicalUuid(value: unknown): string {
  if (
    typeof value !== 'string' ||
    !UUID_TEXT.test(value.trim()) ||
    /^\{.*[^}]$|^[^{].*\}$/.test(value.trim())
  )
    return refuse(value, 'uuid');
  const hex = value.trim().replace(/[{}-]/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function canonicalBool(value: unknown): string {
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    // PostgreSQL takes any unambiguous prefix of the words ('t', 'ye', 'of'; not 'o').
    const matches = (words: string[]) =>
      word.length > 0 &&
      words.some((w) => w.startsWith(word) && (word.length > 1 || (w !== 'on' && w !== 'off')));
    const t = matches(TRUE_WORDS);
    const f = matches(FALSE_WORDS);
    if (t !== f) return String(t);
  }
  return refuse(value, 'boolean');
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  return d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/**
 * A date: `YYYY-MM-DD` text, or a Date. pg returns a date column as local midnight and
 * sends a Date parameter as local time, so a Date means its local calendar day.
 */
function canonicalDate(value: unknown): string {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) return refuse(value, 'date');
    return `${pad(value.getFullYear(), 4)}-${pad(value.getMonth() + 1)}-${pad(value.getDate())}`;
  }
  if (typeof value === 'string') {
    const m = DATE_TEXT.exec(value);
    if (m && validDate(Number(m[1]), Number(m[2]), Number(m[3]))) return `${m[1]}-${m[2]}-${m[3]}`;
  }
  return refuse(value, 'date (YYYY-MM-DD)');
}

/**
 * A timestamp. Without time zone: its wall-clock fields (a Date is read in local time, as
 * pg reads and writes them). With time zone: the UTC instant; text must carry its offset
 * (the server would read a zone-less one in its session time zone, unknown here).
 */
function canonicalTimestamp(kind: 'timestamp' | 'timestamptz', value: unknown): string {
  if (value instanceof Date) {
    const ms = value.getTime();
    if (Number.isNaN(ms)) return refuse(value, kind);
    if (kind === 'timestamptz') return utcText(ms, value.getUTCMilliseconds() * 1000);
    return `${pad(value.getFullYear(), 4)}-${pad(value.getMonth() + 1)}-${pad(value.getDate())} ${pad(value.getHours())}:${pad(value.getMinutes())}:${pad(value.getSeconds())}.${pad(value.getMilliseconds() * 1000, 6)}`;
  }
  if (typeof value !== 'string') return refuse(value, kind);
  const m = TIMESTAMP_TEXT.exec(value);
  if (m === null) return refuse(value, kind);
  const [, y, mo, d, h, mi, s, frac = '', zone] = m;
  if (
    !validDate(Number(y), Number(mo), Number(d)) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  )
    return refuse(value, kind);
  const micros = Number(frac.padEnd(6, '0'));
  if (kind === 'timestamp') {
    if (zone !== undefined) return refuse(value, `${kind} (it has no time zone)`);
    return `${y}-${mo}-${d} ${h}:${mi}:${s}.${pad(micros, 6)}`;
  }
  if (zone === undefined) return refuse(value, `${kind} (give its offset, e.g. +00)`);
  let offsetS = 0;
  if (zone.toUpperCase() !== 'Z') {
    const parts =
      zone
        .slice(1)
        .split(':')
        .join('')
        .match(/.{1,2}/g) ?? [];
    offsetS =
      (Number(parts[0] ?? 0) * 3600 + Number(parts[1] ?? 0) * 60 + Number(parts[2] ?? 0)) *
      (zone[0] === '-' ? -1 : 1);
  }
  const ms =
    Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) -
    offsetS * 1000;
  return utcText(ms, micros);
}

function utcText(ms: number, micros: number): string {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(micros, 6)}Z`;
}

/**
 * A canonical text back in the form pg returns for the kind (int2/int4 as numbers,
 * booleans, dates as local midnight; everything else, int8 and numeric included, as
 * text): for rows walcache builds itself, such as a write-behind row not in the database yet.
 */
export function pgValue(kind: ColumnKind | undefined, text: string): unknown {
  switch (kind) {
    case 'int2':
    case 'int4':
      return Number(text);
    case 'bool':
      return text === 'true';
    case 'date': {
      const [y, m, d] = text.split('-').map(Number);
      return new Date(y as number, (m as number) - 1, d);
    }
    default:
      return text;
  }
}
