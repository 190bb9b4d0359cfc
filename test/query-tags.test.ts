import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DummyDriver,
  ExplainNode,
  Kysely,
  type OperationNode,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  sql,
} from 'kysely';
import { resolveConfig } from '../src/config/config.js';
import { InvalidQueryError } from '../src/errors/typed-errors.js';
import { columnTag, tableResetTag, tableTag } from '../src/keys/redis-keys.js';
import { buildChangeModel } from '../src/model/table-model.js';
import { type QueryTagOptions, queryDependencies } from '../src/repository/query-tags.js';

interface DB {
  users: { id: number; email: string; name: string; tenant_id: number };
  orders: { id: number; user_id: number; status: string; total: number };
  items: { id: number; order_id: number };
  events: { id: number; day: Date; seq: bigint };
  audit: { id: number; note: string };
}

const db = new Kysely<DB>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

const model = buildChangeModel(
  resolveConfig({
    entities: { users: { table: 'users', key: 'id' } },
    invalidateBy: {
      orders: ['user_id', 'status'],
      users: ['id', 'tenant_id'],
      items: ['order_id'],
      events: ['day', 'seq'],
    },
  }),
);

const U = 'public.users';
const O = 'public.orders';
const I = 'public.items';
const E = 'public.events';

function deps(query: { toOperationNode(): OperationNode }, options: Partial<QueryTagOptions> = {}) {
  return queryDependencies(query.toOperationNode(), model, { defaultSchema: 'public', ...options });
}

function tags(query: { toOperationNode(): OperationNode }, options?: Partial<QueryTagOptions>) {
  return deps(query, options).tags;
}

const sorted = (...list: string[]) => [...list].sort();

