import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../src/cli/load-config.js';
import type { SchemaTable } from '../src/database/schema-tables.js';
import { createRepository, pgConfig } from '../src/index.js';
import { draftConfig } from '../src/ops/config-draft.js';
import { REDIS_CONFIG, runCli } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { scratchProject } from './project-helpers.js';

/**
 * `walcache init` against a real schema: the file it writes is loaded by the CLI's own
 * loader, and `walcache setup` and `walcache doctor` accept it.
 */
const TABLES = `
CREATE TABLE users (
  id bigint PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  password_hash text NOT NULL DEFAULT ''
);
CREATE TABLE teams (id int PRIMARY KEY, slug text NOT NULL, api_token text);
CREATE UNIQUE INDEX teams_slug ON teams (slug);
CREATE UNIQUE INDEX teams_lower_slug ON teams (lower(slug));
CREATE TABLE members (
  team_id int NOT NULL REFERENCES teams (id),
  user_id bigint NOT NULL REFERENCES users (id),
  role text NOT NULL,
  PRIMARY KEY (team_id, user_id),
  UNIQUE (role, team_id)
);
CREATE TABLE audit_log (at timestamptz NOT NULL DEFAULT now(), line text);
CREATE TABLE readings (taken_at timestamptz PRIMARY KEY, value float8);
CREATE TABLE visits (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE visits_2026 PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');`;

