import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { entityKey, InvalidKeyError, Keys, key, parseEntityKey, tag } from '../src/index.js';

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
});
