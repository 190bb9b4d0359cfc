import { Command, CommanderError, Option } from 'commander';
import type { DecoderName } from '../config/schema.js';
import { type DoctorCheck, type DoctorReport, doctor } from '../ops/doctor.js';
import { loadConfig } from './load-config.js';

interface DoctorCommandOptions {
  config?: string;
  slot?: string;
  decoder?: DecoderName;
  publication?: string;
  json?: boolean;
}

/**
 * `walcache doctor`: checks PostgreSQL, the slot, Redis, the worker and the write-behind
 * backlog, one line each with the fix. Exits 1 when a check fails; warnings exit 0.
 */
export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check the deployment: PostgreSQL (wal_level, output plugin, slot, retained WAL, replica identity), Redis (persistence, eviction policies), the worker heartbeat and write-behind; exits 1 when a check fails',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--slot <name>', 'replication slot of the worker (default: worker.slot of the config)')
    .addOption(
      new Option('--decoder <name>', 'output plugin of the worker').choices([
        'wal2json',
        'pgoutput',
      ]),
    )
    .option(
      '--publication <name>',
      'publication of the worker (pgoutput) (default: worker.publication of the config)',
    )
    .option('--json', 'print the report as JSON')
    .action(async (opts: DoctorCommandOptions) => {
      const config = await loadConfig(opts.config);
      const report = await doctor({
        config,
        slot: opts.slot,
        decoder: opts.decoder,
        publication: opts.publication,
      });
      process.stdout.write(
        opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report),
      );
      // The report said what is wrong: exit 1 without another message.
      if (!report.ok) throw new CommanderError(1, 'walcache.doctor', 'doctor found problems');
    });
}

const MARKS: Record<DoctorCheck['status'], string> = { ok: '✔', warn: '!', fail: '✖' };

/** One line per check, its fix on the next line; a count of problems and warnings last. */
export function formatDoctorReport(report: DoctorReport): string {
  const lines: string[] = [];
  for (const c of report.checks) {
    lines.push(`${MARKS[c.status]} ${c.detail}`);
    if (c.status !== 'ok' && c.fix) lines.push(`  fix: ${c.fix}`);
  }
  const count = (status: DoctorCheck['status']) =>
    report.checks.filter((c) => c.status === status).length;
  const fails = count('fail');
  const warns = count('warn');
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (fails > 0) lines.push(`${plural(fails, 'problem')} to fix, ${plural(warns, 'warning')}`);
  else if (warns > 0) lines.push(`no problems, ${plural(warns, 'warning')}`);
  else lines.push('no problems');
  return `${lines.join('\n')}\n`;
}
