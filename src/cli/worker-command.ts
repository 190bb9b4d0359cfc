import { Command, Option } from 'commander';
import { Registry } from 'prom-client';
import { InvalidationWorker } from '../cdc/invalidation-worker.js';
import { startHttpServer } from '../metrics/http-server.js';
import { collectWorkerMetrics } from '../metrics/worker-metrics.js';
import { loadConfig } from './load-config.js';
import { chooseLogFormat, createCliLogger, LOG_FORMAT_ENV, LOG_FORMATS } from './logger.js';

/** `walcache worker`: runs the invalidation worker until SIGTERM/SIGINT. */
export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'consume the replication slot and invalidate the cache (one active worker per slot; others stand by)',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option('--slot <name>', 'replication slot (default: worker.slot of the config)')
    .addOption(new Option('--decoder <name>', 'output plugin').choices(['wal2json', 'pgoutput']))
    .option(
      '--publication <name>',
      'publication (pgoutput) (default: worker.publication of the config)',
    )
    .option(
      '--port <port>',
      '/metrics, /healthz, /readyz port; 0 picks one',
      process.env.WALCACHE_PORT ?? '9464',
    )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option(
      '--create-slot',
      'create the slot if it does not exist (else a missing slot is an error: `walcache setup` creates it)',
    )
    .option('--log-level <level>', 'pino level', process.env.LOG_LEVEL ?? 'info')
    .addOption(
      new Option(
        '--log-format <format>',
        `json, or pretty for a terminal (default: ${LOG_FORMAT_ENV}, else pretty when stdout is a terminal, json otherwise)`,
      ).choices(LOG_FORMATS),
    )
    .action(
      async (opts: {
        config?: string;
        slot?: string;
        decoder?: 'wal2json' | 'pgoutput';
        publication?: string;
        createSlot?: boolean;
        port: string;
        host: string;
        logLevel: string;
        logFormat?: string;
      }) => {
        const port = Number(opts.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new Error(`--port must be a port number, got ${JSON.stringify(opts.port)}`);
        const format = chooseLogFormat(opts.logFormat, process.env, process.stdout.isTTY === true);
        const config = await loadConfig(opts.config);
        const logger = createCliLogger({
          level: opts.logLevel,
          component: 'walcache-worker',
          format,
        });
        const worker = new InvalidationWorker({
          config,
          slot: opts.slot,
          decoder: opts.decoder,
          publication: opts.publication,
          // A mistyped --slot must not silently start a new slot that saw nothing before it.
          createSlot: opts.createSlot === true,
          logger,
        });
        const registry = new Registry();
        collectWorkerMetrics(worker, registry);
        const server = await startHttpServer({
          port,
          host: opts.host,
          registry,
          ready: () => ({
            ready: worker.role === 'active',
            role: worker.role,
            slot: worker.slot,
            appliedLsn: worker.appliedLsn,
            runId: worker.runId,
            ...(worker.lastError && { error: worker.lastError.message }),
          }),
        });
        const address = server.address();
        logger.info(
          { port: typeof address === 'object' && address ? address.port : port },
          'http endpoints up',
        );
        let stopping: Promise<void> | undefined;
        const stop = (signal: string) => {
          stopping ??= (async () => {
            logger.info({ signal }, 'stopping: applying and acknowledging what was received');
            await worker.close();
            server.close();
            logger.info('stopped');
          })();
          return stopping;
        };
        process.once('SIGTERM', () => void stop('SIGTERM'));
        process.once('SIGINT', () => void stop('SIGINT'));
        try {
          await worker.start();
        } catch (error) {
          // Fatal (an unreachable database is retried inside start): exit non-zero, so a
          // supervisor sees it, instead of idling with a 200 /healthz.
          logger.fatal({ err: error }, 'the worker cannot start');
          await worker.close();
          server.close();
          throw error;
        }
        await new Promise<void>((resolve) => server.once('close', () => resolve()));
      },
    );
}
