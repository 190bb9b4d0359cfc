import type { ConfigDraft, DraftEntity } from './config-draft.js';

/**
 * A {@link ConfigDraft} as the text of a config file: a module whose default export is
 * `defineConfig({...})` (what `--config` loads), with the draft's notes as comments, or
 * plain JSON (no comments: the notes are only printed).
 */
export function renderConfigModule(draft: ConfigDraft, file: string): string {
  const lines = [
    `// Drafted by \`walcache init --schema ${draft.schema}\` from the PostgreSQL catalog: review it.`,
    `// After a change, run \`walcache setup --config ${file}\` again and restart the worker.`,
    '// Connection strings stay out of this file: DATABASE_URL and REDIS_URL are read from',
    '// the environment of every process that loads it.',
    "import { defineConfig } from 'walcache';",
    '',
    'export default defineConfig({',
    '  entities: {',
  ];
  for (const entity of draft.entities) lines.push(...renderEntity(entity));
  lines.push('  },');
  if (draft.invalidateBy.length > 0) {
    lines.push(
      '  // Foreign-key columns: a cached query that pins one (`WHERE user_id = 7`) depends on',
      "  // that value's rows only, so a write to another value's rows leaves it cached.",
      '  invalidateBy: {',
    );
    for (const { table, columns, references } of draft.invalidateBy) {
      lines.push(
        `    ${quote(table)}: [${columns.map(quote).join(', ')}], // → ${references.join(', ')}`,
      );
    }
    lines.push('  },');
  }
  lines.push('});');
  if (draft.skipped.length > 0) {
    lines.push('', '// Tables left out (not entities):');
    for (const { table, reason } of draft.skipped) lines.push(`//   ${table}: ${reason}`);
  }
  return `${lines.join('\n')}\n`;
}

function renderEntity(entity: DraftEntity): string[] {
  const lines = entity.notes.map((note) => `    // ${entity.name}: ${note}`);
  lines.push(`    ${entity.name}: {`, `      table: ${quote(entity.table)},`);
  lines.push(
    `      key: ${typeof entity.key === 'string' ? quote(entity.key) : `[${entity.key.map(quote).join(', ')}]`},`,
  );
  if (entity.unique.length > 0)
    lines.push(`      unique: [${entity.unique.map(quote).join(', ')}],`);
  if (entity.deny.length > 0) {
    lines.push(
      '      // Looks secret (by its name): never cached, never in Redis. Remove to cache it.',
      `      deny: [${entity.deny.map(quote).join(', ')}],`,
    );
  }
  lines.push('    },');
  return lines;
}

/** The config as JSON (what `--config file.json` loads). */
export function renderConfigJson(draft: ConfigDraft): string {
  const entities: Record<string, unknown> = {};
  for (const e of draft.entities) {
    entities[e.name] = {
      table: e.table,
      key: e.key,
      ...(e.unique.length > 0 ? { unique: e.unique } : {}),
      ...(e.deny.length > 0 ? { deny: e.deny } : {}),
    };
  }
  const config: Record<string, unknown> = { entities };
  if (draft.invalidateBy.length > 0)
    config.invalidateBy = Object.fromEntries(draft.invalidateBy.map((i) => [i.table, i.columns]));
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Names in the draft are plain identifiers (optionally `schema.`-qualified): no escaping needed. */
function quote(name: string): string {
  return `'${name}'`;
}
