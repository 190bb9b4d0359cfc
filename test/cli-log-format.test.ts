/**
 * `walcache worker` and `walcache jobs` log JSON when stdout is not a terminal (collectors
 * parse it) and readable lines on a terminal, or as `--log-format` / WALCACHE_LOG_FORMAT say.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { chooseLogFormat } from '../src/cli/logger.js';
import { type CliRun, REDIS_CONFIG, ROOT, redisEnv, uniquePrefix } from './helpers.js';
import { DATABASE_URL } from './pg-helpers.js';

describe('log format', () => {
  it('json when stdout is not a terminal, pretty on one; the option, then the environment, decide first', () => {
    assert.equal(chooseLogFormat(undefined, {}, false), 'json');
    assert.equal(chooseLogFormat(undefined, {}, true), 'pretty');
    assert.equal(chooseLogFormat('pretty', {}, false), 'pretty');
    assert.equal(chooseLogFormat('json', {}, true), 'json');
    assert.equal(chooseLogFormat(undefined, { WALCACHE_LOG_FORMAT: 'pretty' }, false), 'pretty');
    assert.equal(chooseLogFormat(undefined, { WALCACHE_LOG_FORMAT: 'json' }, true), 'json');
    assert.equal(chooseLogFormat(undefined, { WALCACHE_LOG_FORMAT: '' }, false), 'json');
    assert.equal(chooseLogFormat('json', { WALCACHE_LOG_FORMAT: 'pretty' }, true), 'json');
    assert.throws(
      () => chooseLogFormat(undefined, { WALCACHE_LOG_FORMAT: 'xml' }, false),
      /^Error: WALCACHE_LOG_FORMAT must be json or pretty, got "xml"$/,
    );
    assert.throws(
      () => chooseLogFormat('Pretty', {}, false),
      /--log-format must be json or pretty, got "Pretty"/,
    );
  });
});

describe('walcache worker logs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walcache-logfmt-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // A database that does not exist: the worker logs a fatal line and exits 1 at once.
  const url = new URL(DATABASE_URL);
  url.pathname = '/walcache_no_such_db';
  const file = join(dir, 'nodb.mjs');
  writeFileSync(
    file,
    `export default ${JSON.stringify({
      prefix: uniquePrefix('logfmt'),
      redis: REDIS_CONFIG,
      databaseUrl: url.toString(),
      entities: { orders: { table: 'orders', key: 'id' } },
    })};\n`,
  );
  const run = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> =>
    new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--config', file, '--port', '0', ...args],
        { cwd: ROOT, env: redisEnv(env), stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const out = { stdout: '', stderr: '' };
      child.stdout.on('data', (d) => {
        out.stdout += d;
      });
      child.stderr.on('data', (d) => {
        out.stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, ...out }));
    });

  it('JSON lines into a pipe; readable lines with --log-format pretty or WALCACHE_LOG_FORMAT=pretty', {
    timeout: 60_000,
  }, async () => {
    const json = await run([]);
    assert.equal(json.code, 1, json.stderr);
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; component: string });
    const fatal = lines.find((l) => l.level === 60);
    assert.equal(fatal?.msg, 'the worker cannot start');
    assert.equal(fatal?.component, 'walcache-worker');

    for (const pretty of [
      await run(['--log-format', 'pretty']),
      await run([], { WALCACHE_LOG_FORMAT: 'pretty' }),
    ]) {
      assert.equal(pretty.code, 1, pretty.stderr);
      assert.match(pretty.stdout, /^\[\d\d:\d\d:\d\d\.\d{3}\] FATAL: the worker cannot start$/m);
      assert.throws(() => JSON.parse(pretty.stdout.split('\n')[0] ?? ''));
      assert.equal(pretty.stdout.includes('\u001b['), false, 'no colours into a pipe');
    }

    const bad = await run([], { WALCACHE_LOG_FORMAT: 'xml' });
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'walcache: WALCACHE_LOG_FORMAT must be json or pretty, got "xml"\n');
    const badFlag = await run(['--log-format', 'yaml']);
    assert.equal(badFlag.code, 1);
    assert.match(badFlag.stderr, /--log-format <format>' argument 'yaml' is invalid/);
  });
});
