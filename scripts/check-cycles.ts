// The import graph of src/ has no cycles: between files, and between folders (a folder is a
// layer; see CONTRIBUTING.md for the order). Type-only imports count: a cycle of types
// still ties two concepts together. `npm run lint` runs it; exits 1 naming each cycle.
import madge from 'madge';

const root = new URL('../src/', import.meta.url).pathname;
const graph = await madge(root, {
  fileExtensions: ['ts'],
  tsConfig: new URL('../tsconfig.json', import.meta.url).pathname,
  detectiveOptions: { ts: { skipTypeImports: false }, es6: { skipTypeImports: false } },
});

const problems: string[] = [];
for (const cycle of graph.circular()) problems.push(`files: ${[...cycle, cycle[0]].join(' -> ')}`);

const folder = (file: string): string => (file.includes('/') ? (file.split('/')[0] ?? '.') : '.');
const edges = new Map<string, Map<string, string>>(); // folder -> folder -> one file edge
for (const [file, deps] of Object.entries(graph.obj())) {
  for (const dep of deps) {
    const [from, to] = [folder(file), folder(dep)];
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from)?.has(to)) edges.get(from)?.set(to, `${file} -> ${dep}`);
  }
}
// Depth-first search for a back edge: each folder cycle is reported once, with a file edge per step.
const state = new Map<string, 'open' | 'done'>();
const path: string[] = [];
const visit = (node: string): void => {
  state.set(node, 'open');
  path.push(node);
  for (const next of edges.get(node)?.keys() ?? []) {
    if (state.get(next) === 'open') {
      const cycle = [...path.slice(path.indexOf(next)), next];
      const steps = cycle.slice(0, -1).map((f, i) => edges.get(f)?.get(cycle[i + 1] as string));
      problems.push(`folders: ${cycle.join(' -> ')} (${steps.join('; ')})`);
    } else if (!state.has(next)) visit(next);
  }
  path.pop();
  state.set(node, 'done');
};
for (const node of edges.keys()) if (!state.has(node)) visit(node);

if (problems.length > 0) {
  console.error(`import cycles in src/ (${problems.length}):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(
  `check-cycles: ${Object.keys(graph.obj()).length} files, ${edges.size} folders, no cycles`,
);
