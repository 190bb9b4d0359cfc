import { Command, CommanderError } from 'commander';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { CacheEngine } from '../cache/cache-engine.js';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig } from '../config/database.js';
import type { WalcacheConfigInput } from '../config/schema.js';
import { runWarmer, type WarmProgress, type WarmSummary, warmerConfig } from '../jobs/warm.js';
import {
  createQueues,
  enqueueWarm,
  queueConnection,
  queuesReady,
} from '../queues/walcache-queues.js';
import { createRepository } from '../repository/repository.js';
import { loadConfig } from './load-config.js';

interface WarmCommandOptions {
  config?: string;
  now?: boolean;
}

/**
 * `walcache warm [name]`: queues a warm job for the jobs runner, or with `--now` runs the
 * warmer in this process (a progress bar on a terminal). Without a name, every warmer.
 * Exits 1 when a warmer failed.
 */
export function warmCommand(): Command {
  return new Command('warm')
    .description(
      'warm the cache: queue a warm job for `walcache jobs`, or run it here with --now (every warmer when no name is given)',
    )
    .argument('[name]', 'warmer (a key of `warmers` in the config)')
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--now', 'run in this process instead of queueing a job, and wait for it')
    .action(async (name: string | undefined, opts: WarmCommandOptions) => {
      const config = await loadConfig(opts.config);
      const names = name === undefined ? Object.keys(config.warmers) : [name];
      for (const n of names) warmerConfig(config, n); // unknown names fail before anything opens
      if (names.length === 0) {
        process.stderr.write('walcache: the config declares no warmers\n');
        return;
      }
      if (opts.now) await warmNow(config, names);
      else await enqueue(config, names);
    });
}

async function enqueue(config: ResolvedConfig, names: readonly string[]): Promise<void> {
  const connection = queueConnection(config, { blocking: false });
  const queues = createQueues(config, connection);
  try {
    await queuesReady(config, queues);
    for (const name of names) {
      const id = await enqueueWarm(queues.warm, name);
      process.stdout.write(`queued warm job ${id} for warmer ${name}\n`);
    }
  } finally {
    await queues.close();
    connection.disconnect();
  }
}

async function warmNow(config: ResolvedConfig, names: readonly string[]): Promise<void> {
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl, { application_name: 'walcache-warm' }),
    max: 2,
  });
  pool.on('error', () => {});
  const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
  const engine = new CacheEngine({ config });
  const repo = createRepository({ db, config: config as WalcacheConfigInput, cache: engine });
  let failures = 0;
  try {
    for (const name of names) {
      const progress = progressReporter(name);
      try {
        const summary = await runWarmer({
          name,
          config,
          repo,
          onProgress: progress.update,
        });
        progress.done();
        process.stdout.write(`${formatWarmSummary(summary)}\n`);
      } catch (error) {
        progress.done();
        failures++;
        process.stdout.write(
          `✖ ${name}: ${error instanceof Error ? error.message : String(error)}\n`,
        );
      }
    }
  } finally {
    await repo.close();
    await engine.close();
    await db.destroy();
  }
  // The lines above said what failed: exit 1 without another message.
  if (failures > 0) throw new CommanderError(1, 'walcache.warm', `${failures} warmer(s) failed`);
}

/** `✔ hot-users (users): 120 keys: 100 loaded, 15 skipped, 5 missing, 0 failed in 230 ms`. */
export function formatWarmSummary(s: WarmSummary): string {
  const ignored = s.ignored > 0 ? `, ${s.ignored} rows ignored` : '';
  return `${s.failed > 0 ? '!' : '✔'} ${s.warmer} (${s.entity}): ${s.keys} keys: ${s.loaded} loaded, ${s.skipped} skipped, ${s.missing} missing, ${s.failed} failed${ignored} in ${s.durationMs} ms`;
}

const BAR_WIDTH = 24;

/** A `\r`-updated line on a terminal's stderr; one plain line per batch otherwise. */
function progressReporter(name: string): {
  update: (p: WarmProgress) => void;
  done: () => void;
} {
  const tty = process.stderr.isTTY === true;
  let drawn = false;
  const counts = (p: WarmProgress) =>
    `${p.done}/${p.total} loaded ${p.loaded} skipped ${p.skipped} failed ${p.failed}`;
  return {
    update(p) {
      if (!tty) {
        process.stderr.write(`${name}: ${counts(p)}\n`);
        return;
      }
      const filled = p.total === 0 ? BAR_WIDTH : Math.round((p.done / p.total) * BAR_WIDTH);
      const bar = `${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}`;
      process.stderr.write(`\r\x1b[K${name} [${bar}] ${counts(p)}`);
      drawn = true;
    },
    done() {
      if (drawn) process.stderr.write('\r\x1b[K');
      drawn = false;
    },
  };
}
