/**
 * wal2json format 2 -> DecodedRecord. One wal2json message is one row (or B/C/T/M record).
 */

import pg from 'pg';
import type { Wal2JsonPluginOptions } from 'pg-logical-replication';
import { DecodeError } from '../errors/typed-errors.js';
import type { ChangeEvent, ChangeOp, DecodedRecord } from '../model/change-event.js';
import { normalizeLsn } from '../protocol/lsn.js';

/**
 * The wal2json options walcache needs, in pg-logical-replication's form (pass a copy to
 * `new Wal2JsonPlugin({ ...WAL2JSON_OPTIONS })`). All exist in wal2json 2.5.
 * `numeric-data-types-as-string` does not (2.5 rejects it as an unknown option), so int8
 * and numeric arrive as bare JSON numbers: read the text with {@link parseWal2json}.
 */
export const WAL2JSON_OPTIONS = Object.freeze({
  formatVersion: '2',
  includeXids: true,
  includeTimestamp: true,
  includeLsn: true,
  includePk: true,
  includeTypeOids: true,
  includeSchemas: true,
  includeTransaction: true,
} satisfies Wal2JsonPluginOptions);

/**
 * {@link WAL2JSON_OPTIONS} as the name/value list the SQL interface takes
 * (`pg_logical_slot_get_changes(slot, NULL, NULL, VARIADIC $1::text[])`).
 */
export function wal2jsonSqlOptions(): string[] {
  return Object.entries(WAL2JSON_OPTIONS).flatMap(([name, value]) => [
    name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`),
    typeof value === 'boolean' ? (value ? 'on' : 'off') : value,
  ]);
}

/**
 * The value of wal2json's `add-tables` option for `schema.table` names: only these
 * tables' rows are decoded and sent (a transaction that touched none of them still
 * arrives, as an empty begin/commit pair, which keeps the position moving). Without it
 * wal2json decodes every table of the database, and a busy unrelated table costs the
 * worker CPU and lag. wal2json splits the list on `,` and `.`, trims white space and reads
 * `*` as a wildcard, so those, quotes and backslashes are escaped with a backslash (which
 * wal2json removes). An empty list would mean "every table", so it is refused.
 */
export function wal2jsonAddTables(tables: Iterable<string>): string {
  const quote = (name: string) => name.replace(/[\\,.*\s']/g, (c) => `\\${c}`);
  const list: string[] = [];
  for (const qualified of tables) {
    const dot = qualified.indexOf('.');
    if (dot <= 0 || dot === qualified.length - 1)
      throw new TypeError(`Expected a \`schema.table\` name, got \`${qualified}\``);
    list.push(`${quote(qualified.slice(0, dot))}.${quote(qualified.slice(dot + 1))}`);
  }
  if (list.length === 0) throw new TypeError('Expected at least one table to follow');
  return list.join(',');
}

const NUMBER_TOKEN = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const utf8 = new TextDecoder();

/**
 * Parses one wal2json message without losing precision: every bare JSON number is kept as
 * the exact text the server printed (int8 past 2^53, numeric `12.50`), as a string.
 * `JSON.parse` (what pg-logical-replication's Wal2JsonPlugin does) would round them, and
 * a rounded key evicts the wrong entry.
 * @throws DecodeError when the text is not JSON.
 */
export function parseWal2json(input: string | Uint8Array): unknown {
  const text = typeof input === 'string' ? input : utf8.decode(input);
  let out = '';
  let last = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i = endOfString(text, i);
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      while (i < text.length && /[-+.eE0-9]/.test(text[i] ?? '')) i++;
      const token = text.slice(start, i);
      if (!NUMBER_TOKEN.test(token)) throw new DecodeError('wal2json', `bad number ${token}`);
      out += `${text.slice(last, start)}"${token}"`;
      last = i;
    } else {
      i++;
    }
  }
  try {
    return JSON.parse(out + text.slice(last));
  } catch (cause) {
    throw new DecodeError('wal2json', 'not JSON', { cause });
  }
}

const EXACT_INTEGER_OIDS = new Set([20, 21, 23, 26]);

