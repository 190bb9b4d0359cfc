import { redactText, redactValue } from './redact.js';
import { WalcacheError } from './walcache-error.js';

/**
 * A configuration option is missing, of the wrong type or out of range. `value` (also in
 * the message and `context`) is the bad value with every password redacted: a URL keeps
 * its user and host, a secret option (`redis.password`, a TLS key) shows as `***`.
 */
export class ConfigError extends WalcacheError {
  readonly value: unknown;

  constructor(
    readonly option: string,
    value: unknown,
    reason: string,
  ) {
    const shown = redactValue(value, option);
    super(
      'E_CONFIG',
      `Invalid walcache option \`${option}\`: ${redactText(reason)}${value === undefined ? '' : ` (got ${show(shown)})`}`,
      { context: { option, value: shown } },
    );
    this.value = shown;
  }
}

/** A cache key or tag is empty, too long or not a string. */
export class InvalidKeyError extends WalcacheError {
  constructor(
    key: unknown,
    readonly reason: string,
  ) {
    super('E_INVALID_KEY', `Invalid cache key ${show(key)}: ${reason}`, { context: { key } });
  }
}

/** A value cannot be stored: a function, a symbol, a cycle, a class instance... */
export class SerializationError extends WalcacheError {
  constructor(
    readonly key: string,
    readonly path: string,
    reason: string,
    cause?: unknown,
  ) {
    super('E_SERIALIZE', `Cannot cache the value of key "${key}": ${path} ${reason}`, {
      cause,
      context: { key, path },
    });
  }
}

/** An encoded value is larger than `cache.maxValueBytes`. */
export class ValueTooLargeError extends WalcacheError {
  constructor(
    readonly key: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(
      'E_VALUE_TOO_LARGE',
      `Cannot cache the value of key "${key}": ${bytes} bytes encoded, over the limit of ${limit} (cache.maxValueBytes)`,
      { context: { key, bytes, limit } },
    );
  }
}

/** An L2 entry could not be decoded. Reads treat it as a miss; this is what the event carries. */
export class CorruptEntryError extends WalcacheError {
  constructor(key: string, reason: string, cause?: unknown) {
    super('E_CORRUPT_ENTRY', `Corrupt or foreign cache entry at key "${key}": ${reason}`, {
      cause,
      context: { key },
    });
  }
}

/**
 * Redis could not be reached for an operation that must not be silently skipped
 * (set, delete, invalidateTags). Reads never throw this: they fall back to the loader.
 */
export class RedisUnavailableError extends WalcacheError {
  constructor(operation: string, cause?: unknown) {
    super('E_REDIS_UNAVAILABLE', `Redis is unavailable: ${operation} was not applied`, {
      cause,
      context: { operation },
    });
  }
}

/** The engine (or another resource) was used after `close()`. */
export class ClosedError extends WalcacheError {
  constructor(what: string) {
    super('E_CLOSED', `${what} is closed`);
  }
}

/**
 * The database is not ready for walcache (wal_level, plugin allow-list, slot, replica
 * identity). `fix` is what to run.
 */
export class SetupError extends WalcacheError {
  constructor(
    message: string,
    readonly fix: string,
    cause?: unknown,
  ) {
    super('E_SETUP', `${message}\n  fix: ${fix}`, { cause, context: { fix } });
  }
}

/**
 * Encryption keys are missing or malformed: a config that encrypts (`encryption.all`, an
 * entity's `encrypt`) needs them in the environment variable `encryption.keysEnv`. Thrown
 * where the engine or repository is built, never on a read (a read that cannot decrypt
 * is a miss with a `decrypt-failed` event). The message never holds key material.
 */
export class EncryptionKeyError extends WalcacheError {
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(
      'E_ENCRYPTION_KEY',
      `Encryption keys in ${variable}: ${reason}. Set ${variable}=<id>:<base64 of 32 random bytes> (for example \`k1:$(openssl rand -base64 32)\`); see docs/security.md`,
      { context: { variable } },
    );
  }
}

/** A repository call named an entity the config does not declare. */
export class UnknownEntityError extends WalcacheError {
  constructor(
    readonly entity: string,
    known: readonly string[],
  ) {
    super(
      'E_UNKNOWN_ENTITY',
      `Unknown entity ${show(entity)}: the config declares ${known.length > 0 ? known.map((k) => `\`${k}\``).join(', ') : 'no entities'}`,
      { context: { entity } },
    );
  }
}

/**
 * A query cannot be cached safely: not a SELECT, it reads a table the invalidation
 * worker does not follow, or it reads tables walcache cannot see (raw SQL).
 */
export class InvalidQueryError extends WalcacheError {
  constructor(reason: string, context: Record<string, unknown> = {}) {
    super('E_INVALID_QUERY', `Cannot cache this query: ${reason}`, { context });
  }
}

/** A repository write was refused before anything reached the database or Redis. */
export class InvalidWriteError extends WalcacheError {
  constructor(entity: string, reason: string, context: Record<string, unknown> = {}) {
    super('E_INVALID_WRITE', `Invalid write to \`${entity}\`: ${reason}`, {
      context: { entity, ...context },
    });
  }
}

/**
 * Write-behind was refused: the Redis that holds pending writes (`jobs.redisUrl`, else
 * `redis.url`) runs a `maxmemory-policy` that may evict them, and an evicted pending write
 * is an acknowledged write lost. `fix` is what to change.
 */
export class EvictionPolicyError extends WalcacheError {
  constructor(
    readonly server: string,
    readonly policy: string | null,
    readonly fix: string,
  ) {
    super(
      'E_EVICTION_POLICY',
      `Write-behind refused: the Redis of its pending writes (${server}) runs maxmemory-policy ${policy ?? '(unreadable)'}, which may evict them, and an evicted pending write is a lost write\n  fix: ${fix}`,
      { context: { server, policy, fix } },
    );
  }
}

/**
 * A write-behind patch names a row that did not exist when it was flushed. Write-behind
 * updates rows; it never inserts one (so it cannot bring back a deleted row). The record
 * counts an attempt and is dead-lettered past `writeBehind.maxAttempts`.
 */
export class MissingRowError extends WalcacheError {
  constructor(
    readonly entity: string,
    readonly key: string,
  ) {
    super(
      'E_MISSING_ROW',
      `No row ${key} in \`${entity}\`'s table: write-behind updates existing rows and never inserts one (create it with insert())`,
      { context: { entity, key } },
    );
  }
}

function show(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol')
    return String(value);
  try {
    const s = JSON.stringify(value);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * A plugin message that cannot be decoded (wrong shape, wrong types, garbage bytes).
 * Decoders throw it; the worker logs and counts it and decides what to do, it never
 * crashes on one.
 */
export class DecodeError extends WalcacheError {
  /** Which decoder threw: 'wal2json' or 'pgoutput'. */
  readonly plugin: string;

  constructor(plugin: string, reason: string, options: { cause?: unknown } = {}) {
    super('E_DECODE', `Cannot decode ${plugin} message: ${reason}`, {
      cause: options.cause,
      context: { plugin },
    });
    this.plugin = plugin;
  }
}

/** A warmer's SQL failed (missing table, syntax, connection): the Postgres error is the `cause`. */
export class WarmerSqlError extends WalcacheError {
  constructor(
    readonly warmer: string,
    readonly file: string,
    cause: unknown,
  ) {
    super(
      'E_WARMER_SQL',
      `Warmer "${warmer}": its SQL (${file}) failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause, context: { warmer, file } },
    );
  }
}
