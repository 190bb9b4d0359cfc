import { readFile } from 'node:fs/promises';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../errors/typed-errors.js';

/**
 * A warmer's SQL file, read and checked before it runs: the runner checks every warmer at
 * start, `walcache doctor` reports each, and a run checks its own. The SQL gets `$1` = the
 * warmer's entity name and `$2` = its `limit`; it is sent with as many parameters as the
 * highest of them it uses (none, `$1`, or both), so `$2` without `$1`, or `$3` and up,
 * would fail only when it runs.
 */
export interface WarmerSql {
  /** The file read (`resolveWarmerSql` of the `sql` option). */
  readonly file: string;
  readonly text: string;
  /** The parameters to send: 0, 1 (`$1`) or 2 (`$1`, `$2`). */
  readonly parameters: 0 | 1 | 2;
}

/**
 * Reads and checks a warmer's SQL.
 *
 * @throws {ConfigError} (`warmers.<name>.sql`) naming the file: unreadable, or using
 *   placeholders the warmer does not send.
 */
export async function readWarmerSql(
  name: string,
  option: string,
  file: string,
): Promise<WarmerSql> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `warmers.${name}.sql`,
      option,
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  const used = sqlPlaceholders(text);
  const problem = placeholderProblem(used, file);
  if (problem !== null)
    throw new ConfigError(`warmers.${name}.sql`, option, `${problem.reason}; ${problem.fix}`);
  return { file, text, parameters: used.includes(2) ? 2 : used.includes(1) ? 1 : 0 };
}

/** What is wrong with the placeholders a warmer's SQL uses, and what to write instead. */
function placeholderProblem(
  used: readonly number[],
  file: string,
): { reason: string; fix: string } | null {
  const extra = used.filter((n) => n > 2);
  if (extra.length > 0)
    return {
      reason: `${file} uses ${extra.map((n) => `$${n}`).join(', ')}: a warmer's SQL gets only $1 (the entity name) and $2 (the warmer's limit)`,
      fix: 'use $1 and $2 only (see docs/jobs.md, Warmers)',
    };
  if (used.includes(2) && !used.includes(1))
    return {
      reason: `${file} uses $2 but not $1: both are sent, and PostgreSQL cannot type a parameter the SQL never uses`,
      fix: 'filter by the entity with $1 (`WHERE entity = $1`), or mention it (`AND $1::text IS NOT NULL`)',
    };
  return null;
}

/**
 * The numbers of the `$n` placeholders of a SQL text, sorted, outside comments, string
 * literals (`'...'`, `E'...'`, `$tag$...$tag$`) and quoted identifiers: a comment that
 * says "$1 is the entity" is no parameter.
 */
export function sqlPlaceholders(text: string): number[] {
  const found = new Set<number>();
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      // Block comments nest in PostgreSQL.
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text.startsWith('/*', i)) depth++;
        else if (text.startsWith('*/', i)) depth--;
        else {
          i++;
          continue;
        }
        i += 2;
      }
    } else if (c === "'" || c === '"') {
      const backslashes = c === "'" && /[eE]/.test(text[i - 1] ?? '') && !isWordChar(text[i - 2]);
      i++;
      while (i < text.length) {
        if (backslashes && text[i] === '\\') i += 2;
        else if (text[i] === c && text[i + 1] === c) i += 2;
        else if (text[i] === c) break;
        else i++;
      }
      i++;
    } else if (c === '$' && !isWordChar(text[i - 1])) {
      const rest = text.slice(i);
      const placeholder = /^\$(\d+)/.exec(rest);
      const quote = placeholder === null ? /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest) : null;
      if (placeholder !== null) {
        found.add(Number(placeholder[1]));
        i += placeholder[0].length;
      } else if (quote !== null) {
        const end = text.indexOf(quote[0], i + quote[0].length);
        i = end < 0 ? text.length : end + quote[0].length;
      } else i++;
    } else i++;
  }
  return [...found].sort((a, b) => a - b);
}

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z0-9_$]/.test(c);
}

/**
 * One line per warmer for `walcache doctor`: its SQL file is readable and uses only the
 * parameters the warmer sends.
 */
export async function warmerSqlChecks(
  config: ResolvedConfig,
  resolveFile: (option: string) => string,
): Promise<Array<{ name: string; status: 'ok' | 'fail'; detail: string; fix?: string }>> {
  const out: Array<{ name: string; status: 'ok' | 'fail'; detail: string; fix?: string }> = [];
  for (const [name, warmer] of Object.entries(config.warmers)) {
    const file = resolveFile(warmer.sql);
    try {
      const sql = await readWarmerSql(name, warmer.sql, file);
      out.push({
        name: 'warmer',
        status: 'ok',
        detail: `warmer ${name}: ${file} uses ${sql.parameters === 0 ? 'no parameters' : sql.parameters === 1 ? '$1 (the entity)' : '$1 (the entity) and $2 (the limit)'}`,
      });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      out.push({
        name: 'warmer',
        status: 'fail',
        detail: `warmer ${name}: ${error.message.split('\n')[0]}`,
        fix: `fix warmers.${name}.sql (docs/jobs.md, Warmers: $1 is the entity name, $2 the limit)`,
      });
    }
  }
  return out;
}
