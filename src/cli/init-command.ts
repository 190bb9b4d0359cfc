import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { type InitResult, init } from '../ops/init.js';
import { DEFAULT_CONFIG_FILES } from './load-config.js';

interface InitCommandOptions {
  schema: string;
  out: string;
  databaseUrl?: string;
  force?: boolean;
}

/**
 * `walcache init`: drafts a config from the tables of one schema, then says what it wrote
 * and what to run next. Refuses to overwrite a file without `--force`.
 */
export function initCommand(): Command {
  return new Command('init')
    .description(
      'draft a config from the PostgreSQL catalog of a schema: an entity per table with a primary key, unique indexes as unique lookups, foreign keys in invalidateBy, secret-looking columns denied',
    )
    .requiredOption('--schema <schema>', 'the schema whose tables become entities')
    .option(
      '--out <file>',
      'the file to write (.ts, .mts, .js, .mjs or .json)',
      'walcache.config.ts',
    )
    .option(
      '--database-url <url>',
      'PostgreSQL to read (default: DATABASE_URL, else postgres://127.0.0.1:5432/test)',
    )
    .option('--force', 'overwrite the file if it exists')
    .action(async (opts: InitCommandOptions) => {
      const result = await init({
        schema: opts.schema,
        out: opts.out,
        databaseUrl: opts.databaseUrl,
        force: opts.force === true,
      });
      process.stdout.write(formatInitReport(result, opts.out));
    });
}

/** What was written, what was left out, and the next commands. */
export function formatInitReport(result: InitResult, out: string): string {
  const { draft } = result;
  const shown = relative(process.cwd(), result.path) || out;
  const lines = [
    `✔ wrote ${shown}: ${draft.entities.length} entit${draft.entities.length === 1 ? 'y' : 'ies'} from schema ${draft.schema}`,
  ];
  for (const e of draft.entities) {
    const key = typeof e.key === 'string' ? e.key : `(${e.key.join(', ')})`;
    const extra = [
      e.unique.length > 0 ? `unique ${e.unique.join(', ')}` : '',
      e.deny.length > 0 ? `deny ${e.deny.join(', ')} (looks secret)` : '',
    ].filter(Boolean);
    lines.push(
      `  ${e.name}: ${e.table} by ${key}${extra.length > 0 ? `; ${extra.join('; ')}` : ''}`,
    );
  }
  for (const i of draft.invalidateBy)
    lines.push(`  invalidateBy ${i.table}: ${i.columns.join(', ')}`);
  for (const s of draft.skipped) lines.push(`- skipped ${s.table}: ${s.reason}`);
  // The commands find the file themselves when it is the only config of this folder.
  const here = DEFAULT_CONFIG_FILES.filter((name) => existsSync(join(process.cwd(), name)));
  const found = here.length === 1 && join(process.cwd(), here[0] as string) === result.path;
  const config = found ? '' : ` --config ${shown}`;
  lines.push(
    'next:',
    `  review ${shown}, then`,
    `  walcache setup${config}    # wal_level check, replica identity, slot`,
    `  walcache worker${config}   # keep it running: it invalidates the cache`,
  );
  return `${lines.join('\n')}\n`;
}
