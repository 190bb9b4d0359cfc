import {
  AliasNode,
  ColumnNode,
  IdentifierNode,
  type OperationNode,
  RawNode,
  ReferenceNode,
  SelectQueryNode,
  TableNode,
} from 'kysely';
import { InvalidQueryError } from '../errors/typed-errors.js';
import { qualify } from '../model/table-model.js';

/**
 * Denied columns (`entities.<name>.deny`) in cached queries. A cached result goes to
 * Redis, to every L1 and to the caller, so a denied column must not be in it at any depth.
 *
 * Two defences, for a query that reads a table with denied columns:
 * - `stripDenied` removes every property named like a denied column from the result, at
 *   every depth: `selectAll()` rows, and the nested rows of `jsonObjectFrom`,
 *   `jsonArrayFrom` or `json_agg` (pg hands json back parsed).
 * - `assertNoDeniedOutput` refuses (InvalidQueryError) what stripping by name cannot see:
 *   a whole-row reference to such a table in a select list (`to_jsonb(users)`,
 *   `row_to_json(u)::text`, `sql.ref('users')`), a denied column named in any select list
 *   (`password_hash as h`, `upper(password_hash)`, a scalar subquery's `password_hash`;
 *   also plainly, since its value could only be dropped), and raw SQL outside predicates
 *   whose text names a denied column or such a table as a row.
 *
 * Predicates (WHERE, HAVING, ON, ORDER BY, GROUP BY) may use denied columns: their values
 * do not reach the result. The rules are by name, so they are conservative: a column of
 * another table that happens to share a denied name is refused or stripped too.
 */
export interface DenyRules {
  /** Denied column names of the tables the query reads. */
  readonly columns: ReadonlySet<string>;
  /** `schema.table` of the tables the query reads that have denied columns. */
  readonly tables: ReadonlySet<string>;
  readonly defaultSchema: string;
}

/** Removes denied properties at every depth, in place (the rows are fresh from pg). */
export function stripDenied(value: unknown, columns: ReadonlySet<string>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 64) return;
  if (Array.isArray(value)) {
    for (const element of value) stripDenied(element, columns, depth + 1);
    return;
  }
  if (ArrayBuffer.isView(value) || value instanceof Date) return;
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (columns.has(key)) delete record[key];
    else stripDenied(record[key], columns, depth + 1);
  }
}

/** @throws {InvalidQueryError} when a denied value could reach the result unstripped. */
export function assertNoDeniedOutput(node: OperationNode, rules: DenyRules): void {
  if (rules.tables.size === 0) return;
  new DenyWalk(rules).visit(node, { rows: new Set(), position: 'other' });
}

/** Where a node sits: a select list, a predicate, or elsewhere (FROM items, CTEs...). */
type Position = 'select' | 'predicate' | 'other';

interface Context {
  /** Names that denote a row of a table with denied columns here (aliases, table names). */
  readonly rows: ReadonlySet<string>;
  readonly position: Position;
}

const PREDICATE_KEYS = new Set(['where', 'having', 'orderBy', 'groupBy', 'on']);

class DenyWalk {
  readonly #rules: DenyRules;
  readonly #columnWords: RegExp;

  constructor(rules: DenyRules) {
    this.#rules = rules;
    this.#columnWords = wordsPattern([...rules.columns], '');
  }

  visit(node: OperationNode, ctx: Context): void {
    if (SelectQueryNode.is(node)) {
      this.#select(node, ctx);
      return;
    }
    if (ctx.position === 'select') {
      if (TableNode.is(node)) {
        this.#checkRow(node, ctx);
        return;
      }
      if (ReferenceNode.is(node)) {
        // `users.password_hash`; the qualifier alone is not a row.
        if (ColumnNode.is(node.column)) this.#checkColumn(node.column.column.name, ctx, false);
        return;
      }
      if (ColumnNode.is(node)) {
        this.#checkColumn(node.column.name, ctx, true);
        return;
      }
    }
    if (RawNode.is(node) && ctx.position !== 'predicate') this.#checkRaw(node, ctx);
    for (const [key, value] of Object.entries(node)) {
      const position = PREDICATE_KEYS.has(key) ? 'predicate' : ctx.position;
      this.#visitValue(value, position === ctx.position ? ctx : { ...ctx, position });
    }
  }

