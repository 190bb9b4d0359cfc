import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

/**
 * A throwaway project directory shaped like a service that installed walcache: its own
 * package.json (an ES module package) and a node_modules in which `walcache` is a package
 * whose entry point re-exports this repository's sources (so nothing has to be built) and
 * every other package links to the repository's own (kysely, pg, tsx...). A config file
 * written there can `import { defineConfig } from 'walcache'` and be loaded by any process,
 * whatever its working directory.
 */
export function scratchProject(name: string): { readonly dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `walcache-${name}-`));
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name, private: true, type: 'module' })}\n`,
  );
  const modules = join(dir, 'node_modules');
  mkdirSync(modules);
  const installed = join(ROOT, 'node_modules');
  for (const entry of readdirSync(installed)) {
    if (entry !== 'walcache') symlinkSync(join(installed, entry), join(modules, entry));
  }
  const walcache = join(modules, 'walcache');
  mkdirSync(walcache);
  writeFileSync(
    join(walcache, 'package.json'),
    `${JSON.stringify({ name: 'walcache', type: 'module', exports: { '.': './index.ts' } })}\n`,
  );
  writeFileSync(
    join(walcache, 'index.ts'),
    `export * from ${JSON.stringify(join(ROOT, 'src', 'index.ts'))};\n`,
  );
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
