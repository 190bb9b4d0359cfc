import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Kysely, NO_MIGRATIONS, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import {
  createMigrator,
  parseSqlMigration,
  pendingMigrations,
  runMigrations,
} from '../src/database/migrations.js';
import { type SetupReport, type SetupStep, setup } from '../src/database/setup.js';
import { resolveConfig, SetupError, type WalcacheConfigInput } from '../src/index.js';
import { runCli } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

/**
 * DDL is observed by the server, not by setup's own account of itself: an event trigger
 * logs every DDL command run by a connection whose application_name starts with `wst_`
 * (each setup call below connects under a name of its own).
 */
const ddl = new PgScope('setupddl');
let appSeq = 0;

function appName(): string {
  appSeq += 1;
  return `wst_${ddl.schema.slice(-8)}_${appSeq}`;
}

function urlWithApp(app: string): string {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('application_name', app);
  return url.toString();
}

async function ddlBy(app: string): Promise<string[]> {
  const { rows } = await ddl.q<{ tag: string }>(
    'SELECT tag FROM $schema.ddl_log WHERE app = $1 ORDER BY id',
    [app],
  );
  return rows.map((r) => r.tag);
}

before(async () => {
  await ddl.create('CREATE TABLE ddl_log (id serial PRIMARY KEY, app text, tag text)');
  await ddl.q(`
    CREATE FUNCTION $schema.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $f$
    BEGIN
      IF current_setting('application_name', true) LIKE 'wst\\_%' THEN
        INSERT INTO $schema.ddl_log (app, tag) VALUES (current_setting('application_name', true), tg_tag);
      END IF;
    EXCEPTION WHEN OTHERS THEN NULL;  -- never break anyone else's DDL
    END $f$`);
  await ddl.q(
    'CREATE EVENT TRIGGER $schema_ddl ON ddl_command_start EXECUTE FUNCTION $schema.log_ddl()',
  );
});

after(async () => {
  await ddl.q('DROP EVENT TRIGGER IF EXISTS $schema_ddl');
  await ddl.close();
});

/** A PgScope plus a publication of its own and setup calls tracked by application name. */
class SetupScope extends PgScope {
  readonly publication: string;
  readonly slotName: string;

  constructor(name: string) {
    super(name);
    this.publication = `${this.schema}_pub`;
    this.slotName = this.slot();
  }

  config(input: WalcacheConfigInput, app: string) {
    return resolveConfig({ ...input, defaultSchema: this.schema, databaseUrl: urlWithApp(app) });
  }

  /** Runs setup under a fresh application name; returns the report and the DDL the server saw. */
  async run(
    input: WalcacheConfigInput,
    options: { dryRun?: boolean; setReplicaIdentity?: boolean } = {},
  ): Promise<{ report: SetupReport; ddl: string[] }> {
    const app = appName();
    const report = await setup({
      config: this.config(input, app),
      slot: this.slotName,
      publication: this.publication,
      walcacheSchema: this.schema,
      ...options,
    });
    return { report, ddl: await ddlBy(app) };
  }

  async identity(table: string): Promise<string> {
    const { rows } = await this.q<{ r: string }>(
      `SELECT c.relreplident::text AS r FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2`,
      [this.schema, table],
    );
    assert.ok(rows[0], `table ${table} exists`);
    return rows[0].r;
  }

  async publishedTables(): Promise<string[] | null> {
    const pub = await this.q('SELECT 1 FROM pg_publication WHERE pubname = $1', [this.publication]);
    if (pub.rows.length === 0) return null;
    const { rows } = await this.q<{ name: string }>(
      `SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables
        WHERE pubname = $1 ORDER BY 1`,
      [this.publication],
    );
    return rows.map((r) => r.name);
  }

  async slotRow(): Promise<Record<string, unknown> | undefined> {
    const { rows } = await this.q(
      `SELECT plugin, slot_type, restart_lsn::text, confirmed_flush_lsn::text, catalog_xmin::text
         FROM pg_replication_slots WHERE slot_name = $1`,
      [this.slotName],
    );
    return rows[0];
  }

  async tableExists(table: string): Promise<boolean> {
    return (await regclass(this, `${this.schema}.${table}`)) !== null;
  }

  override async close(): Promise<void> {
    await this.q(`DROP PUBLICATION IF EXISTS "${this.publication}"`);
    await super.close();
  }
}

async function regclass(scope: PgScope, name: string): Promise<string | null> {
  const { rows } = await scope.q<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name]);
  return rows[0]?.t ?? null;
}

