/**
 * The operation sequence of the workload benchmark, drawn once from a seeded PRNG and the
 * same for every contender: user ids Zipf over all rows (ranks mapped to ids by a fixed
 * random permutation), 95 % reads (half the user row, half the aggregate), 5 % writes
 * (half renames, half order inserts).
 */
import { prng } from './prng.js';
import { ROWS } from './workload-params.js';

export const ZIPF_S = 1.0;
export const SEQ_LEN = 1 << 21; // operations in the precomputed sequence (wraps around)
const SEED = 0x5eed_2026;

export const OP_READ_USER = 0;
export const OP_READ_AGG = 1;
export const OP_RENAME = 2;
export const OP_INSERT_ORDER = 3;

export interface Workload {
  readonly kinds: Uint8Array;
  readonly ids: Uint32Array;
  /** ids by popularity rank (rankToId[0] is the hottest). */
  readonly rankToId: Uint32Array;
}

export function buildWorkload(): Workload {
  const random = prng(SEED);
  // Zipf CDF over ranks 1..ROWS, weight 1 / k^s.
  const cdf = new Float64Array(ROWS);
  let sum = 0;
  for (let k = 1; k <= ROWS; k++) {
    sum += 1 / k ** ZIPF_S;
    cdf[k - 1] = sum;
  }
  for (let i = 0; i < ROWS; i++) cdf[i] = (cdf[i] as number) / sum;
  // Ranks to ids: a fixed random permutation (Fisher-Yates), so the hot rows are spread.
  const rankToId = new Uint32Array(ROWS);
  for (let i = 0; i < ROWS; i++) rankToId[i] = i + 1;
  for (let i = ROWS - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = rankToId[i] as number;
    rankToId[i] = rankToId[j] as number;
    rankToId[j] = t;
  }
  const kinds = new Uint8Array(SEQ_LEN);
  const ids = new Uint32Array(SEQ_LEN);
  for (let i = 0; i < SEQ_LEN; i++) {
    const u = random();
    let lo = 0;
    let hi = ROWS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    ids[i] = rankToId[lo] as number;
    const k = random();
    kinds[i] =
      k < 0.475 ? OP_READ_USER : k < 0.95 ? OP_READ_AGG : k < 0.975 ? OP_RENAME : OP_INSERT_ORDER;
  }
  return { kinds, ids, rankToId };
}
