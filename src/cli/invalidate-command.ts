import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import pg from 'pg';
import { CacheEngine } from '../cache/cache-engine.js';
import { parseEntry } from '../cache/envelope.js';
import { getMany, scanKeys } from '../cache/redis-client.js';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import { poolQuery, readCatalog, type TableCatalog } from '../database/table-catalog.js';
import { UnknownEntityError } from '../errors/typed-errors.js';
import { canonicalText } from '../keys/canonical.js';
import { entityKey } from '../keys/redis-keys.js';
import { qualify } from '../model/table-model.js';
import { loadConfig } from './load-config.js';

interface InvalidateCommandOptions {
  config?: string;
  key?: string[];
  tag?: string[];
  entity?: string;
  id?: string[];
  all?: boolean;
  pattern?: string;
  dryRun?: boolean;
  yes?: boolean;
}

type Action =
  | { kind: 'keys'; keys: string[]; what: string }
  | { kind: 'tags'; tags: string[]; what: string }
  | { kind: 'pattern'; pattern: string; what: string }
  | { kind: 'all'; what: string };

/**
 * `walcache invalidate`: drops cache entries by hand, in every process (L2 tombstones or
 * version bumps, and a bus message for every L1). Asks for confirmation on a terminal;
 * elsewhere it needs `--yes`.
 */
export function invalidateCommand(): Command {
  return new Command('invalidate')
    .description(
      'invalidate cache entries by key, by tag, by entity id, or all of them (asks for confirmation unless --yes)',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--key <key...>', 'cache keys to tombstone (e.g. users:42)')
    .option('--tag <tag...>', 'tags whose entries become misses (version bump)')
    .option('--entity <name>', 'an entity of the config (with --id)')
    .option(
      '--id <id...>',
      "the entity rows' key values; a composite key as comma-separated values in key order (7,3)",
    )
    .option('--all', 'bump the cache epoch: every entry cached so far becomes a miss')
    .option(
      '--pattern <glob>',
      "tombstone every entry whose key matches (e.g. 'users:12*'; * and ? as in Redis SCAN)",
    )
    .option('--dry-run', 'with --pattern: count the matching entries, change nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (opts: InvalidateCommandOptions) => {
      const config = await loadConfig(opts.config);
      const action = await planAction(config, opts);
      if (!opts.yes && !(action.kind === 'pattern' && opts.dryRun))
        await confirm(
          `${action.what} (prefix ${config.prefix}, Redis ${redactUrl(config.redis.url)})`,
        );
      // Tombstones and bumps read no entry: no encryption keys needed here.
      const engine = new CacheEngine({
        config: { ...config, encryption: { ...config.encryption, all: false } },
      });
      try {
        if (!(await engine.ready(Math.max(2_000, 2 * config.redis.connectTimeoutMs))))
          throw new Error(
            `Cannot reach the cache Redis at ${redactUrl(config.redis.url)}: nothing was invalidated`,
          );
        switch (action.kind) {
          case 'keys':
            await engine.delete(action.keys);
            process.stdout.write(
              `tombstoned ${plural(action.keys.length, 'key')}: ${action.keys.join(', ')}\n`,
            );
            break;
          case 'tags':
            await engine.invalidateTags(action.tags);
            process.stdout.write(
              `bumped ${plural(action.tags.length, 'tag')}: ${action.tags.join(', ')} (entries depending on them are misses now)\n`,
            );
            break;
          case 'pattern': {
            const matched = await matchingEntries(engine, action.pattern);
            const sample = matched.slice(0, 5).join(', ');
            const shown = `${sample}${matched.length > 5 ? ', ...' : ''}`;
            if (opts.dryRun) {
              process.stdout.write(
                `${plural(matched.length, 'key')} match ${action.pattern}${matched.length > 0 ? ` (${shown})` : ''}: nothing was changed (--dry-run)\n`,
              );
              break;
            }
            for (let i = 0; i < matched.length; i += 500)
              await engine.delete(matched.slice(i, i + 500));
            process.stdout.write(
              `tombstoned ${plural(matched.length, 'key')} matching ${action.pattern}${matched.length > 0 ? ` (${shown})` : ''}\n`,
            );
            break;
          }
          case 'all': {
            const epoch = await engine.bumpEpoch();
            process.stdout.write(
              `bumped the cache epoch to ${epoch}: every entry cached before is a miss now\n`,
            );
            break;
          }
        }
      } finally {
        await engine.close();
      }
    });
}

/** Logical keys a pattern may name: those of keys (`[A-Za-z0-9_.:-]`) plus `*` and `?`. */
const PATTERN = /^[A-Za-z0-9_.:*?-]+$/;

/**
 * The logical keys under the prefix whose entries match `pattern` and hold a value
 * (tombstones and leases are not entries). SCAN, then one pipelined GET per batch.
 */
