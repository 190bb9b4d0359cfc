import { masters, type RedisClient } from '../cache/redis-client.js';
import { redactUrl } from '../config/database.js';
import { EvictionPolicyError } from '../errors/typed-errors.js';

/**
 * Policies under which Redis never evicts a key that has no TTL. Write-behind keys never
 * carry one, so these keep them; `allkeys-*` (what a cache wants) may evict any key.
 */
const KEEPS_KEYS_WITHOUT_TTL: ReadonlySet<string> = new Set([
  'noeviction',
  'volatile-lru',
  'volatile-lfu',
  'volatile-random',
  'volatile-ttl',
]);

/** What to change when the policy may evict pending writes. */
export const EVICTION_POLICY_FIX =
  'CONFIG SET maxmemory-policy noeviction on that server (and in its redis.conf), or point jobs.redisUrl at a Redis with noeviction (BullMQ needs it too); keep allkeys-lru for the cache (redis.url)';

/** True when a server with this `maxmemory-policy` may evict write-behind state (null: unknown). */
export function mayEvictWriteBehind(policy: string | null): boolean {
  return policy === null || !KEEPS_KEYS_WITHOUT_TTL.has(policy);
}

/** The server's `maxmemory-policy` from INFO (readable where CONFIG is renamed away). */
export async function readEvictionPolicy(redis: RedisClient): Promise<string | null> {
  // A cluster: every master holds some of the state, so the one that may evict decides.
  const policies = await Promise.all(
    masters(redis).map(async (node) => {
      const text = await node.info('memory');
      return /^maxmemory_policy:(.*)$/m.exec(text)?.[1]?.trim() ?? null;
    }),
  );
  return policies.find((p) => mayEvictWriteBehind(p)) ?? policies[0] ?? null;
}

/**
 * Refuses a server that may evict write-behind state.
 *
 * @throws {EvictionPolicyError} naming the server, its policy and the fix.
 */
export async function assertKeepsWriteBehind(redis: RedisClient, url: string): Promise<void> {
  const policy = await readEvictionPolicy(redis);
  if (mayEvictWriteBehind(policy))
    throw new EvictionPolicyError(redactUrl(url), policy, EVICTION_POLICY_FIX);
}
