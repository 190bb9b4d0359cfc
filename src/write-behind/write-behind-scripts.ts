import { defineLuaCommands, readLuaCommands } from '../cache/lua-commands.js';
import type { RedisClient } from '../cache/redis-client.js';

/** The write-behind Lua scripts (src/write-behind/lua); each file's header documents KEYS, ARGV and returns. */
const SCRIPTS = {
  walcache_wb_put: { file: 'wb-put-n' },
  walcache_wb_settle: { file: 'wb-settle-n' },
  walcache_wb_read: { file: 'wb-read-n' },
  walcache_wb_fence: { file: 'wb-fence', numberOfKeys: 1 },
  walcache_wb_fail: { file: 'wb-fail', numberOfKeys: 4 },
  walcache_wb_unqueue_if_gone: { file: 'wb-unqueue-if-gone', numberOfKeys: 2 },
} as const;

const commands = readLuaCommands(new URL('./lua/', import.meta.url), SCRIPTS);

export interface WriteBehindCommands {
  walcache_wb_put(numberOfKeys: number, ...keysThenArgs: Array<string | Buffer>): Promise<number[]>;
  walcache_wb_settle(numberOfKeys: number, ...keysThenArgs: string[]): Promise<number>;
  walcache_wb_readBuffer(numberOfKeys: number, ...keys: string[]): Promise<Buffer[][]>;
  walcache_wb_fence(record: string, field: string, seq: string): Promise<number>;
  walcache_wb_unqueue_if_gone(queue: string, record: string, member: string): Promise<number>;
  walcache_wb_fail(
    record: string,
    queue: string,
    dead: string,
    deadRecord: string,
    maxAttempts: number,
    entry: string,
    member: string,
    ...seqs: string[]
  ): Promise<number>;
}

export function defineWriteBehindScripts(client: RedisClient): RedisClient & WriteBehindCommands {
  return defineLuaCommands(client, commands) as RedisClient & WriteBehindCommands;
}