/**
 * {@link parseWal2json}, fast: plain `JSON.parse` (about 3x quicker), kept only when every
 * bare number in it is an integer column's value that JSON.parse represents exactly;
 * otherwise (int8 past 2^53, numeric, floats) the exact parser reads it again. Decoded
 * records are the same either way.
 */
export function parseWal2jsonFast(input: string | Uint8Array): unknown {
  const text = typeof input === 'string' ? input : toText(input);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return parseWal2json(text); // throws the DecodeError
  }
  if (parsed !== null && typeof parsed === 'object') {
    const m = parsed as Rec;
    if (!exactNumbers(m.columns) || !exactNumbers(m.identity)) return parseWal2json(text);
  }
  return parsed;
}

/** Buffer#toString is several times faster than TextDecoder on small messages (Node 20). */
function toText(bytes: Uint8Array): string {
  return (
    Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  ).toString('utf8');
}

function exactNumbers(list: unknown): boolean {
  if (!Array.isArray(list)) return true;
  for (const c of list) {
    const value = (c as Rec | null)?.value;
    if (
      typeof value === 'number' &&
      !(Number.isSafeInteger(value) && EXACT_INTEGER_OIDS.has((c as Rec).typeoid as number))
    ) {
      return false;
    }
  }
  return true;
}

/** Index just past the string literal opening at `open`; escaped quotes do not end it. */
function endOfString(text: string, open: number): number {
  let q = text.indexOf('"', open + 1);
  while (q !== -1) {
    let slashes = 0;
    while (text.charCodeAt(q - 1 - slashes) === 0x5c) slashes++;
    if (slashes % 2 === 0) return q + 1;
    q = text.indexOf('"', q + 1);
  }
  return text.length;
}

/** Knobs of {@link decodeWal2json}; both optional. */
export interface Wal2jsonDecodeOptions {
  /**
   * Column names of a table. wal2json leaves unchanged TOAST columns out without naming
   * them; with the table's columns the decoder can list them in `unchangedToast`.
   */
  readonly columnsOf?: (schema: string, table: string) => readonly string[] | undefined;
  /**
   * Text parser per type oid. Defaults to the pg client's own (`pg.types`), so a value
   * equals what a query returns (int8 as string, int4 as number) and keys built from
   * either agree.
   */
  readonly getTypeParser?: (oid: number) => (text: string) => unknown;
  /**
   * Columns to decode, per table; undefined (the default) decodes every column. The
   * worker asks only for what its mapping reads (keys, unique and tag columns): most of a
   * row's cost is converting values it would throw away. With it, rows, `oldRowIsFull`
   * and `unchangedToast` speak only of those columns.
   */
  readonly columnsWanted?: (schema: string, table: string) => ReadonlySet<string> | undefined;
}

type Rec = Record<string, unknown>;
const OPS: Readonly<Record<string, ChangeOp>> = { I: 'I', U: 'U', D: 'D', T: 'T' };

/**
 * Decodes one wal2json format-2 message (use {@link parseWal2json} on the raw text).
 * Pure: same message, same record.
 * @throws DecodeError on anything that is not a well-formed format-2 message.
 */
export function decodeWal2json(
  message: unknown,
  options: Wal2jsonDecodeOptions = {},
): DecodedRecord {
  const m = asObject(message, 'message');
  const action = field(m, 'action', 'string');
  switch (action) {
    case 'B':
      return {
        kind: 'begin',
        xid: int(m, 'xid'),
        lsn: m.lsn === undefined ? null : lsn(m, 'lsn'),
        commitTime: m.timestamp === undefined ? null : timestamp(m),
      };
    case 'C':
      // nextlsn is the end of the commit record: acknowledging `lsn` (its start) would
      // make the server send the transaction again after a restart.
      if (m.nextlsn === undefined) fail('commit without nextlsn (include-lsn is off)');
      return {
        kind: 'commit',
        xid: m.xid === undefined ? null : int(m, 'xid'),
        lsn: lsn(m, 'nextlsn'),
        commitTime: timestamp(m),
      };
    case 'M':
      return {
        kind: 'message',
        message: {
          transactional: field(m, 'transactional', 'boolean'),
          prefix: field(m, 'prefix', 'string'),
          content: field(m, 'content', 'string'),
          lsn: m.lsn === undefined ? null : lsn(m, 'lsn'),
        },
      };
    default: {
      const op = OPS[action];
      if (op === undefined) return fail(`unknown action ${JSON.stringify(action)}`);
      return { kind: 'change', event: decodeChange(m, op, options) };
    }
  }
}

