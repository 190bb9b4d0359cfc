/**
 * Captures decoder fixtures from a real server, for both plugins:
 *   test/fixtures/wal2json-v2.jsonl  one wal2json message per line, exactly as output
 *   test/fixtures/pgoutput.jsonl     one pgoutput message per line, base64
 *   test/fixtures/capture-meta.json  server version, options, notices and errors seen
 * Each line: {"case": workload step, "lsn", "xid", "data"}.
 *
 * Needs wal_level=logical and wal2json allowed (output_plugin_libraries). Creates its own
 * schema, publications and temporary slots and drops them at the end.
 *   node --import tsx scripts/capture-fixtures.ts   (DATABASE_URL, default local `test`)
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { wal2jsonSqlOptions } from '../src/cdc/wal2json-decoder.js';

const url = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
const outDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures');

const id = randomBytes(4).toString('hex');
const schema = `walcache_fixtures_${id}`;
const w2jSlot = `walcache_fx_w2j_${id}`;
const pgoSlot = `walcache_fx_pgo_${id}`;
const pub = `walcache_fx_pub_${id}`;
// events has no key: a publication that publishes its UPDATE/DELETE makes the server
// refuse them, so it sits in its own insert/truncate-only publication (see nopk cases).
const pubEvents = `walcache_fx_pub_events_${id}`;

/** Incompressible text (an md5 chain), so the value is stored out of line in TOAST. */
const blob = (chars: number, salt: string): string =>
  `(SELECT string_agg(md5(i::text || '${salt}'), '') FROM generate_series(1, ${chars / 32}) AS i)`;

interface Step {
  readonly name: string;
  readonly sql: readonly string[];
  /** The server is expected to refuse it: the error is recorded, the transaction rolled back. */
  readonly expectError?: boolean;
}

const steps: readonly Step[] = [
  { name: 'insert', sql: [`INSERT INTO users VALUES (1, 'ada@example.com', 'Ada', NULL)`] },
  { name: 'update-non-key', sql: [`UPDATE users SET email = 'ada@example.org' WHERE id = 1`] },
  { name: 'update-pk', sql: ['UPDATE users SET id = 2 WHERE id = 1'] },
  {
    name: 'insert-toast',
    sql: [`INSERT INTO users VALUES (3, 'bob@example.com', 'Bob', ${blob(20_000, 'bio')})`],
  },
  { name: 'update-toast-unchanged', sql: [`UPDATE users SET name = 'Robert' WHERE id = 3`] },
  { name: 'delete', sql: ['DELETE FROM users WHERE id = 2'] },
  { name: 'full-insert', sql: [`INSERT INTO orders VALUES (10, 3, 12.50, 'first')`] },
  { name: 'full-update', sql: ['UPDATE orders SET user_id = 4, total = 99.95 WHERE id = 10'] },
  {
    name: 'full-insert-toast',
    sql: [`INSERT INTO orders VALUES (11, 4, 5.00, ${blob(8_000, 'note')})`],
  },
  { name: 'full-update-toast-unchanged', sql: ['UPDATE orders SET total = 6.00 WHERE id = 11'] },
  { name: 'full-delete', sql: ['DELETE FROM orders WHERE id = 10'] },
  { name: 'composite-insert', sql: [`INSERT INTO memberships VALUES (1, 3, 'member')`] },
  { name: 'composite-update', sql: [`UPDATE memberships SET role = 'admin'`] },
  { name: 'composite-key-change', sql: ['UPDATE memberships SET user_id = 5'] },
  { name: 'composite-delete', sql: ['DELETE FROM memberships'] },
  {
    name: 'nopk-insert',
    sql: [`INSERT INTO events VALUES ('2026-01-02 03:04:05+00', '{"kind": "signup", "n": 1}')`],
  },
  { name: 'nopk-update', sql: [`UPDATE events SET payload = '{"kind": "signup", "n": 2}'`] },
  {
    name: 'nopk-update-published',
    sql: [
      `ALTER PUBLICATION ${pubEvents} SET (publish = 'insert, update, delete, truncate')`,
      `UPDATE events SET payload = '{"kind": "signup", "n": 3}'`,
    ],
    expectError: true,
  },
  { name: 'nopk-delete', sql: ['DELETE FROM events'] },
  {
    name: 'refill',
    sql: [
      `INSERT INTO orders VALUES (12, 3, 1.00, NULL)`,
      `INSERT INTO memberships VALUES (2, 3, 'x')`,
    ],
  },
  { name: 'truncate', sql: ['TRUNCATE orders, memberships'] },
  {
    name: 'message-transactional',
    sql: [`SELECT pg_logical_emit_message(true, 'walcache', 'hb')`],
  },
  {
    name: 'message-non-transactional',
    sql: [`SELECT pg_logical_emit_message(false, 'walcache', 'nontx-${id}')`],
  },
  {
    name: 'multi-row',
    sql: [
      `INSERT INTO users VALUES (100, 'a@x', 'A', NULL), (101, 'b@x', 'B', NULL),
        (9007199254740993, 'big@x', 'Big', NULL)`,
      `UPDATE users SET name = 'A2' WHERE id = 100`,
      `SELECT pg_logical_emit_message(true, 'walcache', 'in-tx')`,
      'DELETE FROM users WHERE id = 101',
    ],
  },
  { name: 'delete-bigint', sql: ['DELETE FROM users WHERE id = 9007199254740993'] },
];

interface Line {
  readonly case: string;
  readonly lsn: string;
  readonly xid: number;
  readonly data: string;
}