function rejects(
  query: { toOperationNode(): OperationNode },
  pattern: RegExp,
  options?: Partial<QueryTagOptions>,
) {
  assert.throws(
    () => deps(query, options),
    (error: unknown) => {
      assert.ok(error instanceof InvalidQueryError, String(error));
      assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('queryDependencies: single table', () => {
  test('= value narrows to the column tag plus the reset tag', () => {
    const q = db.selectFrom('orders').selectAll().where('user_id', '=', 7);
    assert.deepEqual(deps(q), {
      tags: sorted(columnTag(O, 'user_id', 7), tableResetTag(O)),
      tables: [{ table: O, narrowedBy: { column: 'user_id', values: [7] } }],
    });
  });

  test('the value may be on the left', () => {
    const q = db
      .selectFrom('orders')
      .selectAll()
      .where((eb) => eb(eb.val(7), '=', eb.ref('user_id')));
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 7), tableResetTag(O)));
  });

  test('in (values) narrows to each value, duplicates removed', () => {
    const q = db.selectFrom('orders').selectAll().where('user_id', 'in', [7, 8, 7]);
    assert.deepEqual(deps(q), {
      tags: sorted(columnTag(O, 'user_id', 7), columnTag(O, 'user_id', 8), tableResetTag(O)),
      tables: [{ table: O, narrowedBy: { column: 'user_id', values: [7, 8] } }],
    });
    const withNodes = db
      .selectFrom('orders')
      .selectAll()
      .where((eb) => eb('user_id', 'in', [eb.val(7), eb.lit(8)]));
    assert.deepEqual(tags(withNodes), tags(q));
  });

  test('no WHERE depends on the whole table', () => {
    assert.deepEqual(deps(db.selectFrom('orders').selectAll()), {
      tags: [tableTag(O)],
      tables: [{ table: O, narrowedBy: null }],
    });
  });

  test('other operators, OR, NOT and non-tag columns do not narrow', () => {
    const whole = [tableTag(O)];
    assert.deepEqual(tags(db.selectFrom('orders').selectAll().where('user_id', '>', 7)), whole);
    assert.deepEqual(tags(db.selectFrom('orders').selectAll().where('user_id', '!=', 7)), whole);
    assert.deepEqual(
      tags(
        db
          .selectFrom('orders')
          .selectAll()
          .where((eb) => eb.or([eb('user_id', '=', 7), eb('user_id', '=', 8)])),
      ),
      whole,
    );
    assert.deepEqual(
      tags(
        db
          .selectFrom('orders')
          .selectAll()
          .where((eb) => eb.not(eb('user_id', '=', 7))),
      ),
      whole,
    );
    assert.deepEqual(tags(db.selectFrom('orders').selectAll().where('total', '=', 5)), whole);
    assert.deepEqual(tags(db.selectFrom('orders').selectAll().where('user_id', 'in', [])), whole);
  });

  test('AND conjuncts narrow, also nested in parens; the column with fewer values wins', () => {
    const q = db
      .selectFrom('orders')
      .selectAll()
      .where('total', '>', 3)
      .where((eb) => eb.and([eb('user_id', 'in', [1, 2]), eb('status', '=', 'open')]));
    assert.deepEqual(deps(q), {
      tags: sorted(columnTag(O, 'status', 'open'), tableResetTag(O)),
      tables: [{ table: O, narrowedBy: { column: 'status', values: ['open'] } }],
    });
    // Same number of values: the first column by name.
    const tie = db
      .selectFrom('orders')
      .selectAll()
      .where('user_id', '=', 1)
      .where('status', '=', 'x');
    assert.deepEqual(deps(tie).tables, [
      { table: O, narrowedBy: { column: 'status', values: ['x'] } },
    ]);
  });

  test('two pins on one column: the one with fewer values, never an intersection', () => {
    const q = db
      .selectFrom('orders')
      .selectAll()
      .where('user_id', 'in', [1, 2, 3])
      .where('user_id', '=', 2);
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 2), tableResetTag(O)));
  });

  test('null, objects and arrays cannot narrow', () => {
    const whole = [tableTag(O)];
    assert.deepEqual(tags(db.selectFrom('orders').selectAll().where('user_id', 'is', null)), whole);
    assert.deepEqual(
      tags(
        db
          .selectFrom('orders')
          .selectAll()
          .where((eb) => eb('user_id', '=', sql<number>`${null}`)),
      ),
      whole,
    );
    assert.deepEqual(
      tags(
        db
          .selectFrom('orders')
          .selectAll()
          .where((eb) => eb('user_id', '=', eb.val({ a: 1 } as unknown as number))),
      ),
      whole,
    );
    assert.deepEqual(
      tags(
        db
          .selectFrom('orders')
          .selectAll()
          .where('user_id', 'in', [1, null as unknown as number]),
      ),
      whole,
    );
  });

  test('sql.lit(v) and a sql template of one value are values', () => {
    const expected = sorted(columnTag(O, 'user_id', 7), tableResetTag(O));
    assert.deepEqual(
      tags(db.selectFrom('orders').selectAll().where('user_id', '=', sql.lit(7))),
      expected,
    );
    assert.deepEqual(
      tags(db.selectFrom('orders').selectAll().where('user_id', '=', sql<number>`${7}`)),
      expected,
    );
  });

  test('Date and bigint values', () => {
    const day = new Date('2024-05-01T00:00:00.000Z');
    assert.deepEqual(
      tags(db.selectFrom('events').selectAll().where('day', '=', day)),
      sorted(columnTag(E, 'day', day), tableResetTag(E)),
    );
    assert.deepEqual(
      tags(db.selectFrom('events').selectAll().where('seq', 'in', [1n, 2n])),
      sorted(columnTag(E, 'seq', 1n), columnTag(E, 'seq', 2n), tableResetTag(E)),
    );
    assert.equal(columnTag(E, 'seq', 2n), 'public.events:seq=2');
    // An invalid Date has no key value: whole table.
    assert.deepEqual(
      tags(db.selectFrom('events').selectAll().where('day', '=', new Date(Number.NaN))),
      [tableTag(E)],
    );
  });

  test('aliases', () => {
    const q = db.selectFrom('orders as o').select('o.id').where('o.user_id', '=', 7);
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 7), tableResetTag(O)));
  });

  test('schema-qualified names', () => {
    const q = db.withSchema('public').selectFrom('orders').select('id').where('user_id', '=', 7);
    assert.match(q.compile().sql, /"public"\."orders"/);
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 7), tableResetTag(O)));
    rejects(
      db.withSchema('archive').selectFrom('orders').select('id'),
      /`archive\.orders`.*invalidateBy/,
    );
  });

  test('another default schema', () => {
    const q = db.selectFrom('orders').selectAll();
    rejects(q, /`app\.orders`/, { defaultSchema: 'app' });
  });

  test('functions and raw fragments without table keywords read no table', () => {
    const q = db
      .selectFrom('orders')
      .select((eb) => [
        eb.fn.count('id').as('n'),
        eb.fn.sum('total').as('sum'),
        sql<number>`count(*)`.as('c'),
        eb.fn('row_to_json', [eb.table('orders')]).as('row'),
      ])
      .where('user_id', '=', 7);
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 7), tableResetTag(O)));
  });
});

