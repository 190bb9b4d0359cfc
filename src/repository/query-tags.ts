/**
 * Query tags: the cache tags a cached result of a Kysely SELECT must depend on, so that
 * the invalidation worker's tag bumps (src/model/change-mapper.ts) evict it whenever a row
 * change could change the result.
 *
 * The worker bumps, for each row change to a table of the change model:
 * - `tableTag(t)` always;
 * - `columnTag(t, c, v)` for each tag column `c` (config `invalidateBy[t]`), from the old
 *   and the new row image;
 * - `tableResetTag(t)` on TRUNCATE and whenever per-row mapping is impossible.
 *
 * A table reference whose rows are narrowed to `c IN V` depends on `columnTag(t, c, v)` for
 * each `v` of `V` plus `tableResetTag(t)`; any other reference depends on `tableTag(t)`.
 * Several references to one table depend on the union (one whole-table reference wins).
 * The analysis must be sound: never narrower than the truth, whole table when in doubt.
 *
 * Rules:
 * 1. The root must be a SELECT. INSERT, UPDATE, DELETE, MERGE (also nested, e.g. a
 *    data-modifying WITH), raw or DDL queries, EXPLAIN, and SELECTs with end modifiers
 *    (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE, NOWAIT, SKIP LOCKED or a raw end
 *    modifier) throw `InvalidQueryError`.
 * 2. The whole tree is walked: FROM items, JOINs (lateral too), WHERE, HAVING,
 *    selections, ORDER BY..., subqueries anywhere, CTE bodies and set operation branches
 *    (each SELECT is its own scope). Nodes without specific handling are walked
 *    generically (every property that is a node or an array of nodes), so no table is
 *    missed. A table name in FROM/JOIN that names a visible CTE (unqualified) is not a
 *    table. Column qualifiers (`orders.id`, `orders.*`) are not table reads.
 * 3. Every table read must be in the change model (unqualified names get
 *    `options.defaultSchema`): the worker skips other tables, so a cached result reading
 *    one would never be invalidated. Otherwise `InvalidQueryError` (add the table to
 *    `invalidateBy`). The same holds for `options.rawTables`.
 * 4. Narrowing, per SELECT scope, from the top-level AND conjuncts of its WHERE (parens
 *    are transparent): `R.c = value` (either order) or `R.c IN (values...)` pins the
 *    column `c` of the table reference `R`. A value is a parameter or literal
 *    (`ValueNode`, also wrapped as `sql.lit(v)`) of a type `keyValue` accepts (string,
 *    number, bigint, boolean, valid Date, Buffer); a conjunct with any other value (null,
 *    object, array) or with an empty list pins nothing. Only the table's tag columns
 *    narrow it (the worker bumps no other column tag); when several do, the one with the
 *    fewest values wins (ties: alphabetical column name). When a column gets several
 *    pins, the one with the fewest values is used (never an intersection: two distinct
 *    values may compare equal in SQL).
 * 5. Column references: `column` (only when the scope has exactly one FROM item, a table,
 *    and no join) or `qualifier.column`, the qualifier being the alias of an aliased
 *    item, or the name (`orders` or `schema.orders`) of an unaliased one. A qualifier
 *    matching no item of the scope (an outer reference) or several items pins nothing.
 * 6. Column equalities `R1.a = R2.b` from the WHERE and from the ON of INNER joins make
 *    the columns equal (union-find): a pin on one holds for all. A LEFT JOIN's ON narrows
 *    only its right (nullable) table: its conjuncts are added to the scope's equalities
 *    and pins, and only the right table's columns are read from the result (a left-side
 *    pin in that ON does not filter the left table). The ON of RIGHT, FULL, CROSS,
 *    lateral and other joins narrows nothing. WHERE pins narrow tables on every side of
 *    every join: an `=`/`IN` conjunct is false on a null-extended row.
 * 7. Conjuncts under OR, NOT, CASE, functions... never narrow. HAVING never narrows.
 * 8. Raw SQL: a `RawNode` whose fragments contain `from`, `join` or `table`, or a raw node
 *    in a relation position (FROM item, JOIN table, CTE body, set operation branch), may
 *    read tables the analysis cannot see: `InvalidQueryError` (declare them with
 *    `tables: [...]` in `cached()`), unless `options.rawTables` is given; its tables are
 *    then whole-table dependencies. Other raw fragments (`count(*)`) read no table.
 * 9. Functions (`FunctionNode`, `AggregateFunctionNode`, table functions in FROM) read no
 *    table as far as the analysis can tell: a user-defined SQL function that reads tables
 *    is invisible, so declare those tables with `rawTables` (`tables` in `cached()`).
 */
