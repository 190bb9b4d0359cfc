import { DecodeError } from '../errors/typed-errors.js';

/**
 * PostgreSQL log sequence numbers: `X/Y` text (two hex halves of a 64-bit position) as the
 * server, the decoders, the worker's heartbeat and write receipts carry them, and the
 * bigint walcache compares and stores (tombstones, rollback marks).
 */
const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Is `value` an LSN in `X/Y` form? */
export function isLsn(value: string): boolean {
  return LSN_PATTERN.test(value);
}

/**
 * Canonical 'X/Y' form of an LSN, as the server prints it (uppercase hex, no padding), so
 * LSNs from both plugins compare and log alike. pg-logical-replication pads to 8 digits.
 * @throws DecodeError when `lsn` is not an LSN.
 */
export function normalizeLsn(lsn: string, plugin = 'lsn'): string {
  return formatLsn(parseLsn(lsn, plugin));
}

/**
 * The position of an `X/Y` LSN.
 * @throws DecodeError when `lsn` is not an LSN.
 */
export function parseLsn(lsn: string, plugin = 'lsn'): bigint {
  const m = LSN_PATTERN.exec(lsn);
  if (m === null) throw new DecodeError(plugin, `not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Orders two LSNs numerically (string order is wrong: '0/A' > '0/10'). Negative when a < b. */
export function compareLsn(a: string, b: string): number {
  const x = parseLsn(a);
  const y = parseLsn(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The position of an LSN already known to be well formed (read back from walcache's own
 * keys): no check; a bare hex number (no slash) is the position itself.
 */
export function lsnToBigInt(lsn: string): bigint {
  const slash = lsn.indexOf('/');
  if (slash < 0) return BigInt(`0x${lsn || '0'}`);
  return (BigInt(`0x${lsn.slice(0, slash)}`) << 32n) | BigInt(`0x${lsn.slice(slash + 1)}`);
}

/** `X/Y` form of an LSN held as a bigint. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
