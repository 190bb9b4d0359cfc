import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { CacheEngine } from '../cache/engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { redactUrl } from '../config/database.js';
import { UnknownEntityError } from '../errors/errors.js';
import { entityKey } from '../keys/keys.js';
import { loadConfig } from './load-config.js';

interface InvalidateCommandOptions {
  config?: string;
  key?: string[];
  tag?: string[];
  entity?: string;
  id?: string[];
  all?: boolean;
  yes?: boolean;
}

type Action =
  | { kind: 'keys'; keys: string[]; what: string }
  | { kind: 'tags'; tags: string[]; what: string }
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
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (opts: InvalidateCommandOptions) => {
      const config = await loadConfig(opts.config);
      const action = planAction(config, opts);
      if (!opts.yes)
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

/** Checks the options (exactly one of the modes) and says what will be done. */
function planAction(config: ResolvedConfig, opts: InvalidateCommandOptions): Action {
  const modes = [
    opts.key !== undefined && '--key',
    opts.tag !== undefined && '--tag',
    (opts.entity !== undefined || opts.id !== undefined) && '--entity/--id',
    opts.all === true && '--all',
  ].filter((m): m is string => m !== false);
  if (modes.length !== 1)
    throw new Error(
      modes.length === 0
        ? 'say what to invalidate: --key <k...>, --tag <t...>, --entity <name> --id <id...>, or --all'
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
  if (opts.all)
    return { kind: 'all', what: 'bump the cache epoch: EVERY cached entry becomes a miss' };
  const name = opts.entity;
  if (name === undefined || opts.id === undefined)
    throw new Error('--entity and --id go together: --entity users --id 42');
  const entity = config.entities[name];
  if (entity === undefined) throw new UnknownEntityError(name, Object.keys(config.entities));
  const columns = typeof entity.key === 'string' ? [entity.key] : [...entity.key];
  const keys = opts.id.map((id) => {
    const values = columns.length === 1 ? [id] : id.split(',');
    if (values.length !== columns.length)
      throw new Error(
        `--id ${JSON.stringify(id)}: ${name} has a composite key (${columns.join(', ')}): give ${columns.length} comma-separated values`,
      );
    return entityKey(name, values);
  });
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
