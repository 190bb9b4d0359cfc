import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  CacheEngine,
  createRepository,
  defineConfig,
  EncryptionKeyError,
  type WalcacheConfigInput,
} from '../src/index.js';
import { REDIS_CONFIG, Resources, storedUnder, uniquePrefix } from './helpers.js';
import { PgScope } from './pg-helpers.js';
import { countingDb, TEST_TABLES } from './repo-helpers.js';

const newKey = () => randomBytes(32).toString('base64');
const K1 = newKey();
const K2 = newKey();
const PLAIN = 'Ada Lovelace, 12 Analytical Way';

describe('encryption at rest (AES-256-GCM)', () => {
  const res = new Resources();
  const engines: CacheEngine[] = [];
  after(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await res.close();
  });

  /** An engine whose keys come from `keys` (the environment variable's value), or none. */
  async function engine(
    prefix: string,
    keys: string | undefined,
    config: WalcacheConfigInput = {},
  ): Promise<CacheEngine> {
    res.track(prefix);
    const e = new CacheEngine({
      config: { prefix, redis: REDIS_CONFIG, l1: { enabled: false }, ...config },
      env: keys === undefined ? {} : { WALCACHE_ENCRYPTION_KEYS: keys },
    });
    engines.push(e);
    assert.ok(await e.ready());
    return e;
  }

  async function rawEntry(e: CacheEngine, key: string): Promise<Buffer> {
    return (await res.redis().getBuffer(e.keys.entry(key))) as Buffer;
  }

  it('encrypted entries hold no plaintext in Redis and read back through both tiers', async () => {
    const prefix = uniquePrefix('enc');
    const a = await engine(prefix, `k1:${K1}`, { l1: { enabled: true } });
    const value = { name: PLAIN, n: 1 };
    assert.deepEqual(await a.getOrLoad('u:1', () => value, { encrypt: true }), value);
    const stored = await rawEntry(a, 'u:1');
    assert.equal(stored.includes(PLAIN), false, 'ciphertext only');
    assert.equal(stored.includes('Lovelace'), false);
    assert.ok(stored.includes('k1'), 'the key id travels with the entry');
    // Another process with the key reads it from L2 (this one from L1).
    const b = await engine(prefix, `k1:${K1}`);
    assert.deepEqual(
      await b.getOrLoad('u:1', () => assert.fail('reloaded'), { encrypt: true }),
      value,
    );
    assert.deepEqual(await b.get('u:1'), value, 'get decrypts too');
    // set() encrypts as well; unencrypted entries are untouched by the feature.
    await a.set('s', { secret: PLAIN }, { encrypt: true });
    assert.equal((await rawEntry(a, 's')).includes(PLAIN), false);
    await a.set('p', { open: PLAIN });
    assert.equal((await rawEntry(a, 'p')).includes(PLAIN), true);
  });

  it('keys rotate: the first key encrypts, older ones still decrypt', async () => {
    const prefix = uniquePrefix('rotate');
    const old = await engine(prefix, `k1:${K1}`);
    await old.getOrLoad('r', () => 'written under k1', { encrypt: true });
    const rotated = await engine(prefix, `k2:${K2},k1:${K1}`);
    assert.equal(
      await rotated.getOrLoad('r', () => assert.fail('k1 entry not read'), { encrypt: true }),
      'written under k1',
    );
    await rotated.getOrLoad('r2', () => 'written under k2', { encrypt: true });
    assert.ok((await rawEntry(rotated, 'r2')).includes('k2'));
  });

  const misses: Array<[string, string | undefined, RegExp]> = [
    ['an unknown key id (not rolled out here yet)', `k9:${K2}`, /key id `k2`/],
    ['the same key id with other key bytes', `k2:${K1}`, /authenticat/],
    ['no keys at all', undefined, /no encryption keys/],
  ];
  for (const [what, keys, reason] of misses) {
    it(`${what}: a miss with a decrypt-failed event, never a crash or ciphertext`, async () => {
      const prefix = uniquePrefix('encmiss');
      const writer = await engine(prefix, `k2:${K2}`);
      await writer.getOrLoad('m', () => 'secret value', { encrypt: true });
      const reader = await engine(prefix, keys);
      const failed: Array<[string, string]> = [];
      reader.events.on('decrypt-failed', (key, why) => failed.push([key, why]));
      assert.equal(await reader.get('m'), undefined);
      assert.equal(await reader.getOrLoad('m', () => 'reloaded'), 'reloaded');
      assert.ok(failed.length >= 1, 'event emitted');
      assert.equal(failed[0]?.[0], 'm');
      assert.match(failed[0]?.[1] ?? '', reason);
    });
  }

  it('a plaintext entry is a miss for a read that requires encryption (no downgrade)', async () => {
    const prefix = uniquePrefix('downgrade');
    const a = await engine(prefix, `k1:${K1}`);
    await a.set('d', 'planted in the clear');
    const failed: string[] = [];
    a.events.on('decrypt-failed', (_k, why) => failed.push(why));
    assert.equal(
      await a.getOrLoad('d', () => 'from the loader', { encrypt: true }),
      'from the loader',
    );
    assert.match(failed[0] ?? '', /not encrypted/);
    assert.equal((await rawEntry(a, 'd')).includes('from the loader'), false, 'refilled encrypted');
  });

  it('an entry moved to another key does not decrypt there (the key is authenticated)', async () => {
    const prefix = uniquePrefix('swap');
    const a = await engine(prefix, `k1:${K1}`);
    await a.getOrLoad('mine', () => 'for mine only', { encrypt: true });
    await res.redis().set(a.keys.entry('theirs'), await rawEntry(a, 'mine'), 'PX', 60_000);
    assert.equal(await a.getOrLoad('theirs', () => 'theirs', { encrypt: true }), 'theirs');
  });

  it('missing or malformed keys: EncryptionKeyError at construction, naming no key material', () => {
    const build = (keys: string | undefined) =>
      new CacheEngine({
        config: {
          prefix: uniquePrefix('badkeys'),
          redis: REDIS_CONFIG,
          encryption: { all: true },
        },
        env: keys === undefined ? {} : { WALCACHE_ENCRYPTION_KEYS: keys },
      });
    const short = randomBytes(16).toString('base64');
    const cases: Array<[string | undefined, RegExp]> = [
      [undefined, /WALCACHE_ENCRYPTION_KEYS is not set/],
      ['', /WALCACHE_ENCRYPTION_KEYS is not set/],
      [K1, /`<id>:<base64 key>`/],
      [`k1:${short}`, /key `k1` is 16 bytes: AES-256 needs 32/],
      [`k1:${K1},k1:${K2}`, /key id `k1` appears twice/],
      [`bad id!:${K1}`, /key id/],
      [`k1:not base64!!`, /key `k1`/],
    ];
    for (const [keys, message] of cases) {
      assert.throws(
        () => build(keys),
        (e: unknown) => {
          assert.ok(e instanceof EncryptionKeyError, String(e));
          assert.equal(e.code, 'E_ENCRYPTION_KEY');
          assert.match(e.message, message);
          for (const secret of [K1, K2, short])
            assert.equal(JSON.stringify([e.message, e.context]).includes(secret), false);
          return true;
        },
        String(keys),
      );
    }
    // An engine that is not asked to encrypt starts without keys; asking then fails clearly.
    const plain = new CacheEngine({
      config: { prefix: uniquePrefix('nokeys'), redis: REDIS_CONFIG },
      env: {},
    });
    engines.push(plain);
    assert.throws(() => plain.getOrLoad('x', () => 1, { encrypt: true }), EncryptionKeyError);
  });

  describe('entities with encrypt: true, through the repository', () => {
    const scope = new PgScope('enc');
    const prefix = res.track(uniquePrefix('enc-repo'));
    const { db } = countingDb(scope.schema);
    const config = defineConfig({
      prefix,
      redis: REDIS_CONFIG,
      defaultSchema: scope.schema,
      accessLog: { sampleRate: 0 },
      entities: {
        users: { table: 'users', key: 'id', unique: ['email'], encrypt: true },
        orders: { table: 'orders', key: 'id' },
      },
      invalidateBy: { orders: ['user_id'] },
    });
    const open = (cache: CacheEngine) => createRepository({ db, config, cache });
    let repo: ReturnType<typeof open>;
    before(async () => {
      await scope.create(TEST_TABLES);
      await scope.q(
        `INSERT INTO $schema.users (id, email, name) VALUES (1, 'ada@x', '${PLAIN}');
         INSERT INTO $schema.orders (id, user_id, status) VALUES (1, 1, 'open-order-status');`,
      );
      const cache = new CacheEngine({ config, env: { WALCACHE_ENCRYPTION_KEYS: `k1:${K1}` } });
      engines.push(cache);
      assert.ok(await cache.ready(), 'connected, so the reads below fill Redis');
      repo = open(cache);
    });
    after(async () => {
      await repo?.close();
      await db.destroy();
      await scope.close();
    });

    it('entity rows and queries reading the table are encrypted; other entities are not', async () => {
      assert.equal((await repo.users.findById(1))?.name, PLAIN);
      assert.equal((await repo.users.findBy('email', 'ada@x'))?.name, PLAIN);
      const joined = await repo.cached(
        db
          .selectFrom('orders')
          .innerJoin('users', 'users.id', 'orders.user_id')
          .select(['orders.id', 'users.name'])
          .where('orders.user_id', '=', 1),
      );
      assert.equal(joined[0]?.name, PLAIN);
      assert.equal((await repo.orders.findById(1))?.status, 'open-order-status');
      let plainOrders = 0;
      for (const [k, raw] of await storedUnder(res.redis(), `${prefix}:k`)) {
        assert.equal(raw.includes('Lovelace'), false, `${k} holds plaintext`);
        if (raw.includes('open-order-status')) plainOrders++;
      }
      assert.equal(plainOrders, 1, 'orders (not encrypted) stay readable');
    });

    it('createRepository refuses an engine without the keys its entities need', () => {
      const keyless = new CacheEngine({ config, env: {} });
      engines.push(keyless);
      assert.throws(() => open(keyless), EncryptionKeyError);
    });

    it('encrypt and writeBehind together are refused (pending writes are not encrypted)', () => {
      assert.throws(
        () =>
          createRepository({
            db,
            config: {
              ...config,
              entities: { users: { table: 'users', key: 'id', encrypt: true, writeBehind: true } },
            },
          }),
        /writeBehind/,
      );
    });
  });
});