describe('queryDependencies: joins', () => {
  test('aggregate over users LEFT JOIN orders, pinned in WHERE: both narrowed', () => {
    const q = db
      .selectFrom('users')
      .leftJoin('orders', 'orders.user_id', 'users.id')
      .select((eb) => [
        'users.id',
        eb.fn.count('orders.id').as('n'),
        eb.fn.sum('orders.total').as('sum'),
      ])
      .where('users.id', '=', 7)
      .groupBy('users.id');
    assert.deepEqual(deps(q), {
      tags: sorted(
        columnTag(U, 'id', 7),
        tableResetTag(U),
        columnTag(O, 'user_id', 7),
        tableResetTag(O),
      ),
      tables: [
        { table: O, narrowedBy: { column: 'user_id', values: [7] } },
        { table: U, narrowedBy: { column: 'id', values: [7] } },
      ],
    });
  });

  test('a left-side pin in a LEFT JOIN ON does not narrow the left table', () => {
    const q = db
      .selectFrom('users')
      .leftJoin('orders', (join) =>
        join.onRef('orders.user_id', '=', 'users.id').on('users.id', '=', 7),
      )
      .select((eb) => ['users.id', eb.fn.count('orders.id').as('n')])
      .groupBy('users.id');
    // Every user is returned; only orders with user_id = 7 can ever match.
    assert.deepEqual(tags(q), sorted(tableTag(U), columnTag(O, 'user_id', 7), tableResetTag(O)));
  });

  test('a LEFT JOIN ON never propagates to the left side', () => {
    const q = db
      .selectFrom('users')
      .leftJoin('orders', 'orders.user_id', 'users.id')
      .selectAll()
      .where('orders.user_id', '=', 7);
    // WHERE narrows the joined table; the ON equality does not pin users.id.
    assert.deepEqual(tags(q), sorted(tableTag(U), columnTag(O, 'user_id', 7), tableResetTag(O)));
    const noWhere = db.selectFrom('users').leftJoin('orders', 'orders.user_id', 'users.id');
    assert.deepEqual(tags(noWhere.selectAll()), sorted(tableTag(U), tableTag(O)));
  });

  test('a value pin in a LEFT JOIN ON narrows the joined table', () => {
    const q = db
      .selectFrom('users')
      .leftJoin('orders', (join) =>
        join.onRef('orders.user_id', '=', 'users.id').on('orders.status', '=', 'open'),
      )
      .selectAll();
    assert.deepEqual(
      tags(q),
      sorted(tableTag(U), columnTag(O, 'status', 'open'), tableResetTag(O)),
    );
  });

  test('INNER JOIN equalities propagate both ways', () => {
    const base = db
      .selectFrom('users')
      .innerJoin('orders', 'orders.user_id', 'users.id')
      .selectAll();
    const expected = sorted(
      columnTag(U, 'id', 7),
      tableResetTag(U),
      columnTag(O, 'user_id', 7),
      tableResetTag(O),
    );
    assert.deepEqual(tags(base.where('users.id', '=', 7)), expected);
    assert.deepEqual(tags(base.where('orders.user_id', '=', 7)), expected);
    // A pin inside the INNER JOIN ON counts too.
    const inOn = db
      .selectFrom('users')
      .innerJoin('orders', (join) =>
        join.onRef('orders.user_id', '=', 'users.id').on('orders.user_id', '=', 7),
      )
      .selectAll();
    assert.deepEqual(tags(inOn), expected);
    // Transitively, through a WHERE equality.
    const chain = db
      .selectFrom(['users', 'orders', 'items'])
      .selectAll()
      .whereRef('orders.user_id', '=', 'users.id')
      .whereRef('items.order_id', '=', 'orders.user_id')
      .where('users.id', 'in', [7, 8]);
    assert.deepEqual(
      tags(chain),
      sorted(
        columnTag(U, 'id', 7),
        columnTag(U, 'id', 8),
        tableResetTag(U),
        columnTag(O, 'user_id', 7),
        columnTag(O, 'user_id', 8),
        tableResetTag(O),
        columnTag(I, 'order_id', 7),
        columnTag(I, 'order_id', 8),
        tableResetTag(I),
      ),
    );
  });

  test('RIGHT and FULL JOIN ON narrow nothing; WHERE still narrows', () => {
    const right = db
      .selectFrom('users')
      .rightJoin('orders', (join) =>
        join.onRef('orders.user_id', '=', 'users.id').on('orders.status', '=', 'open'),
      )
      .selectAll();
    assert.deepEqual(tags(right), sorted(tableTag(U), tableTag(O)));
    assert.deepEqual(
      tags(right.where('users.id', '=', 7)),
      sorted(columnTag(U, 'id', 7), tableResetTag(U), tableTag(O)),
    );
    const full = db
      .selectFrom('users')
      .fullJoin('orders', (join) =>
        join.onRef('orders.user_id', '=', 'users.id').on('users.id', '=', 7),
      )
      .selectAll();
    assert.deepEqual(tags(full), sorted(tableTag(U), tableTag(O)));
  });

  test('unqualified columns do not narrow when the scope has several tables', () => {
    const q = db
      .selectFrom('users')
      .innerJoin('orders', 'orders.user_id', 'users.id')
      .selectAll()
      .where('status', '=', 'open');
    assert.deepEqual(tags(q), sorted(tableTag(U), tableTag(O)));
  });

  test('self-join: one whole reference makes the whole table', () => {
    const q = db
      .selectFrom('orders as a')
      .innerJoin('orders as b', 'b.id', 'a.id')
      .selectAll()
      .where('a.user_id', '=', 7);
    assert.deepEqual(deps(q), { tags: [tableTag(O)], tables: [{ table: O, narrowedBy: null }] });
    const both = db
      .selectFrom('orders as a')
      .innerJoin('orders as b', 'b.user_id', 'a.user_id')
      .selectAll()
      .where('a.user_id', '=', 7);
    assert.deepEqual(tags(both), sorted(columnTag(O, 'user_id', 7), tableResetTag(O)));
  });

  test('lateral joins: the subquery is its own scope', () => {
    const q = db
      .selectFrom('users')
      .innerJoinLateral(
        (eb) =>
          eb
            .selectFrom('orders')
            .select('orders.total')
            .whereRef('orders.user_id', '=', 'users.id')
            .where('orders.status', '=', 'open')
            .as('o'),
        (join) => join.onTrue(),
      )
      .selectAll()
      .where('users.id', '=', 1);
    assert.deepEqual(
      tags(q),
      sorted(
        columnTag(U, 'id', 1),
        tableResetTag(U),
        columnTag(O, 'status', 'open'),
        tableResetTag(O),
      ),
    );
  });
});

