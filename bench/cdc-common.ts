/**
 * Shared pieces of the CDC benchmark (bench/cdc.ts) and its two child processes
 * (bench/cdc-worker.ts, bench/cdc-observer.ts): the clock, percentiles, and a tiny
 * request/reply protocol over the IPC channel of `child_process.fork`.
 */
import type { ChildProcess } from 'node:child_process';
import { quantile } from './stats.js';

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable across processes of
 * one machine: `performance.timeOrigin` is the wall clock at process start, to the
 * microsecond, and `performance.now()` the monotonic time since.
 */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

export interface Percentiles {
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export function percentiles(values: readonly number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const arr = Array.from(sorted);
  return {
    n: arr.length,
    p50: quantile(arr, 0.5),
    p90: quantile(arr, 0.9),
    p99: quantile(arr, 0.99),
    max: arr[arr.length - 1] ?? Number.NaN,
  };
}

/** Rounds to `digits` decimals (keeps the JSON readable). */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export const MB = 1024 * 1024;

// --- IPC ----------------------------------------------------------------------------

/** A request carries `rid`; the reply repeats it. Other messages are notifications. */
export interface Envelope {
  readonly type: string;
  readonly rid?: number;
  readonly [field: string]: unknown;
}

let nextRid = 1;

/** Sends a request to a child and resolves with its reply (or rejects on timeout / exit). */
export function call<T extends Envelope = Envelope>(
  child: ChildProcess,
  message: Envelope,
  timeoutMs = 30_000,
): Promise<T> {
  const rid = nextRid++;
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (reply: Envelope) => {
      if (reply?.rid !== rid) return;
      cleanup();
      if (reply.type === 'error') reject(new Error(String(reply.message)));
      else resolve(reply as T);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`child exited (code ${code}) during ${message.type}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no reply to ${message.type} within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.on('exit', onExit);
    // With a callback, a closed channel (the child is exiting: a cleanup raced this call)
    // rejects the call instead of emitting an 'error' that would crash the bench.
    child.send({ ...message, rid }, (error) => {
      if (!error) return;
      cleanup();
      reject(error);
    });
  });
}

/** In a child: answers requests with `handler`, errors become `{ type: 'error' }` replies. */
export function serve(handler: (message: Envelope) => Promise<Envelope> | Envelope): void {
  process.on('message', (message: Envelope) => {
    void (async () => {
      try {
        const reply = await handler(message);
        process.send?.({ ...reply, rid: message.rid });
      } catch (error) {
        process.send?.({
          type: 'error',
          rid: message.rid,
          message: error instanceof Error ? (error.stack ?? error.message) : String(error),
        });
      }
    })();
  });
}

/** Waits for a notification of `type` from a child. */
export function once<T extends Envelope = Envelope>(
  child: ChildProcess,
  type: string,
  timeoutMs = 30_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (m: Envelope) => {
      if (m?.type !== type) return;
      cleanup();
      resolve(m as T);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`child exited (code ${code}) while waiting for ${type}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${type} from child within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}
