#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { doctorCommand } from './doctor-command.js';
import { initCommand } from './init-command.js';
import { invalidateCommand } from './invalidate-command.js';
import { jobsCommand } from './jobs-command.js';
import { setupCommand } from './setup-command.js';
import { statsCommand } from './stats-command.js';
import { verifyCommand } from './verify-command.js';
import { warmCommand } from './warm-command.js';
import { workerCommand } from './worker-command.js';

/**
 * `walcache`: the operator's entry point. Each command lives in its own file and is
 * registered here; this file only parses arguments and turns errors into one line.
 */
const pkg = findPackage();

/** walcache's package.json, from src/cli (tsx) or dist/src/cli (built). */
function findPackage(): { version: string } {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const found = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as {
        name?: string;
        version: string;
      };
      if (found.name === 'walcache') return found;
    } catch {
      // not at this level; try the next
    }
  }
  return { version: '0.0.0' };
}

export function buildProgram(): Command {
  return new Command('walcache')
    .description('A PostgreSQL cache invalidated by the write-ahead log')
    .version(pkg.version)
    .option('--verbose', 'print stack traces on errors')
    .exitOverride()
    .addCommand(initCommand())
    .addCommand(workerCommand())
    .addCommand(setupCommand())
    .addCommand(jobsCommand())
    .addCommand(warmCommand())
    .addCommand(doctorCommand())
    .addCommand(statsCommand())
    .addCommand(invalidateCommand())
    .addCommand(verifyCommand());
}

async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    const verbose = argv.includes('--verbose');
    process.stderr.write(
      `walcache: ${verbose && error instanceof Error ? error.stack : String((error as Error)?.message ?? error)}\n`,
    );
    return 1;
  }
}

process.exitCode = await main(process.argv);
