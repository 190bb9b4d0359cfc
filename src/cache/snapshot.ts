import { MAX_SNAPSHOT_BYTES } from './envelope.js';

/**
 * PostgreSQL snapshots as the fill fence uses them (docs/consistency.md, "fills fenced by
 * snapshots"): the text of `pg_current_snapshot()`, `xmin:xmax:xip,...` with 64-bit ids,
 * and the 32-bit ids of committed transactions the worker decodes. The Lua side of the
 * same rules is src/cache/lua/lib/fence.lua.
 */

const SNAPSHOT_TEXT = /^(\d+):(\d+):([\d,]*)$/;

/**
 * A PostgreSQL snapshot (`pg_current_snapshot()` text, `xmin:xmax:xip,...`) that fits an
 * envelope, or '' when the text is not one. A long one is narrowed to a snapshot that
 * shows fewer transactions visible (xmax lowered to an in-progress id, the ids above it
 * dropped): never more, so every proof made with it still holds.
 */
export function compactSnapshot(text: string, maxBytes = MAX_SNAPSHOT_BYTES): string {
  const match = SNAPSHOT_TEXT.exec(text);
  if (match === null) return '';
  if (text.length <= maxBytes) return text;
  const xmin = match[1] as string;
  const running = (match[3] as string)
    .split(',')
    .filter((x) => x !== '')
    .map((x) => BigInt(x))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Keep the lowest k running ids and make the (k+1)-th the new xmax.
  for (let k = running.length - 1; k >= 0; k--) {
    const candidate = `${xmin}:${running[k]}:${running.slice(0, k).join(',')}`;
    if (candidate.length <= maxBytes) return candidate;
  }
  return `${xmin}:${xmin}:`;
}

const TWO_32 = 4294967296n;
const TWO_31 = 2147483648n;

/**
 * Is every committed transaction of `xids` (32-bit ids) visible in `snapshot`? An empty
 * or unreadable snapshot proves nothing (false); an empty list is trivially visible.
 */
export function allVisible(snapshot: string, xids: readonly number[]): boolean {
  if (xids.length === 0) return true;
  const match = SNAPSHOT_TEXT.exec(snapshot);
  if (match === null) return false;
  const xmin = BigInt(match[1] as string);
  const xmax = BigInt(match[2] as string);
  const running = new Set((match[3] as string).split(',').filter((x) => x !== ''));
  const base = xmax - (xmax % TWO_32);
  for (const x of xids) {
    // The 64-bit id of a committed 32-bit xid: the one within 2^31 of xmax.
    let full = base + BigInt(x);
    if (full > xmax + TWO_31) full -= TWO_32;
    else if (full < xmax - TWO_31) full += TWO_32;
    if (!(full < xmin || (full < xmax && !running.has(full.toString())))) return false;
  }
  return true;
}
