import type { WalcacheConfigInput } from './schema.js';

/**
 * Declares the config shared by services, the worker and the jobs runner, so the same row
 * maps to the same keys and tags everywhere. Returns its input (validation happens once,
 * where it is used, with `resolveConfig`); it exists for type checking and editor help.
 *
 * @example
 * // walcache.config.ts
 * export default defineConfig({
 *   prefix: 'shop',
 *   entities: { users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] } },
 *   invalidateBy: { orders: ['user_id'] },
 * });
 */
export function defineConfig<const T extends WalcacheConfigInput>(config: T): T {
  return config;
}
