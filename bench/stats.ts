/** Small statistics helpers for the benchmarks (no dependencies). */

export interface Summary {
  readonly n: number;
  readonly median: number;
  readonly p25: number;
  readonly p75: number;
  readonly min: number;
  readonly max: number;
}

/** Linear-interpolated quantile of an already sorted array. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

/** The median of unsorted values (NaN when there are none). */
export function median(values: readonly number[]): number {
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((x, y) => x - y);
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p25: quantile(sorted, 0.25),
    p75: quantile(sorted, 0.75),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/** Rounds to `digits` significant digits (keeps the JSON readable). */
export function sig(value: number, digits = 4): number {
  if (!Number.isFinite(value) || value === 0) return value;
  return Number(value.toPrecision(digits));
}

/** `median 12.3 [p25 12.1, p75 12.6; min 11.9, max 13.0] unit` */
export function describe(s: Summary, unit: string, digits = 4): string {
  const f = (v: number) => String(sig(v, digits));
  return `median ${f(s.median)} ${unit}  [p25 ${f(s.p25)}, p75 ${f(s.p75)}; min ${f(s.min)}, max ${f(s.max)}; n=${s.n}]`;
}

/** Elementwise a[i] / b[i] (paired per-round ratios). */
export function pairedRatios(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++)
    out.push((a[i] as number) / (b[i] as number));
  return out;
}
