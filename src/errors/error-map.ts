import { DatabaseUnavailableError } from './database-unavailable-error.js';
import { InitError } from './init-error.js';
import { InvalidArgumentError } from './invalid-argument-error.js';
import * as typedErrors from './typed-errors.js';
import { WalcacheError } from './walcache-error.js';

/**
 * Every error class walcache throws, in one place for `instanceof` checks; each extends
 * `WalcacheError` and has a stable `code`.
 *
 * @example
 * import { errors } from 'walcache';
 * try { await repo.users.update(id, patch); }
 * catch (e) { if (e instanceof errors.InvalidWriteError) return reply.status(400).send(e.message); throw e; }
 */
export const errors = Object.freeze({
  WalcacheError,
  DatabaseUnavailableError,
  InitError,
  InvalidArgumentError,
  ...typedErrors,
});
