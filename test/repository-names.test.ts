import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ConfigError, createRepository, pgConfig } from '../src/index.js';
import { RepositoryCore } from '../src/repository/repository.js';
import { REDIS_CONFIG, uniquePrefix } from './helpers.js';
import { DATABASE_URL } from './pg-helpers.js';

/**
 * An entity becomes a property of the repository (`repo.users`): one named like a
 * repository method or field would hide it (`repo.ready()` no longer a function). Every
 * such name is refused when the repository is built, before any connection is opened.
 */
describe('entity names', () => {
  const pool = new pg.Pool(pgConfig(DATABASE_URL));
  const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
  after(() => db.destroy());

  const members = [
    ...Object.getOwnPropertyNames(RepositoryCore.prototype),
    // Fields the constructor sets.
    'db',
    'engine',
    'config',
    'accessLog',
  ];

  it('a name of a repository method or field is a ConfigError naming the entity', async () => {
    assert.ok(members.includes('ready'));
    for (const name of members) {
      const config = {
        prefix: uniquePrefix('names'),
        redis: REDIS_CONFIG,
        entities: { [name]: { table: 'users', key: 'id' } },
      };
      let repo: { close(): Promise<void> } | undefined;
      try {
        repo = createRepository({ db, config });
      } catch (error) {
        assert.ok(error instanceof ConfigError, `${name}: ${String(error)}`);
        assert.equal(error.option, `entities.${name}`);
        assert.match(error.message, /this name is a repository method/);
        continue;
      } finally {
        await repo?.close();
      }
      assert.fail(`an entity named ${name} was accepted`);
    }
  });
});