async function main(): Promise<void> {
  // pg takes the default user from $USER, which is unset in some shells: use the OS user.
  const target = new URL(url);
  target.username ||= process.env.PGUSER ?? userInfo().username;
  // Two sessions: an ERROR drops every temporary slot of its session, and the workload has
  // a step the server is expected to refuse.
  const client = new pg.Client({ connectionString: target.toString() });
  const slots = new pg.Client({ connectionString: target.toString() });
  await client.connect();
  await slots.connect();
  const notices: { case: string; message: string }[] = [];
  const errors: { case: string; code: string | undefined; message: string }[] = [];
  let current = 'setup';
  for (const c of [client, slots]) {
    c.on('notice', (n) => notices.push({ case: current, message: n.message ?? '' }));
  }
  const wal2json: Line[] = [];
  const pgoutput: Line[] = [];
  const w2jOptions = wal2jsonSqlOptions();
  const pgoOptions = [
    'proto_version',
    '1',
    'publication_names',
    `${pub},${pubEvents}`,
    'messages',
    'true',
  ];
  try {
    await client.query(`CREATE SCHEMA ${schema}`);
    await client.query(`SET search_path TO ${schema}`);
    await client.query(
      'CREATE TABLE users (id bigint PRIMARY KEY, email text, name text, bio text)',
    );
    await client.query(
      'CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric(12,2), note text)',
    );
    await client.query('ALTER TABLE orders REPLICA IDENTITY FULL');
    await client.query('CREATE TABLE events (at timestamptz, payload jsonb)');
    await client.query(
      'CREATE TABLE memberships (org_id int, user_id bigint, role text, PRIMARY KEY (org_id, user_id))',
    );
    await client.query(`CREATE PUBLICATION ${pub} FOR TABLE users, orders, memberships`);
    await client.query(
      `CREATE PUBLICATION ${pubEvents} FOR TABLE events WITH (publish = 'insert, truncate')`,
    );
    // Temporary slots vanish with the session even if this script dies half way.
    await slots.query(`SELECT pg_create_logical_replication_slot($1, 'wal2json', true)`, [w2jSlot]);
    await slots.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)`, [pgoSlot]);

    for (const step of steps) {
      current = step.name;
      const xid = await run(client, step, errors);
      // Other sessions share the database: keep only our transactions, and our own
      // non-transactional message (it has no xid).
      const ours = (row: { xid: string; data: string | Buffer }) =>
        (xid !== null && Number(row.xid) === xid) || row.data.includes(`nontx-${id}`);
      const w = await slots.query<{ lsn: string; xid: string; data: string }>(
        'SELECT lsn::text, xid::text, data FROM pg_logical_slot_get_changes($1, NULL, NULL, VARIADIC $2::text[])',
        [w2jSlot, w2jOptions],
      );
      for (const row of w.rows.filter(ours)) wal2json.push(line(step.name, row, row.data));
      const p = await slots.query<{ lsn: string; xid: string; data: Buffer }>(
        'SELECT lsn::text, xid::text, data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, VARIADIC $2::text[])',
        [pgoSlot, pgoOptions],
      );
      for (const row of p.rows.filter(ours)) {
        pgoutput.push(line(step.name, row, row.data.toString('base64')));
      }
    }
    const version = await client.query<{ v: string }>('SELECT version() AS v');
    mkdirSync(outDir, { recursive: true });
    writeJsonl(join(outDir, 'wal2json-v2.jsonl'), wal2json);
    writeJsonl(join(outDir, 'pgoutput.jsonl'), pgoutput);
    const meta = {
      server: version.rows[0]?.v,
      schema,
      wal2jsonOptions: w2jOptions,
      pgoutputOptions: pgoOptions,
      steps: steps.map((s) => ({ name: s.name, sql: s.sql, expectError: s.expectError ?? false })),
      notices,
      errors,
    };
    writeFileSync(join(outDir, 'capture-meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
    console.log(
      `captured ${wal2json.length} wal2json and ${pgoutput.length} pgoutput messages into ${outDir}`,
    );
  } finally {
    current = 'teardown';
    await client.query('RESET search_path').catch(() => {});
    for (const slot of [w2jSlot, pgoSlot]) {
      await slots
        .query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        )
        .catch((e: unknown) => console.error(`drop slot ${slot}:`, e));
    }
    await client.query(`DROP PUBLICATION IF EXISTS ${pub}, ${pubEvents}`).catch(console.error);
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(console.error);
    await client.end();
    await slots.end();
  }
}

/** Runs one step in its own transaction; returns its xid, or null when it was refused. */
async function run(
  client: pg.Client,
  step: Step,
  errors: { case: string; code: string | undefined; message: string }[],
): Promise<number | null> {
  await client.query('BEGIN');
  try {
    for (const sql of step.sql) await client.query(sql);
    // Assigns an xid even to a step that wrote nothing, so its records can be told apart.
    const x = await client.query<{ xid: string }>('SELECT pg_current_xact_id()::xid::text AS xid');
    await client.query('COMMIT');
    if (step.expectError) throw new Error(`step ${step.name} was expected to fail but did not`);
    return Number(x.rows[0]?.xid);
  } catch (e) {
    await client.query('ROLLBACK');
    if (!step.expectError) throw e;
    const err = e as { code?: string; message?: string };
    errors.push({ case: step.name, code: err.code, message: err.message ?? String(e) });
    return null;
  }
}

function line(name: string, row: { lsn: string; xid: string }, data: string): Line {
  return { case: name, lsn: row.lsn, xid: Number(row.xid), data };
}

function writeJsonl(file: string, lines: readonly Line[]): void {
  writeFileSync(
    file,
    lines
      .map((l) => JSON.stringify(l))
      .join('\n')
      .concat('\n'),
  );
}

await main();
