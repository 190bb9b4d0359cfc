/**
 * The bentocache baseline of the benchmarks, set up the same way everywhere: memory L1,
 * Redis L2, Redis bus, no grace (walcache's `staleWhileRevalidateMs` 0 default).
 */
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import type { Redis } from 'ioredis';

export type BentoBaseline = BentoCache<{ main: ReturnType<typeof bentostore> }>;

export function bentocacheBaseline(options: {
  prefix: string;
  ttlMs: number;
  l1MaxItems: number;
  /** The L2 connection (the benchmark counts and closes it). */
  connection: Redis;
  redisUrl: string;
}): BentoBaseline {
  const url = new URL(options.redisUrl);
  return new BentoCache({
    default: 'main',
    prefix: options.prefix,
    ttl: options.ttlMs,
    grace: false,
    timeout: 0, // soft timeout: only applies to graced values, and grace is off
    // hardTimeout: default null (none); lockTimeout: default null (none)
    stores: {
      main: bentostore()
        // serialize stays at its default (true): L1 holds JSON strings, parsed on every L1
        // hit. serialize: false (decoded objects in L1, as walcache does) crashes in 1.6.1
        // once an L2 hit refills L1: the refill stores a JSON string that the L1 read then
        // cannot deserialize ("Cannot read properties of undefined (reading
        // 'deserialize')"), bentocache issue #111, fix proposed in PR #113.
        .useL1Layer(memoryDriver({ maxItems: options.l1MaxItems }))
        .useL2Layer(redisDriver({ connection: options.connection }))
        .useBus(
          redisBusDriver({
            connection: {
              host: url.hostname,
              port: Number(url.port || 6379),
              ...(url.password ? { password: url.password } : {}),
            },
          }),
        ),
    },
  });
}
