import { Command, CommanderError } from 'commander';
import { formatBytes, formatMs } from '../ops/format.js';
import { type HitRate, openStats, type WalcacheStats } from '../ops/stats.js';
import { loadConfig } from './load-config.js';

interface StatsCommandOptions {
  config?: string;
  slot?: string;
  metricsUrl?: string;
  json?: boolean;
  watch?: string;
}

/**
 * `walcache stats`: worker lag, the slot's retained WAL, queue depths, the write-behind
 * backlog, and with `--metrics-url` a process's hit rate. `--watch <s>` repeats until
 * Ctrl-C. Exits 1 when a source could not be read (not with --watch).
 */
export function statsCommand(): Command {
  return new Command('stats')
    .description(
      'print worker lag, slot retained WAL, job queue depths, write-behind backlog and (with --metrics-url) cache hit rates',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--slot <name>', 'replication slot of the worker (default: worker.slot of the config)')
    .option(
      '--metrics-url <url>',
      "/metrics of a running process that reads the cache, for hit rates (they live in that process's counters, not in Redis)",
    )
    .option('--json', 'print JSON (one object per line with --watch)')
    .option('--watch <seconds>', 'read again every <seconds> until interrupted')
    .action(async (opts: StatsCommandOptions) => {
      const intervalMs = opts.watch === undefined ? undefined : Number(opts.watch) * 1000;
      if (intervalMs !== undefined && !(Number.isFinite(intervalMs) && intervalMs >= 100))
        throw new Error(
          `--watch must be a number of seconds (0.1 or more), got ${JSON.stringify(opts.watch)}`,
        );
      if (opts.metricsUrl !== undefined && !URL.canParse(opts.metricsUrl))
        throw new Error(`--metrics-url must be a URL, got ${JSON.stringify(opts.metricsUrl)}`);
      const config = await loadConfig(opts.config);
      const reader = openStats(config, {
        slot: opts.slot,
        ...(opts.metricsUrl !== undefined && { metricsUrl: opts.metricsUrl }),
      });
      const print = (s: WalcacheStats, previous: WalcacheStats | undefined) =>
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(s, null, intervalMs === undefined ? 2 : undefined)}\n`
            : formatStats(s, opts.slot ?? config.worker.slot, previous),
        );
      try {
        if (intervalMs === undefined) {
          const s = await reader.read();
          print(s, undefined);
          // The report named what could not be read: exit 1 without another message.
          if (s.errors.length > 0)
            throw new CommanderError(1, 'walcache.stats', 'some sources could not be read');
          return;
        }
        let stop: () => void = () => {};
        const stopped = new Promise<void>((resolve) => {
          stop = resolve;
        });
        let running = true;
        const onSignal = () => {
          running = false;
          stop();
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          let previous: WalcacheStats | undefined;
          while (running) {
            const s = await reader.read();
            if (!running) break;
            print(s, previous);
            previous = s;
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([
              stopped,
              new Promise<void>((resolve) => {
                timer = setTimeout(resolve, intervalMs);
              }),
            ]);
            clearTimeout(timer);
          }
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      } finally {
        await reader.close();
      }
    });
}

/** A few aligned lines; with a previous reading, the hit rate over the interval too. */
export function formatStats(s: WalcacheStats, slot: string, previous?: WalcacheStats): string {
  const lines: string[] = [`walcache stats at ${new Date(s.at).toISOString()}`];
  const row = (label: string, text: string) => lines.push(`${label.padEnd(13)}${text}`);
  const redisDown = s.errors.some((e) => e.startsWith('cache Redis'));
  row('worker', formatWorker(s, redisDown));
  if (s.slot)
    row(
      'slot',
      `${s.slot.name}: ${formatBytes(s.slot.retainedBytes)} WAL retained, ${s.slot.active ? 'active' : 'no worker attached'}${s.slot.walStatus && s.slot.walStatus !== 'reserved' ? `, wal_status ${s.slot.walStatus}` : ''}`,
    );
  else if (!s.errors.some((e) => e.startsWith('PostgreSQL')))
    row('slot', `${slot}: does not exist`);
  if (s.hitRate) {
    const since = previous?.hitRate ? hitRateDelta(s.hitRate, previous.hitRate) : undefined;
    row(
      'hit rate',
      `${percent(s.hitRate.ratio)} since the process started (l1 ${s.hitRate.l1Hits}, l2 ${s.hitRate.l2Hits}, stale ${s.hitRate.staleServed}, misses ${s.hitRate.misses})${since === undefined ? '' : `; ${percent(since)} over the last ${formatMs(s.at - (previous as WalcacheStats).at)}`}`,
    );
  }
  let label = 'queues';
  for (const [name, counts] of Object.entries(s.queues)) {
    row(
      label,
      `${name}: ${Object.entries(counts)
        .map(([state, n]) => `${n} ${state}`)
        .join(', ')}`,
    );
    label = '';
  }
  label = 'write-behind';
  for (const [entity, wb] of Object.entries(s.writeBehind)) {
    row(
      label,
      `${entity}: ${wb.pending} pending, oldest ${formatMs(wb.oldestAgeMs)}, ${wb.dead} dead`,
    );
    label = '';
  }
  for (const e of s.errors) lines.push(`✖ could not read ${e}`);
  return `${lines.join('\n')}\n`;
}

/**
 * "caught up" when the slot confirmed every WAL written before the reading (the heartbeat's
 * age is then only how often the worker writes it); "lag" only when WAL is left unconfirmed.
 */
function formatWorker(s: WalcacheStats, redisDown: boolean): string {
  if (s.heartbeatAgeMs === null)
    return redisDown
      ? 'unknown (the cache Redis could not be read)'
      : 'no heartbeat (not running with this prefix?)';
  const heartbeat = formatMs(s.heartbeatAgeMs);
  if (s.caughtUp === true) return `caught up (last heartbeat ${heartbeat} ago)`;
  const unconfirmed = `${formatBytes(s.unconfirmedWalBytes ?? 0)} of WAL not confirmed by the slot`;
  if (s.workerLagMs === null)
    return `no commit applied yet (${s.caughtUp === false ? `${unconfirmed}, ` : ''}last heartbeat ${heartbeat} ago)`;
  if (s.caughtUp === false)
    return `lag ${formatMs(s.workerLagMs)} (${unconfirmed}), last heartbeat ${heartbeat} ago`;
  return `last commit applied ${formatMs(s.workerLagMs)} ago, last heartbeat ${heartbeat} ago (no slot to compare with: caught up or not is unknown)`;
}

function hitRateDelta(now: HitRate, before: HitRate): number | null {
  const answered =
    now.l1Hits +
    now.l2Hits +
    now.staleServed -
    (before.l1Hits + before.l2Hits + before.staleServed);
  const reads = answered + now.misses - before.misses;
  // A restarted process resets its counters: no interval rate then.
  return reads <= 0 || answered < 0 ? null : answered / reads;
}

function percent(ratio: number | null): string {
  return ratio === null ? 'n/a' : `${(ratio * 100).toFixed(1)}%`;
}
