import { WalcacheError } from './walcache-error.js';

/** Why `walcache init` wrote nothing. */
export type InitErrorReason =
  /** The output file exists and `--force` was not given. */
  | 'file-exists'
  /** The schema does not exist in the database. */
  | 'unknown-schema'
  /** The schema has no tables. */
  | 'empty-schema'
  /** The schema has tables, but none can be an entity (no primary key, or one of an unkeyable type). */
  | 'no-entities';

/**
 * `walcache init` could not draft a config; nothing was written. `reason` says which case
 * (branch on it, not on the message); `fix` is what to run or change.
 */
export class InitError extends WalcacheError {
  constructor(
    readonly reason: InitErrorReason,
    message: string,
    readonly fix: string,
  ) {
    super('E_INIT', `${message}\n  fix: ${fix}`, { context: { reason, fix } });
  }
}
