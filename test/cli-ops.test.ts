import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Command } from 'commander';
import { Registry } from 'prom-client';
import { invalidateCommand } from '../src/cli/invalidate-command.js';
import { statsCommand } from '../src/cli/stats-command.js';
import {
  collectEngineMetrics,
  resolveConfig,
  stats,
  type WalcacheConfigInput,
  type WalcacheStats,
} from '../src/index.js';
import { Keys } from '../src/keys/redis-keys.js';
import { startHttpServer } from '../src/metrics/http-server.js';
import {
  type CliRun,
  deleteByPrefix,
  freePort,
  REDIS_CONFIG,
  Resources,
  runCli,
  startCli,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { DATABASE_URL } from './pg-helpers.js';

const start = startCli;
const cli = runCli;
type Run = CliRun;

const STACK = /\n\s+at /;

function oneLine(run: Run, pattern: RegExp): void {
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0] ?? '', pattern);
  assert.doesNotMatch(run.stderr, STACK, 'no stack trace');
}

describe('walcache CLI: bad input', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walcache-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.mjs');
  writeFileSync(bad, `export default ${JSON.stringify({ cache: { ttlMs: -5 } })};\n`);
  const composite = join(dir, 'composite.mjs');
  writeFileSync(
    composite,
    `export default ${JSON.stringify({ entities: { members: { table: 'members', key: ['team_id', 'user_id'] } } })};\n`,
  );

  it('an unknown command exits non-zero; the error is the first line, no stack trace', async () => {
    const run = await cli(['nope']);
    assert.notEqual(run.code, 0);
    // main.ts shows the help after a parse error (showHelpAfterError): the error comes first.
    assert.equal(run.stderr.split('\n')[0], "error: unknown command 'nope'");
    assert.doesNotMatch(run.stderr, STACK);
  });

  it('an unknown flag exits non-zero with one line', async () => {
    for (const command of ['doctor', 'stats', 'invalidate']) {
      const run = await cli([command, '--bogus']);
      assert.notEqual(run.code, 0, command);
      oneLine(run, /^error: unknown option '--bogus'$/);
    }
  });

  it('a missing config file: one line; --verbose adds the stack trace', async () => {
    const missing = join(dir, 'missing.mjs');
    const run = await cli(['stats', '--config', missing]);
    assert.equal(run.code, 1);
    oneLine(run, /^walcache: Invalid walcache option `--config`: no such file/);
    const verbose = await cli(['--verbose', 'doctor', '--config', missing]);
    assert.equal(verbose.code, 1);
    assert.match(verbose.stderr, /^walcache: ConfigError: .*no such file/);
    assert.match(verbose.stderr, STACK);
  });

  it('a config that fails validation: one line naming the option; --verbose adds the stack', async () => {
    for (const command of [['doctor'], ['invalidate', '--all', '--yes']]) {
      const run = await cli([...command, '--config', bad]);
      assert.equal(run.code, 1, command.join(' '));
      oneLine(run, /^walcache: Invalid walcache option `cache\.ttlMs`/);
    }
    const verbose = await cli(['--verbose', 'stats', '--config', bad]);
    assert.equal(verbose.code, 1);
    assert.match(verbose.stderr, /cache\.ttlMs/);
    assert.match(verbose.stderr, STACK);
  });

  it('invalidate: no target, several targets, --id without --entity, bad --watch', async () => {
    // Checked before anything connects; run in this process (the one-line output is main.ts's).
    const cases: Array<[Command, string[], RegExp]> = [
      [invalidateCommand(), ['--yes'], /say what to invalidate/],
      [invalidateCommand(), ['--key', 'a', '--all', '--yes'], /use one of --key, --all at a time/],
      [invalidateCommand(), ['--id', '42', '--yes'], /--entity goes with --id or --by\/--value/],
      [
        invalidateCommand(),
        ['--entity', 'nope', '--id', '1', '--yes'],
        /--entity nope: no entity `nope` in the config/,
      ],
      [
        invalidateCommand(),
        ['--config', composite, '--entity', 'members', '--id', '7', '--yes'],
        /members has a composite key \(team_id, user_id\): give 2 comma-separated values/,
      ],
      [statsCommand(), ['--watch', 'soon'], /--watch must be a number of seconds/],
    ];
    for (const [command, args, pattern] of cases) {
      await assert.rejects(
        command.exitOverride().parseAsync(args, { from: 'user' }),
        pattern,
        args.join(' '),
      );
    }
    // And once through the real entry point: exit 1, one line.
    const run = await cli(['invalidate', '--yes']);
    assert.equal(run.code, 1);
    oneLine(run, /^walcache: say what to invalidate/);
  });
});

