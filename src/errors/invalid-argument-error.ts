import { WalcacheError } from './walcache-error.js';

/**
 * A command-line argument names something the config cannot produce: an entity, a
 * column, a key or a tag that no entry is cached under. Refused before anything changes;
 * `fix` says what to type instead.
 */
export class InvalidArgumentError extends WalcacheError {
  constructor(
    readonly argument: string,
    reason: string,
    readonly fix: string,
  ) {
    super('E_INVALID_ARGUMENT', `${argument}: ${reason}\n  fix: ${fix}`, {
      context: { argument, fix },
    });
  }
}
