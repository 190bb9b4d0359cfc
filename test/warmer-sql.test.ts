/**
 * A warmer's SQL is checked where it is read, before it runs: `$2` without `$1`, or `$3`
 * and up, is a ConfigError naming the warmer and the file at the runner's start, in
 * `walcache doctor`, and in a run; placeholders inside comments and literals are not
 * parameters (a comment saying "$1 is the entity" made the run send one too many).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ConfigError,
  createRepository,
  defineConfig,
  doctor,
  JobsRunner,
  resolveConfig,
  runWarmer,
} from '../src/index.js';
import { sqlPlaceholders } from '../src/jobs/warmer-sql.js';
import { REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES, warmerSqlFiles } from './repo-helpers.js';

describe('sqlPlaceholders', () => {
  it('finds $n outside comments, literals, dollar quotes and identifiers', () => {
    assert.deepEqual(sqlPlaceholders('SELECT key FROM t WHERE e = $1 LIMIT $2'), [1, 2]);
    assert.deepEqual(sqlPlaceholders('SELECT $10, $1::text'), [1, 10]);
    assert.deepEqual(
      sqlPlaceholders(`-- $1 is the entity, $2 the limit
        /* $3 /* nested $4 */ still a comment $5 */
        SELECT 'costs $6', E'it\\'s $7', "col$8", $body$ $9 $body$, $$ $11 $$, a$12 FROM t`),
      [],
    );
    assert.deepEqual(sqlPlaceholders("SELECT 'it''s' || $2 -- $1"), [2]);
  });
});

describe('warmer SQL checked before it runs', () => {
  const res = new Resources();
  const scope = new PgScope('warmsql');
  const prefix = res.track(uniquePrefix('warmsql'));
  const { db, queries } = countingDb(scope.schema);
  const files = warmerSqlFiles(scope.schema);
  const noEntity = files.file('no-entity.sql', 'SELECT id FROM users ORDER BY id LIMIT $2');
  const third = files.file('third.sql', 'SELECT id FROM users WHERE $1::text <> $3 LIMIT $2');
  const commented = files.file(
    'commented.sql',
    '-- Parameters: none ($1, the entity, is not needed: this file is for users only)\nSELECT id FROM users ORDER BY id LIMIT 2',
  );
  const input = {
    prefix,
    redis: REDIS_CONFIG,
    databaseUrl: DATABASE_URL,
    defaultSchema: scope.schema,
    accessLog: { sampleRate: 0 },
    entities: { users: { table: 'users', key: 'id' } },
  } as const;
  const config = defineConfig({
    ...input,
    warmers: {
      'no-entity': { schedule: { every: 60_000 }, entity: 'users', sql: noEntity },
      third: { schedule: { every: 60_000 }, entity: 'users', sql: third },
      commented: { schedule: { every: 60_000 }, entity: 'users', sql: commented },
    },
  });
  const repo = createRepository({ db, config });

  before(async () => {
    await scope.create(TEST_TABLES);
    await scope.q(`INSERT INTO $schema.users (id, email, name)
      SELECT g, 'u' || g || '@x', 'user ' || g FROM generate_series(1, 5) g`);
  });
  after(async () => {
    await repo.close();
    await db.destroy();
    await res.close();
    await scope.close();
    files.remove();
  });

  const refusal = (warmer: string, file: string, reason: RegExp) => (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.option, `warmers.${warmer}.sql`);
    assert.ok(e.message.includes(file), e.message);
    assert.match(e.message, reason);
    return true;
  };
  const NO_ENTITY = /uses \$2 but not \$1: .*filter by the entity with \$1/;
  const THIRD = /uses \$3: a warmer's SQL gets only \$1 \(the entity name\) and \$2/;

  it('a run refuses $2 without $1, and $3, before any query', async () => {
    const before = queries.length;
    await assert.rejects(
      runWarmer({ name: 'no-entity', config: repo.config, repo }),
      refusal('no-entity', noEntity, NO_ENTITY),
    );
    await assert.rejects(
      runWarmer({ name: 'third', config: repo.config, repo }),
      refusal('third', third, THIRD),
    );
    assert.equal(queries.length, before, 'nothing was sent to PostgreSQL');
  });

  it('placeholders in comments are not sent: the commented warmer runs', async () => {
    await repo.ready();
    const summary = await runWarmer({ name: 'commented', config: repo.config, repo });
    assert.equal(summary.keys, 2);
  });

  it('the jobs runner refuses to start', async () => {
    const runner = new JobsRunner({ config: resolveConfig(config), db, schedule: false });
    try {
      await assert.rejects(runner.start(), refusal('no-entity', noEntity, NO_ENTITY));
    } finally {
      await runner.close();
    }
  });

  it('doctor fails each bad warmer, naming it and its file, and passes the good one', async () => {
    const report = await doctor({ config: resolveConfig(config), slot: scope.slot() });
    const warmers = report.checks.filter((c) => c.name === 'warmer');
    assert.deepEqual(
      warmers.map((c) => [c.status, c.detail.slice(0, c.detail.indexOf(':'))]),
      [
        ['fail', 'warmer no-entity'],
        ['fail', 'warmer third'],
        ['ok', 'warmer commented'],
      ],
    );
    assert.ok(warmers[0]?.detail.includes(noEntity));
    assert.match(warmers[0]?.detail ?? '', NO_ENTITY);
    assert.match(warmers[1]?.detail ?? '', THIRD);
    assert.match(warmers[0]?.fix ?? '', /\$1 is the entity name, \$2 the limit/);
    assert.equal(report.ok, false);
  });
});
