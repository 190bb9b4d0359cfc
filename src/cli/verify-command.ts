import { renameSync, writeFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../errors/typed-errors.js';
import { recordVerifyMetrics } from '../metrics/verify-metrics.js';
import { formatMs } from '../ops/format.js';
import { type StaleEntry, type VerifyReport, verify } from '../ops/verify.js';
import { loadConfig } from './load-config.js';

interface VerifyCommandOptions {
  config?: string;
  sample?: string;
  entity?: string;
  wait?: string;
  json?: boolean;
  metricsFile?: string;
}

/**
 * `walcache verify`: compares a sample of cached entries with their rows, once the
 * worker has applied what the rows show. Exits 1 when an entry is stale (or could not be
 * confirmed either way), so a cron job or a probe can alert on it.
 */
export function verifyCommand(): Command {
  return new Command('verify')
    .description(
      'compare a sample of cached entity entries with their rows in PostgreSQL; exit 1 if any is stale',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--sample <n>', 'entity entries to examine', '1000')
    .option('--entity <name>', "only this entity's entries")
    .option('--wait <seconds>', 'how long to wait for the worker to catch up', '15')
    .option('--json', 'print the report as JSON')
    .option(
      '--metrics-file <path>',
      'also write the walcache_verify_* gauges there (Prometheus text, for node_exporter)',
    )
    .action(async (opts: VerifyCommandOptions) => {
      const sample = Number(opts.sample);
      if (!/^\s*\d+\s*$/.test(opts.sample ?? '') || sample < 1)
        throw new ConfigError('--sample', opts.sample, 'expected a whole number, 1 or more');
      const wait = Number(opts.wait);
      if (!Number.isFinite(wait) || wait < 0)
        throw new ConfigError('--wait', opts.wait, 'expected a number of seconds, 0 or more');
      const config = await loadConfig(opts.config);
      const report = await verify(config, {
        sample,
        waitMs: wait * 1000,
        ...(opts.entity !== undefined && { entity: opts.entity }),
      });
      process.stdout.write(
        opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatVerify(report),
      );
      if (opts.metricsFile !== undefined) {
        // Renamed into place, so a collector never reads half a file.
        const text = await recordVerifyMetrics(report).metrics();
        writeFileSync(`${opts.metricsFile}.tmp`, text);
        renameSync(`${opts.metricsFile}.tmp`, opts.metricsFile);
      }
      // The report said what differs: exit 1 without another message.
      if (report.stale > 0 || report.unconfirmed > 0)
        throw new CommanderError(1, 'walcache.verify', 'stale entries found');
    });
}

export function formatVerify(r: VerifyReport): string {
  const lines: string[] = [];
  const p = r.position;
  lines.push(
    p.reached
      ? `worker at ${p.workerLsn}, past ${p.target} (read before the check; waited ${formatMs(p.waitedMs)})`
      : `! the worker did not reach ${p.target} within ${formatMs(p.waitedMs)} (heartbeat at ${p.workerLsn ?? 'none'}): differences may be its lag`,
  );
  const s = r.skipped;
  lines.push(
    `examined ${r.examined} entries of prefix ${r.prefix}: ${r.checked} checked, ${r.stale} stale` +
      (r.unconfirmed > 0 ? `, ${r.unconfirmed} unconfirmed` : ''),
  );
  lines.push(
    `skipped: ${s.tombstone} tombstones, ${s.lease} leases, ${s.expired} expired, ${s.invalidated} invalidated by tag or epoch, ${s.corrupt} corrupt, ${s.gone} gone, ${s.changed} changed during the check`,
  );
  if (s.queries > 0 || s.foreign > 0)
    lines.push(
      `not verified: ${s.queries} cached queries (their entries do not carry their SQL), ${s.foreign} keys of no entity`,
    );
  const show = (label: string, e: StaleEntry) =>
    lines.push(
      `✖ ${label} ${e.key}: ${e.reason === 'differs' ? `columns ${e.columns.join(', ')} differ` : e.reason === 'deleted' ? 'the row was deleted' : 'cached as not found, the row exists'}`,
    );
  for (const e of r.staleEntries) show('stale', e);
  for (const e of r.unconfirmedEntries) show('unconfirmed', e);
  lines.push(`done in ${formatMs(r.durationMs)}`);
  return `${lines.join('\n')}\n`;
}
