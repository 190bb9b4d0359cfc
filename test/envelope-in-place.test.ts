import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AT_CREATED_AT,
  AT_FLAGS,
  AT_FRESH_UNTIL,
  AT_LOAD_MS,
  AT_STALE_UNTIL,
  type EnvelopeMeta,
  encodeEntry,
  newToken,
  parseEntry,
  untaggedPayloadAt,
} from '../src/cache/envelope.js';

const EPOCH = 'i1abc.xyz.1';
const meta = (over: Partial<EnvelopeMeta> = {}): EnvelopeMeta => ({
  createdAt: 1_700_000_000_000,
  freshUntil: 1_700_000_060_000,
  staleUntil: 1_700_000_070_000,
  loadMs: 12,
  epoch: EPOCH,
  tags: null,
  negative: false,
  snapshot: '10:20:12,15',
  ...over,
});

/** A seeded xorshift, so a failure names the case that made it. */
function random(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

describe('the hit path reads the envelope in place', () => {
  const epoch = Buffer.from(EPOCH);

  it('finds the payload and the fixed header of an untagged entry of the epoch', () => {
    const payload = Buffer.from([1, 2, 3, 4]);
    const entry = encodeEntry(newToken(), meta(), payload, true, true);
    const at = untaggedPayloadAt(entry, epoch);
    assert.deepEqual(entry.subarray(at), payload);
    const parsed = parseEntry(entry);
    assert.ok(parsed.kind === 'data');
    assert.equal(entry.readDoubleBE(AT_CREATED_AT), parsed.envelope.createdAt);
    assert.equal(entry.readDoubleBE(AT_FRESH_UNTIL), parsed.envelope.freshUntil);
    assert.equal(entry.readDoubleBE(AT_STALE_UNTIL), parsed.envelope.staleUntil);
    assert.equal(entry.readUInt32BE(AT_LOAD_MS), parsed.envelope.loadMs);
    assert.equal(entry[AT_FLAGS], 1 | 4, 'compressed and encrypted');
  });

  it('leaves everything else to parseEntry: tags, another epoch, control values, nothing', () => {
    const token = newToken();
    const payload = Buffer.from([0xc0]);
    assert.equal(
      untaggedPayloadAt(encodeEntry(token, meta({ tags: { t: 'v' } }), payload, false), epoch),
      -1,
    );
    assert.equal(
      untaggedPayloadAt(encodeEntry(token, meta({ epoch: 'i1abc.xyz.2' }), payload, false), epoch),
      -1,
    );
    assert.equal(
      untaggedPayloadAt(encodeEntry(token, meta({ epoch: `${EPOCH}x` }), payload, false), epoch),
      -1,
    );
    assert.equal(untaggedPayloadAt(Buffer.from(`L${token}`), epoch), -1);
    assert.equal(untaggedPayloadAt(Buffer.from('T0000000000000000'), epoch), -1);
    assert.equal(untaggedPayloadAt(null, epoch), -1);
    assert.equal(untaggedPayloadAt(Buffer.alloc(0), epoch), -1);
    const inconsistent = encodeEntry(token, meta({ freshUntil: 2, staleUntil: 1 }), payload, false);
    assert.equal(untaggedPayloadAt(inconsistent, epoch), -1);
    assert.equal(parseEntry(inconsistent).kind, 'corrupt');
  });

  it('never takes bytes parseEntry would not read as the same untagged entry (fuzzed)', () => {
    const next = random(0x5eed);
    const base = encodeEntry(newToken(), meta(), Buffer.from([0x93, 1, 2, 3]), false);
    let taken = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = Buffer.from(base);
      // Damage 1-3 bytes of the header, or cut the value short.
      if (next() < 0.2) {
        const cut = bytes.subarray(0, Math.floor(next() * bytes.length));
        assertAgrees(cut, i);
        continue;
      }
      const flips = 1 + Math.floor(next() * 3);
      for (let f = 0; f < flips; f++)
        bytes[Math.floor(next() * (bytes.length - 4))] = Math.floor(next() * 256);
      if (assertAgrees(bytes, i)) taken++;
    }
    assert.ok(taken > 1_000, `${taken} damaged values still taken in place (times, flags)`);
  });

  function assertAgrees(bytes: Buffer, i: number): boolean {
    const at = untaggedPayloadAt(bytes, epoch);
    if (at < 0) return false;
    const parsed = parseEntry(bytes);
    assert.ok(parsed.kind === 'data', `case ${i}: taken in place, parsed as ${parsed.kind}`);
    assert.equal(parsed.envelope.tags, null, `case ${i}`);
    assert.equal(parsed.envelope.epoch, EPOCH, `case ${i}`);
    assert.ok(parsed.envelope.freshUntil <= parsed.envelope.staleUntil, `case ${i}`);
    assert.deepEqual(parsed.envelope.payload, bytes.subarray(at), `case ${i}`);
    assert.equal(bytes.readDoubleBE(AT_FRESH_UNTIL), parsed.envelope.freshUntil, `case ${i}`);
    assert.equal(bytes.readDoubleBE(AT_STALE_UNTIL), parsed.envelope.staleUntil, `case ${i}`);
    return true;
  }
});