describe('queryDependencies: subqueries, CTEs, set operations', () => {
  test('IN (subquery) in WHERE', () => {
    const q = db
      .selectFrom('users')
      .selectAll()
      .where('id', 'in', db.selectFrom('orders').select('user_id').where('status', '=', 'open'));
    assert.deepEqual(
      tags(q),
      sorted(tableTag(U), columnTag(O, 'status', 'open'), tableResetTag(O)),
    );
  });

  test('correlated EXISTS: outer references do not narrow', () => {
    const q = db
      .selectFrom('users')
      .selectAll()
      .where('users.tenant_id', '=', 3)
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('orders')
            .select('orders.id')
            .whereRef('orders.user_id', '=', 'users.id')
            .where('orders.status', '=', 'open'),
        ),
      );
    assert.deepEqual(
      tags(q),
      sorted(
        columnTag(U, 'tenant_id', 3),
        tableResetTag(U),
        columnTag(O, 'status', 'open'),
        tableResetTag(O),
      ),
    );
  });

  test('scalar subquery in the selection', () => {
    const q = db.selectFrom('users').select((eb) => [
      'users.id',
      eb
        .selectFrom('items')
        .select((e) => e.fn.countAll().as('n'))
        .where('items.order_id', '=', 5)
        .as('n'),
    ]);
    assert.deepEqual(tags(q), sorted(tableTag(U), columnTag(I, 'order_id', 5), tableResetTag(I)));
  });

  test('subquery in FROM is its own scope; an outer WHERE on it does not narrow', () => {
    const q = db
      .selectFrom((eb) => eb.selectFrom('orders').select(['user_id', 'total']).as('t'))
      .selectAll()
      .where('t.user_id', '=', 7);
    assert.deepEqual(tags(q), [tableTag(O)]);
  });

  test('CTEs: references to the CTE are not tables, the body is its own scope', () => {
    const q = db
      .with('mine', (w) =>
        w.selectFrom('orders').select(['id', 'user_id']).where('user_id', '=', 7),
      )
      .with('lines', (w) =>
        w.selectFrom('items').innerJoin('mine', 'mine.id', 'items.order_id').select('items.id'),
      )
      .selectFrom('mine')
      .innerJoin('lines', 'lines.id', 'mine.id')
      .selectAll()
      .where('mine.user_id', '=', 7);
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 7), tableResetTag(O), tableTag(I)));
  });

  test('recursive CTE', () => {
    const q = db
      .withRecursive('chain(id)', (w) =>
        w
          .selectFrom('orders')
          .select('id')
          .where('user_id', '=', 1)
          .unionAll((u) => u.selectFrom('chain').select('chain.id')),
      )
      .selectFrom('chain')
      .selectAll();
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 1), tableResetTag(O)));
  });

  test('UNION: each branch is its own scope, tags merged per table', () => {
    const q = db
      .selectFrom('orders')
      .select('id')
      .where('user_id', '=', 7)
      .union(db.selectFrom('orders').select('id').where('status', '=', 'open'))
      .union(db.selectFrom('items').select('id'));
    assert.deepEqual(deps(q), {
      tags: sorted(
        columnTag(O, 'status', 'open'),
        columnTag(O, 'user_id', 7),
        tableResetTag(O),
        tableTag(I),
      ),
      tables: [
        { table: I, narrowedBy: null },
        { table: O, narrowedBy: { column: 'status', values: ['open'] } },
        { table: O, narrowedBy: { column: 'user_id', values: [7] } },
      ],
    });
    const merged = db
      .selectFrom('orders')
      .select('id')
      .where('user_id', '=', 7)
      .union(db.selectFrom('orders').select('id').where('user_id', 'in', [8, 7]));
    assert.deepEqual(deps(merged).tables, [
      { table: O, narrowedBy: { column: 'user_id', values: [7, 8] } },
    ]);
  });

  test('a UNION branch sees the CTEs of the query', () => {
    const q = db
      .with('mine', (w) => w.selectFrom('orders').select('id').where('user_id', '=', 7))
      .selectFrom('mine')
      .select('id')
      .union(db.selectFrom('mine' as 'orders').select('id'));
    assert.deepEqual(tags(q), sorted(columnTag(O, 'user_id', 7), tableResetTag(O)));
  });
});

