import { Command, CommanderError, Option } from 'commander';
import type { DecoderName } from '../config/schema.js';
import { type SetupReport, type SetupStep, setup } from '../database/setup.js';
import { loadConfig } from './load-config.js';

interface SetupCommandOptions {
  config?: string;
  slot?: string;
  decoder?: DecoderName;
  publication?: string;
  replicaIdentity: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/**
 * `walcache setup`: prepares PostgreSQL (wal_level check, migrations, replica identity,
 * publication, slot). Idempotent; exits 1 when a step needs the user's attention.
 */
export function setupCommand(): Command {
  return new Command('setup')
    .description(
      'prepare PostgreSQL: check wal_level, run migrations, set REPLICA IDENTITY FULL where the config needs old values, create the publication and the replication slot (idempotent)',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--slot <name>', 'replication slot (default: worker.slot of the config)')
    .addOption(
      new Option('--decoder <name>', 'output plugin of the slot').choices(['wal2json', 'pgoutput']),
    )
    .option(
      '--publication <name>',
      'publication (read by pgoutput) (default: worker.publication of the config)',
    )
    .option(
      '--no-replica-identity',
      'do not ALTER TABLE ... REPLICA IDENTITY FULL; only report the tables that need it',
    )
    .option('--dry-run', 'change nothing; print the SQL that would run')
    .option('--json', 'print the report as JSON')
    .action(async (opts: SetupCommandOptions) => {
      const config = await loadConfig(opts.config);
      const report = await setup({
        config,
        slot: opts.slot,
        decoder: opts.decoder,
        publication: opts.publication,
        setReplicaIdentity: opts.replicaIdentity,
        dryRun: opts.dryRun === true,
      });
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(report, null, 2)}\n`
          : formatSetupReport(report, opts.dryRun === true),
      );
      // Exit 1 without another message: the report already said what is wrong.
      if (!report.ok) throw new CommanderError(1, 'walcache.setup', 'setup reported errors');
    });
}

const MARKS: Record<SetupStep['status'], string> = {
  ok: '✔',
  created: '✔',
  changed: '✔',
  'would-run': '•',
  skipped: '-',
  error: '✖',
};

/** One line per step; an error's fix on the next line, SQL to run indented below. */
export function formatSetupReport(report: SetupReport, dryRun = false): string {
  const lines: string[] = [];
  for (const s of report.steps) {
    lines.push(`${MARKS[s.status]} ${s.detail}`);
    if ((s.status === 'error' || s.status === 'skipped') && s.fix) lines.push(`  fix: ${s.fix}`);
    if (s.status === 'would-run' && s.sql) {
      for (const line of s.sql.split('\n')) lines.push(line.trim() === '' ? '' : `    ${line}`);
    }
  }
  const errors = report.steps.filter((s) => s.status === 'error').length;
  if (errors > 0) lines.push(`${errors} problem${errors > 1 ? 's' : ''} to fix`);
  else if (dryRun) lines.push('dry run: nothing was changed');
  return `${lines.join('\n')}\n`;
}