async function matchingEntries(engine: CacheEngine, pattern: string): Promise<string[]> {
  const base = engine.keys.entry('');
  const found: string[] = [];
  for await (const batch of scanKeys(engine.redis, `${base}${pattern}`, 1000)) {
    const values = await getMany(engine.redis, batch);
    batch.forEach((k, i) => {
      if (parseEntry(values[i] ?? null).kind === 'data') found.push(k.slice(base.length));
    });
  }
  return [...new Set(found)].sort();
}

/**
 * Entity ids in the canonical text readers use (`042` is `42` on an integer key), from
 * the catalog; with the database unreachable, as given (said on stderr).
 */
async function canonicalIds(
  config: ResolvedConfig,
  entity: string,
  columns: readonly string[],
  ids: readonly string[][],
): Promise<string[][]> {
  const table = qualify(config.entities[entity]?.table as string, config.defaultSchema);
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl),
    max: 1,
    connectionTimeoutMillis: 3_000,
  });
  pool.on('error', () => {});
  let columnsOfTable: TableCatalog['columns'] | undefined;
  try {
    columnsOfTable = (await readCatalog(poolQuery(pool), [table])).get(table)?.columns;
  } catch (error) {
    process.stderr.write(
      `walcache: could not read the types of ${table} (${(error as Error).message}): ids used as given\n`,
    );
    return ids.map((v) => [...v]);
  } finally {
    await pool.end().catch(() => {});
  }
  return ids.map((values) =>
    values.map((v, i) => {
      const kind = columnsOfTable?.get(columns[i] as string)?.kind;
      return kind === undefined ? v : canonicalText(kind, v);
    }),
  );
}

/** Checks the options (exactly one of the modes) and says what will be done. */
async function planAction(config: ResolvedConfig, opts: InvalidateCommandOptions): Promise<Action> {
  const modes = [
    opts.key !== undefined && '--key',
    opts.tag !== undefined && '--tag',
    (opts.entity !== undefined || opts.id !== undefined) && '--entity/--id',
    opts.all === true && '--all',
    opts.pattern !== undefined && '--pattern',
  ].filter((m): m is string => m !== false);
  if (modes.length !== 1)
    throw new Error(
      modes.length === 0
        ? 'say what to invalidate: --key <k...>, --tag <t...>, --entity <name> --id <id...>, --pattern <glob>, or --all'
        : `use one of ${modes.join(', ')} at a time`,
    );
  if (opts.key)
    return {
      kind: 'keys',
      keys: opts.key,
      what: `tombstone ${plural(opts.key.length, 'key')}: ${opts.key.join(', ')}`,
    };
  if (opts.tag)
    return {
      kind: 'tags',
      tags: opts.tag,
      what: `bump ${plural(opts.tag.length, 'tag')}: ${opts.tag.join(', ')}`,
    };
  if (opts.dryRun && opts.pattern === undefined) throw new Error('--dry-run goes with --pattern');
  if (opts.all)
    return { kind: 'all', what: 'bump the cache epoch: EVERY cached entry becomes a miss' };
  if (opts.pattern !== undefined) {
    if (!PATTERN.test(opts.pattern))
      throw new Error(
        `--pattern ${JSON.stringify(opts.pattern)}: a key pattern has letters, digits, "_", ".", ":", "-", and the wildcards * and ?`,
      );
    return {
      kind: 'pattern',
      pattern: opts.pattern,
      what: `tombstone every entry matching ${opts.pattern}`,
    };
  }
  const name = opts.entity;
  if (name === undefined || opts.id === undefined)
    throw new Error('--entity and --id go together: --entity users --id 42');
  const entity = config.entities[name];
  if (entity === undefined) throw new UnknownEntityError(name, Object.keys(config.entities));
  const columns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
  const given = opts.id.map((id) => {
    const values = columns.length === 1 ? [id] : id.split(',');
    if (values.length !== columns.length)
      throw new Error(
        `--id ${JSON.stringify(id)}: ${name} has a composite key (${columns.join(', ')}): give ${columns.length} comma-separated values`,
      );
    return values;
  });
  const keys = (await canonicalIds(config, name, columns, given)).map((v) => entityKey(name, v));
  const note =
    entity.unique.length > 0
      ? ` (entries found by ${entity.unique.join(', ')} are not touched: use --tag or --all for those)`
      : '';
  return {
    kind: 'keys',
    keys,
    what: `tombstone ${plural(keys.length, 'key')}: ${keys.join(', ')}${note}`,
  };
}

/** Asks on a terminal; refuses without one (use --yes in scripts). */
async function confirm(what: string): Promise<void> {
  if (!process.stdin.isTTY)
    throw new Error(
      'refusing to invalidate without --yes: stdin is not a terminal, so nobody can confirm',
    );
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${what}\nProceed? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new Error('aborted: nothing was invalidated');
  } finally {
    rl.close();
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
