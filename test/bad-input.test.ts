import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  ConfigError,
  InvalidKeyError,
  SerializationError,
  ValueTooLargeError,
} from '../src/index.js';
import { Resources, sleep, uniquePrefix } from './helpers.js';

describe('bad input', () => {
  const res = new Resources();
  after(() => res.close());

  it('corrupted, foreign and wrong-type entries read as a miss, are replaced and counted', async () => {
    const prefix = uniquePrefix('corrupt');
    const a = await res.readyEngine(prefix, { l1: { enabled: false } });
    const raw = res.redis();
    const corrupt: string[] = [];
    a.events.on('corrupt-entry', (k) => corrupt.push(k));
    // A walcache-looking entry with a broken body, plain foreign bytes, and a hash.
    await raw.set(
      a.keys.entry('broken'),
      Buffer.concat([Buffer.from('D0123456789abcdef\x01\x00'), Buffer.alloc(40, 0xff)]),
    );
    await raw.set(a.keys.entry('foreign'), 'hello world');
    await raw.hset(a.keys.entry('hash'), 'f', 'v');
    for (const k of ['broken', 'foreign', 'hash']) {
      assert.equal(await a.getOrLoad(k, () => `fresh-${k}`), `fresh-${k}`);
      assert.equal(await a.getOrLoad(k, () => assert.fail(`${k} was refilled`)), `fresh-${k}`);
    }
    assert.deepEqual(corrupt.sort(), ['broken', 'foreign', 'hash']);
  });

  it('a tag version key holding another type: a read with derived tags still answers, and caches nothing', async () => {
    const prefix = uniquePrefix('badtag');
    const a = await res.readyEngine(prefix, { l1: { enabled: false } });
    const raw = res.redis();
    await raw.hset(a.keys.tagVersion('tenant:1'), 'f', 'v');
    let loads = 0;
    const read = () =>
      a.getOrLoad('user:1', () => ({ id: 1, tenant: 1, n: ++loads }), {
        tagsOf: (row: { tenant: number }) => [`tenant:${row.tenant}`],
      });
    assert.deepEqual(await read(), { id: 1, tenant: 1, n: 1 });
    // Nothing was stored under a version that could not be read: the next read loads.
    assert.deepEqual(await read(), { id: 1, tenant: 1, n: 2 });
  });

  it('a static tag whose version key holds another type: reads answer, get and getOrLoad alike', async () => {
    const prefix = uniquePrefix('badstatic');
    const a = await res.readyEngine(prefix, { l1: { enabled: false } });
    const raw = res.redis();
    await raw.hset(a.keys.tagVersion('orders'), 'f', 'v');
    let loads = 0;
    const read = () => a.getOrLoad('orders:1', () => ({ n: ++loads }), { tags: ['orders'] });
    assert.deepEqual(await read(), { n: 1 });
    assert.deepEqual(await read(), { n: 2 }, 'not stored under a version nobody can read');
    assert.equal(await a.get('orders:1'), undefined);
  });

  it('a payload that does not decode is a miss for get and is deleted', async () => {
    const prefix = uniquePrefix('corrupt-payload');
    const a = await res.readyEngine(prefix, { l1: { enabled: false } });
    const raw = res.redis();
    await a.getOrLoad('k', () => ({ a: 1 }));
    const good = (await raw.getBuffer(a.keys.entry('k'))) as Buffer;
    const bad = Buffer.concat([
      good.subarray(0, good.length - 6),
      Buffer.from([0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]),
    ]);
    await raw.set(a.keys.entry('k'), bad, 'PX', 60_000);
    const corrupt: string[] = [];
    a.events.on('corrupt-entry', (k) => corrupt.push(k));
    assert.equal(await a.get('k'), undefined);
    await sleep(20);
    assert.equal(await raw.exists(a.keys.entry('k')), 0, 'deleted');
    assert.deepEqual(corrupt, ['k']);
  });

  it('values that cannot be serialised fail with SerializationError and leave nothing behind', async () => {
    const prefix = uniquePrefix('serialise');
    const a = await res.readyEngine(prefix);
    const raw = res.redis();
    class Money {
      constructor(readonly cents: number) {}
    }
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const cases: Array<[string, unknown, RegExp]> = [
      ['fn', { f: () => 1 }, /\$\.f is a function/],
      ['sym', { s: Symbol('x') }, /\$\.s is a symbol/],
      ['cycle', cyclic, /\$\.self is a circular reference/],
      ['class', { price: new Money(5) }, /\$\.price is an instance of Money/],
      ['date', { at: new Date('nope') }, /invalid Date/],
      ['map', new Map([['k', () => 1]]), /is a function/],
    ];
    for (const [k, value, message] of cases) {
      await assert.rejects(
        a.getOrLoad(k, () => value),
        (e: unknown) =>
          e instanceof SerializationError && e.code === 'E_SERIALIZE' && message.test(e.message),
      );
      await assert.rejects(a.set(k, value), SerializationError);
      await sleep(5);
      assert.equal(await raw.exists(a.keys.entry(k)), 0, `${k}: lease released, nothing stored`);
    }
    // Shared (non-cyclic) references are fine.
    const shared = { x: 1 };
    assert.deepEqual(await a.getOrLoad('shared', () => ({ a: shared, b: shared })), {
      a: { x: 1 },
      b: { x: 1 },
    });
  });

  it('oversized values fail with ValueTooLargeError naming the limit', async () => {
    const prefix = uniquePrefix('large');
    const a = await res.readyEngine(prefix, {
      cache: { maxValueBytes: 1_000, compressThresholdBytes: 0 },
    });
    const raw = res.redis();
    const big = 'x'.repeat(5_000);
    await assert.rejects(
      a.getOrLoad('big', () => big),
      (e: unknown) => e instanceof ValueTooLargeError && e.limit === 1_000 && e.bytes > 5_000,
    );
    await sleep(5);
    assert.equal(await raw.exists(a.keys.entry('big')), 0);
    assert.equal(await a.getOrLoad('small', () => 'ok'), 'ok');
  });

  it('invalid keys and tags are InvalidKeyError', async () => {
    const a = await res.readyEngine(uniquePrefix('keys'));
    assert.throws(() => a.getOrLoad('', () => 1), InvalidKeyError);
    assert.throws(() => a.getOrLoad('x'.repeat(2_000), () => 1), InvalidKeyError);
    assert.throws(() => a.getOrLoad(42 as unknown as string, () => 1), InvalidKeyError);
    await assert.rejects(
      a.getOrLoad('k', () => 1, { tags: [''] }),
      InvalidKeyError,
    );
    await assert.rejects(
      a.getOrLoad('k', () => 1, { tags: 'oops' as unknown as string[] }),
      ConfigError,
    );
  });
});
