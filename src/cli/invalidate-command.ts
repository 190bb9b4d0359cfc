import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import pg from 'pg';
import { CacheEngine } from '../cache/cache-engine.js';
import { parseEntry } from '../cache/envelope.js';
import { getMany, scanKeys } from '../cache/redis-client.js';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import { closestName } from '../config/suggest.js';
import { poolQuery, readCatalog, type TableCatalog } from '../database/table-catalog.js';
import { InvalidArgumentError } from '../errors/invalid-argument-error.js';
import { canonicalText } from '../keys/canonical.js';
import { entityKey, uniqueKey } from '../keys/redis-keys.js';
import { buildChangeModel, qualify } from '../model/table-model.js';
import { checkKey, checkTag } from './invalidate-targets.js';
import { loadConfig } from './load-config.js';

interface InvalidateCommandOptions {
  config?: string;
  key?: string[];
  tag?: string[];
  entity?: string;
  id?: string[];
  by?: string;
  value?: string[];
  all?: boolean;
  pattern?: string;
  dryRun?: boolean;
  yes?: boolean;
}

type Action =
  /** `checked`: keys typed by hand (`--key`), checked against the config. */
  | { kind: 'keys'; keys: string[]; what: string; checked: boolean }
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
    .option('--entity <name>', 'an entity of the config (with --id, or --by and --value)')
    .option(
      '--id <id...>',
      "the entity rows' key values; a composite key as comma-separated values in key order (7,3)",
    )
    .option(
      '--by <column>',
      'with --entity and --value: a unique column of the entity (the entries findBy reads)',
    )
    .option('--value <value...>', 'with --by: the values of that column')
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
      // Tombstones and bumps read no entry: no encryption keys needed here.
      const engine = new CacheEngine({
        config: { ...config, encryption: { ...config.encryption, all: false } },
      });
      try {
        if (!(await engine.ready(Math.max(2_000, 2 * config.redis.connectTimeoutMs))))
          throw new Error(
            `Cannot reach the cache Redis at ${redactUrl(config.redis.url)}: nothing was invalidated`,
          );
        // Every target is checked before anything changes (a typo must not half-apply).
        const held =
          action.kind === 'keys'
            ? await checkKeys(engine, config, action)
            : action.kind === 'tags'
              ? await checkTags(engine, config, action.tags)
              : 0;
        if (!opts.yes && !(action.kind === 'pattern' && opts.dryRun))
          await confirm(
            `${action.what} (prefix ${config.prefix}, Redis ${redactUrl(config.redis.url)})`,
          );
        switch (action.kind) {
          case 'keys':
            await engine.delete(action.keys);
            process.stdout.write(
              `tombstoned ${plural(action.keys.length, 'key')}: ${action.keys.join(', ')} (${held === 0 ? 'none' : held === action.keys.length && held > 1 ? 'all' : held} held a cached entry)\n`,
            );
            break;
          case 'tags':
            await engine.invalidateTags(action.tags);
            process.stdout.write(
              `bumped ${plural(action.tags.length, 'tag')}: ${action.tags.join(', ')} (${held === 0 ? 'none' : held === action.tags.length && held > 1 ? 'all' : held} had cached entries depending on ${action.tags.length === 1 ? 'it' : 'them'}, misses now)\n`,
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

/**
 * Refuses keys the config cannot make (checkKey) unless an entry is cached under them;
 * resolves how many of the keys hold an entry now.
 */
async function checkKeys(
  engine: CacheEngine,
  config: ResolvedConfig,
  action: { keys: string[]; checked: boolean },
): Promise<number> {
  const values = await getMany(
    engine.redis,
    action.keys.map((k) => engine.keys.entry(k)),
  );
  const holds = values.map((v) => parseEntry(v ?? null).kind === 'data');
  if (action.checked)
    action.keys.forEach((key, i) => {
      const check = checkKey(config, key);
      if (!check.ok && !holds[i])
        throw new InvalidArgumentError(`--key ${key}`, check.reason, check.fix);
    });
  return holds.filter(Boolean).length;
}

/**
 * Refuses tags the config does not derive (checkTag) unless Redis holds a version of
 * them (an entry depends on them); resolves how many have a version now.
 */
async function checkTags(
  engine: CacheEngine,
  config: ResolvedConfig,
  tags: readonly string[],
): Promise<number> {
  const model = buildChangeModel(config);
  const versions = await getMany(
    engine.redis,
    tags.map((t) => engine.keys.tagVersion(t)),
  );
  tags.forEach((tag, i) => {
    const check = checkTag(config, model, tag);
    if (!check.ok && versions[i] === null)
      throw new InvalidArgumentError(`--tag ${tag}`, check.reason, check.fix);
  });
  return versions.filter((v) => v !== null).length;
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
    (opts.entity !== undefined ||
      opts.id !== undefined ||
      opts.by !== undefined ||
      opts.value !== undefined) &&
      '--entity',
    opts.all === true && '--all',
    opts.pattern !== undefined && '--pattern',
  ].filter((m): m is string => m !== false);
  if (modes.length !== 1)
    throw new Error(
      modes.length === 0
        ? 'say what to invalidate: --key <k...>, --tag <t...>, --entity <name> --id <id...>, --entity <name> --by <unique column> --value <v...>, --pattern <glob>, or --all'
        : `use one of ${modes.join(', ')} at a time`,
    );
  if (opts.key)
    return {
      kind: 'keys',
      keys: opts.key,
      checked: true,
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
  if (name === undefined)
    throw new Error(
      '--entity goes with --id or --by/--value: --entity users --id 42, --entity users --by email --value ada@example.com',
    );
  const entity = config.entities[name];
  if (entity === undefined) {
    const known = Object.keys(config.entities);
    const meant = closestName(known, name);
    throw new InvalidArgumentError(
      `--entity ${name}`,
      `no entity \`${name}\` in the config${meant ? ` (did you mean \`${meant}\`?)` : ''}`,
      known.length > 0
        ? `--entity ${meant ?? known[0]}; the config's entities: ${known.join(', ')}`
        : 'the config declares no entities: use --key, --tag or --pattern',
    );
  }
  const columns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
  if (opts.by !== undefined || opts.value !== undefined)
    return planByColumn(config, name, opts, columns);
  if (opts.id === undefined)
    throw new Error(`--entity goes with --id or --by/--value: --entity ${name} --id 42`);
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
      ? ` (entries found by ${entity.unique.join(', ')} are not touched: use --by ${entity.unique[0]} --value <v> for those)`
      : '';
  return {
    kind: 'keys',
    keys,
    checked: false,
    what: `tombstone ${plural(keys.length, 'key')}: ${keys.join(', ')}${note}`,
  };
}

/**
 * `--entity <name> --by <column> --value <v...>`: the entries `findBy(column, v)` reads
 * (`<entity>:by:<column>:<v>`), or, by the key column, the entity's own entries.
 */
async function planByColumn(
  config: ResolvedConfig,
  name: string,
  opts: InvalidateCommandOptions,
  keyColumns: readonly string[],
): Promise<Action> {
  const entity = config.entities[name] as ResolvedConfig['entities'][string];
  const example = `--entity ${name} --by ${entity.unique[0] ?? keyColumns[0]} --value <value>`;
  if (opts.id !== undefined) throw new Error(`use --id or --by/--value, not both: ${example}`);
  if (opts.by === undefined || opts.value === undefined)
    throw new Error(`--by and --value go together: ${example}`);
  const column = opts.by;
  const byKey = keyColumns.length === 1 && column === keyColumns[0];
  if (!byKey && !entity.unique.includes(column)) {
    const candidates = [...entity.unique, ...(keyColumns.length === 1 ? keyColumns : [])];
    const meant = closestName(candidates, column);
    throw new InvalidArgumentError(
      `--by ${column}`,
      `\`${column}\` is not a unique column of \`${name}\`${meant ? ` (did you mean \`${meant}\`?)` : ''}: ${entity.unique.length > 0 ? `its unique columns are ${entity.unique.join(', ')}` : 'it has no unique columns (entities.<name>.unique)'}`,
      candidates.length > 0
        ? `--entity ${name} --by ${meant ?? candidates[0]} --value ${opts.value.join(' ')}`
        : `--entity ${name} --id <id>`,
    );
  }
  const values = (
    await canonicalIds(
      config,
      name,
      [column],
      opts.value.map((v) => [v]),
    )
  ).map(([v]) => v as string);
  const keys = values.map((v) => (byKey ? entityKey(name, [v]) : uniqueKey(name, column, v)));
  return {
    kind: 'keys',
    keys,
    checked: false,
    what: `tombstone ${plural(keys.length, 'key')}: ${keys.join(', ')}`,
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
