import type pg from 'pg';
import { quoteTable } from './model-check.js';
import { apply, ident, type SetupStep } from './setup-step.js';
import type { TableCatalog } from './table-catalog.js';

// `walcache setup`'s publication step: the publication pgoutput reads holds exactly the
// tables the config follows (created, tables added and dropped, or reported in a dry run).

export async function publicationStep(
  pool: pg.Pool,
  o: {
    publication: string;
    dryRun: boolean;
    allTables: boolean;
    tables: readonly TableCatalog[];
    steps: SetupStep[];
  },
): Promise<void> {
  const pub = ident(o.publication);
  const list = [...o.tables]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((t) => quoteTable(t.name))
    .join(', ');
  const target = o.allTables ? 'FOR ALL TABLES' : `FOR TABLE ${list}`;
  const what = o.allTables
    ? 'all tables (the config names none)'
    : o.tables.map((t) => t.name).join(', ');

  if (o.allTables) {
    // FOR ALL TABLES publishes every table, present and future: one without a key or
    // identity would have its UPDATEs and DELETEs refused.
    const { rows } = await pool.query<{ name: string }>(
      `SELECT n.nspname || '.' || c.relname AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT (c.relreplident = 'f'
                   OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
                   OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
        ORDER BY 1 LIMIT 11`,
    );
    if (rows.length > 0) {
      const names = rows.slice(0, 10).map((r) => r.name);
      o.steps.push({
        step: 'publication',
        status: 'error',
        detail: `publication ${o.publication} FOR ALL TABLES not created or changed: ${names.join(', ')}${rows.length > 10 ? ' and more' : ''} ha${names.length > 1 ? 've' : 's'} no primary key and no replica identity, and published their UPDATEs and DELETEs would fail`,
        fix: `give them a primary key or REPLICA IDENTITY FULL, or list the cached tables in the config's entities / invalidateBy so the publication names only those`,
      });
      return;
    }
  } else if (o.tables.length === 0) {
    o.steps.push({
      step: 'publication',
      status: 'error',
      detail: `publication ${o.publication} not created or changed: no configured table can be published (see above)`,
      fix: 'fix the table problems above and run walcache setup again',
    });
    return;
  }

  const existing = await readPublication(pool, o.publication);
  if (!existing) {
    const statement = `CREATE PUBLICATION ${pub} ${target}`;
    await apply(
      pool,
      o,
      'created',
      `created publication ${o.publication} for ${what}`,
      `create publication ${o.publication} for ${what}`,
      [statement],
    );
    return;
  }

  const statements: string[] = [];
  const changes: string[] = [];
  if (existing.allTables !== o.allTables) {
    // ALTER PUBLICATION cannot switch between FOR ALL TABLES and a table list.
    statements.push(`DROP PUBLICATION ${pub}`, `CREATE PUBLICATION ${pub} ${target}`);
    changes.push(`recreated ${target}`);
  } else {
    if (!o.allTables) {
      const want = o.tables.map((t) => t.name).sort();
      const have = existing.tables;
      if (existing.filtered || existing.schemas > 0 || want.join('\n') !== have.join('\n')) {
        statements.push(`ALTER PUBLICATION ${pub} SET TABLE ${list}`);
        const added = want.filter((t) => !have.includes(t));
        const removed = have.filter((t) => !want.includes(t));
        changes.push(
          [
            added.length > 0 ? `added ${added.join(', ')}` : '',
            removed.length > 0 ? `removed ${removed.join(', ')}` : '',
            existing.schemas > 0 ? 'dropped its TABLES IN SCHEMA' : '',
            existing.filtered ? 'dropped its row filters / column lists' : '',
          ]
            .filter(Boolean)
            .join('; '),
        );
      }
    }
    if (!existing.publishesAll) {
      statements.push(
        `ALTER PUBLICATION ${pub} SET (publish = 'insert, update, delete, truncate')`,
      );
      changes.push('publishes insert, update, delete and truncate');
    }
  }
  if (statements.length === 0) {
    o.steps.push({
      step: 'publication',
      status: 'ok',
      detail: `publication ${o.publication} covers ${what}`,
    });
    return;
  }
  await apply(
    pool,
    o,
    'changed',
    `changed publication ${o.publication}: ${changes.join('; ')}`,
    `change publication ${o.publication}: ${changes.join('; ')}`,
    statements,
  );
}

export async function readPublication(
  pool: pg.Pool,
  name: string,
): Promise<{
  allTables: boolean;
  publishesAll: boolean;
  tables: string[];
  filtered: boolean;
  schemas: number;
} | null> {
  const { rows } = await pool.query<{
    oid: number;
    puballtables: boolean;
    all_ops: boolean;
    has_namespaces: boolean;
  }>(
    `SELECT oid, puballtables, (pubinsert AND pubupdate AND pubdelete AND pubtruncate) AS all_ops,
            to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL AS has_namespaces
       FROM pg_publication WHERE pubname = $1`,
    [name],
  );
  const p = rows[0];
  if (!p) return null;
  const rels = await pool.query<{ name: string; filtered: boolean }>(
    // prqual / prattrs (row filters, column lists) exist from PG 15: read through jsonb.
    `SELECT n.nspname || '.' || c.relname AS name,
            (to_jsonb(pr) ->> 'prqual') IS NOT NULL OR (to_jsonb(pr) ->> 'prattrs') IS NOT NULL AS filtered
       FROM pg_publication_rel pr
       JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE pr.prpubid = $1`,
    [p.oid],
  );
  let schemas = 0;
  if (p.has_namespaces) {
    const ns = await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_catalog.pg_publication_namespace WHERE pnpubid = $1',
      [p.oid],
    );
    schemas = ns.rows[0]?.n ?? 0;
  }
  return {
    allTables: p.puballtables,
    publishesAll: p.all_ops,
    tables: rels.rows.map((r) => r.name).sort(),
    filtered: rels.rows.some((r) => r.filtered),
    schemas,
  };
}
