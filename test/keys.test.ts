import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../src/config/config.js';
import { columnTag, entityKey, InvalidKeyError, key, tag, uniqueKey } from '../src/index.js';
import { Keys, MAX_KEY_LENGTH, parseEntityKey } from '../src/keys/redis-keys.js';
import { mapTransaction } from '../src/model/change-mapper.js';
import { buildChangeModel } from '../src/model/table-model.js';

describe('keys', () => {
  const keys = new Keys('app');

  it('lays out namespaces under the prefix', () => {
    assert.equal(keys.entry('users:42'), 'app:k:users:42');
    assert.equal(keys.tagVersion('orders:user_id=7'), 'app:t:orders:user_id%3D7');
    assert.equal(keys.epoch(), 'app:epoch');
    assert.equal(keys.heartbeat(), 'app:hb');
    assert.equal(keys.busChannel(), 'app:bus');
  });

  it('parseEntityKey is the inverse of entityKey and refuses what is not one', () => {
    for (const values of [['42'], ['a:b@c.d'], ['7', '3'], ['{x}', '*'], ['é ü']])
      assert.deepEqual(parseEntityKey('users', values.length, entityKey('users', values)), values);
    assert.equal(parseEntityKey('users', 1, 'orders:42'), null, 'another entity');
    assert.equal(parseEntityKey('users', 1, 'users:7:3'), null, 'another arity');
    assert.equal(parseEntityKey('users', 1, 'users:%E0%A4%A'), null, 'a malformed escape');
  });

  it('encodes key parts so user data cannot add separators, patterns or hash tags', () => {
    assert.equal(key('users', 42), 'users:42');
    assert.equal(key('users', 'a:b'), 'users:a%3Ab');
    assert.notEqual(key('a:b', 'c'), key('a', 'b:c'), 'parts cannot collide');
    assert.equal(tag('orders', 'user_id', 7n), 'orders:user_id:7');
    for (const evil of [
      '*',
      '?',
      '[a-z]',
      '{slot}',
      'x\\y',
      ' ',
      '\n',
      'é',
      '%',
      '../k:',
      'k:t:x',
    ]) {
      const built = keys.entry(key('users', evil));
      assert.match(built, /^app:k:users:[A-Za-z0-9_.%-]*$/, `${JSON.stringify(evil)} -> ${built}`);
    }
    const raw = keys.entry('{x}*:y');
    assert.equal(
      raw,
      'app:k:%7Bx%7D%2A:y',
      'even a raw logical key cannot form a pattern or hash tag',
    );
    assert.notEqual(keys.entry('a%3Ab'), keys.entry('a:b'), 'encoding is injective');
  });

  it('rejects bad prefixes and empty keys', () => {
    assert.throws(() => new Keys('a:b'), InvalidKeyError);
    assert.throws(() => new Keys(''), InvalidKeyError);
    assert.throws(() => key(), InvalidKeyError);
  });

  it('long values are hashed into column tags and unique keys, the same way on both sides', () => {
    const long = 'Größe€'.repeat(40); // 240 characters, up to 9 once percent-encoded
    const tagOf = columnTag('public.users', 'name', long);
    assert.ok(tagOf.length < 200, tagOf);
    assert.match(tagOf, /^public\.users:name=~[A-Za-z0-9_-]{43}$/);
    assert.equal(columnTag('public.users', 'name', long), tagOf, 'deterministic');
    assert.notEqual(columnTag('public.users', 'name', `${long}x`), tagOf);
    const unique = uniqueKey('users', 'email', long);
    assert.ok(unique.length < 200 && unique.startsWith('users:by:email:~'), unique);
    // Short values keep their readable form, and a value that is itself `~...` cannot collide.
    assert.equal(columnTag('public.users', 'name', 'ada'), 'public.users:name=ada');
    assert.notEqual(columnTag('public.users', 'name', tagOf.split('=')[1] as string), tagOf);
    // The worker maps a row change to the very same tag and key.
    const model = buildChangeModel(
      resolveConfig({
        entities: { users: { table: 'users', key: 'id', unique: ['email'] } },
        invalidateBy: { users: ['name'] },
      }),
    );
    const mapped = mapTransaction(
      {
        xid: 1,
        lsn: '0/1',
        commitTime: 0,
        collapsedTables: [],
        messages: [],
        changes: [
          {
            op: 'U',
            schema: 'public',
            table: 'users',
            oldRow: { id: 1, name: long, email: long },
            newRow: { id: 1, name: 'x', email: 'y' },
          },
        ],
      } as never,
      model,
    );
    assert.ok(mapped.tags.has(tagOf));
    assert.ok(mapped.keys.has(unique));
    for (const k of [...mapped.keys, ...mapped.tags]) assert.ok(k.length <= MAX_KEY_LENGTH);
  });
});
