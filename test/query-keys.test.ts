/**
 * Query keys name exactly one set of dependencies: `cached(q, { tags })` and `cached(q)`
 * are different entries, no entity shares the query namespace, and a prepared query's
 * fast path honours `maxStalenessMs` and `forceFresh` like every other read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError, createRepository, defineConfig } from '../src/index.js';
import { REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb } from './repo-helpers.js';

describe('query keys', () => {
  const res = new Resources();
  const scope = new PgScope('qkeys');
  const prefix = res.track(uniquePrefix('qkeys'));
  const { db, queries } = countingDb(scope.schema);
  const config = defineConfig({
    prefix,
    redis: REDIS_CONFIG,
    defaultSchema: scope.schema,
    cache: { earlyRefreshBeta: 0 },
    accessLog: { sampleRate: 0 },
    entities: { orders: { table: 'orders', key: 'id' } },
    invalidateBy: { orders: ['user_id'] },
  });
  const repo = createRepository({ db, config });

  before(async () => {
    await scope.create(`CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL, status text NOT NULL DEFAULT 'open', total numeric(12,2) NOT NULL DEFAULT 0);
      INSERT INTO orders (id, user_id) VALUES (1, 7), (2, 7);`);
    await repo.ready();
    // Redis too: a read before the connection is up (longer on a cluster) skips the cache.
    assert.ok(await repo.engine.ready());
  });
  after(async () => {
    await repo.close();
    await db.destroy();
    await res.close();
    await scope.close();
  });

  const q = () => db.selectFrom('orders').select('id').where('user_id', '=', 7);

  it('cached(q, { tags }) and cached(q) are separate entries: a bump of the extra tag evicts only the tagged one', async () => {
    const plain = repo.queryKey(q());
    const tagged = repo.queryKey(q(), undefined, { tags: ['promo:7'] });
    assert.notEqual(plain, tagged);
    await repo.cached(q());
    await repo.cached(q(), { tags: ['promo:7'] });
    assert.ok(repo.engine.peek(plain) !== undefined && repo.engine.peek(tagged) !== undefined);
    await repo.engine.invalidateTags(['promo:7']);
    assert.equal(repo.engine.peek(tagged), undefined, 'the tagged entry depends on promo:7');
    assert.ok(repo.engine.peek(plain) !== undefined, 'the plain one does not');
    assert.notEqual(repo.queryKey(q(), undefined, { tables: ['orders'] }), plain);
  });

  it('an entity cannot be named q: its keys would share the query namespace', () => {
    assert.throws(
      () =>
        createRepository({
          db,
          config: defineConfig({ prefix, entities: { q: { table: 'orders', key: 'id' } } }),
        }),
      (e: unknown) => e instanceof ConfigError && /query/.test(e.message),
    );
  });

  it('a prepared query’s L1 hit honours forceFresh and maxStalenessMs', async () => {
    const fresh = repo.prepare('orders-of-fresh', (uid: number) => q().where('user_id', '=', uid), {
      forceFresh: true,
    });
    await fresh(7);
    const before = queries.length;
    await fresh(7);
    assert.equal(queries.length, before + 1, 'forceFresh reads the database every time');

    // No worker writes a heartbeat under this prefix: every bounded read bypasses the cache.
    const bounded = repo.prepare(
      'orders-of-bounded',
      (uid: number) => q().where('user_id', '=', uid),
      {
        maxStalenessMs: 1_000,
      },
    );
    await bounded(7);
    const again = queries.length;
    await bounded(7);
    assert.equal(queries.length, again + 1, 'with no worker heartbeat, maxStalenessMs bypasses L1');
  });
});
