/** Stable error codes: branch on `error.code` or `instanceof`, never on message text. */
export type WalcacheErrorCode =
  | 'E_CONFIG'
  | 'E_INVALID_KEY'
  | 'E_SERIALIZE'
  | 'E_VALUE_TOO_LARGE'
  | 'E_CORRUPT_ENTRY'
  | 'E_REDIS_UNAVAILABLE'
  | 'E_CLOSED'
  | 'E_SETUP'
  | 'E_DECODE'
  | 'E_UNKNOWN_ENTITY'
  | 'E_INVALID_QUERY'
  | 'E_INVALID_WRITE'
  | 'E_ENCRYPTION_KEY'
  | 'E_EVICTION_POLICY'
  | 'E_MISSING_ROW'
  | 'E_DATABASE_UNAVAILABLE'
  | 'E_WARMER_SQL'
  | 'E_INIT'
  | 'E_INVALID_ARGUMENT';

/** Base class of every error walcache throws on purpose. */
export class WalcacheError extends Error {
  readonly code: WalcacheErrorCode;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(
    code: WalcacheErrorCode,
    message: string,
    options: { cause?: unknown; context?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = Object.freeze({ ...options.context });
  }
}