  #select(node: SelectQueryNode, outer: Context): void {
    const rows = new Set(outer.rows);
    const items = [...(node.from?.froms ?? []), ...(node.joins ?? []).map((j) => j.table)];
    for (const item of items) {
      const table = AliasNode.is(item) ? item.node : item;
      if (!TableNode.is(table)) continue;
      const schema = table.table.schema?.name;
      const name = table.table.identifier.name;
      const qualified = qualify(
        schema === undefined ? name : `${schema}.${name}`,
        this.#rules.defaultSchema,
      );
      if (!this.#rules.tables.has(qualified)) continue;
      if (AliasNode.is(item) && IdentifierNode.is(item.alias)) rows.add(item.alias.name);
    }
    // Unaliased, a table is named by its name or `schema.name`; every denied table's names
    // count wherever they appear (conservative: a CTE of the same name is refused too).
    for (const table of this.#rules.tables) {
      rows.add(table);
      rows.add(table.slice(table.indexOf('.') + 1));
    }
    for (const [key, value] of Object.entries(node)) {
      if (key === 'kind') continue;
      const position: Position =
        key === 'selections' ? 'select' : PREDICATE_KEYS.has(key) ? 'predicate' : 'other';
      if (key === 'from' || key === 'joins') {
        // FROM items: a table here is a read, not a row value; joins' ON is a predicate.
        this.#visitItems(value, { rows, position: 'other' });
        continue;
      }
      this.#visitValue(value, { rows, position });
    }
  }

  #visitItems(value: unknown, ctx: Context): void {
    const list = Array.isArray(value) ? value : [value];
    for (const element of list) {
      if (!isNode(element)) continue;
      if (element.kind === 'FromNode') {
        this.#visitItems((element as unknown as { froms: unknown }).froms, ctx);
      } else if (element.kind === 'JoinNode') {
        const join = element as unknown as { table: OperationNode; on?: OperationNode };
        this.#visitItems(join.table, ctx);
        if (join.on) this.visit(join.on, { ...ctx, position: 'predicate' });
      } else if (TableNode.is(element)) {
        // read by FROM: allowed
      } else if (AliasNode.is(element) && TableNode.is(element.node)) {
        // an aliased table read: allowed
      } else {
        this.visit(element, ctx);
      }
    }
  }

  #visitValue(value: unknown, ctx: Context): void {
    if (Array.isArray(value)) {
      for (const element of value) if (isNode(element)) this.visit(element, ctx);
    } else if (isNode(value)) {
      this.visit(value, ctx);
    }
  }

  #checkRow(node: TableNode, ctx: Context): void {
    const schema = node.table.schema?.name;
    const name = node.table.identifier.name;
    const shown = schema === undefined ? name : `${schema}.${name}`;
    if (ctx.rows.has(shown)) throw wholeRow(shown, this.#rules);
  }

  #checkColumn(name: string, ctx: Context, unqualified: boolean): void {
    if (this.#rules.columns.has(name)) {
      throw new InvalidQueryError(
        `its select list names the denied column \`${name}\` (an entity's \`deny\`): denied columns are never cached, so leave it out of the select list (\`selectAll()\` is fine: walcache strips denied columns from rows)`,
        { column: name },
      );
    }
    // `sql.ref('users')` is a column reference Postgres resolves to the whole row.
    if (unqualified && ctx.rows.has(name)) throw wholeRow(name, this.#rules);
  }

  #checkRaw(node: RawNode, ctx: Context): void {
    const text = node.sqlFragments.join(' ');
    const column = this.#columnWords.exec(text)?.[1];
    const row = column ? undefined : wordsPattern([...ctx.rows], '(?!\\s*\\.)').exec(text)?.[1];
    if (column === undefined && row === undefined) return;
    const snippet = text.length > 60 ? `${text.slice(0, 57)}...` : text;
    throw new InvalidQueryError(
      `it has raw SQL (\`${snippet.trim()}\`) naming ${column !== undefined ? `the denied column \`${column}\`` : `\`${row}\`, a table with denied columns, as a row`}, which walcache cannot strip from the result: select the columns you need with the query builder`,
      { sql: text },
    );
  }
}

function wholeRow(name: string, rules: DenyRules): InvalidQueryError {
  const columns = [...rules.columns].map((c) => `\`${c}\``).join(', ');
  const table = [...rules.tables].find((t) => t === name || t.endsWith(`.${name}`)) ?? name;
  return new InvalidQueryError(
    `it selects the whole row of \`${table.includes('.') ? table : `${name}`}\` (as in \`to_jsonb(${name})\`), and the row holds denied columns (${columns}) that walcache cannot strip from a row value: select its columns instead (\`jsonObjectFrom(...selectAll())\` is fine)`,
    { table: name },
  );
}

/** A regex matching any of `words` as a whole word (quoted or not), then `tail`. */
function wordsPattern(words: readonly string[], tail: string): RegExp {
  if (words.length === 0) return /(?!)/;
  const alternatives = words
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\\\./g, '"?\\."?'))
    .join('|');
  return new RegExp(`(?<![\\w$.])"?(${alternatives})"?(?![\\w$])${tail}`, 'i');
}

function isNode(value: unknown): value is OperationNode {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { kind?: unknown }).kind === 'string'
  );
}
