/**
 * The CLI answers a mistyped command or option with the one meant (commander's
 * suggestions, kept on): the error line first, then "(Did you mean ...?)", exit 1.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Command, CommanderError } from 'commander';
import { doctorCommand } from '../src/cli/doctor-command.js';
import { invalidateCommand } from '../src/cli/invalidate-command.js';
import { jobsCommand } from '../src/cli/jobs-command.js';
import { setupCommand } from '../src/cli/setup-command.js';
import { statsCommand } from '../src/cli/stats-command.js';
import { verifyCommand } from '../src/cli/verify-command.js';
import { warmCommand } from '../src/cli/warm-command.js';
import { workerCommand } from '../src/cli/worker-command.js';
import { runCli } from './helpers.js';

/** Parses `args` in this process; resolves what the command wrote to stderr. */
async function stderrOf(command: Command, args: string[]): Promise<string> {
  let err = '';
  command.exitOverride().configureOutput({
    writeErr: (text) => {
      err += text;
    },
    writeOut: () => {},
  });
  await assert.rejects(command.parseAsync(args, { from: 'user' }), CommanderError);
  return err;
}

describe('walcache CLI: did you mean', () => {
  it('a mistyped command', async () => {
    const run = await runCli(['docter']);
    assert.equal(run.code, 1);
    assert.deepEqual(run.stderr.trimEnd().split('\n'), [
      "error: unknown command 'docter'",
      '(Did you mean doctor?)',
    ]);
  });

  it('a mistyped option of every command', async () => {
    const cases: Array<[Command, string, string]> = [
      [doctorCommand(), '--slott', '--slot'],
      [invalidateCommand(), '--tga', '--tag'],
      [invalidateCommand(), '--entiy', '--entity'],
      [jobsCommand(), '--confg', '--config'],
      [setupCommand(), '--decodr', '--decoder'],
      [statsCommand(), '--wacth', '--watch'],
      [verifyCommand(), '--smaple', '--sample'],
      [warmCommand(), '--nwo', '--now'],
      [workerCommand(), '--confi', '--config'],
    ];
    for (const [command, typo, meant] of cases) {
      const err = await stderrOf(command, [typo]);
      assert.equal(
        err,
        `error: unknown option '${typo}'\n(Did you mean ${meant}?)\n`,
        `${command.name()} ${typo}`,
      );
    }
  });
});
