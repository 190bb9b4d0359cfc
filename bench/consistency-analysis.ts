/**
 * The arithmetic of bench/consistency.ts, Polaris-style: a read is consistent within X ms
 * when every write acknowledged more than X ms before the read started is visible in it.
 *
 * Writes of one row are serialized (one writer per row), so its versions are acknowledged
 * in order: `acks.get(id)[v]` is when version v of row `id` was acknowledged. A read that
 * started at t and returned version v missed the writes after v; its staleness is how
 * long before t the first of them (v + 1) was acknowledged, or 0 if none was yet.
 */

/** Staleness thresholds reported, in ms. */
export const THRESHOLDS = [0, 10, 100, 1000] as const;

export interface Reads {
  readonly t: readonly number[];
  readonly id: readonly number[];
  /** Version returned; -1: the read failed; -2: no row. */
  readonly v: readonly number[];
  /** Duration of each read (ms). */
  readonly ms: readonly number[];
  /** 1 when the reader's L1 answered. */
  readonly l1: readonly number[];
}

export interface Window {
  readonly name: string;
  readonly from: number;
  readonly to: number;
}

export interface WindowStats {
  reads: number;
  errors: number;
  /** Reads more than X ms stale, per threshold. */
  staleBeyond: number[];
  /** Of those, the ones L1 answered (the rest came from L2 or the database). */
  staleBeyondFromL1: number[];
  l1Reads: number;
  worstStalenessMs: number;
  maxReadMs: number;
}

/** How stale one read was (ms); 0 when it saw every write acknowledged before it began. */
export function staleness(
  acks: ReadonlyMap<number, readonly number[]>,
  t: number,
  id: number,
  v: number,
): number {
  const times = acks.get(id);
  if (times === undefined) return 0;
  // The next version's acknowledgement may be missing (a write that failed to answer but
  // committed, during a PostgreSQL restart): the first known later one bounds it.
  for (let u = v + 1; u < times.length; u++) {
    const at = times[u];
    if (at === undefined) continue;
    return at < t ? t - at : 0;
  }
  return 0;
}

function emptyStats(): WindowStats {
  return {
    reads: 0,
    errors: 0,
    staleBeyond: THRESHOLDS.map(() => 0),
    staleBeyondFromL1: THRESHOLDS.map(() => 0),
    l1Reads: 0,
    worstStalenessMs: 0,
    maxReadMs: 0,
  };
}

/**
 * Per window (a read belongs to the first window its start falls in, else to `steady`),
 * and `all` over every read.
 */
export function analyze(
  reads: Reads,
  acks: ReadonlyMap<number, readonly number[]>,
  windows: readonly Window[] = [],
): Record<string, WindowStats> {
  const out: Record<string, WindowStats> = { all: emptyStats() };
  for (let i = 0; i < reads.t.length; i++) {
    const t = reads.t[i] as number;
    const name = windows.find((w) => t >= w.from && t < w.to)?.name ?? 'steady';
    out[name] ??= emptyStats();
    for (const s of [out.all as WindowStats, out[name] as WindowStats]) {
      s.reads++;
      s.maxReadMs = Math.max(s.maxReadMs, reads.ms[i] as number);
      const v = reads.v[i] as number;
      if (v < 0) {
        s.errors++;
        continue;
      }
      const fromL1 = reads.l1[i] === 1;
      if (fromL1) s.l1Reads++;
      const stale = staleness(acks, t, reads.id[i] as number, v);
      if (stale > s.worstStalenessMs) s.worstStalenessMs = stale;
      THRESHOLDS.forEach((x, k) => {
        if (stale <= x) return;
        (s.staleBeyond[k] as number)++;
        if (fromL1) (s.staleBeyondFromL1[k] as number)++;
      });
    }
  }
  return out;
}

/** -log10 of the fraction of answered reads more than X ms stale; "inf" when none was. */
export function nines(s: WindowStats, k: number): number | 'inf' {
  const bad = s.staleBeyond[k] as number;
  const answered = s.reads - s.errors;
  if (bad === 0 || answered === 0) return 'inf';
  return Math.round(-Math.log10(bad / answered) * 100) / 100;
}

/** The lowest of several nines figures ("inf" only when all are). */
export function lowestNines(values: ReadonlyArray<number | 'inf'>): number | 'inf' {
  const finite = values.filter((v): v is number => v !== 'inf');
  return finite.length === 0 ? 'inf' : Math.min(...finite);
}

/** The median of nines figures across repeats ("inf" sorts above every number). */
export function medianNines(values: ReadonlyArray<number | 'inf'>): number | 'inf' {
  const sorted = [...values].sort((a, b) =>
    a === b ? 0 : a === 'inf' ? 1 : b === 'inf' ? -1 : a - b,
  );
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? 'inf';
}

/** The `n` stalest reads over `beyondMs`, for a look at when and where they happened. */
export function stalest(
  reads: Reads,
  acks: ReadonlyMap<number, readonly number[]>,
  beyondMs: number,
  n = 10,
): Array<{ t: number; id: number; version: number; stalenessMs: number; l1: boolean }> {
  const out: Array<{ t: number; id: number; version: number; stalenessMs: number; l1: boolean }> =
    [];
  for (let i = 0; i < reads.t.length; i++) {
    const v = reads.v[i] as number;
    if (v < 0) continue;
    const t = reads.t[i] as number;
    const id = reads.id[i] as number;
    const stalenessMs = staleness(acks, t, id, v);
    if (stalenessMs > beyondMs) out.push({ t, id, version: v, stalenessMs, l1: reads.l1[i] === 1 });
  }
  return out.sort((a, b) => b.stalenessMs - a.stalenessMs).slice(0, n);
}
