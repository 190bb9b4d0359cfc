import { readFileSync } from 'node:fs';
import type { RedisClient } from './redis-client.js';

/** One Lua script as an ioredis command: its name, and its key count (undefined: given per call). */
export interface LuaCommand {
  readonly name: string;
  readonly numberOfKeys: number | undefined;
  readonly lua: string;
}

/**
 * Reads Lua scripts from `dir` (a folder URL ending in `/`): `<file>.lua` each, with every
 * `--#include name` line replaced by `lib/name.lua` of that folder (shared functions).
 */
export function readLuaCommands(
  dir: URL,
  scripts: Readonly<Record<string, { readonly file: string; readonly numberOfKeys?: number }>>,
): LuaCommand[] {
  const read = (path: string) => readFileSync(new URL(path, dir), 'utf8');
  return Object.entries(scripts).map(([name, { file, numberOfKeys }]) => ({
    name,
    numberOfKeys,
    lua: read(`${file}.lua`).replace(/^--#include ([a-z-]+)$/gm, (_line, lib: string) =>
      read(`lib/${lib}.lua`),
    ),
  }));
}

/**
 * Defines the commands on a client (EVALSHA with an EVAL fallback, Buffer variants ending
 * in `Buffer`), once per client: a command already defined is left as it is.
 */
export function defineLuaCommands<C extends RedisClient>(
  client: C,
  commands: readonly LuaCommand[],
): C {
  for (const { name, numberOfKeys, lua } of commands) {
    if (!(name in client))
      client.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  }
  return client;
}
