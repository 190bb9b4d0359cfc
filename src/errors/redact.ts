/**
 * Secrets out of anything walcache prints: error messages, `error.context` (which loggers
 * serialise) and values shown back to the user. A config holds passwords in its URLs
 * (`databaseUrl`, `redis.url`, `jobs.redisUrl`), in `redis.password` and in TLS keys; an
 * error about a neighbouring option must never echo them.
 */

const REDACTED = '***';

/** `scheme://user:password@`: the userinfo up to the last `@` before the path. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^/?#\s@:]*):([^/?#]*)@/gi;
/** `password=...` in a keyword/value connection string or a URL query. */
const KEYWORD_PASSWORD =
  /\b(password|passwd|pwd|sslpassword|passphrase)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]+)/gi;
/** Option names whose values are secrets whatever they look like (`key` only under `tls`). */
const SECRET_NAME = /^(password|passphrase|secret|token|privatekey)$/i;
const SECRET_TLS_NAME = /(^|\.)tls\.(key|pfx)$/i;

/** A text with every URL password and `password=` value replaced by `***`. */
export function redactText(text: string): string {
  return text
    .replace(URL_USERINFO, (_m, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`)
    .replace(KEYWORD_PASSWORD, (_m, name: string, eq: string) => `${name}${eq}${REDACTED}`);
}

/** Whether an option path (`redis.password`, `redis.tls.key`) names a secret. */
export function isSecretOption(path: string): boolean {
  const last = path.slice(path.lastIndexOf('.') + 1);
  return SECRET_NAME.test(last) || SECRET_TLS_NAME.test(path);
}

/**
 * A copy of `value` safe to print: strings through `redactText`, properties with secret
 * names replaced whole, nested objects and arrays likewise (cycles and depth bounded).
 * `path` is the option the value belongs to: a secret option is replaced whole.
 */
export function redactValue(value: unknown, path = ''): unknown {
  return redactNode(value, path, 0, new WeakSet());
}

function redactNode(value: unknown, path: string, depth: number, seen: WeakSet<object>): unknown {
  if (value === undefined) return value;
  if (path !== '' && isSecretOption(path)) return REDACTED;
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > 8 || seen.has(value)) return '[...]';
  seen.add(value);
  const child = (k: string | number) => (path === '' ? String(k) : `${path}.${k}`);
  if (Array.isArray(value)) return value.map((v, i) => redactNode(v, child(i), depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactNode(v, child(k), depth + 1, seen);
  return out;
}
