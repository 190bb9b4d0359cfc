/**
 * `walcache invalidate --pattern 'users:12*'` (with `--dry-run` to count first) tombstones
 * every entry whose key matches, in L2 and every L1; and `--entity --id` names the row as
 * readers do (`--id 042` is the row 42 of an integer key).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WalcacheConfigInput } from '../src/index.js';
import { REDIS_CONFIG, Resources, runCli, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

describe('walcache invalidate --pattern, and canonical --id', () => {
  const res = new Resources();
  const scope = new PgScope('invpat');
  const dir = mkdtempSync(join(tmpdir(), 'walcache-invpat-'));
  const prefix = uniquePrefix('invpat');
  const input: WalcacheConfigInput = {
    prefix,
    redis: REDIS_CONFIG,
    databaseUrl: DATABASE_URL,
    defaultSchema: scope.schema,
    entities: { accounts: { table: 'accounts', key: 'id' } },
  };
  const file = join(dir, 'config.mjs');
  writeFileSync(file, `export default ${JSON.stringify(input)};\n`);
  before(() => scope.create('CREATE TABLE accounts (id int PRIMARY KEY);'));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await res.close();
    await scope.close();
  });

  it('--dry-run counts the matching entries and changes nothing; without it they are tombstoned', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    for (const k of ['pat:10', 'pat:11', 'pat:1x', 'pat:20', 'other:10']) await engine.set(k, k);
    let run = await runCli(['invalidate', '--config', file, '--pattern', 'pat:1*', '--dry-run']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^3 keys match pat:1\* \(pat:1[0x1], pat:1[0x1], pat:1[0x1]\): nothing was changed \(--dry-run\)$/m,
    );
    assert.equal(await engine.get('pat:10'), 'pat:10');
    run = await runCli(['invalidate', '--config', file, '--pattern', 'pat:1*', '--yes']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^tombstoned 3 keys matching pat:1\*/);
    for (const k of ['pat:10', 'pat:11', 'pat:1x']) assert.equal(await engine.get(k), undefined, k);
    for (const k of ['pat:20', 'other:10']) assert.equal(await engine.get(k), k, `${k} kept`);
    // A second run finds the tombstones, which are not entries.
    run = await runCli(['invalidate', '--config', file, '--pattern', 'pat:1*', '--dry-run']);
    assert.match(run.stdout, /^0 keys match/m);
  });

  it('refuses a pattern with characters a key never has', async () => {
    for (const bad of ['pat:[12]', 'pat:{x}', '']) {
      const run = await runCli(['invalidate', '--config', file, '--pattern', bad, '--yes']);
      assert.equal(run.code, 1, bad);
      assert.match(run.stderr, /pattern/);
    }
  });

  it('--entity accounts --id 042 tombstones accounts:42, the key readers use', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    await engine.set('accounts:42', { id: 42 });
    const run = await runCli([
      'invalidate',
      '--config',
      file,
      '--entity',
      'accounts',
      '--id',
      '042',
      '--yes',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'tombstoned 1 key: accounts:42 (1 held a cached entry)\n');
    assert.equal(await engine.get('accounts:42'), undefined);
  });
});