interface Column {
  readonly name: string;
  readonly value: unknown;
  readonly oid: number | null;
  readonly type: string | null;
}

function decodeChange(m: Rec, op: ChangeOp, options: Wal2jsonDecodeOptions): ChangeEvent {
  const schema = field(m, 'schema', 'string');
  const table = field(m, 'table', 'string');
  const pk = m.pk === undefined ? null : columnNames(m, 'pk');
  const wanted = options.columnsWanted?.(schema, table);
  const newCols = op === 'I' || op === 'U' ? columns(m, 'columns', wanted) : null;
  const oldCols =
    (op === 'U' || op === 'D') && m.identity !== undefined ? columns(m, 'identity', wanted) : null;
  const parser = options.getTypeParser ?? defaultParser;
  const newRow = newCols === null ? null : toRow(newCols, parser);
  const oldRow = oldCols === null ? null : toRow(oldCols, parser);
  const catalog = options.columnsOf?.(schema, table);
  // wal2json does not say which identity the table has; infer FULL from what is present.
  // Left false when unsure: a DELETE under USING INDEX on a table that also has a primary
  // key looks like FULL, so that case is only trusted with a catalog.
  // (Loops, not sets: a row image holds a handful of decoded columns.)
  let oldRowIsFull = false;
  if (oldCols !== null && oldCols.length > 0) {
    if (catalog !== undefined) {
      oldRowIsFull = true;
      for (const name of catalog) if (!hasColumn(oldCols, name)) oldRowIsFull = false;
    } else if (newCols !== null) {
      oldRowIsFull = true;
      for (const c of newCols) if (!hasColumn(oldCols, c.name)) oldRowIsFull = false;
    } else if (pk !== null && pk.length > 0) {
      for (const c of oldCols) if (!pk.includes(c.name)) oldRowIsFull = true;
    }
  }
  const unchangedToast: string[] = [];
  if (op === 'U' && newRow !== null) {
    // Under FULL the old image holds every column, so a column missing from the new image
    // is known: it did not change. Fill it in, as pg-logical-replication does for pgoutput.
    const names = catalog ?? (oldRowIsFull && oldCols !== null ? uniqueNames(oldCols) : []);
    for (const name of names) {
      if (Object.hasOwn(newRow, name)) continue;
      if (oldRowIsFull && oldRow !== null && Object.hasOwn(oldRow, name))
        newRow[name] = oldRow[name];
      else unchangedToast.push(name);
    }
  }
  return { schema, table, op, newRow, oldRow, oldRowIsFull, unchangedToast, keyColumns: pk };
}

function hasColumn(cols: readonly Column[], name: string): boolean {
  for (const c of cols) if (c.name === name) return true;
  return false;
}

/** Names in first-seen order, each once (what `[...new Set(names)]` gives). */
function uniqueNames(cols: readonly Column[]): string[] {
  const out: string[] = [];
  for (const c of cols) if (!out.includes(c.name)) out.push(c.name);
  return out;
}

function columns(m: Rec, key: string, wanted?: ReadonlySet<string>): Column[] {
  const list = m[key];
  if (!Array.isArray(list)) return fail(`"${key}" is not an array`);
  const out: Column[] = [];
  for (let i = 0; i < list.length; i++) {
    const c = asObject(list[i], key, i);
    const name = field(c, 'name', 'string');
    if (wanted !== undefined && !wanted.has(name)) continue;
    out.push({
      name,
      value: c.value,
      oid: c.typeoid === undefined ? null : int(c, 'typeoid'),
      type: c.type === undefined ? null : field(c, 'type', 'string'),
    });
  }
  return out;
}