import {
  AliasNode,
  AndNode,
  BinaryOperationNode,
  ColumnNode,
  IdentifierNode,
  type JoinNode,
  type OperationNode,
  OperatorNode,
  ParensNode,
  PrimitiveValueListNode,
  RawNode,
  ReferenceNode,
  SelectQueryNode,
  TableNode,
  ValueListNode,
  ValueNode,
} from 'kysely';
import { InvalidQueryError } from '../errors/typed-errors.js';
import { type ColumnKind, canonicalText } from '../keys/canonical.js';
import { columnTag, keyValue, tableResetTag, tableTag } from '../keys/redis-keys.js';
import type { ChangeModel } from '../model/table-model.js';
import { qualify } from '../model/table-model.js';

export interface TableDependency {
  /** `schema.table` */
  readonly table: string;
  /** null: the query depends on the whole table (tableTag). */
  readonly narrowedBy: { readonly column: string; readonly values: readonly unknown[] } | null;
}

export interface QueryDependencies {
  /** Sorted, deduplicated. */
  readonly tags: readonly string[];
  /**
   * Sorted by table then column, merged per table: one whole-table entry, or one entry per
   * narrowing column (two only when references to one table are narrowed by different
   * columns), its values deduplicated and sorted by key value (`keyValue`).
   */
  readonly tables: readonly TableDependency[];
}

export interface QueryTagOptions {
  readonly defaultSchema: string;
  /** Tables read by raw SQL fragments the analyzer cannot see; each depends on its whole table. */
  readonly rawTables?: readonly string[];
}

type Narrowing = NonNullable<TableDependency['narrowedBy']>;

/**
 * The tags and tables a cached result of `node` (a SELECT's `toOperationNode()`) depends on.
 *
 * @throws {InvalidQueryError} not a SELECT, a locking SELECT, a table the worker does not
 *   follow, or raw SQL reading tables without `rawTables`.
 */
export function queryDependencies(
  node: OperationNode,
  model: ChangeModel,
  options: QueryTagOptions,
): QueryDependencies {
  if (!SelectQueryNode.is(node)) {
    throw new InvalidQueryError(
      `only SELECT queries can be cached (got ${describeKind(node.kind)})`,
      { kind: node.kind },
    );
  }
  const analysis = new Analysis(model, options);
  analysis.select(node, { ctes: new Set(), names: new Set() });
  for (const table of options.rawTables ?? []) analysis.addWholeTable(table);
  return merge(analysis.refs);
}

const READS_TABLES = /\b(from|join|table)\b/i;

/** Statements that write, by node kind, as named in messages. */
const WRITE_KINDS: Readonly<Record<string, string>> = {
  InsertQueryNode: 'an INSERT',
  UpdateQueryNode: 'an UPDATE',
  DeleteQueryNode: 'a DELETE',
  MergeQueryNode: 'a MERGE',
};

function describeKind(kind: string): string {
  return WRITE_KINDS[kind] ?? (kind === 'RawNode' ? 'raw SQL' : `a ${kind}`);
}

/** Names visible where a node is evaluated. */
interface Scope {
  /** CTE names (unqualified). */
  readonly ctes: ReadonlySet<string>;
  /** Names of FROM/JOIN items of this and enclosing scopes (aliases, table names). */
  readonly names: ReadonlySet<string>;
}

/** One FROM or JOIN item of a SELECT scope. */
interface Item {
  /** The alias, or the table (or CTE) name of an unaliased table node; null if unnamed. */
  readonly name: string | null;
  /** Schema of an unaliased, schema-qualified table node. */
  readonly schema: string | undefined;
  readonly aliased: boolean;
  /** `schema.table` of a real table; null for a CTE, subquery, function or raw item. */
  readonly table: string | null;
  /** The relation itself, alias removed. */
  readonly relation: OperationNode;
  readonly join: JoinNode | null;
}

interface Ref {
  readonly table: string;
  readonly narrowedBy: Narrowing | null;
}

