/**
 * The demo's view of how far the invalidation worker has got: waits, with progress shown,
 * until the worker has applied everything up to a WAL position, and tells "behind but
 * moving" (wait on) from "stopped" (report it) without a fixed deadline that a busy
 * machine or a long backlog would overrun.
 */
import type pg from 'pg';
import { lsnToBigInt } from '../src/protocol/lsn.js';

/** What the demo needs of the worker: its role and the last position it applied. */
export interface FollowedWorker {
  readonly role: string;
  readonly appliedLsn: string | null;
}

export type CatchUp =
  | { readonly caughtUp: true; readonly waitedMs: number }
  | {
      readonly caughtUp: false;
      readonly waitedMs: number;
      readonly behindBytes: bigint;
      /** Why the wait ended: the worker stopped, or made no progress for `stallMs`. */
      readonly reason: string;
    };

export async function currentWalLsn(pool: pg.Pool): Promise<bigint> {
  const { rows } = await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return lsnToBigInt(rows[0]?.lsn as string);
}

export function formatBytes(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * Resolves when the worker's applied position reaches `target`. While it is behind, a
 * progress line (redrawn on a terminal, every few seconds otherwise) shows how far and
 * how fast. Gives up only when the worker is no longer active, or its position has not
 * moved for `stallMs` (a huge foreign transaction decodes without moving the position,
 * so the default is generous).
 */
export async function waitApplied(
  worker: FollowedWorker,
  target: bigint,
  options: {
    readonly label: string;
    readonly out: NodeJS.WriteStream;
    readonly stallMs?: number;
    readonly pollMs?: number;
  },
): Promise<CatchUp> {
  const { label, out } = options;
  const stallMs = options.stallMs ?? 60_000;
  const pollMs = options.pollMs ?? 100;
  const tty = out.isTTY === true;
  const started = Date.now();
  const applied = () => (worker.appliedLsn === null ? 0n : lsnToBigInt(worker.appliedLsn));
  const first = applied();
  let last = first;
  let lastMovedAt = started;
  let lastPrintedAt = 0; // the first look prints at once
  let printed = false;
  for (;;) {
    const now = Date.now();
    const at = applied();
    if (at >= target) {
      if (printed)
        out.write(`${tty ? '\r\x1b[2K' : ''}${label}: caught up in ${secs(now - started)}\n`);
      return { caughtUp: true, waitedMs: now - started };
    }
    if (at !== last) {
      last = at;
      lastMovedAt = now;
    }
    const behindBytes = target - at;
    const stopped = worker.role !== 'active';
    if (stopped || now - lastMovedAt > stallMs) {
      const reason = stopped
        ? `the worker is ${worker.role}`
        : `the worker's position has not moved for ${secs(now - lastMovedAt)}`;
      if (printed && tty) out.write('\n');
      return { caughtUp: false, waitedMs: now - started, behindBytes, reason };
    }
    if (now - lastPrintedAt >= (tty ? 250 : 2_000)) {
      const rate = Number(at - first) / Math.max(0.001, (now - started) / 1000);
      const line = `${label}: worker behind by ${formatBytes(behindBytes)} (${formatBytes(Math.round(rate))}/s, ${secs(now - started)})`;
      out.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
      lastPrintedAt = now;
      printed = true;
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
