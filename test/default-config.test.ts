import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliRun, ROOT, redisEnv } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { scratchProject } from './project-helpers.js';

/**
 * Without --config, a command loads walcache.config.{ts,mts,js,mjs,json} from the
 * current folder (what `walcache init` writes): `walcache setup` then `walcache worker`
 * in a project work on its config, instead of an empty one that follows no table.
 */
function cliIn(cwd: string, args: readonly string[]): Promise<CliRun> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args],
    {
      cwd,
      env: redisEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => {
    out.stdout += d;
  });
  child.stderr.on('data', (d) => {
    out.stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, ...out }));
  });
}

/** The detail of doctor's table check: which tables the config it loaded names. */
async function tablesSeen(cwd: string, slot: string): Promise<string> {
  const run = await cliIn(cwd, ['doctor', '--slot', slot, '--json']);
  const report = JSON.parse(run.stdout) as { checks: Array<{ name: string; detail: string }> };
  return report.checks.find((c) => c.name === 'replica-identity')?.detail ?? run.stderr;
}

describe('the config file in the current folder', () => {
  const scope = new PgScope('defcfg');
  const project = scratchProject('default-config');
  before(() => scope.create('CREATE TABLE users (id bigint PRIMARY KEY, name text)'));
  after(async () => {
    await scope.close();
    project.remove();
  });

  it('is loaded when --config is not given', async () => {
    const entities = { users: { table: `${scope.schema}.users`, key: 'id' } };
    writeFileSync(
      join(project.dir, 'walcache.config.ts'),
      `import { defineConfig } from 'walcache';\nexport default defineConfig(${JSON.stringify({ entities })});\n`,
    );
    assert.match(await tablesSeen(project.dir, scope.slot()), /1 of 1 configured table found/);
  });

  it('two candidates are ambiguous: a ConfigError naming both, nothing guessed', async () => {
    writeFileSync(join(project.dir, 'walcache.config.json'), '{}\n');
    const run = await cliIn(project.dir, ['doctor', '--slot', scope.slot()]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /^walcache: Invalid walcache option `--config`: walcache\.config\.ts and walcache\.config\.json are both in .*: pass --config/,
    );
  });

  it('a folder without one: the environment and defaults, as before', async () => {
    assert.match(await tablesSeen(ROOT, scope.slot()), /the config names no tables/);
  });
});
