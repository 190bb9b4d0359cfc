import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeEntry, parseEntry, tombstoneValue } from '../src/cache/envelope.js';
import { compactSnapshot } from '../src/cache/snapshot.js';
import { Codec } from '../src/codec/value-codec.js';

describe('codec and envelope', () => {
  const codec = new Codec({ maxValueBytes: 1 << 20, compressThresholdBytes: 256 });

  it('round-trips the types rows carry, and keeps objects and Maps apart', () => {
    const value = {
      n: 1.5,
      i: -3,
      s: 'é',
      b: true,
      nil: null,
      u: undefined,
      nan: Number.NaN,
      inf: -Infinity,
      big: -(2n ** 80n),
      small: 5n,
      at: new Date(1_700_000_000_123),
      buf: Buffer.from('hi'),
      u8: new Uint8Array([1, 2]),
      f64: new Float64Array([0.5]),
      map: new Map<unknown, unknown>([
        ['a', 1],
        [2, { z: new Date(0) }],
      ]),
      set: new Set([1, 'x']),
      nested: { list: [{ a: 1 }, { a: 2, b: [] }], empty: {} },
    };
    const { bytes, compressed } = codec.encode('k', value);
    const back = codec.decode(bytes, compressed) as typeof value;
    assert.deepEqual(back, value);
    assert.ok(back.map instanceof Map && !(back.nested instanceof Map));
    assert.ok(Buffer.isBuffer(back.buf) && back.f64 instanceof Float64Array);
  });

  it('each value decodes on its own (no shared record structures between processes)', () => {
    const encodings = [{ a: 1, b: 2 }, { a: 3, b: 4 }, { c: 5 }].map((v) => codec.encode('k', v));
    const other = new Codec({ maxValueBytes: 1 << 20, compressThresholdBytes: 256 });
    assert.deepEqual(other.decode((encodings[1] as { bytes: Buffer }).bytes, false), {
      a: 3,
      b: 4,
    });
  });

  it('compresses above the threshold only when it pays', () => {
    const long = codec.encode('k', 'abc'.repeat(1_000));
    assert.equal(long.compressed, true);
    assert.ok(long.bytes.length < 500);
    assert.equal(codec.decode(long.bytes, true), 'abc'.repeat(1_000));
    assert.equal(codec.encode('k', 'short').compressed, false);
  });

  it('parses every L2 state and flags damaged envelopes as corrupt', () => {
    const { bytes } = codec.encode('k', { a: 1 });
    const meta = {
      createdAt: 1,
      freshUntil: 2,
      staleUntil: 3,
      loadMs: 4,
      epoch: 'e1',
      tags: { t: 'v1' },
      negative: false,
      snapshot: '100:104:101,102',
    };
    const entry = encodeEntry('0123456789abcdef', meta, bytes, false);
    const state = parseEntry(entry);
    assert.equal(state.kind, 'data');
    if (state.kind === 'data') {
      assert.deepEqual(
        { ...state.envelope, payload: undefined, compressed: undefined, encrypted: undefined },
        { ...meta, payload: undefined, compressed: undefined, encrypted: undefined },
      );
      assert.equal(state.prefix, 'D0123456789abcdef');
    }
    assert.deepEqual(parseEntry(null), { kind: 'empty' });
    assert.deepEqual(parseEntry(Buffer.from('L0123456789abcdef')), { kind: 'lease' });
    assert.deepEqual(parseEntry(Buffer.from(tombstoneValue('16/B374D848'))), {
      kind: 'tombstone',
      lsn: '00000016b374d848',
      fenced: false,
    });
    // The fence's suffixes (docs/engine.md): inherited xids, waiters, a fenced tombstone.
    assert.deepEqual(parseEntry(Buffer.from('L0123456789abcdef:7,9!')), { kind: 'lease' });
    const fenced = `T00000016b374d848/L0123456789abcdef@${Date.now() + 60_000}:7!`;
    assert.deepEqual(parseEntry(Buffer.from(fenced)), {
      kind: 'tombstone',
      lsn: '00000016b374d848',
      fenced: true,
    });
    const expired = `T00000016b374d848/L0123456789abcdef@${Date.now() - 1}:7`;
    assert.equal((parseEntry(Buffer.from(expired)) as { fenced: boolean }).fenced, false);
    assert.equal(parseEntry(Buffer.from('L0123456789abcdefXYZ')).kind, 'corrupt', 'not a suffix');
    assert.equal(parseEntry(entry.subarray(0, 30)).kind, 'corrupt', 'truncated');
    assert.equal(parseEntry(Buffer.from('hello')).kind, 'corrupt', 'foreign');
    const wrongFormat = Buffer.from(entry);
    wrongFormat[17] = 9;
    assert.equal(parseEntry(wrongFormat).kind, 'corrupt', 'unknown format version');
  });
});

describe('compactSnapshot', () => {
  it('keeps a short snapshot, narrows a long one to fewer visible transactions, refuses foreign text', () => {
    assert.equal(compactSnapshot('100:104:101,102'), '100:104:101,102');
    assert.equal(compactSnapshot('100:100:'), '100:100:');
    assert.equal(compactSnapshot('not a snapshot'), '');
    assert.equal(compactSnapshot('1:2:3; DROP'), '');
    const xip = Array.from({ length: 100 }, (_, i) => 1_000_000 + 2 * i);
    const long = `999999:1000500:${xip.join(',')}`;
    const short = compactSnapshot(long, 64);
    assert.ok(short.length <= 64, short);
    const [xmin, xmax, list] = short.split(':');
    assert.equal(xmin, '999999');
    // xmax lowered to a running id: everything from it up reads as not visible.
    assert.ok(xip.includes(Number(xmax)), 'the new xmax was running');
    const kept = (list ?? '').split(',').filter(Boolean).map(Number);
    assert.deepEqual(
      kept,
      xip.filter((x) => x < Number(xmax)),
      'every running id below it kept',
    );
  });
});