describe('queryDependencies: refusals', () => {
  test('unknown tables, anywhere', () => {
    rejects(
      db.selectFrom('audit').selectAll(),
      /`public\.audit`.*invalidateBy.*'public\.audit': \[\]/,
    );
    rejects(
      db.selectFrom('users').selectAll().where('id', 'in', db.selectFrom('audit').select('id')),
      /`public\.audit`/,
    );
    rejects(
      db.selectFrom('users').leftJoin('audit', 'audit.id', 'users.id').selectAll(),
      /`public\.audit`/,
    );
  });

  test('only SELECT queries', () => {
    rejects(
      db.insertInto('orders').values({ id: 1, user_id: 1, status: 'x', total: 1 }),
      /only SELECT/,
    );
    rejects(db.updateTable('orders').set({ status: 'x' }).where('id', '=', 1), /only SELECT/);
    rejects(db.deleteFrom('orders').where('id', '=', 1), /only SELECT/);
    rejects(sql`select 1`.$castTo<unknown>(), /only SELECT/);
    rejects(db.schema.createTable('t').addColumn('id', 'integer'), /only SELECT/);
  });

  test('a data-modifying WITH', () => {
    const q = db
      .with('gone', (w) => w.deleteFrom('orders').where('id', '=', 1).returning('id'))
      .selectFrom('gone')
      .selectAll();
    rejects(q, /only SELECT.*DELETE/);
  });

  test('locking reads', () => {
    rejects(db.selectFrom('orders').selectAll().forUpdate(), /FOR UPDATE/);
    rejects(db.selectFrom('orders').selectAll().forShare().skipLocked(), /FOR UPDATE/);
    rejects(
      db
        .selectFrom('users')
        .selectAll()
        .where('id', 'in', db.selectFrom('orders').select('user_id').forUpdate()),
      /FOR UPDATE/,
    );
  });

  test('EXPLAIN', () => {
    const node = {
      ...db.selectFrom('orders').selectAll().toOperationNode(),
      explain: ExplainNode.create(),
    };
    assert.throws(
      () => queryDependencies(node, model, { defaultSchema: 'public' }),
      (error: unknown) => error instanceof InvalidQueryError && /EXPLAIN/.test(error.message),
    );
  });

  test('raw SQL that reads tables needs rawTables', () => {
    const q = db
      .selectFrom('users')
      .select(sql<number>`(select count(*) from audit)`.as('n'))
      .where('id', '=', 1);
    rejects(q, /raw SQL.*tables: \[\.\.\.\]/);
    assert.deepEqual(
      tags(q, { rawTables: ['orders'] }),
      sorted(columnTag(U, 'id', 1), tableResetTag(U), tableTag(O)),
    );
    rejects(q, /`public\.audit`.*invalidateBy/, { rawTables: ['audit'] });
    // rawTables: [] declares that the raw SQL reads no table.
    assert.deepEqual(tags(q, { rawTables: [] }), sorted(columnTag(U, 'id', 1), tableResetTag(U)));
    const join = db.selectFrom('users').selectAll().where(sql<boolean>`exists (table orders)`);
    rejects(join, /raw SQL/);
  });

  test('raw SQL in a FROM position is a table read', () => {
    const q = db.selectFrom(sql<{ n: number }>`generate_series(1, 3)`.as('g')).selectAll();
    rejects(q, /raw SQL/);
    assert.deepEqual(tags(q, { rawTables: ['public.items'] }), [tableTag(I)]);
  });
});
