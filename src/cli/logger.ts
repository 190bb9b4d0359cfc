import pino from 'pino';
import pretty from 'pino-pretty';

/** `json`: one JSON object per line (for log collectors). `pretty`: readable lines (for a terminal). */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The environment variable that picks the format when `--log-format` is not given. */
export const LOG_FORMAT_ENV = 'WALCACHE_LOG_FORMAT';

/**
 * The log format of a long-running command: `--log-format`, else `WALCACHE_LOG_FORMAT`,
 * else `pretty` when stdout is a terminal and `json` when it is not (a pipe, a file, a
 * container's log driver: collectors parse JSON). Throws on a value that is neither.
 *
 * @example
 * chooseLogFormat(opts.logFormat, process.env, process.stdout.isTTY === true);
 */
export function chooseLogFormat(
  option: string | undefined,
  env: NodeJS.ProcessEnv,
  isTty: boolean,
): LogFormat {
  if (option !== undefined) return parse(option, '--log-format');
  const fromEnv = env[LOG_FORMAT_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return parse(fromEnv, LOG_FORMAT_ENV);
  return isTty ? 'pretty' : 'json';
}

function parse(value: string, where: string): LogFormat {
  if ((LOG_FORMATS as readonly string[]).includes(value)) return value as LogFormat;
  throw new Error(`${where} must be json or pretty, got ${JSON.stringify(value)}`);
}

/**
 * The logger of `walcache worker` and `walcache jobs`, on stdout. Pretty output is
 * written synchronously, so the last lines before an exit are not lost.
 */
export function createCliLogger(options: {
  readonly level: string;
  readonly component: string;
  readonly format: LogFormat;
}): pino.Logger {
  const base = { level: options.level, base: { component: options.component } };
  if (options.format === 'json') return pino(base);
  return pino(
    base,
    pretty({
      sync: true,
      colorize: process.stdout.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l',
      // One process, one component: the JSON lines keep it for collectors that mix them.
      ignore: 'pid,hostname,component',
    }),
  );
}
