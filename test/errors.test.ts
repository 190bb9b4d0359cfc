import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWal2json } from '../src/cdc/wal2json-decoder.js';
import * as api from '../src/index.js';

describe('errors', () => {
  const exported = Object.entries(api).filter(
    ([name, value]) => name.endsWith('Error') && typeof value === 'function',
  ) as [string, new (...args: never[]) => Error][];

  it('every error class the package exports extends WalcacheError and is in the errors map', () => {
    assert.ok(exported.length >= 15, `found ${exported.length} error classes`);
    for (const [name, ErrorClass] of exported) {
      assert.ok(
        ErrorClass === api.WalcacheError || ErrorClass.prototype instanceof api.WalcacheError,
        `${name} does not extend WalcacheError`,
      );
      assert.equal(api.errors[name as keyof typeof api.errors], ErrorClass, `errors.${name}`);
    }
    assert.deepEqual(
      Object.keys(api.errors).sort(),
      exported.map(([name]) => name).sort(),
      'the errors map holds exactly the exported error classes',
    );
  });

  it('thrown errors carry their code, name and the base class', () => {
    const decode = (() => {
      try {
        parseWal2json('not json');
      } catch (error) {
        return error;
      }
    })();
    assert.ok(decode instanceof api.errors.DecodeError);
    assert.ok(decode instanceof api.WalcacheError);
    assert.equal(decode.code, 'E_DECODE');
    assert.equal(decode.name, 'DecodeError');
    assert.equal(decode.plugin, 'wal2json');

    const warm = new api.errors.WarmerSqlError(
      'hot',
      'sql/hot.sql',
      new Error('relation "x" does not exist'),
    );
    assert.ok(warm instanceof api.WalcacheError);
    assert.equal(warm.code, 'E_WARMER_SQL');
    assert.match(
      warm.message,
      /Warmer "hot": its SQL \(sql\/hot\.sql\) failed: relation "x" does not exist/,
    );
    assert.equal((warm.cause as Error).message, 'relation "x" does not exist');
  });
});
