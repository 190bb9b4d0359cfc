import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ResolvedConfig, resolveConfig } from '../config/config.js';
import { ConfigError } from '../errors/typed-errors.js';

/** Where a command looks for its config without `--config`, in the current folder. */
export const DEFAULT_CONFIG_FILES = [
  'walcache.config.ts',
  'walcache.config.mts',
  'walcache.config.js',
  'walcache.config.mjs',
  'walcache.config.json',
] as const;

/**
 * Loads a config module (`.js`, `.mjs`, `.json`; `.ts` when tsx is installed) whose
 * default export is a `defineConfig(...)` object, and validates it. Without a file, the
 * one of {@link DEFAULT_CONFIG_FILES} in the current folder (what `walcache init` writes),
 * else the environment and defaults make the config.
 */
export async function loadConfig(file: string | undefined): Promise<ResolvedConfig> {
  if (file === undefined) file = defaultConfigFile(process.cwd());
  if (file === undefined) return resolveConfig({});
  const path = resolve(file);
  if (!existsSync(path)) throw new ConfigError('--config', file, 'no such file');
  let module: { default?: unknown };
  try {
    if (/\.[cm]?ts$/.test(path)) {
      const { tsImport } = (await import('tsx/esm/api').catch(() => {
        throw new ConfigError(
          '--config',
          file,
          'a TypeScript config needs tsx installed (npm i -D tsx), or compile it to .js',
        );
      })) as { tsImport: (specifier: string, parent: string) => Promise<{ default?: unknown }> };
      module = await tsImport(pathToFileURL(path).href, import.meta.url);
    } else if (path.endsWith('.json')) {
      module = (await import(pathToFileURL(path).href, { with: { type: 'json' } })) as {
        default?: unknown;
      };
    } else {
      module = (await import(pathToFileURL(path).href)) as { default?: unknown };
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(
      '--config',
      file,
      `could not be loaded: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const input = (module.default as { default?: unknown } | undefined)?.default ?? module.default;
  if (input === undefined) throw new ConfigError('--config', file, 'has no default export');
  return resolveConfig(input as never);
}

/**
 * The config file in `folder`, if there is one. Two are ambiguous: a command must not
 * pick one by a rule the user never read (the other may be the one they edit).
 */
function defaultConfigFile(folder: string): string | undefined {
  const found = DEFAULT_CONFIG_FILES.filter((name) => existsSync(join(folder, name)));
  if (found.length > 1)
    throw new ConfigError(
      '--config',
      undefined,
      `${found.join(' and ')} are both in ${folder}: pass --config <file>, or remove one`,
    );
  return found[0] === undefined ? undefined : join(folder, found[0]);
}
