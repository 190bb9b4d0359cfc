/**
 * canonicalText: the one definition of "the text of a value of type T" shared by readers,
 * writes and the worker. Unit cases per kind, then every kind the catalog can give a key
 * or tag column, read from a real table: what pg returns for a row and what a caller may
 * spell must canonicalise alike, in any process time zone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { poolQuery, readCatalog } from '../src/database/table-catalog.js';
import { InvalidKeyError } from '../src/index.js';
import {
  type ColumnKind,
  canonicalText,
  isUnsupported,
  unkeyableReason,
} from '../src/keys/canonical.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

const same = (kind: ColumnKind, spellings: unknown[], expected: string) => {
  for (const s of spellings)
    assert.equal(canonicalText(kind, s), expected, `${String(kind)} ${String(s)}`);
};
const refused = (kind: ColumnKind, values: unknown[]) => {
  for (const v of values)
    assert.throws(() => canonicalText(kind, v), InvalidKeyError, `${String(kind)} ${String(v)}`);
};

describe('canonicalText per kind', () => {
  it('integers: sign, zeros and blanks as PostgreSQL reads them; ranges per width', () => {
    same('int4', ['042', ' 42 ', '+42', 42, 42n, '42'], '42');
    same('int8', ['-0', '0', 0, '-000'], '0');
    same('int8', ['9223372036854775807', 9223372036854775807n], '9223372036854775807');
    refused('int2', ['32768', 40000]);
    refused('int4', [
      '4x2',
      '',
      '1.5',
      1.5,
      'NaN',
      Number.NaN,
      2 ** 53,
      '2147483648',
      null,
      true,
      {},
    ]);
    refused('int8', ['9223372036854775808']);
  });

  it('numeric: the shortest decimal; no NaN or infinities', () => {
    same('numeric', ['1.1', '1.10', '01.100', 1.1, '+1.1', '11e-1', '0.011E2'], '1.1');
    same('numeric', ['12.50', 12.5, '12.5'], '12.5');
    same('numeric', ['-0.00', '0', 0, '-0', '.0'], '0');
    same('numeric', ['1e3', 1000, '1000.000', 1000n], '1000');
    same('numeric', ['-0.5', '-.5', -0.5], '-0.5');
    refused('numeric', [
      'NaN',
      'Infinity',
      '-Infinity',
      Number.POSITIVE_INFINITY,
      '1e',
      'abc',
      '.',
      '',
    ]);
  });

  it('text kinds: text as is, char(n) without trailing blanks, citext in lower case, enum labels as is', () => {
    same('text', ['Ada '], 'Ada ');
    same('bpchar', ['ab  ', 'ab'], 'ab');
    same('citext', ['ADA@X', 'Ada@X', 'ada@x'], 'ada@x');
    same('enum', ['Paid'], 'Paid');
  });

  it('uuid: PostgreSQL’s input forms, lower case', () => {
    same(
      'uuid',
      [
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
        '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
        'a0eebc999c0b4ef8bb6d6bb9bd380a11',
        'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11',
      ],
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    );
    refused('uuid', [
      'not-a-uuid',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1',
      '{a0eebc999c0b4ef8bb6d6bb9bd380a11',
      42,
    ]);
  });

  it('bool: true/false and the words PostgreSQL accepts', () => {
    same('bool', [true, 't', 'TRUE', 'yes', 'on', '1', ' y '], 'true');
    same('bool', [false, 'f', 'false', 'no', 'off', '0', 'of'], 'false');
    refused('bool', ['o', 'maybe', 2, '']);
  });

  it('date, timestamp and timestamptz', () => {
    same('date', ['2024-01-02', ' 2024-01-02 ', new Date(2024, 0, 2)], '2024-01-02');
    refused('date', ['2024-02-30', '02/01/2024', 'infinity', new Date(Number.NaN)]);
    same(
      'timestamp',
      [
        '2024-01-02 03:04:05',
        '2024-01-02T03:04:05.000',
        '2024-01-02 03:04:05.0',
        new Date(2024, 0, 2, 3, 4, 5),
      ],
      '2024-01-02 03:04:05.000000',
    );
    same('timestamp', ['2024-01-02 03:04:05.123456'], '2024-01-02 03:04:05.123456');
    refused('timestamp', ['2024-01-02 03:04:05+00', '2024-01-02 25:00:00']);
    same(
      'timestamptz',
      [
        '2024-01-02 03:04:05.5+00',
        '2024-01-02T05:04:05.500+02:00',
        '2024-01-01 22:34:05.5-04:30',
        '2024-01-02T03:04:05.5Z',
        new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 500)),
      ],
      '2024-01-02T03:04:05.500000Z',
    );
    refused('timestamptz', ['2024-01-02 03:04:05', 'yesterday']);
  });

  it('what cannot be a key or a tag says why', () => {
    assert.equal(unkeyableReason('int4'), null);
    assert.match(unkeyableReason('timestamptz') ?? '', /milliseconds/);
    refused({ unsupported: 'an array' }, ['{1,2}']);
  });
});

describe('canonicalText over the types the catalog gives', () => {
  const scope = new PgScope('canonkinds');
  let previousTz: string | undefined;
  before(async () => {
    // A zone far from UTC: pg reads dates and zone-less timestamps as local time.
    previousTz = process.env.TZ;
    process.env.TZ = 'America/St_Johns';
    await scope.q('CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public').catch(() => {});
    await scope.create(`
      CREATE TYPE mood AS ENUM ('Happy', 'sad');
      CREATE DOMAIN small_id AS int2;
      CREATE TABLE kinds (
        i2 int2, i4 int4, i8 int8, sid small_id, n numeric(12,2), nn numeric, t text, v varchar(20),
        c char(5), ci public.citext, u uuid, b bool, d date, ts timestamp, tstz timestamptz,
        m mood, arr int4[], j json, jb jsonb, iv interval, p point, f float8, r int4range);
      INSERT INTO kinds VALUES (-7, 42, 9007199254740993, 5, 12.5, 1.10, 'Ada', 'Ada', 'ab', 'ADA@X',
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', true, '2024-01-02', '2024-01-02 03:04:05.678',
        '2024-01-02 03:04:05.678+00', 'Happy', '{1}', '{}', '{}', '1 day', '(1,2)', 1.5, '[1,2)');`);
  });
  after(async () => {
    if (previousTz === undefined) delete process.env.TZ;
    else process.env.TZ = previousTz;
    await scope.close();
  });

  it('kinds come from the catalog, domains by their base type; arrays, json, intervals, geometry, floats and ranges are refused', async () => {
    const catalog = await readCatalog(poolQuery(scope.pool), [`${scope.schema}.kinds`]);
    const columns = catalog.get(`${scope.schema}.kinds`)?.columns;
    assert.ok(columns);
    const kind = (c: string) => columns.get(c)?.kind;
    assert.deepEqual(
      [
        'i2',
        'i4',
        'i8',
        'sid',
        'n',
        'nn',
        't',
        'v',
        'c',
        'ci',
        'u',
        'b',
        'd',
        'ts',
        'tstz',
        'm',
      ].map(kind),
      [
        'int2',
        'int4',
        'int8',
        'int2',
        'numeric',
        'numeric',
        'text',
        'text',
        'bpchar',
        'citext',
        'uuid',
        'bool',
        'date',
        'timestamp',
        'timestamptz',
        'enum',
      ],
    );
    for (const c of ['arr', 'j', 'jb', 'iv', 'p', 'f', 'r']) {
      const k = kind(c);
      assert.ok(k !== undefined && isUnsupported(k), `${c} is refused (${JSON.stringify(k)})`);
    }
  });

  it('a row as pg returns it and the values a caller spells name the same text', async () => {
    const catalog = await readCatalog(poolQuery(scope.pool), [`${scope.schema}.kinds`]);
    const columns = catalog.get(`${scope.schema}.kinds`)?.columns;
    // A fresh pool, so the parsers run in this time zone.
    const pool = new pg.Pool({ ...pgConfig(DATABASE_URL), max: 1 });
    try {
      const { rows } = await pool.query(`SELECT * FROM ${scope.schema}.kinds`);
      const row = rows[0] as Record<string, unknown>;
      const spelled: Record<string, unknown> = {
        i2: '-07',
        i4: ' 42',
        i8: '9007199254740993',
        sid: 5n,
        n: '12.50',
        nn: 1.1,
        t: 'Ada',
        v: 'Ada',
        c: 'ab   ',
        ci: 'ada@x',
        u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        b: 'yes',
        d: '2024-01-02',
        ts: '2024-01-02T03:04:05.678',
        tstz: '2024-01-01T23:34:05.678-03:30',
        m: 'Happy',
      };
      for (const [column, value] of Object.entries(spelled)) {
        const kind = columns?.get(column)?.kind as ColumnKind;
        assert.equal(
          canonicalText(kind, row[column]),
          canonicalText(kind, value),
          `${column}: pg gave ${JSON.stringify(row[column])}`,
        );
      }
    } finally {
      await pool.end();
    }
  });
});