describe('walcache invalidate', () => {
  const res = new Resources();
  const dir = mkdtempSync(join(tmpdir(), 'walcache-inv-'));
  const prefix = uniquePrefix('cliinv');
  const input: WalcacheConfigInput = {
    prefix,
    redis: REDIS_CONFIG,
    entities: { users: { table: 'users', key: 'id', unique: ['email'] } },
  };
  const file = join(dir, 'config.mjs');
  writeFileSync(file, `export default ${JSON.stringify(input)};\n`);
  const keys = new Keys(prefix);
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await res.close();
  });

  it('--key x --yes tombstones the key in L2 and drops it from every L1', async () => {
    const engine = await res.readyEngine(prefix, input);
    const direct = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    await engine.set('x', { v: 1 });
    assert.deepEqual(await engine.get('x'), { v: 1 });
    const run = await cli(['invalidate', '--config', file, '--key', 'x', '--yes']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'tombstoned 1 key: x (1 held a cached entry)\n');
    assert.equal(await direct.get('x'), undefined);
    assert.equal(await res.redis().exists(keys.entry('x')), 1, 'a tombstone, not a delete');
    // The bus told this process's L1.
    await waitFor('L1 dropped x', async () => (await engine.get('x')) === undefined);
    assert.equal(await engine.getOrLoad('x', () => 'reloaded'), 'reloaded');
  });

  it('without --yes on a non-TTY stdin it refuses with one line and changes nothing', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    await engine.set('y', 'kept');
    const run = await cli(['invalidate', '--config', file, '--key', 'y'], 'pipe');
    assert.equal(run.code, 1);
    oneLine(run, /^walcache: refusing to invalidate without --yes: stdin is not a terminal/);
    assert.equal(run.stdout, '');
    assert.equal(await engine.get('y'), 'kept');
  });

  it('--tag bumps tag versions; --entity/--id tombstones the entity key; --all bumps the epoch', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    const raw = res.redis();

    await engine.set('tagged', 1, { tags: ['team:5'] });
    const before = await raw.get(keys.tagVersion('team:5'));
    // team:6: not a tag the config derives, and nothing depends on it (a typo?): refused,
    // and team:5 is left alone too.
    let run = await cli(['invalidate', '--config', file, '--tag', 'team:5', 'team:6', '--yes']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^walcache: --tag team:6: not a tag the config derives/);
    assert.equal(await raw.get(keys.tagVersion('team:5')), before);
    run = await cli(['invalidate', '--config', file, '--tag', 'team:5', '--yes']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^bumped 1 tag: team:5 \(1 had cached entries depending on it/);
    assert.notEqual(await raw.get(keys.tagVersion('team:5')), before);
    assert.equal(await engine.get('tagged'), undefined);

    await engine.set('users:42', { id: 42 });
    run = await cli(['invalidate', '--config', file, '--entity', 'users', '--id', '42', '--yes']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'tombstoned 1 key: users:42 (1 held a cached entry)\n');
    assert.equal(await engine.get('users:42'), undefined);

    await engine.set('other', 'v');
    const epochBefore = await raw.get(keys.epoch());
    run = await cli(['invalidate', '--config', file, '--all', '--yes']);
    assert.equal(run.code, 0, run.stderr);
    const epoch = /^bumped the cache epoch to (\S+):/.exec(run.stdout)?.[1];
    assert.ok(epoch, run.stdout);
    assert.equal(await raw.get(keys.epoch()), epoch);
    assert.notEqual(epoch, epochBefore);
    assert.equal(await engine.get('other'), undefined);
  });

  it('an unreachable Redis: one line, exit 1', async () => {
    const port = await freePort();
    const down = join(dir, 'down.mjs');
    writeFileSync(
      down,
      `export default ${JSON.stringify({ prefix, redis: { url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200 } })};\n`,
    );
    const run = await cli(['invalidate', '--config', down, '--key', 'x', '--yes']);
    assert.equal(run.code, 1);
    oneLine(
      run,
      /^walcache: Cannot reach the cache Redis at redis:\/\/127\.0\.0\.1:\d+.*nothing was invalidated/,
    );
  });
});

