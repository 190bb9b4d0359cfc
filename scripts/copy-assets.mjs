// Copies non-TypeScript assets that tsc does not emit (the Redis Lua scripts) from
// src/**/*.lua to the same relative path under dist/src/. Run after `tsc` (npm run build).
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src');
const outDir = join(root, 'dist', 'src');

let copied = 0;
for (const entry of readdirSync(srcDir, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.lua')) continue;
  // Node 20.10+ sets parentPath; older 20.x releases only have the (deprecated) path.
  const from = join(entry.parentPath ?? entry.path, entry.name);
  const to = join(outDir, relative(srcDir, from));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  copied += 1;
}
console.log(`copy-assets: ${copied} .lua file(s) copied to ${relative(root, outDir)}/`);
