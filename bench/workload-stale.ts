/**
 * The stale check of the workload benchmark: once the writes have settled, ids read
 * through a contender's cache and compared with the database.
 */
import type { Contender } from './workload-contenders.js';
import { aggregateQuery, userQuery } from './workload-database.js';

/** JSON with sorted keys: rows compared by value, whatever the column order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `${v}n`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, o[k]]),
      );
    }
    return v;
  });
}

export interface StaleReport {
  checkedIds: number;
  stale: number;
  staleUsers: number;
  staleAggregates: number;
  /** Reads of the check answered by the cache (what the check actually compared). */
  cachedReads: number;
  examples: string[];
}

/** Reads a contender answered from its cache so far (cache-manager: reads without a load). */
const cachedSoFar = (c: Contender, reads: number) =>
  c.name === 'cache-manager' ? reads - c.counters.loads : c.counters.l1 + c.counters.l2;

export async function staleCheck(c: Contender, ids: readonly number[]): Promise<StaleReport> {
  const before = cachedSoFar(c, 0);
  let staleUsers = 0;
  let staleAggregates = 0;
  const examples: string[] = [];
  let next = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= ids.length) return;
      const id = ids[i] as number;
      const [cu, ca] = [await c.readUser(id), await c.readAggregate(id)];
      const [du, da] = [await userQuery(id).executeTakeFirst(), await aggregateQuery(id).execute()];
      if (canonical(cu) !== canonical(du)) {
        staleUsers++;
        if (examples.length < 3)
          examples.push(`user ${id}: cached ${canonical(cu)} db ${canonical(du)}`);
      }
      if (canonical(ca) !== canonical(da)) {
        staleAggregates++;
        if (examples.length < 3)
          examples.push(`aggregate ${id}: cached ${canonical(ca)} db ${canonical(da)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, lane));
  return {
    checkedIds: ids.length,
    stale: staleUsers + staleAggregates,
    staleUsers,
    staleAggregates,
    cachedReads: cachedSoFar(c, 2 * ids.length) - before,
    examples,
  };
}
