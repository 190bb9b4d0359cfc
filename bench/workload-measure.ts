/**
 * The measurement of one contender round of the workload benchmark: the operation loops,
 * the cold and steady windows and the steady rule, latencies, counters and CPU per window.
 */

import { type CpuShares, type CpuSnapshot, cpuShares, cpuSnapshot } from './proc-cpu.js';
import { quantile } from './stats.js';
import type { Contender, Counters } from './workload-contenders.js';
import {
  COLD_MS,
  CONCURRENCY,
  MEASURE_MS,
  type Name,
  STEADY_MAX_WAIT_MS,
  STEADY_SLOPE,
  STEADY_WINDOWS,
} from './workload-params.js';
import {
  OP_READ_AGG,
  OP_READ_USER,
  OP_RENAME,
  SEQ_LEN,
  type Workload,
} from './workload-sequence.js';

/** What one measured window (cold or steady) of a contender round counted. */
export interface WindowResult {
  ops: number;
  opsPerS: number;
  reads: number;
  writes: number;
  p50: number;
  p99: number;
  readP50: number;
  readP99: number;
  writeP50: number;
  writeP99: number;
  /**
   * Reads answered from a cache tier / reads (walcache: engine `hit` events, bentocache:
   * `cache:hit`); cache-manager reports no tier, so its is `loadFreeRate`.
   */
  hitRate: number;
  /** 1 - db loads / reads: the rate the steady rule watches, the same for every contender. */
  loadFreeRate: number;
  l1Share: number;
  loadsPerRead: number;
  cpu: CpuShares;
  events: Record<string, number>;
}

export interface RoundResult {
  name: Name;
  round: number;
  cold: WindowResult;
  steady: WindowResult;
  /** Seconds from the round's start (empty caches) to the steady window's start. */
  steadyAtS: number;
  /** false: the rule did not hold within STEADY_MAX_WAIT_MS after the cold window. */
  steadyReached: boolean;
  errors: number;
  firstError: string;
}

/** Latencies of one window's operations (fixed buffers, reused every round). */
class Latencies {
  readonly all = new Float64Array(1 << 21);
  readonly reads = new Float64Array(1 << 21);
  readonly writes = new Float64Array(1 << 19);
  n = 0;
  nr = 0;
  nw = 0;

  reset(): void {
    this.n = 0;
    this.nr = 0;
    this.nw = 0;
  }

  add(dt: number, read: boolean): void {
    if (this.n < this.all.length) this.all[this.n] = dt;
    this.n++;
    if (read) {
      if (this.nr < this.reads.length) this.reads[this.nr] = dt;
      this.nr++;
    } else {
      if (this.nw < this.writes.length) this.writes[this.nw] = dt;
      this.nw++;
    }
  }
}

let stopping = false;

/**
 * Ends the round being driven: its loops return after their current operation. For a
 * signal: the bench cleans up and closes the contender under the loops, whose operations
 * would then fail at once, in a loop of microtasks that starves every timer (the forced
 * exit included) and never ends.
 */
export function stopDriving(): void {
  stopping = true;
}

const coldLatency = new Latencies();
const steadyLatency = new Latencies();

function sortedPrefix(a: Float64Array, n: number): number[] {
  return Array.from(a.subarray(0, Math.min(n, a.length)).sort());
}

/** Counters, events and CPU at one instant, to subtract. */
interface Mark {
  at: number;
  counters: Counters;
  tally: Map<string, number>;
  cpu: CpuSnapshot;
}

export function mark(c: Contender): Mark {
  return {
    at: performance.now(),
    counters: { ...c.counters },
    tally: new Map(c.tally),
    cpu: cpuSnapshot(),
  };
}

function windowResult(c: Contender, lat: Latencies, from: Mark, to: Mark): WindowResult {
  const seconds = (to.at - from.at) / 1000;
  const d = {
    l1: to.counters.l1 - from.counters.l1,
    l2: to.counters.l2 - from.counters.l2,
    loads: to.counters.loads - from.counters.loads,
  };
  const all = sortedPrefix(lat.all, lat.n);
  const reads = sortedPrefix(lat.reads, lat.nr);
  const writes = sortedPrefix(lat.writes, lat.nw);
  const hits = d.l1 + d.l2;
  const loadFreeRate = c.name === 'kysely' ? 0 : Math.max(0, 1 - d.loads / Math.max(1, lat.nr));
  const events: Record<string, number> = {};
  for (const [k, v] of to.tally)
    if (v - (from.tally.get(k) ?? 0) > 0) events[k] = v - (from.tally.get(k) ?? 0);
  return {
    ops: lat.n,
    opsPerS: lat.n / seconds,
    reads: lat.nr,
    writes: lat.nw,
    p50: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    readP50: quantile(reads, 0.5),
    readP99: quantile(reads, 0.99),
    writeP50: quantile(writes, 0.5),
    writeP99: quantile(writes, 0.99),
    hitRate:
      c.name === 'kysely'
        ? 0
        : c.name === 'cache-manager'
          ? loadFreeRate
          : hits / Math.max(1, lat.nr),
    loadFreeRate,
    l1Share: hits > 0 ? d.l1 / hits : 0,
    loadsPerRead: d.loads / Math.max(1, lat.nr),
    cpu: cpuShares(from.cpu, to.cpu),
    events,
  };
}

