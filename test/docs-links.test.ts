/**
 * Every relative link in the README, CONTRIBUTING.md, monitoring/README.md and docs/
 * points at a file that exists and, with a `#fragment` into Markdown, at a heading that
 * exists; every repository path the docs name in backticks (`src/cache/l1-tier.ts`)
 * exists. A moved or renamed file fails here instead of leaving a dead link.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function markdownFiles(): string[] {
  const docs = readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(root, 'docs', f));
  return [
    join(root, 'README.md'),
    join(root, 'CONTRIBUTING.md'),
    join(root, 'monitoring', 'README.md'),
    ...docs,
  ];
}

/** The text outside fenced code blocks, line numbers kept. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split('\n').map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return '';
    }
    return fenced ? '' : line;
  });
}

/** GitHub's anchors of a Markdown file's headings (`## The two commands` → `the-two-commands`). */
export function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of prose(text)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading === null) continue;
    const base = (heading[1] ?? '')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

interface Link {
  readonly file: string;
  readonly line: number;
  readonly target: string;
}

function linksOf(file: string): Link[] {
  const links: Link[] = [];
  prose(readFileSync(file, 'utf8')).forEach((text, index) => {
    for (const match of text.matchAll(/\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      links.push({ file, line: index + 1, target: match[1] ?? '' });
    }
  });
  return links;
}

/** Why a link is broken, or null when it resolves. */
function brokenBecause(link: Link): string | null {
  const { target } = link;
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // https:, mailto:
  const [path = '', fragment] = target.split('#', 2);
  const file = path === '' ? link.file : resolve(dirname(link.file), decodeURIComponent(path));
  const name = relative(root, file);
  if (!existsSync(file)) return `${name} does not exist`;
  if (fragment === undefined || fragment === '' || !file.endsWith('.md')) return null;
  if (statSync(file).isDirectory()) return `${name} is a folder, not a page with headings`;
  return anchorsOf(readFileSync(file, 'utf8')).has(fragment)
    ? null
    : `${name} has no heading #${fragment}`;
}

describe('documentation links', () => {
  it('computes anchors as GitHub does', () => {
    const anchors = anchorsOf(
      '# walcache\n## The two commands\n### `npm run bench:cdc`\n## Contract 1: no stale fill survives\n## Notes\n## Notes\n```\n## not a heading\n```\n',
    );
    assert.deepEqual(
      [...anchors],
      [
        'walcache',
        'the-two-commands',
        'npm-run-benchcdc',
        'contract-1-no-stale-fill-survives',
        'notes',
        'notes-1',
      ],
    );
  });

  it('every relative link resolves to a file, and a #heading to a heading of it', () => {
    const files = markdownFiles();
    const links = files.flatMap(linksOf);
    assert.ok(links.length > 50, `found ${links.length} links`);
    const broken = links.flatMap((link) => {
      const why = brokenBecause(link);
      return why === null
        ? []
        : [`${relative(root, link.file)}:${link.line} (${link.target}): ${why}`];
    });
    assert.deepEqual(broken, []);
  });

  it('a broken link or heading is caught', () => {
    const readme = join(root, 'README.md');
    assert.match(
      brokenBecause({ file: readme, line: 1, target: 'docs/nothing-here.md' }) ?? '',
      /docs\/nothing-here\.md does not exist/,
    );
    assert.match(
      brokenBecause({ file: readme, line: 1, target: 'docs/design.md#no-such-heading' }) ?? '',
      /no heading #no-such-heading/,
    );
    assert.equal(brokenBecause({ file: readme, line: 1, target: 'docs/design.md' }), null);
  });

  it('every repository path named in backticks exists', () => {
    const missing: string[] = [];
    for (const file of markdownFiles()) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((text, index) => {
          for (const match of text.matchAll(
            /`((?:src|test|scripts|bench|examples|docs|sql|migrations|monitoring)\/[\w./-]*\.[a-z]+)`/g,
          )) {
            const path = match[1] ?? '';
            if (!existsSync(join(root, path)))
              missing.push(`${relative(root, file)}:${index + 1}: ${path}`);
          }
        });
    }
    assert.deepEqual(missing, []);
  });
});