function only(report: SetupReport, step: SetupStep['step'], match?: string): SetupStep[] {
  return report.steps.filter((s) => s.step === step && (!match || s.detail.includes(match)));
}

function one(report: SetupReport, step: SetupStep['step'], match?: string): SetupStep {
  const found = only(report, step, match);
  assert.equal(
    found.length,
    1,
    `one ${step} step${match ? ` about ${match}` : ''}: ${show(report)}`,
  );
  return found[0] as SetupStep;
}

function show(report: SetupReport): string {
  return report.steps.map((s) => `\n  [${s.status}] ${s.step}: ${s.detail}`).join('');
}

const TABLES = `
  CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);
  CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric(12,2));
  CREATE TABLE products (id int PRIMARY KEY, title text);`;

/** orders are tagged by user_id, a non-key column: its old value is needed (docs/design.md, Contract 7). */
const BASE: WalcacheConfigInput = {
  entities: {
    users: { table: 'users', key: 'id' },
    orders: { table: 'orders', key: 'id' },
  },
  invalidateBy: { orders: ['user_id'] },
};

describe('walcache setup: first and second run', () => {
  const scope = new SetupScope('setup');
  before(() => scope.create(TABLES));
  after(() => scope.close());

  it('the first run runs the migration, sets FULL identity where needed, creates the publication and the slot', async () => {
    assert.equal(await scope.identity('orders'), 'd');
    const { report, ddl: seen } = await scope.run(BASE);
    assert.ok(report.ok, show(report));
    const s = scope.schema;

    assert.equal(one(report, 'wal_level').status, 'ok');

    const migration = one(report, 'migrations');
    assert.equal(migration.status, 'created');
    assert.match(migration.detail, /0001_walcache_access_log/);
    const columns = await scope.q<{ column_name: string; data_type: string; is_nullable: string }>(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
        WHERE table_schema = $1 AND table_name = 'access_log' ORDER BY ordinal_position`,
      [s],
    );
    assert.deepEqual(
      columns.rows.map((c) => `${c.column_name} ${c.data_type} ${c.is_nullable}`),
      ['key text NO', 'entity text YES', 'hits bigint NO', 'bucket timestamp with time zone NO'],
    );
    const indexes = await scope.q<{ indexdef: string }>(
      "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'access_log' ORDER BY 1",
      [s],
    );
    const defs = indexes.rows.map((r) => r.indexdef).join('\n');
    assert.match(defs, /UNIQUE INDEX access_log_pkey .*\(key, bucket\)/);
    assert.match(defs, /access_log_bucket_hits_idx .*\(bucket, hits DESC\)/);
    const recorded = await scope.q(`SELECT name FROM ${s}.kysely_migration`);
    assert.deepEqual(
      recorded.rows.map((r) => r.name),
      ['0001_walcache_access_log'],
    );

    const identity = one(report, 'replica-identity');
    assert.equal(identity.status, 'changed');
    assert.match(identity.detail, new RegExp(`${s}\\.orders.*user_id`));
    assert.equal(identity.sql, `ALTER TABLE "${s}"."orders" REPLICA IDENTITY FULL`);
    assert.equal(await scope.identity('orders'), 'f');
    assert.equal(await scope.identity('users'), 'd', 'users needs no old values: left alone');

    const publication = one(report, 'publication');
    assert.equal(publication.status, 'created');
    assert.equal(
      publication.sql,
      `CREATE PUBLICATION "${scope.publication}" FOR TABLE "${s}"."orders", "${s}"."users"`,
    );
    assert.deepEqual(await scope.publishedTables(), [`${s}.orders`, `${s}.users`]);

    const slot = one(report, 'slot');
    assert.equal(slot.status, 'created');
    assert.equal(slot.detail, `created slot ${scope.slotName} (wal2json)`);
    assert.equal((await scope.slotRow())?.plugin, 'wal2json');

    // The server saw the DDL (this is what makes the second run's empty log meaningful).
    for (const tag of ['CREATE TABLE', 'CREATE INDEX', 'ALTER TABLE', 'CREATE PUBLICATION'])
      assert.ok(seen.includes(tag), `${tag} in ${seen.join(', ')}`);
  });

  it('the second run reports only ok steps and runs no DDL', async () => {
    const pubOid = async () =>
      (
        await scope.q('SELECT oid::text FROM pg_publication WHERE pubname = $1', [
          scope.publication,
        ])
      ).rows[0]?.oid;
    const before = { pub: await pubOid(), slot: await scope.slotRow() };
    assert.ok(before.pub && before.slot);

    const { report, ddl: seen } = await scope.run(BASE);
    assert.ok(report.ok, show(report));
    assert.deepEqual(
      report.steps.filter((s) => s.status !== 'ok' || s.sql !== undefined),
      [],
      show(report),
    );
    for (const step of [
      'wal_level',
      'migrations',
      'replica-identity',
      'publication',
      'slot',
    ] as const)
      one(report, step);
    assert.deepEqual(seen, [], 'no DDL on the second run');
    assert.equal(await pubOid(), before.pub, 'same publication, not recreated');
    assert.deepEqual(await scope.slotRow(), before.slot, 'same slot, not recreated');
    assert.equal(await scope.identity('orders'), 'f');
    assert.deepEqual(await scope.publishedTables(), [
      `${scope.schema}.orders`,
      `${scope.schema}.users`,
    ]);
  });

  it('a table added to the config is added to the existing publication', async () => {
    const input: WalcacheConfigInput = {
      ...BASE,
      entities: { ...BASE.entities, products: { table: 'products', key: 'id' } },
    };
    const { report, ddl: seen } = await scope.run(input);
    assert.ok(report.ok, show(report));
    const publication = one(report, 'publication');
    assert.equal(publication.status, 'changed');
    const s = scope.schema;
    assert.equal(
      publication.sql,
      `ALTER PUBLICATION "${scope.publication}" SET TABLE "${s}"."orders", "${s}"."products", "${s}"."users"`,
    );
    assert.match(publication.detail, new RegExp(`added ${s}\\.products`));
    assert.deepEqual(seen, ['ALTER PUBLICATION']);
    assert.deepEqual(await scope.publishedTables(), [`${s}.orders`, `${s}.products`, `${s}.users`]);
    assert.ok((await scope.run(input)).report.steps.every((x) => x.status === 'ok'));
  });
});

describe('walcache setup --dry-run', () => {
  const scope = new SetupScope('setupdry');
  before(() => scope.create(TABLES));
  after(() => scope.close());

  it('changes nothing and returns the exact SQL, which does the job when run', async () => {
    const { report, ddl: seen } = await scope.run(BASE, { dryRun: true });
    assert.ok(report.ok, show(report));
    const s = scope.schema;
    assert.deepEqual(seen, [], 'no DDL');
    assert.equal(await scope.slotRow(), undefined, 'no slot');
    assert.equal(await scope.publishedTables(), null, 'no publication');
    assert.equal(await scope.identity('orders'), 'd');
    assert.equal(await scope.tableExists('access_log'), false);
    assert.equal(await scope.tableExists('kysely_migration'), false);

    const migration = one(report, 'migrations');
    assert.equal(migration.status, 'would-run');
    assert.match(migration.detail, /0001_walcache_access_log/);
    assert.match(
      migration.sql ?? '',
      new RegExp(`^SET LOCAL search_path TO "${s}";\\nCREATE TABLE access_log`),
    );
    const identity = one(report, 'replica-identity');
    assert.equal(identity.status, 'would-run');
    assert.equal(identity.sql, `ALTER TABLE "${s}"."orders" REPLICA IDENTITY FULL`);
    const publication = one(report, 'publication');
    assert.equal(publication.status, 'would-run');
    assert.equal(
      publication.sql,
      `CREATE PUBLICATION "${scope.publication}" FOR TABLE "${s}"."orders", "${s}"."users"`,
    );
    const slot = one(report, 'slot');
    assert.equal(slot.status, 'would-run');
    assert.equal(
      slot.sql,
      `SELECT pg_create_logical_replication_slot('${scope.slotName}', 'wal2json')`,
    );

    // Run by hand, that SQL leaves nothing for setup to do (but the migration bookkeeping).
    for (const step of [identity, publication, slot]) await scope.q(step.sql as string);
    const { report: after, ddl: later } = await scope.run(BASE);
    assert.ok(after.ok, show(after));
    for (const step of ['replica-identity', 'publication', 'slot'] as const)
      assert.equal(one(after, step).status, 'ok', show(after));
    assert.equal(one(after, 'migrations').status, 'created');
    assert.ok(
      !later.includes('ALTER TABLE') && !later.includes('CREATE PUBLICATION'),
      later.join(),
    );
  });
});

describe('walcache setup reports what it must not fix silently', () => {
  it('setReplicaIdentity: false reports the table and the columns instead of altering it', async () => {
    const scope = new SetupScope('setupnori');
    try {
      await scope.create(TABLES);
      const { report, ddl: seen } = await scope.run(BASE, { setReplicaIdentity: false });
      assert.equal(report.ok, false);
      const step = one(report, 'replica-identity');
      assert.equal(step.status, 'error');
      assert.match(
        step.detail,
        new RegExp(`${scope.schema}\\.orders needs REPLICA IDENTITY FULL \\(old values of user_id`),
      );
      assert.match(
        step.fix ?? '',
        new RegExp(`ALTER TABLE "${scope.schema}"\\."orders" REPLICA IDENTITY FULL`),
      );
      assert.equal(await scope.identity('orders'), 'd');
      assert.ok(!seen.includes('ALTER TABLE'), seen.join());
      // The rest is done: orders has a primary key, so publishing it is safe.
      assert.equal(one(report, 'publication').status, 'created');
      // A setup with a problem left creates no slot: it would retain WAL with no worker.
      assert.equal(one(report, 'slot').status, 'skipped');
      assert.equal(await scope.slotRow(), undefined);
    } finally {
      await scope.close();
    }
  });

  it('a configured table without a primary key or identity is reported and never published', async () => {
    const scope = new SetupScope('setupnokey');
    try {
      await scope.create(`${TABLES}
        CREATE TABLE logs (id int, msg text);
        CREATE TABLE events (id int, kind text);
        INSERT INTO logs VALUES (1, 'a');`);
      const input: WalcacheConfigInput = {
        entities: {
          users: { table: 'users', key: 'id' },
          ghosts: { table: 'ghosts', key: 'id' },
        },
        // events has no key either, but needs old values: setup gives it FULL identity.
        // logs is followed as a whole (no column of it is needed): nothing makes it FULL.
        invalidateBy: { events: ['kind'], logs: [] },
      };
      const { report } = await scope.run(input);
      const s = scope.schema;
      assert.equal(report.ok, false);
      const logs = one(report, 'replica-identity', `${s}.logs`);
      assert.equal(logs.status, 'error');
      assert.match(logs.detail, /no primary key and no replica identity/);
      assert.match(logs.fix ?? '', /PRIMARY KEY|REPLICA IDENTITY FULL/);
      const events = one(report, 'replica-identity', `${s}.events`);
      assert.equal(events.status, 'changed');
      const ghost = one(report, 'table', `${s}.ghosts`);
      assert.equal(ghost.status, 'error');
      assert.match(ghost.detail, /does not exist/);

      assert.equal(one(report, 'publication').status, 'created');
      assert.deepEqual(await scope.publishedTables(), [`${s}.events`, `${s}.users`]);
      // Published, logs would refuse this UPDATE (55000).
      await scope.q(`UPDATE ${s}.logs SET msg = 'b' WHERE id = 1`);
      await scope.q(`UPDATE ${s}.events SET kind = 'b'`);

      // A config naming no table asks for FOR ALL TABLES: refused while a keyless table exists.
      const all = await scope.run({}, { dryRun: true });
      const refused = one(all.report, 'publication');
      assert.equal(refused.status, 'error');
      assert.match(refused.detail, /FOR ALL TABLES/);
      // The list is cut at 10 names, database-wide: other tests' keyless tables may come first.
      assert.match(refused.detail, new RegExp(`${s}\\.logs|and more`));
    } finally {
      await scope.close();
    }
  });

  it('a slot created with the other plugin is reported and left alone', async () => {
    const scope = new SetupScope('setupplug');
    try {
      await scope.create(TABLES);
      await scope.q("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [scope.slotName]);
      const { report } = await scope.run(BASE);
      assert.equal(report.ok, false);
      const slot = one(report, 'slot');
      assert.equal(slot.status, 'error');
      assert.match(slot.detail, /uses the pgoutput plugin, not wal2json/);
      assert.match(slot.fix ?? '', /--decoder pgoutput/);
      assert.equal((await scope.slotRow())?.plugin, 'pgoutput');
      // With the matching decoder the same slot is fine.
      const again = await setup({
        config: scope.config(BASE, appName()),
        slot: scope.slotName,
        decoder: 'pgoutput',
        publication: scope.publication,
        walcacheSchema: scope.schema,
      });
      assert.equal(one(again, 'slot').status, 'ok');
    } finally {
      await scope.close();
    }
  });
});

describe('walcache migrations', () => {
  it('apply once from a connection string, then roll back through their down sections', async () => {
    const scope = new PgScope('migrations');
    try {
      await scope.create('SELECT 1');
      const options = { schema: scope.schema };
      const pending = await pendingMigrations(DATABASE_URL, options);
      assert.deepEqual(
        pending.map((m) => m.name),
        ['0001_walcache_access_log'],
      );
      const dry = await runMigrations(DATABASE_URL, { ...options, dryRun: true });
      assert.deepEqual(dry.applied, []);
      assert.equal(await regclass(scope, `${scope.schema}.access_log`), null);
      const run = await runMigrations(DATABASE_URL, options);
      assert.deepEqual(run.applied, ['0001_walcache_access_log']);
      assert.deepEqual((await runMigrations(DATABASE_URL, options)).applied, []);
      assert.deepEqual(await pendingMigrations(DATABASE_URL, options), []);
      await scope.q(
        `INSERT INTO $schema.access_log (key, entity, bucket) VALUES ('users:1', 'users', now())`,
      );

      const pool = new pg.Pool(pgConfig(DATABASE_URL));
      const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
      try {
        const { error, results } = await createMigrator(db, options).migrateTo(NO_MIGRATIONS);
        assert.equal(error, undefined);
        assert.deepEqual(
          results?.map((r) => `${r.direction} ${r.migrationName} ${r.status}`),
          ['Down 0001_walcache_access_log Success'],
        );
      } finally {
        await db.destroy();
      }
      assert.equal(await regclass(scope, `${scope.schema}.access_log`), null);
    } finally {
      await scope.close();
    }
  });

  it('a file without an up section is refused by name', () => {
    assert.throws(
      () => parseSqlMigration('0002_x', 'CREATE TABLE x ();', 'migrations/0002_x.sql'),
      (e: unknown) => e instanceof SetupError && /0002_x\.sql has no "-- up" line/.test(e.message),
    );
    const m = parseSqlMigration(
      '0002_x',
      '-- header\n-- up\nCREATE TABLE x ();\n-- down\nDROP TABLE x;\n',
    );
    assert.deepEqual([m.up, m.down], ['CREATE TABLE x ();', 'DROP TABLE x;']);
  });
});

describe('walcache setup (CLI)', () => {
  const scope = new SetupScope('setupcli');
  const dir = mkdtempSync(join(tmpdir(), 'walcache-setup-'));
  before(() => scope.create(TABLES));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await scope.close();
  });

  const cli = (args: string[]) => runCli(['setup', ...args]);

  const writeConfig = (name: string, value: unknown) => {
    const file = join(dir, name);
    writeFileSync(file, `export default ${JSON.stringify(value)};\n`);
    return file;
  };

  it('--dry-run prints one line per step with the SQL, changes nothing and exits 0', async () => {
    const file = writeConfig('ok.mjs', {
      ...BASE,
      databaseUrl: DATABASE_URL,
      defaultSchema: scope.schema,
    });
    const args = ['--config', file, '--slot', scope.slotName, '--publication', scope.publication];
    const { code, stdout, stderr } = await cli([...args, '--dry-run']);
    assert.equal(code, 0, stderr + stdout);
    const lines = stdout.split('\n');
    assert.ok(lines.includes('✔ wal_level = logical'), stdout);
    assert.ok(lines.includes(`• would create slot ${scope.slotName} (wal2json)`), stdout);
    assert.ok(
      lines.includes(
        `    SELECT pg_create_logical_replication_slot('${scope.slotName}', 'wal2json')`,
      ),
      stdout,
    );
    assert.ok(
      lines.includes(`    ALTER TABLE "${scope.schema}"."orders" REPLICA IDENTITY FULL`),
      stdout,
    );
    assert.ok(
      lines.some((l) => l.startsWith(`    CREATE PUBLICATION "${scope.publication}"`)),
      stdout,
    );
    assert.ok(lines.includes('dry run: nothing was changed'), stdout);
    assert.equal(await scope.slotRow(), undefined);
    assert.equal(await scope.identity('orders'), 'd');

    // An error step: ✖ line, the fix on the next, exit 1; --json prints the report.
    const refused = await cli([...args, '--dry-run', '--no-replica-identity']);
    assert.equal(refused.code, 1, refused.stderr + refused.stdout);
    const out = refused.stdout.split('\n');
    const at = out.findIndex((l) =>
      l.startsWith(`✖ ${scope.schema}.orders needs REPLICA IDENTITY FULL`),
    );
    assert.ok(at >= 0, refused.stdout);
    assert.match(out[at + 1] ?? '', /^ {2}fix: ALTER TABLE/);
    const json = await cli([...args, '--dry-run', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as SetupReport;
    assert.equal(report.ok, true);
    assert.equal(one(report, 'slot').status, 'would-run');
  });

  it('a config that fails validation exits 1 with one line naming the option', async () => {
    const file = writeConfig('bad.mjs', { databaseUrl: DATABASE_URL, cache: { ttlMs: -5 } });
    const { code, stdout, stderr } = await cli(['--config', file, '--dry-run']);
    assert.equal(code, 1, stdout);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0] ?? '', /cache\.ttlMs/);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  });
});
