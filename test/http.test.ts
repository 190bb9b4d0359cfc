import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  createService,
  type Database,
  SCHEMA_SQL,
  SEED_SQL,
  serviceConfig,
} from '../examples/http-service.js';
import { pgConfig } from '../src/config/database.js';
import {
  CacheEngine,
  ConfigError,
  cacheControl,
  cacheHeaders,
  createRepository,
  etag,
  isNotModified,
  SerializationError,
  sendCached,
} from '../src/index.js';
import { REDIS_CONFIG, Resources, uniquePrefix } from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';

describe('etag', () => {
  const row = {
    id: '42',
    email: 'ada@example.com',
    name: 'Ada',
    born: new Date('1815-12-10T00:00:00Z'),
    avatar: Buffer.from([1, 2, 3]),
    balance: 12n,
    tags: ['a', 'b'],
    meta: { nested: true, nothing: null },
  };

  it('is a strong tag of 27 base64url characters', () => {
    assert.match(etag(row), /^"[A-Za-z0-9_-]{27}"$/);
  });

  it('is the same for an equal value, whatever its key order or copy', () => {
    const reordered = {
      meta: { nothing: null, nested: true },
      tags: ['a', 'b'],
      balance: 12n,
      avatar: new Uint8Array([1, 2, 3]),
      born: new Date(row.born.getTime()),
      name: 'Ada',
      email: 'ada@example.com',
      id: '42',
    };
    assert.equal(etag(reordered), etag(row));
    assert.equal(etag(structuredClone(row)), etag(row));
    assert.equal(etag(-0), etag(0));
  });

  it('changes with any field, and with types that JSON would confuse', () => {
    const base = etag(row);
    const variants: unknown[] = [
      { ...row, name: 'Ada L.' },
      { ...row, born: new Date(row.born.getTime() + 1) },
      { ...row, avatar: Buffer.from([1, 2, 4]) },
      { ...row, balance: 13n },
      { ...row, balance: '12' },
      { ...row, balance: 12 },
      { ...row, tags: ['b', 'a'] },
      { ...row, tags: ['ab'] },
      { ...row, meta: { nested: true } },
      { ...row, meta: { nested: true, nothing: undefined } },
      { ...row, extra: null },
    ];
    const tags = variants.map(etag);
    for (const tag of tags) assert.notEqual(tag, base);
    assert.equal(new Set(tags).size, tags.length, 'every variant has its own tag');
    // Self-delimiting: concatenations do not collide.
    assert.notEqual(etag(['ab', 'c']), etag(['a', 'bc']));
    assert.notEqual(etag({ a: 'b', c: 'd' }), etag({ a: 'b,c:d' }));
    assert.notEqual(etag([[], []]), etag([[[]]]));
    assert.notEqual(etag(new Set([1])), etag([1]));
    assert.notEqual(etag(new Map([['a', 1]])), etag({ a: 1 }));
    assert.notEqual(etag(null), etag(undefined));
    assert.notEqual(etag('\ud800'), etag('\ud801'), 'lone surrogates are not merged');
  });

  it('refuses what cannot be cached', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    assert.throws(() => etag(cycle), SerializationError);
    assert.throws(() => etag({ f: () => 1 }), SerializationError);
    assert.throws(() => etag(new (class Point {})()), SerializationError);
    assert.throws(() => etag(Symbol('s')), SerializationError);
  });
});

describe('cacheControl', () => {
  it('formats max-age and stale-while-revalidate in whole seconds', () => {
    assert.equal(
      cacheControl({ ttlMs: 60_000, staleWhileRevalidateMs: 30_000 }),
      'private, max-age=60, stale-while-revalidate=30',
    );
    assert.equal(cacheControl({ ttlMs: 60_000, staleWhileRevalidateMs: 0 }), 'private, max-age=60');
    assert.equal(
      cacheControl({ ttlMs: 1_999, staleWhileRevalidateMs: 999 }),
      'private, max-age=1',
      'floored; a sub-second swr is left out',
    );
    assert.equal(
      cacheControl({ ttlMs: 60_000, staleWhileRevalidateMs: 5_000 }, { visibility: 'public' }),
      'public, max-age=60, stale-while-revalidate=5',
    );
    assert.equal(
      cacheControl({ ttlMs: 60_000, staleWhileRevalidateMs: 0 }, { maxAgeMs: 10_000 }),
      'private, max-age=10',
    );
    assert.equal(
      cacheControl({ ttlMs: 60_000, staleWhileRevalidateMs: 0 }, { maxAgeMs: 0 }),
      'private, max-age=0',
    );
  });

  it('refuses bad durations and a max-age above the TTL', () => {
    const ok = { ttlMs: 60_000, staleWhileRevalidateMs: 0 };
    assert.throws(() => cacheControl({ ttlMs: -1, staleWhileRevalidateMs: 0 }), ConfigError);
    assert.throws(() => cacheControl({ ttlMs: 1000, staleWhileRevalidateMs: -5 }), ConfigError);
    assert.throws(
      () => cacheControl({ ttlMs: Number.NaN, staleWhileRevalidateMs: 0 }),
      ConfigError,
    );
    assert.throws(
      () => cacheControl({ ttlMs: Number.POSITIVE_INFINITY, staleWhileRevalidateMs: 0 }),
      ConfigError,
    );
    assert.throws(() => cacheControl(null as never), ConfigError);
    assert.throws(() => cacheControl(ok, { maxAgeMs: 60_001 }), ConfigError);
    assert.throws(() => cacheControl(ok, { maxAgeMs: -1 }), ConfigError);
    assert.throws(() => cacheControl(ok, { visibility: 'shared' as never }), ConfigError);
  });

  it('cacheHeaders gives both headers', () => {
    const value = { id: '1' };
    assert.deepEqual(cacheHeaders(value, { ttlMs: 5_000, staleWhileRevalidateMs: 0 }), {
      ETag: etag(value),
      'Cache-Control': 'private, max-age=5',
    });
  });
});

