import { defineLuaCommands, readLuaCommands } from './lua-commands.js';
import type { RedisClient } from './redis-client.js';

/** The Lua scripts of the L2 state machine; each file's header documents KEYS, ARGV and returns. */
const SCRIPTS = [
  'acquire-1',
  'fill-1',
  'release-1',
  'tombstone-1',
  'tombstone-n',
  'tombstone-node-1',
  'delete-if-1',
  'init-version-1',
  'touch-1',
] as const;

/**
 * Command names from file names: `fill-1` is `walcache_fill` with one key; `-n` is a
 * variable number of keys, given as the first argument of the command (`walcache_…_n`).
 */
const commands = readLuaCommands(
  new URL('./lua/', import.meta.url),
  Object.fromEntries(
    SCRIPTS.map((file) => {
      const [, name = file, keys = '1'] = /^(.*)-(\d+|n)$/.exec(file) ?? [];
      const command = `walcache_${name.replaceAll('-', '_')}${keys === 'n' ? '_n' : ''}`;
      return [command, { file, ...(keys !== 'n' && { numberOfKeys: Number(keys) }) }];
    }),
  ),
);

/** Commands as ioredis defines them (EVALSHA with EVAL fallback); Buffer variants end in `Buffer`. */
export interface ScriptCommands {
  walcache_tombstone_node(firstKey: string, ...args: Array<string | number>): Promise<number>;
  walcache_tombstone_n(
    numberOfKeys: number,
    ...keysThenArgs: Array<string | number>
  ): Promise<number>;
  walcache_acquire(
    key: string,
    token: string,
    ttl: number,
    replace: string,
    mode: 'fill' | 'refresh',
    now: number,
  ): Promise<[number, number?]>;
  walcache_acquireBuffer(
    key: string,
    token: string,
    ttl: number,
    replace: string,
    mode: 'fill' | 'refresh',
    now: number,
  ): Promise<[number, (number | Buffer)?]>;
  walcache_fill(
    key: string,
    leasePrefix: string,
    value: Buffer,
    ttl: number,
    snapshot: string,
    now: number,
  ): Promise<[number, number]>;
  walcache_release(key: string, leasePrefix: string, now: number): Promise<[number, number]>;
  walcache_tombstone(
    key: string,
    tombstone: string,
    ttl: number,
    xids?: string,
    now?: number,
  ): Promise<number>;
  walcache_delete_if(key: string, prefix: string): Promise<number>;
  walcache_init_version(key: string, fresh: string, ttlMs: number): Promise<string>;
  walcache_touch(key: string, prefix: string, times: Buffer, ttlMs: number): Promise<number>;
}

export function defineScripts<C extends RedisClient>(client: C): C & ScriptCommands {
  return defineLuaCommands(client, commands) as C & ScriptCommands;
}
