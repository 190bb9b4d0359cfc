import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ResolvedConfig, resolveConfig } from '../config/config.js';
import { ConfigError } from '../errors/typed-errors.js';

/**
 * Loads a config module (`.js`, `.mjs`, `.json`; `.ts` when tsx is installed) whose
 * default export is a `defineConfig(...)` object, and validates it. Without a file, the
 * environment and defaults make the config.
 */
export async function loadConfig(file: string | undefined): Promise<ResolvedConfig> {
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