describe('isNotModified (RFC 9110 If-None-Match)', () => {
  const tag = '"abc"';

  it('matches a tag, in a list, weakly, or *', () => {
    assert.equal(isNotModified('"abc"', tag), true);
    assert.equal(isNotModified('"x", "abc"', tag), true);
    assert.equal(isNotModified('"x","abc" , "y"', tag), true);
    assert.equal(isNotModified(' W/"abc" ', tag), true, 'weak comparison');
    assert.equal(isNotModified('"abc"', 'W/"abc"'), true);
    assert.equal(isNotModified('*', tag), true);
    assert.equal(isNotModified(['"x"', '"abc"'], tag), true, 'repeated headers');
    assert.equal(isNotModified('"a,b", "abc"', tag), true);
    assert.equal(isNotModified('"a,b"', '"a,b"'), true, 'a comma inside a tag');
  });

  it('does not match other tags, nothing, or a malformed header', () => {
    assert.equal(isNotModified(undefined, tag), false);
    assert.equal(isNotModified('', tag), false);
    assert.equal(isNotModified([], tag), false);
    assert.equal(isNotModified('"abcd"', tag), false);
    assert.equal(isNotModified('"ab"', tag), false);
    assert.equal(isNotModified('abc', tag), false, 'unquoted');
    assert.equal(isNotModified('"abc', tag), false, 'unterminated');
    assert.equal(isNotModified('"x" "abc"', tag), false, 'no comma');
    assert.equal(isNotModified('w/"abc"', tag), false, 'W is upper case');
  });

  it('refuses a tag that is not an entity tag', () => {
    assert.throws(() => isNotModified('"abc"', 'abc'), ConfigError);
    assert.throws(() => isNotModified('*', '*'), ConfigError);
    assert.throws(() => isNotModified('"a"', '"a", "b"'), ConfigError);
  });
});