describe('walcache init', () => {
  const scope = new PgScope('init');
  const empty = new PgScope('initempty');
  const project = scratchProject('init');
  const s = scope.schema;
  const out = join(project.dir, 'walcache.config.ts');
  let first: Awaited<ReturnType<typeof runCli>>;

  before(async () => {
    await scope.create(TABLES);
    await empty.create('');
    first = await runCli(['init', '--schema', s, '--out', out]);
  });
  after(async () => {
    await scope.q(`DROP PUBLICATION IF EXISTS "${s}_pub"`);
    await scope.close();
    await empty.close();
    project.remove();
  });

  it('drafts an entity per table with a primary key: keys, unique lookups, deny, invalidateBy', async () => {
    assert.equal(first.code, 0, first.stderr);
    const config = await loadConfig(out);
    assert.deepEqual(Object.keys(config.entities).sort(), [
      'members',
      'teams',
      'users',
      'visits_2026',
    ]);
    // A partition is an entity (its changes carry its name); the partitioned parent is not.
    assert.deepEqual(config.entities.visits_2026?.key, ['id', 'day']);
    const { users, teams, members } = config.entities as Record<string, Record<string, unknown>>;
    assert.deepEqual(
      { table: users?.table, key: users?.key, unique: users?.unique, deny: users?.deny },
      { table: `${s}.users`, key: 'id', unique: ['email'], deny: ['password_hash'] },
    );
    // The expression index on lower(slug) names no column: only the plain one is a lookup.
    assert.deepEqual(
      { key: teams?.key, unique: teams?.unique, deny: teams?.deny },
      { key: 'id', unique: ['slug'], deny: ['api_token'] },
    );
    // A composite primary key is a composite key; a two-column unique index is no lookup.
    assert.deepEqual(
      { key: members?.key, unique: members?.unique },
      { key: ['team_id', 'user_id'], unique: [] },
    );
    assert.deepEqual(config.invalidateBy, { [`${s}.members`]: ['team_id', 'user_id'] });
  });

  it('says what it left out, in the file and on stdout, and the next commands', () => {
    const text = readFileSync(out, 'utf8');
    assert.match(text, /^import \{ defineConfig \} from 'walcache';$/m);
    assert.match(text, /^export default defineConfig\(\{$/m);
    assert.match(text, new RegExp(`//\\s+${s}\\.audit_log: no primary key`));
    assert.match(text, new RegExp(`//\\s+${s}\\.readings: key column taken_at is a timestamp`));
    assert.match(text, /members: unique \(role, team_id\) spans 2 columns/);
    assert.match(text, new RegExp(`//\\s+${s}\\.visits: a partitioned table`));
    assert.match(text, /Looks secret.*\n\s+deny: \['password_hash'\]/);
    assert.match(first.stdout, /^✔ wrote .*walcache\.config\.ts: 4 entities from schema/);
    assert.match(first.stdout, new RegExp(`- skipped ${s}\\.audit_log: no primary key`));
    assert.match(first.stdout, /walcache setup --config .*walcache\.config\.ts/);
    assert.match(first.stdout, /walcache worker --config .*walcache\.config\.ts/);
  });

  it('walcache setup and walcache doctor accept the file', async () => {
    const slot = scope.slot();
    const publication = `${s}_pub`;
    const setup = await runCli([
      'setup',
      '--config',
      out,
      '--slot',
      slot,
      '--publication',
      publication,
    ]);
    assert.equal(setup.code, 0, `${setup.stdout}\n${setup.stderr}`);
    assert.match(setup.stdout, new RegExp(`created slot ${slot}`));
    const doctor = await runCli(['doctor', '--config', out, '--slot', slot, '--json']);
    const report = JSON.parse(doctor.stdout) as {
      checks: Array<{ name: string; status: string; detail: string }>;
    };
    const tables = report.checks.find((c) => c.name === 'replica-identity');
    assert.equal(tables?.status, 'ok', JSON.stringify(report.checks, null, 2));
    assert.match(tables?.detail ?? '', /4 of 4 configured tables found, keys and tags match/);
    const failed = report.checks.filter((c) => c.status === 'fail').map((c) => c.name);
    // No worker runs in this test: its heartbeat is the one expected failure.
    assert.deepEqual(failed, ['worker']);
  });

  it('writes JSON the loader reads, with the same entities', async () => {
    const json = join(project.dir, 'walcache.config.json');
    const run = await runCli(['init', '--schema', s, '--out', json]);
    assert.equal(run.code, 0, run.stderr);
    const fromJson = await loadConfig(json);
    const fromTs = await loadConfig(out);
    assert.deepEqual(fromJson.entities, fromTs.entities);
    assert.deepEqual(fromJson.invalidateBy, fromTs.invalidateBy);
  });

  it('refuses to overwrite a file without --force; --force overwrites it', async () => {
    const file = join(project.dir, 'existing.config.ts');
    writeFileSync(file, '// mine\n');
    const run = await runCli(['init', '--schema', s, '--out', file]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /^walcache: .*existing\.config\.ts exists; nothing was written\n {2}fix: pass --force/,
    );
    assert.equal(readFileSync(file, 'utf8'), '// mine\n');
    const forced = await runCli(['init', '--schema', s, '--out', file, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(readFileSync(file, 'utf8'), /defineConfig/);
  });

  it('an unknown schema, an empty schema, an unreachable database: a clear error, no file', async () => {
    const file = join(project.dir, 'never.config.ts');
    const cases: Array<[string[], RegExp]> = [
      [['--schema', `${s}_nope`], new RegExp(`schema ${s}_nope does not exist in postgres://`)],
      [['--schema', empty.schema], new RegExp(`schema ${empty.schema} has no tables\\n {2}fix: `)],
      [
        ['--schema', s, '--database-url', 'postgres://app:s3cret@127.0.0.1:1/test'],
        /PostgreSQL at postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/test is unavailable: walcache init/,
      ],
      [['--schema', 'a;drop'], /Invalid walcache option `--schema`: a schema name/],
      [
        ['--schema', s, '--out', join(project.dir, 'no-such-folder', 'x.ts')],
        /Invalid walcache option `--out`: cannot be written: its folder does not exist/,
      ],
      [
        ['--schema', s, '--out', join(project.dir, 'config.yaml')],
        /Invalid walcache option `--out`: a \.ts/,
      ],
      // A CommonJS file cannot hold the `import` / `export default` the draft is written in.
      [
        ['--schema', s, '--out', join(project.dir, 'walcache.config.cjs')],
        /Invalid walcache option `--out`: a \.ts/,
      ],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(['init', '--out', file, ...args]);
      assert.equal(run.code, 1, args.join(' '));
      assert.match(run.stderr, message, args.join(' '));
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(existsSync(file), false, args.join(' '));
      assert.doesNotMatch(run.stderr, /s3cret/, 'no password shown');
    }
    const missing = await runCli(['init']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /required option '--schema <schema>' not specified/);
  });

  it('a table named like a repository method gets another entity name the repository accepts', async () => {
    const names = new PgScope('initnames');
    try {
      await names.create(`
        CREATE TABLE config (id int PRIMARY KEY);
        CREATE TABLE q (id int PRIMARY KEY);
        CREATE TABLE ready (id int PRIMARY KEY);
        CREATE TABLE ready_table (id int PRIMARY KEY);`);
      const file = join(project.dir, 'names.config.ts');
      const run = await runCli(['init', '--schema', names.schema, '--out', file]);
      assert.equal(run.code, 0, run.stderr);
      const config = await loadConfig(file);
      const tables = Object.fromEntries(
        Object.entries(config.entities).map(([name, e]) => [e.table.split('.')[1], name]),
      );
      assert.deepEqual(tables, {
        config: 'config_table',
        q: 'q_table',
        ready: 'ready_table2',
        ready_table: 'ready_table',
      });
      assert.match(
        readFileSync(file, 'utf8'),
        /config_table: table config: `config` is a repository method/,
      );
      const pool = new pg.Pool(pgConfig(DATABASE_URL));
      const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
      try {
        // The loaded config is resolved (read-only arrays); the repository takes an input.
        const entities = JSON.parse(JSON.stringify(config.entities));
        const repo = createRepository({ db, config: { redis: REDIS_CONFIG, entities } });
        await repo.close();
      } finally {
        await db.destroy();
      }
    } finally {
      await names.close();
    }
  });

  it('a schema whose tables cannot be entities: a clear error, no file', async () => {
    await empty.q('CREATE TABLE $schema.events (at timestamptz, line text)');
    const file = join(project.dir, 'none.config.ts');
    const run = await runCli(['init', '--schema', empty.schema, '--out', file]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /no table of .* can be an entity \(.*events: no primary key/);
    assert.equal(existsSync(file), false);
  });
});

describe('draftConfig', () => {
  it('names tables of public unqualified (defaultSchema), others schema-qualified', () => {
    const table: SchemaTable = {
      name: 'orders',
      relkind: 'r',
      columns: [
        { name: 'id', kind: 'int8' },
        { name: 'user_id', kind: 'int8' },
        { name: 'tags', kind: { unsupported: 'an array' } },
      ],
      primaryKey: ['id'],
      uniques: [],
      foreignKeys: [
        { name: 'orders_user', columns: ['user_id'], references: 'public.users' },
        { name: 'orders_tags', columns: ['tags'], references: 'public.tags' },
      ],
    };
    const inPublic = draftConfig('public', [table]);
    assert.equal(inPublic.entities[0]?.table, 'orders');
    // An array column cannot narrow a tag: its foreign key is left out of invalidateBy.
    assert.deepEqual(inPublic.invalidateBy, [
      { table: 'orders', columns: ['user_id'], references: ['public.users'] },
    ]);
    assert.equal(draftConfig('shop', [table]).entities[0]?.table, 'shop.orders');
  });
});
