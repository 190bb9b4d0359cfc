/**
 * Key, unique and invalidateBy columns the table does not have: `walcache setup` refuses
 * (no slot) and `walcache doctor` fails, each naming the entity or invalidateBy option,
 * the column, the column meant, and the table's columns; and no REPLICA IDENTITY FULL is
 * asked for on account of a column that does not exist.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { doctor, resolveConfig, setup } from '../src/index.js';
import { REDIS_CONFIG, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

describe('config columns missing from their table', () => {
  const scope = new PgScope('modelcols');
  const config = resolveConfig({
    prefix: uniquePrefix('modelcols'),
    redis: REDIS_CONFIG,
    databaseUrl: DATABASE_URL,
    defaultSchema: scope.schema,
    entities: { users: { table: 'users', key: 'account_no', unique: ['emial'] } },
    invalidateBy: { orders: ['usr_id', 'status'] },
  });
  const users = `${scope.schema}.users`;
  const orders = `${scope.schema}.orders`;
  before(() =>
    scope.create(`CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, name text);
      CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);`),
  );
  after(() => scope.close());

  const expected = [
    {
      detail: `${users} has no column \`account_no\`, named by entities.users.key; its columns: id, email, name`,
      fix: `name one of ${users}'s columns in entities.users.key (its primary key is id), or add the column \`account_no\` to ${users}`,
    },
    {
      detail: `${users} has no column \`emial\`, named by entities.users.unique (did you mean \`email\`?); its columns: id, email, name`,
      fix: 'write `email` for `emial` in entities.users.unique',
    },
    {
      detail: `${orders} has no column \`usr_id\`, named by invalidateBy.orders (did you mean \`user_id\`?); its columns: id, user_id, status`,
      fix: 'write `user_id` for `usr_id` in invalidateBy.orders',
    },
  ];

  it('setup refuses: each column named with its option, the column meant and the table columns; no slot', async () => {
    const report = await setup({
      config,
      slot: scope.slot(),
      dryRun: true,
      walcacheSchema: `${scope.schema}_wc`,
    });
    assert.equal(report.ok, false);
    const columns = report.steps
      .filter((s) => s.status === 'error' && /has no column/.test(s.detail))
      .map((s) => ({ detail: s.detail, fix: s.fix }));
    assert.deepEqual(columns, expected);
    // Old values of columns that do not exist are not a reason for REPLICA IDENTITY FULL:
    // orders still needs it (status), users does not.
    const identity = report.steps.filter((s) => s.step === 'replica-identity');
    assert.deepEqual(
      identity.map((s) => s.detail),
      [`would set REPLICA IDENTITY FULL on ${orders} (old values of status)`],
    );
    assert.ok(
      report.steps.some((s) => s.step === 'slot' && /not created/.test(s.detail)),
      JSON.stringify(report.steps),
    );
  });

  it('doctor fails with the same lines', async () => {
    const report = await doctor({ config, slot: scope.slot() });
    assert.equal(report.ok, false);
    const columns = report.checks
      .filter((c) => /has no column/.test(c.detail))
      .map((c) => ({ status: c.status, detail: c.detail, fix: c.fix }));
    assert.deepEqual(
      columns,
      expected.map((e) => ({ status: 'fail', ...e })),
    );
    const identity = report.checks.filter(
      (c) => c.name === 'replica-identity' && c.status === 'fail',
    );
    assert.deepEqual(
      identity.map((c) => c.detail),
      [
        `${orders} needs REPLICA IDENTITY FULL: the worker needs the old values of status, which UPDATE and DELETE do not carry under DEFAULT (the primary key)`,
      ],
    );
  });
});
