import type { z } from 'zod';
import { configSchema } from './schema.js';

/**
 * "Did you mean": the option a mistyped one most likely stands for, from the schema's
 * own shape. `cache.tllMs` -> `cache.ttlMs` (edit distance at most 2, or a case
 * difference), `redisUrl` -> `redis.url` (a section name glued to one of its options).
 */
export function suggestOption(parentPath: readonly string[], unknown: string): string | null {
  const found = suggestOptions(parentPath, unknown);
  return found.length === 1 ? (found[0] as string) : null;
}

/**
 * {@link suggestOption}, or the few options equally likely: an option of a section put
 * beside it may belong to several (`ttlMs`: `cache.ttlMs` or `lease.ttlMs`).
 */
export function suggestOptions(parentPath: readonly string[], unknown: string): string[] {
  const one = suggestOne(parentPath, unknown);
  if (!Array.isArray(one)) return one === null ? [] : [one];
  return one;
}

function suggestOne(parentPath: readonly string[], unknown: string): string | string[] | null {
  const shape = objectShapeAt(configSchema, parentPath);
  if (shape === null) return null;
  const known = Object.keys(shape);
  const prefix = parentPath.length > 0 ? `${parentPath.join('.')}.` : '';
  const lower = unknown.toLowerCase();
  let best: string | null = null;
  let bestDistance = 3;
  for (const name of known) {
    const distance = name.toLowerCase() === lower ? 0 : editDistance(name, unknown);
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  if (best !== null && bestDistance <= Math.min(2, Math.floor(unknown.length / 3))) {
    return prefix + best;
  }
  for (const section of known) {
    if (!lower.startsWith(section.toLowerCase())) continue;
    const inner = objectShapeAt(shape[section] as z.ZodType, []);
    const rest = lower.slice(section.length);
    const option = inner && Object.keys(inner).find((o) => o.toLowerCase() === rest);
    if (option) return `${prefix}${section}.${option}`;
  }
  // An option of a section put beside it (`ttlMs` -> `cache.ttlMs`, `slot` ->
  // `worker.slot`), then one name inside the other (`ttl` -> `ttlMs`, `threshold` ->
  // `failureThreshold`, `slotName` -> `slot`), here then one level down: each only when
  // exactly one option fits.
  const moved: string[] = [];
  const movedInside: string[] = [];
  for (const section of known) {
    const inner = objectShapeAt(shape[section] as z.ZodType, []);
    if (inner === null) continue;
    for (const option of Object.keys(inner)) {
      if (option.toLowerCase() === lower) moved.push(`${section}.${option}`);
      else if (overlaps(option, lower)) movedInside.push(`${section}.${option}`);
    }
  }
  if (moved.length > 0) return moved.map((m) => prefix + m);
  const inside = known.filter((name) => overlaps(name, lower));
  if (inside.length === 1) return prefix + (inside[0] as string);
  return inside.length === 0 && movedInside.length === 1
    ? prefix + (movedInside[0] as string)
    : null;
}

/** Does one name start or end with the other (case aside), the shorter being 3+ letters? */
function overlaps(name: string, lower: string): boolean {
  const n = name.toLowerCase();
  const [short, long] = n.length <= lower.length ? [n, lower] : [lower, n];
  return short.length >= 3 && (long.startsWith(short) || long.endsWith(short));
}

type Shape = Record<string, unknown>;

/** The shape of the object schema at `path` (through defaults, optionals and records). */
function objectShapeAt(schema: z.ZodType, path: readonly string[]): Shape | null {
  // biome-ignore lint/suspicious/noExplicitAny: zod's definitions, read only for their shape
  let def: any = (schema as any)._zod?.def;
  let i = 0;
  while (def) {
    if (def.type === 'object') {
      if (i === path.length) return def.shape as Shape;
      def = def.shape[path[i++] as string]?._zod?.def;
    } else if (def.type === 'union' && i === path.length) {
      // Every branch's options (`schedule`: `every` or `cron`).
      const shapes = (def.options as Array<{ _zod?: { def?: { type?: string; shape?: Shape } } }>)
        .map((o) => o._zod?.def)
        .filter((d) => d?.type === 'object')
        .map((d) => d?.shape as Shape);
      return shapes.length > 0 ? Object.assign({}, ...shapes) : null;
    } else if (def.type === 'record') {
      if (i === path.length) return null;
      i++;
      def = def.valueType?._zod?.def;
    } else if (def.innerType) {
      def = def.innerType._zod?.def;
    } else {
      return null;
    }
  }
  return null;
}

/** Levenshtein distance (both strings are short option names). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/**
 * "Did you mean" among names known only at run time (entities, columns, tables): the
 * closest by edit distance, two swapped letters counting as one edit (`emial` ->
 * `email`), at most 2 and at most a third of its length; or the same name in another case.
 */
export function closestName(known: Iterable<string>, unknown: string): string | null {
  const lower = unknown.toLowerCase();
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const name of known) {
    const distance = name.toLowerCase() === lower ? 0 : swapDistance(name, unknown);
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best !== null && bestDistance <= Math.min(2, Math.floor(unknown.length / 3)) ? best : null;
}

/** Optimal string alignment distance: Levenshtein, plus a swap of two adjacent letters as one edit. */
function swapDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] as number[];
    const above = d[i - 1] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        (above[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (above[j - 1] as number) + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, ((d[i - 2] as number[])[j - 2] as number) + 1);
      row[j] = best;
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}
