import { readdirSync, readFileSync } from 'node:fs';

/** Pids of the live descendants of `pid` whose command line contains `needle` (Linux /proc). */
export function descendants(pid: number, needle: string): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z') parentOf.set(Number(entry), Number(fields[1]));
    } catch {} // gone meanwhile
  }
  const found: number[] = [];
  for (const child of parentOf.keys()) {
    let p = parentOf.get(child);
    while (p !== undefined && p !== pid && p > 1) p = parentOf.get(p);
    if (p !== pid) continue;
    try {
      if (readFileSync(`/proc/${child}/cmdline`, 'utf8').includes(needle)) found.push(child);
    } catch {}
  }
  return found;
}

/** Is `pid` running (not gone, not a zombie)? */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