class Analysis {
  readonly refs: Ref[] = [];

  constructor(
    private readonly model: ChangeModel,
    private readonly options: QueryTagOptions,
  ) {}

  /** Analyses one SELECT as its own scope. */
  select(node: SelectQueryNode, outer: Scope): void {
    if (node.explain) throw new InvalidQueryError('EXPLAIN output cannot be cached');
    if (node.endModifiers && node.endModifiers.length > 0) {
      throw new InvalidQueryError(
        'a SELECT with a locking or end modifier (FOR UPDATE, FOR SHARE, NOWAIT, SKIP LOCKED...) cannot be cached',
      );
    }

    let ctes = outer.ctes;
    if (node.with) {
      const names = node.with.expressions.map((cte) => cte.name.table.table.identifier.name);
      const all = new Set([...outer.ctes, ...names]);
      node.with.expressions.forEach((cte, i) => {
        // A non-recursive CTE sees the ones before it; a recursive WITH sees them all.
        const visible = node.with?.recursive ? all : new Set([...outer.ctes, ...names.slice(0, i)]);
        this.relation(cte.expression, { ctes: visible, names: outer.names });
      });
      ctes = all;
    }

    const items = [
      ...(node.from?.froms ?? []).map((from) => this.item(from, null, ctes)),
      ...(node.joins ?? []).map((join) => this.item(join.table, join, ctes)),
    ];
    const names = new Set(outer.names);
    for (const item of items) {
      if (item.name === null) continue;
      names.add(item.name);
      if (item.schema !== undefined) names.add(`${item.schema}.${item.name}`);
    }
    const scope: Scope = { ctes, names };

    for (const item of items) {
      if (item.table === null) this.relation(item.relation, scope);
      if (item.join?.on) this.visit(item.join.on, scope);
    }
    // A set operation branch sees the CTEs of this SELECT, not its FROM items.
    for (const op of node.setOperations ?? []) {
      this.relation(op.expression, { ctes, names: outer.names });
    }
    for (const [key, value] of Object.entries(node)) {
      if (HANDLED_SELECT_KEYS.has(key)) continue;
      this.visitValue(value, scope);
    }

    this.narrow(node, items);
  }

  /** A node in a relation position: FROM/JOIN item, CTE body, set operation branch. */
  private relation(node: OperationNode, scope: Scope): void {
    if (SelectQueryNode.is(node)) {
      this.select(node, scope);
    } else if (ParensNode.is(node)) {
      this.relation(node.node, scope);
    } else if (RawNode.is(node)) {
      this.rawRead(node);
      for (const parameter of node.parameters) this.visit(parameter, scope);
    } else {
      this.visit(node, scope);
    }
  }

  private item(node: OperationNode, join: JoinNode | null, ctes: ReadonlySet<string>): Item {
    let relation = node;
    let alias: string | null = null;
    if (AliasNode.is(node)) {
      relation = node.node;
      alias = IdentifierNode.is(node.alias) ? node.alias.name : null;
    }
    if (TableNode.is(relation)) {
      const schema = relation.table.schema?.name;
      const name = relation.table.identifier.name;
      const isCte = schema === undefined && ctes.has(name);
      return {
        name: alias ?? name,
        schema: alias === null ? schema : undefined,
        aliased: alias !== null,
        table: isCte ? null : this.tableOf(relation),
        relation,
        join,
      };
    }
    return { name: alias, schema: undefined, aliased: alias !== null, table: null, relation, join };
  }

  /** Walks any node, generically unless it needs specific handling. */
  private visit(node: OperationNode, scope: Scope): void {
    const write = WRITE_KINDS[node.kind];
    if (write) {
      throw new InvalidQueryError(
        `only SELECT queries can be cached, and this one contains ${write} (a data-modifying WITH?)`,
        { kind: node.kind },
      );
    }
    if (SelectQueryNode.is(node)) {
      this.select(node, scope);
      return;
    }
    // Column qualifiers (`orders.id`, `orders.*`) and CTE names are not table reads;
    // values hold user data, not nodes.
    if (
      ReferenceNode.is(node) ||
      node.kind === 'CommonTableExpressionNameNode' ||
      ValueNode.is(node) ||
      PrimitiveValueListNode.is(node)
    ) {
      return;
    }
    if (TableNode.is(node)) {
      // Outside FROM/JOIN a table node names an item as a row value (`row_to_json(users)`);
      // one that names nothing visible is counted as a read of the whole table.
      const schema = node.table.schema?.name;
      const name = node.table.identifier.name;
      const visible =
        schema === undefined
          ? scope.ctes.has(name) || scope.names.has(name)
          : scope.names.has(`${schema}.${name}`);
      const table = visible ? null : this.tableOf(node);
      if (table !== null) this.refs.push({ table, narrowedBy: null });
      return;
    }
    if (RawNode.is(node) && READS_TABLES.test(node.sqlFragments.join(' '))) this.rawRead(node);
    for (const value of Object.values(node)) this.visitValue(value, scope);
  }