describe('walcache stats', () => {
  const res = new Resources();
  const dir = mkdtempSync(join(tmpdir(), 'walcache-stats-'));
  const prefix = uniquePrefix('clistats');
  const slot = `t_clistats_missing_${process.pid}`;
  const input: WalcacheConfigInput = {
    prefix,
    databaseUrl: DATABASE_URL,
    redis: REDIS_CONFIG,
    entities: { users: { table: 'users', key: 'id', writeBehind: true } },
  };
  const file = join(dir, 'config.mjs');
  writeFileSync(file, `export default ${JSON.stringify(input)};\n`);
  let server: Server;
  let stop: () => void;
  let metricsUrl: string;

  before(async () => {
    const engine = await res.readyEngine(prefix, input);
    const registry = new Registry();
    stop = collectEngineMetrics(engine, registry);
    server = await startHttpServer({
      port: 0,
      host: '127.0.0.1',
      registry,
      ready: () => ({ ready: true }),
    });
    metricsUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/metrics`;
    await engine.getOrLoad('a', () => 1); // miss
    await engine.getOrLoad('a', () => 2); // L1 hit
    await engine.getOrLoad('a', () => 3); // L1 hit
    const now = Date.now();
    await res
      .redis()
      .set(
        new Keys(prefix).heartbeat(),
        JSON.stringify({ lsn: '0/1', commitTime: now - 300, appliedAt: now - 100, runId: 't' }),
      );
  });

  after(async () => {
    stop();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
    const admin = res.redis();
    await deleteByPrefix(admin, `{${prefix}}`);
    await res.close();
  });

  it('--json: hit rate from --metrics-url, worker lag, queues, write-behind', async () => {
    const run = await cli([
      'stats',
      '--config',
      file,
      '--slot',
      slot,
      '--metrics-url',
      metricsUrl,
      '--json',
    ]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const s = JSON.parse(run.stdout) as WalcacheStats;
    assert.deepEqual(s.errors, []);
    assert.deepEqual(s.hitRate, { l1Hits: 2, l2Hits: 0, staleServed: 0, misses: 1, ratio: 2 / 3 });
    assert.ok(s.workerLagMs !== null && s.workerLagMs >= 300 && s.workerLagMs < 60_000);
    assert.ok(s.heartbeatAgeMs !== null && s.heartbeatAgeMs >= 100);
    assert.equal(s.caughtUp, null, 'no slot to tell');
    assert.equal(s.unconfirmedWalBytes, null);
    assert.equal(s.slot, null, 'the slot does not exist');
    assert.deepEqual(Object.keys(s.queues).sort(), ['access-log', 'warm', 'write-behind']);
    assert.deepEqual(s.queues.warm, { waiting: 0, active: 0, delayed: 0, failed: 0 });
    assert.deepEqual(s.writeBehind, { users: { pending: 0, oldestAgeMs: 0, dead: 0 } });

    const text = await cli([
      'stats',
      '--config',
      file,
      '--slot',
      slot,
      '--metrics-url',
      metricsUrl,
    ]);
    assert.equal(text.code, 0, text.stderr);
    // No slot to compare with: the age of the last commit, not called lag.
    assert.match(
      text.stdout,
      /^worker +last commit applied [\d.]+ m?s ago, last heartbeat [\d.]+ m?s ago \(no slot to compare with: caught up or not is unknown\)$/m,
    );
    assert.match(text.stdout, new RegExp(`^slot +${slot}: does not exist$`, 'm'));
    assert.match(
      text.stdout,
      /^hit rate +66\.7% since the process started \(l1 2, l2 0, stale 0, misses 1\)$/m,
    );
    assert.match(text.stdout, /^write-behind users: 0 pending, oldest 0 ms, 0 dead$/m);
  });

  it('without --metrics-url there is no hit rate; a source that cannot be read is listed, exit 1', async () => {
    const s = await stats(resolveConfig(input), { slot });
    assert.equal('hitRate' in s, false);
    assert.deepEqual(s.errors, []);

    const port = await freePort();
    const down = await stats(
      resolveConfig({ ...input, databaseUrl: `postgres://127.0.0.1:${port}/test` }),
      {
        slot,
        metricsUrl: `http://127.0.0.1:${port}/metrics`,
      },
    );
    assert.equal(down.slot, null);
    assert.equal(down.errors.length, 2, down.errors.join('\n'));
    assert.ok(
      down.errors.some((e) => e.startsWith(`PostgreSQL postgres://127.0.0.1:${port}/test: `)),
    );
    assert.ok(down.errors.some((e) => e.startsWith(`metrics http://127.0.0.1:${port}/metrics: `)));
    assert.ok(down.workerLagMs !== null, 'Redis was still read');

    const downFile = join(dir, 'down.mjs');
    writeFileSync(
      downFile,
      `export default ${JSON.stringify({ ...input, databaseUrl: `postgres://127.0.0.1:${port}/test` })};\n`,
    );
    const run = await cli(['stats', '--config', downFile, '--slot', slot]);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, '');
    assert.match(run.stdout, /^✖ could not read PostgreSQL .*ECONNREFUSED/m);
  });

  it('--watch repeats until SIGINT, then exits 0', async () => {
    const run = start(['stats', '--config', file, '--slot', slot, '--json', '--watch', '0.2']);
    await waitFor(
      'two readings',
      () => run.out.stdout.split('\n').filter((l) => l.startsWith('{')).length >= 2,
      20_000,
    );
    run.child.kill('SIGINT');
    const done = await run.done;
    assert.equal(done.code, 0, done.stderr);
    const readings = done.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as WalcacheStats);
    assert.ok(readings.length >= 2);
    assert.ok((readings[1]?.at ?? 0) > (readings[0]?.at ?? 0));
  });
});
