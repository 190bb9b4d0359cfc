/**
 * CPU accounting from Linux /proc for the workload benchmark: cores used by this process,
 * the worker child, redis-server, all postgres processes and the machine as a whole,
 * between two snapshots. Elsewhere than Linux every figure reads 0.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { sleep } from './cdc-common.js';

const CLK_TCK = 100;

export interface CpuSnapshot {
  at: number;
  /** Machine-wide busy and total jiffies. */
  busy: number;
  total: number;
  self: number;
  worker: number;
  redis: number;
  postgres: Map<number, number>;
}

let redisPid = 0;
let workerPid = 0;

/** The processes a snapshot counts apart: the worker child and redis-server (0: none). */
export function watchProcesses(pids: { readonly worker?: number; readonly redis?: number }): void {
  if (pids.worker !== undefined) workerPid = pids.worker;
  if (pids.redis !== undefined) redisPid = pids.redis;
}

/**
 * The pid of the Redis server at `url` when it runs on this machine (its INFO names a pid
 * whose /proc comm is redis-*); 0 otherwise (another host or pid namespace: counted in
 * "other").
 */
export async function redisServerPid(url: string): Promise<number> {
  const probe = new Redis(url, { maxRetriesPerRequest: 1 });
  probe.on('error', () => {});
  let pid = 0;
  try {
    const info = await probe.info('server');
    pid = Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0);
    try {
      if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('redis')) pid = 0;
    } catch {
      pid = 0; // another host or pid namespace: counted in "other"
    }
  } finally {
    probe.disconnect();
  }
  return pid;
}

export function procTicks(pid: number): number {
  if (pid <= 0) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return 0;
  }
}

/** CPU ticks of every postgres process, by pid. */
export function postgresTicks(): Map<number, number> {
  const out = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'postgres')
        out.set(Number(entry), procTicks(Number(entry)));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Ticks used between two per-pid snapshots: a new process counts whole, a gone one not at all. */
function ticksBetween(a: Map<number, number>, b: Map<number, number>): number {
  let sum = 0;
  for (const [pid, ticks] of b) sum += Math.max(0, ticks - (a.get(pid) ?? 0));
  return sum;
}

export function cpuSnapshot(): CpuSnapshot {
  let busy = 0;
  let total = 0;
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    busy = total - (v[3] ?? 0) - (v[4] ?? 0);
  } catch {
    // not Linux
  }
  const u = process.cpuUsage();
  return {
    at: performance.now(),
    busy,
    total,
    self: ((u.user + u.system) / 1e6) * CLK_TCK,
    worker: procTicks(workerPid),
    redis: procTicks(redisPid),
    postgres: postgresTicks(),
  };
}

export interface CpuShares {
  /** Cores in use, machine-wide, and by each part. */
  machine: number;
  bench: number;
  worker: number;
  redis: number;
  postgres: number;
  other: number;
}

export function cpuShares(a: CpuSnapshot, b: CpuSnapshot): CpuShares {
  const s = (b.at - a.at) / 1000;
  const cores = (ticks: number) => ticks / CLK_TCK / s;
  const machine = cores(b.busy - a.busy);
  const bench = cores(b.self - a.self);
  const worker = cores(b.worker - a.worker);
  const redis = cores(b.redis - a.redis);
  const postgres = cores(ticksBetween(a.postgres, b.postgres));
  return {
    machine,
    bench,
    worker,
    redis,
    postgres,
    other: Math.max(0, machine - bench - worker - redis - postgres),
  };
}

/**
 * Waits (at most `maxMs`) until the machine is quiet: under 0.25 cores busy over half a
 * second, so the kernel's writeback of the seed does not land in the first round.
 */
export async function settleMachine(maxMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const a = cpuSnapshot();
    await sleep(500);
    const b = cpuSnapshot();
    const busy = cpuShares(a, b).machine;
    if (busy < 0.25 || performance.now() - started > maxMs) return busy;
  }
}