/** Least-squares slope of `ys` (one per second), in units per second. */
function slope(ys: readonly number[]): number {
  const n = ys.length;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, y) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (i - mx) * ((ys[i] as number) - my);
    den += (i - mx) ** 2;
  }
  return num / den;
}

/**
 * CONCURRENCY loops take the next operation of the sequence, from empty caches:
 * - the cold window: operations started in the first COLD_MS;
 * - then, every second, the share of reads served without a db load over that second;
 *   once the least-squares slope of the last STEADY_WINDOWS of them is under
 *   STEADY_SLOPE points per second (the hit rate stopped rising), and the cold window is
 *   over, the steady window starts: operations started in the next MEASURE_MS. If the
 *   rule does not hold within STEADY_MAX_WAIT_MS after the cold window, the steady
 *   window starts then (flagged).
 */
export async function drive(
  c: Contender,
  w: Workload,
  offset: number,
  roundNo: number,
  written: Set<number>,
): Promise<RoundResult> {
  let cursor = offset;
  coldLatency.reset();
  steadyLatency.reset();
  const start = mark(c);
  const t0 = start.at;
  const coldEnd = t0 + COLD_MS;
  let steadyFrom = Number.POSITIVE_INFINITY;
  let steadyTo = Number.POSITIVE_INFINITY;
  let steadyReached = false;
  let coldMark: Mark | null = null;
  let steadyMark: Mark | null = null;
  let endMark: Mark | null = null;
  let readsDone = 0;
  let errors = 0;
  let firstError = '';
  // The steady rule, checked every second.
  const rates: number[] = [];
  let last = { at: t0, reads: 0, loads: c.counters.loads };
  const coldTimer = setTimeout(() => {
    coldMark = mark(c);
  }, COLD_MS);
  const ticker = setInterval(() => {
    const now = performance.now();
    const reads = readsDone - last.reads;
    const loads = c.counters.loads - last.loads;
    last = { at: now, reads: readsDone, loads: c.counters.loads };
    rates.push(c.name === 'kysely' || reads === 0 ? 0 : 100 * Math.max(0, 1 - loads / reads));
    if (steadyFrom !== Number.POSITIVE_INFINITY || now < coldEnd) return;
    const flat =
      rates.length >= STEADY_WINDOWS && slope(rates.slice(-STEADY_WINDOWS)) < STEADY_SLOPE;
    if (flat || now >= coldEnd + STEADY_MAX_WAIT_MS) {
      steadyReached = flat;
      steadyMark = mark(c);
      steadyFrom = steadyMark.at;
      steadyTo = steadyFrom + MEASURE_MS;
      setTimeout(() => {
        endMark = mark(c);
      }, MEASURE_MS);
    }
  }, 1_000);
  const { kinds, ids } = w;
  const loop = async () => {
    for (;;) {
      const seq = cursor++;
      const i = seq & (SEQ_LEN - 1);
      const kind = kinds[i] as number;
      const id = ids[i] as number;
      const begun = performance.now();
      if (begun >= steadyTo || stopping) return;
      const read = kind <= OP_READ_AGG;
      try {
        if (kind === OP_READ_USER) await c.readUser(id);
        else if (kind === OP_READ_AGG) await c.readAggregate(id);
        else {
          written.add(id);
          if (kind === OP_RENAME) await c.rename(id, seq);
          else await c.insertOrder(id, seq);
        }
      } catch (error) {
        if (errors++ === 0) firstError = error instanceof Error ? error.message : String(error);
      }
      if (read) readsDone++;
      const dt = performance.now() - begun;
      if (begun < coldEnd) coldLatency.add(dt, read);
      else if (begun >= steadyFrom) steadyLatency.add(dt, read);
    }
  };
  const loops: Promise<void>[] = [];
  for (let k = 0; k < CONCURRENCY; k++) loops.push(loop());
  await Promise.all(loops);
  clearTimeout(coldTimer);
  clearInterval(ticker);
  const end: Mark = endMark ?? mark(c);
  return {
    name: c.name,
    round: roundNo,
    cold: windowResult(c, coldLatency, start, coldMark ?? end),
    steady: windowResult(c, steadyLatency, steadyMark ?? end, end),
    steadyAtS: (steadyFrom - t0) / 1000,
    steadyReached,
    errors,
    firstError,
  };
}
