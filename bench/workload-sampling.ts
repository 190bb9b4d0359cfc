/**
 * The hit-path cost of access-log sampling: `await repo.users.findById(hotId)` on an L1
 * hit with sampleRate 0 vs 0.01 (two repositories, one prefix), in palindromic rounds.
 */
import { hrtime } from 'node:process';
import { gc } from './gc.js';
import { KEY_PREFIX } from './workload-common.js';
import { newRepository, type Repo } from './workload-contenders.js';

export const HITPATH_ROUNDS = 9;
export const HITPATH_OPS = 200_000; // per repository and round

let sink = 0;

/** What the timed loops found, summed: printed, so the loops' reads cannot be optimised away. */
export const samplingChecksum = (): number => sink;

async function findByIdLoop(repo: Repo, id: number, n: number): Promise<number> {
  let acc = 0;
  const t0 = hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const row = await repo.users.findById(id);
    if (row !== undefined) acc++;
  }
  const ns = Number(hrtime.bigint() - t0);
  sink += acc;
  return ns / n;
}

export async function samplingCost(hotId: number): Promise<{ off: number[]; on: number[] }> {
  const prefix = `${KEY_PREFIX}-hitpath`;
  const off = newRepository(prefix, 0);
  const on = newRepository(prefix, 0.01);
  try {
    for (const r of [off, on]) {
      if (!(await r.engine.ready(10_000))) throw new Error('hit-path engine not ready');
    }
    const key = off.users.key(hotId);
    const out = { off: [] as number[], on: [] as number[] };
    for (let round = -2; round < HITPATH_ROUNDS; round++) {
      // Warm (L1 holds at most l1.ttlMs): a load or an L2 hit, then L1 hits only.
      for (const r of [off, on]) {
        await r.users.findById(hotId);
        await r.users.findById(hotId);
        if (r.engine.peek(key) === undefined) throw new Error('hot row not in L1');
      }
      gc();
      const half = HITPATH_OPS / 2;
      const [a, b] = round % 2 === 0 ? [off, on] : [on, off];
      const first = [await findByIdLoop(a, hotId, half), await findByIdLoop(b, hotId, half)];
      const second = [await findByIdLoop(b, hotId, half), await findByIdLoop(a, hotId, half)];
      const nsA = ((first[0] as number) + (second[1] as number)) / 2;
      const nsB = ((first[1] as number) + (second[0] as number)) / 2;
      if (round < 0) continue;
      out.off.push(a === off ? nsA : nsB);
      out.on.push(a === off ? nsB : nsA);
    }
    return out;
  } finally {
    await off.close();
    await on.close();
  }
}