/** `columns(m, key).map((c) => c.name)`, with the same checks, without the objects. */
function columnNames(m: Rec, key: string): string[] {
  const list = m[key];
  if (!Array.isArray(list)) return fail(`"${key}" is not an array`);
  const out: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const c = asObject(list[i], key, i);
    out.push(field(c, 'name', 'string'));
    if (c.typeoid !== undefined) int(c, 'typeoid');
    if (c.type !== undefined) field(c, 'type', 'string');
  }
  return out;
}

function toRow(cols: readonly Column[], parser: (oid: number) => (text: string) => unknown): Rec {
  const row: Rec = {};
  for (const c of cols) {
    const value = convert(c, parser);
    // A column named __proto__ becomes a property, not the prototype (as fromEntries does).
    if (c.name === '__proto__')
      Object.defineProperty(row, c.name, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    else row[c.name] = value;
  }
  return row;
}

function convert(c: Column, parser: (oid: number) => (text: string) => unknown): unknown {
  if (c.value === null || typeof c.value === 'boolean') return c.value;
  let text: string;
  if (typeof c.value === 'string') text = c.value;
  else if (typeof c.value === 'number') {
    // Only reachable when the caller used JSON.parse: a rounded integer must not pass.
    if (Number.isInteger(c.value) && !Number.isSafeInteger(c.value)) {
      fail(`column ${c.name}: ${c.value} lost precision (read with parseWal2json)`);
    }
    text = String(c.value);
  } else return fail(`column ${c.name}: unexpected value of type ${typeof c.value}`);
  const oid = c.oid ?? oidOfTypeName(c.type);
  return oid === null ? text : parser(oid)(text);
}

const defaultParser = (oid: number): ((text: string) => unknown) =>
  pg.types.getTypeParser(oid, 'text');

// For messages without include-type-oids: the types whose JS form differs from the text.
const TYPE_OIDS: Readonly<Record<string, number>> = {
  boolean: 16,
  bigint: 20,
  smallint: 21,
  integer: 23,
  oid: 26,
  json: 114,
  real: 700,
  'double precision': 701,
  date: 1082,
  'timestamp without time zone': 1114,
  'timestamp with time zone': 1184,
  numeric: 1700,
  jsonb: 3802,
};

function oidOfTypeName(type: string | null): number | null {
  if (type === null) return null;
  return TYPE_OIDS[type.replace(/\(.*\)/, '')] ?? null;
}

/** `what`, or `what[index]` when an index is given (the text is built only on failure). */
function asObject(value: unknown, what: string, index?: number): Rec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(`${index === undefined ? what : `${what}[${index}]`} is not an object`);
  }
  return value as Rec;
}

function field<T extends 'string' | 'boolean'>(
  o: Rec,
  key: string,
  type: T,
): T extends 'string' ? string : boolean {
  const v = o[key];
  if (typeof v !== type) fail(`"${key}" is ${v === undefined ? 'missing' : `not a ${type}`}`);
  return v as T extends 'string' ? string : boolean;
}

/** Integers arrive as numbers (JSON.parse) or numeric strings (parseWal2json). */
function int(o: Rec, key: string): number {
  const v = o[key];
  const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    return fail(`"${key}" is ${v === undefined ? 'missing' : 'not an integer'}`);
  }
  return n;
}

function lsn(o: Rec, key: string): string {
  return normalizeLsn(field(o, key, 'string'), 'wal2json');
}

// The walsender prints timestamptz in ISO style: '2026-11-23 12:08:30.69127+00'.
const TIMESTAMP =
  /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/;

function timestamp(o: Rec): Date {
  const text = field(o, 'timestamp', 'string');
  const p = TIMESTAMP.exec(text);
  if (p === null) return fail(`unreadable timestamp ${JSON.stringify(text)}`);
  const n = (i: number): number => Number(p[i] ?? 0);
  const ms = Math.floor(Number(`0.${p[7] ?? '0'}`) * 1000);
  const offsetSec = (p[8] === '-' ? -1 : 1) * (n(9) * 3600 + n(10) * 60 + n(11));
  return new Date(Date.UTC(n(1), n(2) - 1, n(3), n(4), n(5), n(6), ms) - offsetSec * 1000);
}

function fail(reason: string): never {
  throw new DecodeError('wal2json', reason);
}
