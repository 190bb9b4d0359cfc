/**
 * `walcache invalidate` checks what it is told against the config before it changes
 * anything: a mistyped entity, column, key or tag is refused with "did you mean" and the
 * command to type, instead of reporting success and doing nothing. `--entity --by
 * --value` invalidates the entries read by a unique column; the output says how many of
 * the keys and tags actually had cached entries.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { columnTag, uniqueKey, type WalcacheConfigInput } from '../src/index.js';
import { type CliRun, REDIS_CONFIG, Resources, runCli, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

describe('walcache invalidate: targets checked against the config', () => {
  const res = new Resources();
  const scope = new PgScope('invcheck');
  const dir = mkdtempSync(join(tmpdir(), 'walcache-invcheck-'));
  const prefix = uniquePrefix('invcheck');
  const input: WalcacheConfigInput = {
    prefix,
    redis: REDIS_CONFIG,
    databaseUrl: DATABASE_URL,
    defaultSchema: scope.schema,
    entities: { accounts: { table: 'accounts', key: 'id', unique: ['email'] } },
    invalidateBy: { orders: ['user_id'] },
  };
  const file = join(dir, 'config.mjs');
  writeFileSync(file, `export default ${JSON.stringify(input)};\n`);
  const invalidate = (...args: string[]) =>
    runCli(['invalidate', '--config', file, ...args, '--yes']);
  before(async () => {
    await scope.q('CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public').catch(() => {});
    await scope.create(`CREATE TABLE accounts (id int PRIMARY KEY, email public.citext UNIQUE);
      CREATE TABLE orders (id int PRIMARY KEY, user_id int);`);
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await res.close();
    await scope.close();
  });

  /** Exit 1, the reason and the fix on stderr, no stack, nothing on stdout. */
  function refused(run: CliRun, reason: RegExp, fix: string): void {
    assert.equal(run.code, 1, run.stdout);
    assert.equal(run.stdout, '');
    const [first, second, ...more] = run.stderr.trimEnd().split('\n');
    assert.match(first ?? '', reason);
    assert.equal(second, `  fix: ${fix}`);
    assert.deepEqual(more, [], run.stderr);
  }

  it('a mistyped entity, key shape or unique column in --key is refused, and nothing changes', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    await engine.set('accounts:42', 'kept');
    refused(
      await invalidate('--key', 'acounts:42'),
      /^walcache: --key acounts:42: no entity `acounts` in the config \(did you mean `accounts`\?\)/,
      '--key accounts:42',
    );
    refused(
      await invalidate('--key', 'accounts:42:7'),
      /`accounts`'s key is \(id\): its entries are accounts:<id>, not 2 parts/,
      '--key accounts:<id>, or --entity accounts --id <id>',
    );
    refused(
      await invalidate('--key', 'accounts:by:emial:a@x'),
      /`emial` is not a unique column of `accounts` \(did you mean `email`\?\)/,
      '--entity accounts --by email --value a@x',
    );
    // One bad key among good ones: none is tombstoned.
    refused(
      await invalidate('--key', 'accounts:42', 'acounts:42'),
      /--key acounts:42/,
      '--key accounts:42',
    );
    assert.equal(await engine.get('accounts:42'), 'kept');
  });

  it("--key counts the keys that held an entry; a key of the engine's own callers passes once it holds one", async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    await engine.set('accounts:1', 'a');
    let run = await invalidate('--key', 'accounts:1', 'accounts:2');
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'tombstoned 2 keys: accounts:1, accounts:2 (1 held a cached entry)\n');
    assert.equal(await engine.get('accounts:1'), undefined);

    refused(
      await invalidate('--key', 'session:9'),
      /no entity `session` in the config, and no entry is cached under this key/,
      "an entity's key is <entity>:<id> (entities: accounts), or use --entity <name> --id <id>",
    );
    await engine.set('session:9', 's');
    run = await invalidate('--key', 'session:9');
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'tombstoned 1 key: session:9 (1 held a cached entry)\n');
    assert.equal(await engine.get('session:9'), undefined);
  });

  it('--tag: an unqualified table, an unknown table or column is refused with the tag meant', async () => {
    const orders = `${scope.schema}.orders`;
    refused(
      await invalidate('--tag', 'orders:user_id=7'),
      /tags name a table with its schema/,
      `--tag ${orders}:user_id=7`,
    );
    refused(
      await invalidate('--tag', `${orders}:user_idd=7`),
      /`user_idd` is not an invalidateBy column of `.*\.orders` \(did you mean `user_id`\?\)/,
      `--tag ${orders}:user_id=7`,
    );
    refused(
      await invalidate('--tag', `${scope.schema}.ordres`),
      /no table `.*\.ordres` is followed by the config \(did you mean `.*\.orders`\?\)/,
      `--tag ${orders}`,
    );
    refused(
      await invalidate('--tag', 'tenant:5'),
      /not a tag the config derives, and no entry depends on it/,
      `check its spelling; the config's tags are <table>, <table>:reset and <table>:<column>=<value> for ${scope.schema}.accounts, ${orders}, plus those of entities' tags() and cached() calls, once an entry is cached under them`,
    );
  });

  it('--tag: a derived tag passes even unread (0 counted); a free-form tag once an entry depends on it', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    const tag = columnTag(`${scope.schema}.orders`, 'user_id', 7);
    let run = await invalidate('--tag', tag);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout,
      `bumped 1 tag: ${tag} (none had cached entries depending on it, misses now)\n`,
    );
    await engine.set('q:tenant', 'rows', { tags: ['tenant:5'] });
    run = await invalidate('--tag', 'tenant:5', tag);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^bumped 2 tags: tenant:5, .* \(all had cached entries depending/);
    assert.equal(await engine.get('q:tenant'), undefined);
  });

  it('--entity --by --value tombstones the entries findBy reads, named as readers name them', async () => {
    const engine = await res.readyEngine(prefix, { ...input, l1: { enabled: false } });
    // citext: readers name the value by its lower-case canonical text.
    const key = uniqueKey('accounts', 'email', 'ada@x');
    await engine.set(key, { id: 1 });
    const run = await invalidate('--entity', 'accounts', '--by', 'email', '--value', 'ADA@x');
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `tombstoned 1 key: ${key} (1 held a cached entry)\n`);
    assert.equal(await engine.get(key), undefined);

    await engine.set('accounts:42', 'v');
    const byKey = await invalidate('--entity', 'accounts', '--by', 'id', '--value', '042');
    assert.equal(byKey.stdout, 'tombstoned 1 key: accounts:42 (1 held a cached entry)\n');
  });

  it('--entity, --by: did you mean, and the options that go together', async () => {
    refused(
      await invalidate('--entity', 'acounts', '--id', '1'),
      /^walcache: --entity acounts: no entity `acounts` in the config \(did you mean `accounts`\?\)/,
      "--entity accounts; the config's entities: accounts",
    );
    refused(
      await invalidate('--entity', 'accounts', '--by', 'emial', '--value', 'a@x'),
      /^walcache: --by emial: `emial` is not a unique column of `accounts` \(did you mean `email`\?\)/,
      '--entity accounts --by email --value a@x',
    );
    for (const args of [
      ['--entity', 'accounts', '--by', 'email'],
      ['--entity', 'accounts', '--value', 'x'],
      ['--entity', 'accounts', '--id', '1', '--by', 'email', '--value', 'x'],
      ['--by', 'email', '--value', 'x'],
    ]) {
      const run = await invalidate(...args);
      assert.equal(run.code, 1, args.join(' '));
      assert.match(run.stderr, /--by|--entity/);
      assert.equal(run.stdout, '');
    }
  });
});
