/**
 * Compares a cached row with the row read from PostgreSQL now, column by column.
 *
 * The cached row was loaded by an application whose pg type parsers may differ from
 * ours (int8 as a number or a bigint instead of a string, timestamps as strings), so
 * values are compared by what they mean, not by their JavaScript type: numbers, bigints
 * and numeric strings by their decimal text, dates by their instant, byte arrays by
 * their bytes, arrays and objects member by member.
 */
export function differingColumns(
  cached: Record<string, unknown>,
  row: Record<string, unknown>,
): string[] {
  const out: string[] = [];
  if (cached === null || typeof cached !== 'object') return Object.keys(row);
  for (const column of new Set([...Object.keys(cached), ...Object.keys(row)]))
    if (!sameValue(cached[column], row[column])) out.push(column);
  return out;
}

export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (a instanceof Date || b instanceof Date) return instant(a) === instant(b);
  if (isScalar(a) && isScalar(b)) return String(a) === String(b);
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b))
    return bytes(a).equals(bytes(b as ArrayBufferView));
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => sameValue(v, b[i]));
  if (a instanceof Map && b instanceof Map)
    return a.size === b.size && [...a].every(([k, v]) => b.has(k) && sameValue(v, b.get(k)));
  if (a instanceof Set && b instanceof Set)
    return a.size === b.size && [...a].every((v) => b.has(v));
  if (typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b))
    return (
      differingColumns(a as Record<string, unknown>, b as Record<string, unknown>).length === 0
    );
  return false;
}

function isScalar(v: unknown): v is string | number | bigint | boolean {
  return (
    typeof v === 'string' ||
    typeof v === 'number' ||
    typeof v === 'bigint' ||
    typeof v === 'boolean'
  );
}

function instant(v: unknown): number {
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'string' || typeof v === 'number') return new Date(v).getTime();
  return Number.NaN;
}

function bytes(v: ArrayBufferView): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}
