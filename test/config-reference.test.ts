import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  collectOptions,
  REFERENCE_FILE,
  renderReference,
  SCHEMA_FILE,
} from '../scripts/config-reference.js';
import { resolveConfig } from '../src/index.js';

/** Every leaf of a resolved config, records' keys as `<name>` (`entities.<name>.table`). */
function leafPaths(value: unknown, prefix: string, records: ReadonlySet<string>): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  const paths: string[] = prefix === '' ? [] : [prefix];
  for (const [key, child] of Object.entries(value)) {
    const segment = records.has(prefix) ? '<name>' : key;
    paths.push(...leafPaths(child, prefix === '' ? segment : `${prefix}.${segment}`, records));
  }
  return paths;
}

describe('configuration reference (docs/configuration.md)', () => {
  it('is what `npm run docs:config` writes from the schema (run it after changing the schema)', () => {
    assert.equal(readFileSync(REFERENCE_FILE, 'utf8'), renderReference());
  });

  it('documents every option of a resolved config, with a description', () => {
    const config = resolveConfig(
      {
        redis: { tls: { ca: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----' } },
        entities: {
          users: {
            table: 'users',
            key: 'id',
            sliding: { maxAgeMs: 120_000 },
            tags: () => [],
          },
        },
        warmers: { hot: { schedule: { every: 1_000 }, entity: 'users' } },
        writeBehind: { replicas: 0 },
        jobs: { queuePrefix: '{x}' },
      },
      { REDIS_URL: 'rediss://127.0.0.1:6380' },
    );
    const documented = new Map(collectOptions().map((o) => [o.path, o]));
    const paths = leafPaths(config, '', new Set(['entities', 'warmers', 'invalidateBy']));
    assert.ok(paths.length > 60, `walked ${paths.length} options`);
    const reference = readFileSync(REFERENCE_FILE, 'utf8');
    for (const path of paths) {
      // `schedule.every` is one branch of the documented `schedule` union.
      const option = documented.get(path) ?? documented.get(path.replace(/\.[^.]+$/, ''));
      assert.ok(option, `option ${path} is missing from the reference`);
      assert.ok(option.description.length > 10, `option ${option.path} has no description`);
      assert.ok(reference.includes(`| \`${option.path}\` |`), `${option.path} not in the file`);
    }
  });

  it('refuses a schema with an option without TSDoc', () => {
    const schema = readFileSync(SCHEMA_FILE, 'utf8');
    const undocumented = schema.replace('/** Time an entry is fresh. @default 60000 */', '');
    assert.notEqual(undocumented, schema, 'the cache.ttlMs comment moved: update this test');
    const dir = mkdtempSync(join(tmpdir(), 'walcache-config-reference-'));
    try {
      const file = join(dir, 'schema.ts');
      writeFileSync(file, undocumented);
      assert.throws(
        () => collectOptions(file),
        /options without a TSDoc description in .*: cache\.ttlMs$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
