/**
 * Child processes of a benchmark, ended on every way out of the parent:
 *
 * - a normal end or an error path: the bench stops its children in `finally`
 *   ({@link stopChild}: ask over IPC, wait, then SIGKILL);
 * - `process.exit()` anywhere (a forced exit, an uncaught error): the parent's `exit` hook
 *   SIGKILLs every child still running;
 * - SIGINT, SIGTERM, a timeout that kills the parent, even SIGKILL: the IPC channel closes,
 *   and every child runs {@link exitWithParent}'s cleanup and exits within a deadline.
 *
 * A failed bench must never leave a child behind holding a replication slot or a
 * connection idle in a transaction.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { call, type Envelope } from './cdc-common.js';

const live = new Set<ChildProcess>();
let hooked = false;

/** Forks `file` (a .ts module beside the caller) under tsx, with an IPC channel. */
export function forkChild(
  file: URL,
  options: { readonly args?: readonly string[]; readonly execArgv?: readonly string[] } = {},
): ChildProcess {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const child of live) child.kill('SIGKILL');
    });
  }
  const child = fork(fileURLToPath(file), [...(options.args ?? [])], {
    execArgv: ['--import', 'tsx', ...(options.execArgv ?? [])],
    // children never write to our stdout: the last line must stay the JSON
    stdio: ['ignore', 2, 2, 'ipc'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * Stops a child: sends `request` (when given and the channel is open) and waits for its
 * exit for `graceMs`, then SIGKILLs it. Never throws.
 */
export async function stopChild(
  child: ChildProcess | null,
  request?: Envelope,
  graceMs = 5_000,
): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (request && child.connected) await call(child, request, 15_000).catch(() => {});
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs));
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * In a child: when the parent goes away (its IPC channel closes, whatever killed it), run
 * `cleanup` (release a slot, roll back, close connections) and exit; after `deadlineMs`
 * exit anyway. Ctrl-C reaches the whole process group: the parent decides, so SIGINT is
 * ignored here.
 */
export function exitWithParent(
  cleanup: () => Promise<unknown> | unknown,
  deadlineMs = 10_000,
): void {
  process.on('SIGINT', () => {});
  process.on('disconnect', () => {
    setTimeout(() => process.exit(1), deadlineMs).unref();
    void Promise.resolve()
      .then(cleanup)
      .catch(() => {})
      .finally(() => process.exit(0));
  });
}