  private visitValue(value: unknown, scope: Scope): void {
    if (Array.isArray(value)) {
      for (const element of value) if (isNode(element)) this.visit(element, scope);
    } else if (isNode(value)) {
      this.visit(value, scope);
    }
  }

  private rawRead(node: RawNode): void {
    if (this.options.rawTables !== undefined) return;
    const text = node.sqlFragments.join('?').trim();
    const snippet = text.length > 60 ? `${text.slice(0, 57)}...` : text;
    throw new InvalidQueryError(
      `it contains raw SQL that may read tables walcache cannot see (\`${snippet}\`): pass \`tables: [...]\` to \`cached()\` to declare the tables it reads`,
      { sql: text },
    );
  }

  /**
   * The `schema.table` of a table node, which must be followed by the worker; or null
   * for a relation it does not follow (a view) when the caller declared the tables the
   * query reads (`tables: [...]`): its dependencies are those.
   */
  private tableOf(node: TableNode): string | null {
    const schema = node.table.schema?.name;
    const name = node.table.identifier.name;
    const full = schema === undefined ? name : `${schema}.${name}`;
    if (
      this.options.rawTables !== undefined &&
      !this.model.has(qualify(full, this.options.defaultSchema))
    )
      return null;
    return this.checked(full);
  }

  private checked(name: string): string {
    const table = qualify(name, this.options.defaultSchema);
    if (!this.model.has(table)) {
      throw new InvalidQueryError(
        `it reads \`${table}\`, which the invalidation worker does not follow, so the cached result would never be invalidated: if it is a table, add it to \`invalidateBy\` in the config (e.g. \`invalidateBy: { '${table}': [] }\`); if it is a view, the worker sees only its base tables' changes: follow them, and pass them as \`tables: [...]\` to \`cached()\``,
        { table },
      );
    }
    return table;
  }

  addWholeTable(name: string): void {
    this.refs.push({ table: this.checked(name), narrowedBy: null });
  }

  /** Records a dependency for each real table of the scope, narrowed where rule 4-6 allow. */
  private narrow(node: SelectQueryNode, items: readonly Item[]): void {
    const global = emptyFacts();
    if (node.where) readFacts(node.where.where, items, global);
    for (const item of items) {
      if (item.join?.on && item.join.joinType === 'InnerJoin') {
        readFacts(item.join.on.on, items, global);
      }
    }
    const globalPins = solve(global);
    items.forEach((item, index) => {
      if (item.table === null) return;
      let pins = globalPins;
      if (item.join?.on && item.join.joinType === 'LeftJoin') {
        const local: Facts = { equalities: [...global.equalities], pins: [...global.pins] };
        readFacts(item.join.on.on, items, local);
        pins = solve(local);
      }
      this.refs.push({
        table: item.table,
        narrowedBy: this.bestNarrowing(item.table, index, pins),
      });
    });
  }

  private bestNarrowing(table: string, index: number, pins: Pins): Narrowing | null {
    const tableModel = this.model.get(table);
    const tagColumns = [...(tableModel?.tagColumns ?? [])].sort();
    let best: Narrowing | null = null;
    for (const column of tagColumns) {
      const pinned = pins(columnKey(index, column));
      const values = pinned && canonicalValues(tableModel?.kinds.get(column), pinned);
      if (values && (best === null || values.length < best.values.length)) {
        best = { column, values };
      }
    }
    return best;
  }
}

/** SELECT properties `Analysis.select` handles itself. */
const HANDLED_SELECT_KEYS = new Set([
  'kind',
  'from',
  'joins',
  'with',
  'setOperations',
  'endModifiers',
  'explain',
]);

