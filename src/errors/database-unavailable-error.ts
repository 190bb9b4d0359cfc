import { WalcacheError } from './walcache-error.js';

/**
 * PostgreSQL could not be reached (or did not answer in time) for an operation that needs
 * it, such as `verify` reading the rows behind cached entries.
 */
export class DatabaseUnavailableError extends WalcacheError {
  constructor(operation: string, url: string, cause?: unknown) {
    super(
      'E_DATABASE_UNAVAILABLE',
      `PostgreSQL at ${url} is unavailable: ${operation} (${cause instanceof Error ? cause.message || (cause as { code?: string }).code || cause.name : String(cause)})`,
      { cause, context: { operation, url } },
    );
  }
}
