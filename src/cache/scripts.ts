import { readFileSync } from 'node:fs';
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

const sources = new Map<string, { name: string; numberOfKeys: number | undefined; lua: string }>();
for (const file of SCRIPTS) {
  // `-n`: a variable number of keys, given as the first argument of the command.
  const [, name = file, keys = '1'] = /^(.*)-(\d+|n)$/.exec(file) ?? [];
  const lua = withIncludes(readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), 'utf8'));
  sources.set(file, {
    name: `walcache_${name.replaceAll('-', '_')}${keys === 'n' ? '_n' : ''}`,
    numberOfKeys: keys === 'n' ? undefined : Number(keys),
    lua,
  });
}

/** Replaces each `--#include name` line with lua/lib/name.lua (shared functions). */
function withIncludes(lua: string): string {
  return lua.replace(/^--#include ([a-z-]+)$/gm, (_line, name: string) =>
    readFileSync(new URL(`./lua/lib/${name}.lua`, import.meta.url), 'utf8'),
  );
}

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
  for (const { name, numberOfKeys, lua } of sources.values()) {
    if (!(name in client))
      client.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  }
  return client as C & ScriptCommands;
}