function isNode(value: unknown): value is OperationNode {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { kind?: unknown }).kind === 'string'
  );
}

// ---------------------------------------------------------------------------------------
// Pins: column equalities and value pins of a scope, solved with a union-find.

/** `item index` + NUL + `column` */
type ColumnKey = string;

interface Facts {
  readonly equalities: Array<readonly [ColumnKey, ColumnKey]>;
  readonly pins: Array<readonly [ColumnKey, readonly unknown[]]>;
}

type Pins = (column: ColumnKey) => readonly unknown[] | undefined;

function emptyFacts(): Facts {
  return { equalities: [], pins: [] };
}

function columnKey(index: number, column: string): ColumnKey {
  return `${index}\u0000${column}`;
}

/** Adds the equalities and pins of the top-level AND conjuncts of `expression`. */
function readFacts(expression: OperationNode, items: readonly Item[], into: Facts): void {
  for (const conjunct of conjuncts(expression)) {
    if (!BinaryOperationNode.is(conjunct) || !OperatorNode.is(conjunct.operator)) continue;
    const left = unwrap(conjunct.leftOperand);
    const right = unwrap(conjunct.rightOperand);
    const leftColumn = columnOf(left, items);
    switch (conjunct.operator.operator) {
      case '=': {
        const rightColumn = columnOf(right, items);
        if (leftColumn !== null && rightColumn !== null) {
          into.equalities.push([leftColumn, rightColumn]);
        } else if (leftColumn !== null) {
          addPin(into, leftColumn, valuesOf([right]));
        } else if (rightColumn !== null) {
          addPin(into, rightColumn, valuesOf([left]));
        }
        break;
      }
      case 'in':
        if (leftColumn === null) break;
        if (ValueListNode.is(right)) addPin(into, leftColumn, valuesOf(right.values.map(unwrap)));
        else if (PrimitiveValueListNode.is(right)) addPin(into, leftColumn, keyable(right.values));
        break;
    }
  }
}

function addPin(into: Facts, column: ColumnKey, values: readonly unknown[] | null): void {
  if (values !== null && values.length > 0) into.pins.push([column, dedupe(values)]);
}

function conjuncts(node: OperationNode): OperationNode[] {
  if (AndNode.is(node)) return [...conjuncts(node.left), ...conjuncts(node.right)];
  if (ParensNode.is(node)) return conjuncts(node.node);
  return [node];
}

/** Removes parens and raw wrappers of a single node (`sql.lit(7)`, sql`${x}`). */
function unwrap(node: OperationNode): OperationNode {
  if (ParensNode.is(node)) return unwrap(node.node);
  if (
    RawNode.is(node) &&
    node.parameters.length === 1 &&
    node.sqlFragments.every((fragment) => fragment.trim() === '')
  ) {
    const [only] = node.parameters;
    if (only) return unwrap(only);
  }
  return node;
}

/** The column a node references in a real table of the scope, or null. */
function columnOf(node: OperationNode, items: readonly Item[]): ColumnKey | null {
  let qualifier: TableNode | undefined;
  let column: string;
  if (ReferenceNode.is(node)) {
    if (!ColumnNode.is(node.column)) return null;
    qualifier = node.table;
    column = node.column.column.name;
  } else if (ColumnNode.is(node)) {
    column = node.column.name;
  } else {
    return null;
  }
  let index: number;
  if (qualifier === undefined) {
    if (items.length !== 1) return null;
    index = 0;
  } else {
    const schema = qualifier.table.schema?.name;
    const name = qualifier.table.identifier.name;
    const matches = items.flatMap((item, i) => (isNamedBy(item, schema, name) ? [i] : []));
    if (matches.length !== 1 || matches[0] === undefined) return null;
    index = matches[0];
  }
  return items[index]?.table ? columnKey(index, column) : null;
}

/** Whether the qualifier `schema.name` (schema optional) names the item. */
function isNamedBy(item: Item, schema: string | undefined, name: string): boolean {
  if (item.aliased) return schema === undefined && item.name === name;
  if (schema === undefined) return item.name === name;
  // `public.orders.id` names the unaliased `orders` or `public.orders`.
  return item.table !== null && item.table === `${schema}.${name}`;
}