describe('sendCached (node:http)', () => {
  const value = {
    id: 9007199254740993n,
    avatar: Buffer.from('hi'),
    bytes: new Uint8Array([255]),
    at: new Date('2024-01-02T03:04:05.678Z'),
    counts: new Map([['a', 1n]]),
    set: new Set(['x']),
  };
  const freshness = { ttlMs: 10_000, staleWhileRevalidateMs: 2_000 };
  const server = createServer((req, res) => {
    sendCached(req, res, req.url === '/missing' ? undefined : value, freshness, {
      visibility: req.url === '/public' ? 'public' : undefined,
    });
  });
  let base = '';
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('200: JSON with bigints as strings, bytes as base64, and the caching headers', async () => {
    const r = await fetch(`${base}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(r.headers.get('etag'), etag(value));
    assert.equal(r.headers.get('cache-control'), 'private, max-age=10, stale-while-revalidate=2');
    assert.deepEqual(await r.json(), {
      id: '9007199254740993',
      avatar: 'aGk=',
      bytes: '/w==',
      at: '2024-01-02T03:04:05.678Z',
      counts: { a: '1' },
      set: ['x'],
    });
    const pub = await fetch(`${base}/public`);
    assert.match(pub.headers.get('cache-control') ?? '', /^public, /);
    await pub.text();
  });

  it('304 for GET and HEAD when If-None-Match matches; HEAD has no body', async () => {
    const headers = { 'If-None-Match': etag(value) };
    for (const method of ['GET', 'HEAD']) {
      const r = await fetch(`${base}/`, { method, headers });
      assert.equal(r.status, 304, method);
      assert.equal(r.headers.get('etag'), etag(value));
      assert.equal(await r.text(), '');
    }
    const head = await fetch(`${base}/`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.ok(Number(head.headers.get('content-length')) > 0);
    assert.equal(await head.text(), '');
    const put = await fetch(`${base}/`, { method: 'PUT', headers, body: '{}' });
    assert.equal(put.status, 200, 'If-None-Match is not answered with 304 after a write');
    await put.text();
  });

  it('404 with no-store for undefined', async () => {
    const r = await fetch(`${base}/missing`);
    assert.equal(r.status, 404);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.headers.get('etag'), null);
    assert.deepEqual(await r.json(), { error: 'not found' });
  });
});

/** A response's JSON body, typed for the assertions. */
async function json<T = Record<string, unknown>>(r: Response): Promise<T> {
  return (await r.json()) as T;
}

describe('examples/http-service.ts end to end', () => {
  const res = new Resources();
  const scope = new PgScope('http');
  const prefix = res.track(uniquePrefix('http'));
  const config = serviceConfig({ schema: scope.schema, prefix, redis: REDIS_CONFIG });
  const kysely = () =>
    new Kysely<Database>({
      dialect: new PostgresDialect({
        pool: new pg.Pool({
          ...pgConfig(DATABASE_URL),
          max: 4,
          options: `-c search_path=${scope.schema}`,
        }),
      }),
    });
  const db = kysely();
  const repo = createRepository({ db, config });
  // Another "process": its own pool, engine (L1) and repository.
  const db2 = kysely();
  const engine2 = new CacheEngine({ config });
  const repo2 = createRepository({ db: db2, config, cache: engine2 });
  const server = createService({ repo, db });
  const server2 = createService({ repo: repo2, db: db2 });
  let base = '';
  let base2 = '';

  const listen = (s: typeof server) =>
    new Promise<string>((resolve) =>
      s.listen(0, '127.0.0.1', () =>
        resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`),
      ),
    );
  const close = (s: typeof server) =>
    new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });

  before(async () => {
    await scope.create(SCHEMA_SQL);
    await scope.q(`SET search_path TO ${scope.schema}; ${SEED_SQL}`);
    base = await listen(server);
    base2 = await listen(server2);
  });
  after(async () => {
    await Promise.all([close(server), close(server2)]);
    await repo.close();
    await repo2.close();
    await engine2.close();
    await db.destroy();
    await db2.destroy();
    await res.close();
    await scope.close();
  });

  it('GET /users/:id: 200 with an ETag and Cache-Control from the entity TTL, no password_hash', async () => {
    const r = await fetch(`${base}/users/1`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    const { ttlMs, staleWhileRevalidateMs } = repo.users.freshness;
    assert.equal(ttlMs, 30_000, 'the entity TTL, not cache.ttlMs');
    assert.equal(
      r.headers.get('cache-control'),
      `private, max-age=${ttlMs / 1000}, stale-while-revalidate=${staleWhileRevalidateMs / 1000}`,
    );
    const text = await r.text();
    assert.doesNotMatch(text, /password_hash|not-a-real-hash/);
    const user = JSON.parse(text);
    assert.deepEqual(user, {
      id: '1',
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      tenant_id: 1,
    });
    assert.equal(r.headers.get('etag'), etag(await repo.users.findById(1)));
  });

  it('If-None-Match: 304 with no body; a stale tag gets 200', async () => {
    const tag = (await fetch(`${base}/users/1`)).headers.get('etag') as string;
    const r = await fetch(`${base}/users/1`, { headers: { 'If-None-Match': `"nope", W/${tag}` } });
    assert.equal(r.status, 304);
    assert.equal(r.headers.get('etag'), tag);
    assert.match(r.headers.get('cache-control') ?? '', /^private, max-age=30/);
    assert.equal(await r.text(), '');
    const other = await fetch(`${base}/users/1`, { headers: { 'If-None-Match': '"nope"' } });
    assert.equal(other.status, 200);
    await other.text();
  });

  it('the same row has the same ETag in another process', async () => {
    const a = await fetch(`${base}/users/2`);
    const b = await fetch(`${base2}/users/2`);
    assert.equal(b.status, 200);
    assert.equal(b.headers.get('etag'), a.headers.get('etag'));
    assert.deepEqual(await b.json(), await a.json());
    // And after a refill from the database.
    await repo2.users.evict([2]);
    const c = await fetch(`${base2}/users/2`);
    assert.equal(c.headers.get('etag'), a.headers.get('etag'));
    await c.text();
  });

  it('PUT /users/:id/name: the new row and ETag, read back at once in this process', async () => {
    const old = await fetch(`${base}/users/3`);
    const oldTag = old.headers.get('etag') as string;
    await old.text();
    const put = await fetch(`${base}/users/3/name`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'Rear Admiral Hopper' }),
    });
    assert.equal(put.status, 200);
    const newTag = put.headers.get('etag') as string;
    assert.notEqual(newTag, oldTag);
    assert.equal(put.headers.get('content-location'), '/users/3');
    const written = await json(put);
    assert.equal(written.name, 'Rear Admiral Hopper');
    assert.equal('password_hash' in written, false);

    const get = await fetch(`${base}/users/3`, { headers: { 'If-None-Match': oldTag } });
    assert.equal(get.status, 200, 'the old tag no longer matches');
    assert.equal(get.headers.get('etag'), newTag, 'the PUT answered the ETag a GET gives');
    assert.deepEqual(await get.json(), written);
    const revalidated = await fetch(`${base}/users/3`, { headers: { 'If-None-Match': newTag } });
    assert.equal(revalidated.status, 304);
    await revalidated.text();

    const stats = await fetch(`${base}/users/3/stats`);
    assert.equal((await json(stats)).name, 'Rear Admiral Hopper', 'cached aggregate evicted too');
  });

  it('GET /users/:id/orders and /stats: cached queries with ETags', async () => {
    const r = await fetch(`${base}/users/1/orders`);
    assert.equal(r.status, 200);
    assert.equal(
      r.headers.get('cache-control'),
      'private, max-age=60, stale-while-revalidate=30',
      'queries live cache.ttlMs',
    );
    const orders = await json<Array<{ id: string }>>(r);
    assert.deepEqual(
      orders.map((o) => o.id),
      ['1', '2', '3'],
    );
    const again = await fetch(`${base}/users/1/orders`, {
      headers: { 'If-None-Match': r.headers.get('etag') as string },
    });
    assert.equal(again.status, 304);

    const stats = await fetch(`${base}/users/1/stats`);
    assert.equal(stats.status, 200);
    assert.deepEqual(await stats.json(), {
      id: '1',
      name: 'Ada Lovelace',
      email: 'ada@example.com',
      order_count: '3',
      order_total: '165.49',
    });
    const none = await fetch(`${base}/users/3/stats`);
    assert.equal((await json(none)).order_count, '0', 'a user without orders');
  });

  it('404 for a missing user or route, 400 for a bad id or body, 405 for a wrong method', async () => {
    const check = async (path: string, status: number, init?: RequestInit) => {
      const r = await fetch(`${base}${path}`, init);
      assert.equal(r.status, status, `${init?.method ?? 'GET'} ${path}`);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      const body = await json(r);
      assert.equal(typeof body.error, 'string');
      assert.doesNotMatch(JSON.stringify(body), /\n\s+at /, 'no stack');
      return body;
    };
    assert.deepEqual(await check('/users/999999', 404), { error: 'not found' });
    await check('/users/999999/orders', 404);
    await check('/users/999999/stats', 404);
    await check('/nope', 404);
    await check('/users/1/nope', 404);
    await check('/users/abc', 400);
    await check('/users/1.5', 400);
    await check('/users/-1', 400);
    await check('/users/99999999999999999999', 400);
    await check('/users/%31', 400);
    const put = (body: string) => ({ method: 'PUT', body });
    await check('/users/1/name', 400, put('{not json'));
    await check('/users/1/name', 400, put('{}'));
    await check('/users/1/name', 400, put('{"name": 42}'));
    await check('/users/1/name', 400, put('{"name": "  "}'));
    await check('/users/1/name', 400, put('null'));
    await check('/users/abc/name', 400, put('{"name":"x"}'));
    await check('/users/999999/name', 404, put('{"name":"x"}'));
    await check('/users/1/name', 413, put(JSON.stringify({ name: 'x'.repeat(20_000) })));
    const wrong = await fetch(`${base}/users/1`, { method: 'DELETE' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'GET, HEAD');
    await wrong.text();
    assert.equal((await fetch(`${base}/users/1`)).status, 200, 'still serving');
  });

  it('500 without details when the database fails', async () => {
    const broken = createRepository({
      db: new Kysely<Database>({
        dialect: new PostgresDialect({
          pool: new pg.Pool({
            ...pgConfig(DATABASE_URL),
            max: 1,
            options: '-c search_path=no_such_schema_here',
          }),
        }),
      }),
      config: serviceConfig({
        schema: 'no_such_schema_here',
        prefix: res.track(uniquePrefix('http-broken')),
        redis: REDIS_CONFIG,
      }),
    });
    const failing = createService({ repo: broken, db: broken.db });
    const url = await listen(failing);
    const original = console.error;
    console.error = () => {};
    try {
      const r = await fetch(`${url}/users/1`);
      assert.equal(r.status, 500);
      assert.deepEqual(await r.json(), { error: 'internal error' });
    } finally {
      console.error = original;
      await close(failing);
      await broken.close();
      await broken.db.destroy();
    }
  });
});
