import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRepository, defineConfig } from '../src/index.js';
import { deferred, REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

interface Row {
  id: number;
  name: string;
  isAdmin?: boolean;
  tags: string[];
  at: Date;
  meta: Map<string, number>;
  seen: Set<string>;
}

const row = (): Row => ({
  id: 1,
  name: 'ada',
  tags: ['a'],
  at: new Date(1_700_000_000_000),
  meta: new Map([['m', 1]]),
  seen: new Set(['x']),
});

/** What request A does to the row it got; each step must throw, and leave it as it was. */
function tamper(value: Row): void {
  const attempts: Array<[string, () => unknown]> = [
    ['add a property', () => (value.isAdmin = true)],
    ['delete a property', () => delete (value as Partial<Row>).name],
    ['push to an array', () => value.tags.push('admin')],
    ['set a Date', () => value.at.setFullYear(1999)],
    ['set in a Map', () => value.meta.set('m', 2)],
    ['clear a Set', () => value.seen.clear()],
  ];
  for (const [what, attempt] of attempts) assert.throws(attempt, TypeError, what);
}

function assertUntouched(value: Row, what: string): void {
  assert.equal(value.isAdmin, undefined, what);
  assert.equal(value.name, 'ada', what);
  assert.deepEqual(value.tags, ['a'], what);
  assert.equal(value.at.getTime(), 1_700_000_000_000, what);
  assert.ok(value.at instanceof Date && value.at.constructor === Date, what);
  assert.equal(value.meta.get('m'), 1, what);
  assert.ok(value.seen.has('x'), what);
  assert.equal(JSON.stringify(value.at), JSON.stringify(new Date(1_700_000_000_000)));
}

describe('no caller can change what another caller gets', () => {
  const res = new Resources();
  after(() => res.close());

  it('L1 hits, L2 hits, get and peek all return read-only values', async () => {
    const a = await res.readyEngine(uniquePrefix('shared'));
    const b = await res.readyEngine(a.config.prefix); // another process: its first read is an L2 hit
    const first = await a.getOrLoad('r', row);
    tamper(first);
    const hit = await a.getOrLoad<Row>('r', () => assert.fail('loaded twice'));
    assert.equal(hit, first, 'L1 hands out the object it holds (no copy on a hit)');
    assertUntouched(hit, 'L1 hit');
    const fromL2 = await b.getOrLoad<Row>('r', () => assert.fail('loaded twice'));
    tamper(fromL2);
    assertUntouched(await b.getOrLoad<Row>('r', () => assert.fail('loaded twice')), 'L2 then L1');
    assertUntouched((await a.get<Row>('r')) as Row, 'get');
    assertUntouched(a.peek<Row>('r') as Row, 'peek');
  });

  it('callers coalesced on one load get a read-only value too (L1 disabled)', async () => {
    const a = await res.readyEngine(uniquePrefix('flight'), { l1: { enabled: false } });
    const gate = deferred();
    const loader = async () => {
      await gate.promise;
      return row();
    };
    const p1 = a.getOrLoad('r', loader);
    const p2 = a.getOrLoad<Row>('r', loader);
    gate.resolve();
    const [one, two] = await Promise.all([p1, p2]);
    tamper(one);
    assertUntouched(two, 'coalesced caller');
  });

  it('byte arrays cannot be frozen: every caller gets its own copy', async () => {
    const a = await res.readyEngine(uniquePrefix('bytes'));
    const make = () => ({
      id: 1,
      blob: Buffer.from('abc'),
      nested: [{ bits: new Uint8Array([1, 2]) }],
    });
    const first = await a.getOrLoad('b', make);
    first.blob[0] = 0x7a;
    (first.nested[0] as { bits: Uint8Array }).bits[0] = 9;
    for (let i = 0; i < 2; i++) {
      const hit = await a.getOrLoad<ReturnType<typeof make>>('b', () => assert.fail('reloaded'));
      assert.equal(hit.blob.toString(), 'abc', 'L1 kept its own bytes');
      assert.ok(Buffer.isBuffer(hit.blob));
      assert.deepEqual([...(hit.nested[0] as { bits: Uint8Array }).bits], [1, 2]);
      hit.blob[0] = 0x79; // this caller's copy only
      assert.throws(() => {
        (hit as { id: number }).id = 2;
      }, TypeError);
    }
    const peeked = a.peek<ReturnType<typeof make>>('b');
    assert.equal(peeked?.blob.toString(), 'abc');
  });

  it('set() leaves the caller its own object; readers get a read-only copy', async () => {
    const a = await res.readyEngine(uniquePrefix('set'));
    const mine = row();
    await a.set('s', mine);
    mine.name = 'changed after set';
    mine.at.setFullYear(2000);
    const read = (await a.get<Row>('s')) as Row;
    assertUntouched(read, 'value set');
    tamper(read);
  });

  describe('through the repository', () => {
    const scope = new PgScope('shared');
    const prefix = res.track(uniquePrefix('shared-repo'));
    const { db } = countingDb(scope.schema);
    const config = defineConfig({
      prefix,
      redis: REDIS_CONFIG,
      defaultSchema: scope.schema,
      accessLog: { sampleRate: 0 },
      entities: { users: { table: 'users', key: 'id', deny: ['password_hash'] } },
    });
    const repo = createRepository({ db, config });
    before(async () => {
      await scope.create(TEST_TABLES);
      await scope.q(
        "INSERT INTO $schema.users (id, email, name) VALUES (1, 'a@x', 'ada'), (2, 'b@x', 'bob')",
      );
      assert.ok(await repo.engine.ready(), 'connected, so reads fill Redis and L1');
    });
    after(async () => {
      await repo.close();
      await db.destroy();
      await scope.close();
    });

    it("request A's changes to a row never reach request B", async () => {
      const a = (await repo.users.findById(1)) as Record<string, unknown>;
      assert.throws(() => {
        a.isAdmin = true;
      }, TypeError);
      assert.throws(() => delete a.name, TypeError);
      const b = (await repo.users.findById(1)) as Record<string, unknown>;
      assert.deepEqual(b, { id: '1', email: 'a@x', name: 'ada', tenant_id: 1 });
      const list = await repo.cached(db.selectFrom('users').select(['id', 'name']).orderBy('id'));
      assert.throws(() => list.pop(), TypeError);
      assert.throws(() => {
        (list[0] as { name: string }).name = 'eve';
      }, TypeError);
      assert.deepEqual(
        await repo.cached(db.selectFrom('users').select(['id', 'name']).orderBy('id')),
        [
          { id: '1', name: 'ada' },
          { id: '2', name: 'bob' },
        ],
      );
    });
  });
});