/** The values of value nodes, or null if any node is not a usable value. */
function valuesOf(nodes: readonly OperationNode[]): unknown[] | null {
  const values: unknown[] = [];
  for (const node of nodes) {
    if (!ValueNode.is(node)) return null;
    values.push(node.value);
  }
  return keyable(values);
}

/** The values, or null if any cannot be a column tag value. */
function keyable(values: readonly unknown[]): unknown[] | null {
  for (const value of values) {
    switch (typeof value) {
      case 'string':
      case 'number':
      case 'bigint':
      case 'boolean':
        continue;
      default:
        if (value instanceof Date && !Number.isNaN(value.getTime())) continue;
        if (Buffer.isBuffer(value)) continue;
        return null;
    }
  }
  return [...values];
}

/**
 * The values as the worker names them in column tags: canonical text for the column's
 * type (`'07'` -> `'7'` on an int, `12.5` -> `'12.5'` and the worker's `12.50` -> `'12.5'`
 * on numeric). A value with no canonical text (NaN, a zone-less timestamptz, text an int
 * column cannot hold) cannot narrow: the query then depends on the whole table. Without
 * the catalog's kind the values are kept as given.
 */
function canonicalValues(
  kind: ColumnKind | undefined,
  values: readonly unknown[],
): unknown[] | null {
  if (kind === undefined) return [...values];
  const out: string[] = [];
  for (const value of values) {
    try {
      out.push(canonicalText(kind, value));
    } catch {
      return null;
    }
  }
  return dedupe(out);
}

function dedupe(values: readonly unknown[]): unknown[] {
  const byKey = new Map<string, unknown>();
  for (const value of values) {
    const k = keyValue(value);
    if (!byKey.has(k)) byKey.set(k, value);
  }
  return [...byKey.values()];
}

/**
 * Solves equalities and pins: each class of equal columns gets the pin with the fewest
 * values among its members' pins (ties: the smallest by key values, for determinism).
 */
function solve(facts: Facts): Pins {
  const parent = new Map<ColumnKey, ColumnKey>();
  const find = (k: ColumnKey): ColumnKey => {
    const up = parent.get(k);
    if (up === undefined) return k;
    const root = find(up);
    parent.set(k, root);
    return root;
  };
  for (const [a, b] of facts.equalities) {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(ra, rb);
  }
  const best = new Map<ColumnKey, readonly unknown[]>();
  for (const [column, values] of facts.pins) {
    const root = find(column);
    const current = best.get(root);
    if (current === undefined || fewer(values, current)) best.set(root, values);
  }
  return (column) => best.get(find(column));
}

function fewer(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return a.length < b.length;
  return a.map(keyValue).join('\u0000') < b.map(keyValue).join('\u0000');
}

// ---------------------------------------------------------------------------------------

function merge(refs: readonly Ref[]): QueryDependencies {
  const byTable = new Map<string, Map<string, Map<string, unknown>> | null>();
  for (const ref of refs) {
    if (ref.narrowedBy === null) {
      byTable.set(ref.table, null);
      continue;
    }
    let columns = byTable.get(ref.table);
    if (columns === null) continue;
    if (columns === undefined) {
      columns = new Map();
      byTable.set(ref.table, columns);
    }
    let values = columns.get(ref.narrowedBy.column);
    if (values === undefined) {
      values = new Map();
      columns.set(ref.narrowedBy.column, values);
    }
    for (const value of ref.narrowedBy.values) {
      const k = keyValue(value);
      if (!values.has(k)) values.set(k, value);
    }
  }

  const tags = new Set<string>();
  const tables: TableDependency[] = [];
  for (const table of [...byTable.keys()].sort()) {
    const columns = byTable.get(table);
    if (!columns) {
      tags.add(tableTag(table));
      tables.push({ table, narrowedBy: null });
      continue;
    }
    tags.add(tableResetTag(table));
    for (const column of [...columns.keys()].sort()) {
      // Sorted by key value, so the result does not depend on the order of the tree walk.
      const byKey = columns.get(column) ?? new Map<string, unknown>();
      const values = [...byKey.keys()].sort().map((k) => byKey.get(k));
      for (const value of values) tags.add(columnTag(table, column, value));
      tables.push({ table, narrowedBy: { column, values } });
    }
  }
  return { tags: [...tags].sort(), tables };
}
