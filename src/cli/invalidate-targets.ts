import type { ResolvedConfig } from '../config/config.js';
import { closestName } from '../config/suggest.js';
import { encodeKeyPart } from '../keys/redis-keys.js';
import { type ChangeModel, qualify } from '../model/table-model.js';

/**
 * What `walcache invalidate` checks a `--key` or `--tag` against before it changes
 * anything: the shapes of the keys and tags the config makes (docs/invalidation.md).
 * A target that is not one of them is refused unless Redis holds an entry under the key
 * or a version of the tag (keys and tags of the engine's own callers are free-form).
 */
export type TargetCheck =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: string; readonly fix: string };

const OK: TargetCheck = { ok: true };

/**
 * A cache key the config makes: `<entity>:<id>` (one part per key column),
 * `<entity>:by:<unique column>:<value>`, or a cached query's `q:...`.
 */
export function checkKey(config: ResolvedConfig, key: string): TargetCheck {
  const parts = key.split(':');
  const head = decodePart(parts[0] as string);
  if (head === 'q' && parts.length >= 2) return OK;
  const names = Object.keys(config.entities);
  const entity = config.entities[head];
  if (entity === undefined) {
    const meant = closestName(names, head);
    return {
      ok: false,
      reason: `no entity \`${head}\` in the config${meant ? ` (did you mean \`${meant}\`?)` : ''}, and no entry is cached under this key`,
      fix: meant
        ? `--key ${[encodeKeyPart(meant), ...parts.slice(1)].join(':')}`
        : names.length > 0
          ? `an entity's key is <entity>:<id> (entities: ${names.join(', ')}), or use --entity <name> --id <id>`
          : 'the config declares no entities: give a key that holds an entry (--pattern <glob> --dry-run lists them)',
    };
  }
  const keyColumns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
  const shape = `${head}:${keyColumns.map((c) => `<${c}>`).join(':')}`;
  if (parts[1] === 'by') {
    const column = parts[2] === undefined ? '' : decodePart(parts[2]);
    if (parts.length === 4 && entity.unique.includes(column)) return OK;
    if (entity.unique.length === 0)
      return {
        ok: false,
        reason: `\`${head}\` has no unique columns (entities.${head}.unique), so nothing is cached under ${head}:by:...`,
        fix: `--key ${shape}, or --entity ${head} --id <id>`,
      };
    const meant = closestName(entity.unique, column);
    return {
      ok: false,
      reason:
        parts.length === 4
          ? `\`${column}\` is not a unique column of \`${head}\`${meant ? ` (did you mean \`${meant}\`?)` : ''}; its unique columns: ${entity.unique.join(', ')}`
          : `a unique key is ${head}:by:<column>:<value>`,
      fix: `--entity ${head} --by ${meant ?? entity.unique[0]} --value ${parts.length === 4 ? decodePart(parts[3] as string) : '<value>'}`,
    };
  }
  if (parts.length - 1 === keyColumns.length) return OK;
  return {
    ok: false,
    reason: `\`${head}\`'s key is (${keyColumns.join(', ')}): its entries are ${shape}, not ${parts.length - 1} part${parts.length === 2 ? '' : 's'} after the name`,
    fix: `--key ${shape}, or --entity ${head} --id ${keyColumns.length > 1 ? keyColumns.map((c) => `<${c}>`).join(',') : '<id>'}`,
  };
}

/**
 * A tag the worker bumps: `<schema>.<table>` (any change), `<schema>.<table>:reset`, or
 * `<schema>.<table>:<column>=<value>` for an `invalidateBy` column.
 */
export function checkTag(config: ResolvedConfig, model: ChangeModel, tag: string): TargetCheck {
  const colon = tag.indexOf(':');
  const tablePart = decodePart(colon < 0 ? tag : tag.slice(0, colon));
  const rest = colon < 0 ? undefined : tag.slice(colon + 1);
  const tables = [...model.keys()];
  const qualified = qualify(tablePart, config.defaultSchema);
  if (!model.has(tablePart)) {
    if (model.has(qualified))
      return {
        ok: false,
        reason: `tags name a table with its schema (\`${qualified}\`), and no entry depends on this one`,
        fix: `--tag ${encodeKeyPart(qualified)}${rest === undefined ? '' : `:${rest}`}`,
      };
    const meant =
      closestName(tables, qualified) ??
      closestName(tables, tablePart) ??
      closestTable(tables, tablePart);
    if ((rest !== undefined && /^[^=]+=/.test(rest)) || rest === 'reset' || meant !== null)
      return {
        ok: false,
        reason: `no table \`${tablePart}\` is followed by the config${meant ? ` (did you mean \`${meant}\`?)` : ''}, and no entry depends on this tag`,
        fix: meant
          ? `--tag ${encodeKeyPart(meant)}${rest === undefined ? '' : `:${rest}`}`
          : `tables the config follows: ${tables.join(', ') || '(none)'}`,
      };
    return {
      ok: false,
      reason: `not a tag the config derives, and no entry depends on it (Redis holds no version of it)`,
      fix: `check its spelling; the config's tags are <table>, <table>:reset and <table>:<column>=<value> for ${tables.join(', ') || '(no tables)'}, plus those of entities' tags() and cached() calls, once an entry is cached under them`,
    };
  }
  if (rest === undefined || rest === 'reset') return OK;
  const eq = rest.indexOf('=');
  const columns = model.get(tablePart)?.tagColumns ?? [];
  const column = eq < 0 ? '' : decodePart(rest.slice(0, eq));
  if (eq > 0 && columns.includes(column)) return OK;
  const meant = closestName(columns, column || rest);
  return {
    ok: false,
    reason:
      columns.length === 0
        ? `\`${tablePart}\` has no invalidateBy columns, so no tag narrows it, and no entry depends on this one`
        : `\`${column || rest}\` is not an invalidateBy column of \`${tablePart}\`${meant ? ` (did you mean \`${meant}\`?)` : ''}; its columns: ${columns.join(', ')}`,
    fix:
      columns.length === 0
        ? `--tag ${encodeKeyPart(tablePart)} (every entry reading the table), or add the column to invalidateBy`
        : `--tag ${encodeKeyPart(tablePart)}:${meant ?? columns[0]}=${eq < 0 ? '<value>' : rest.slice(eq + 1)}`,
  };
}

/** A followed table whose name (without its schema) is close to `name`. */
function closestTable(tables: readonly string[], name: string): string | null {
  const bare = (t: string) => t.slice(t.lastIndexOf('.') + 1);
  const meant = closestName(tables.map(bare), bare(name));
  return meant === null ? null : (tables.find((t) => bare(t) === meant) ?? null);
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
