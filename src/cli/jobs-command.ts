import type { Server } from 'node:http';
import { Command, Option } from 'commander';
import { JobsRunner } from '../jobs/jobs-runner.js';
import { startHttpServer } from '../metrics/http-server.js';
import { loadConfig } from './load-config.js';
import { chooseLogFormat, createCliLogger, LOG_FORMAT_ENV, LOG_FORMATS } from './logger.js';

/**
 * `walcache jobs`: runs the BullMQ workers (warm, write-behind flush, access-log flush)
 * and their job schedulers until SIGTERM/SIGINT, then shuts down gracefully (running jobs
 * get `jobs.shutdownTimeoutMs`).
 */
export function jobsCommand(): Command {
  return new Command('jobs')
    .description(
      'run the background jobs: scheduled cache warmers, write-behind flushes, access-log flushes (BullMQ; several replicas may run)',
    )
    .option('-c, --config <file>', 'config module (default export of defineConfig)')
    .option(
      '--metrics-port <port>',
      '/metrics, /healthz, /readyz port; 0 disables (default: jobs.metricsPort, 9465)',
    )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
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
        metricsPort?: string;
        host: string;
        logLevel: string;
        logFormat?: string;
      }) => {
        const format = chooseLogFormat(opts.logFormat, process.env, process.stdout.isTTY === true);
        const config = await loadConfig(opts.config);
        const port =
          opts.metricsPort === undefined ? config.jobs.metricsPort : Number(opts.metricsPort);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new Error(
            `--metrics-port must be a port number, got ${JSON.stringify(opts.metricsPort)}`,
          );
        const logger = createCliLogger({
          level: opts.logLevel,
          component: 'walcache-jobs',
          format,
        });
        const runner = new JobsRunner({ config, logger });

        let server: Server | undefined;
        let stopping: Promise<void> | undefined;
        const stop = (signal: string): Promise<void> => {
          stopping ??= (async () => {
            logger.info(
              { signal, timeoutMs: config.jobs.shutdownTimeoutMs },
              'stopping: finishing running jobs',
            );
            await runner.close();
            await new Promise<void>((resolve) =>
              server ? server.close(() => resolve()) : resolve(),
            );
          })();
          return stopping;
        };
        const stopped = new Promise<void>((resolve) => {
          process.once('SIGTERM', () => void stop('SIGTERM').then(resolve));
          process.once('SIGINT', () => void stop('SIGINT').then(resolve));
        });

        try {
          if (port > 0) {
            server = await startHttpServer({
              port,
              host: opts.host,
              registry: runner.registry,
              ready: () => runner.status(),
            });
            const address = server.address();
            logger.info(
              { port: typeof address === 'object' && address ? address.port : port },
              'http endpoints up',
            );
          }
          await runner.start();
        } catch (error) {
          await stop('start failed');
          throw error;
        }
        await stopped;
      },
    );
}
