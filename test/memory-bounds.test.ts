import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { Packr } from 'msgpackr';
import { encodeEntry, parseEntry } from '../src/cache/envelope.js';
import { ValueTooLargeError } from '../src/index.js';
import { Resources, sleep, uniquePrefix } from './helpers.js';

/** A string that deflate cannot shrink much (random base64). */
function incompressible(chars: number): string {
  return randomBytes(Math.ceil((chars * 3) / 4))
    .toString('base64')
    .slice(0, chars);
}

describe('memory bounds count the real bytes', () => {
  const res = new Resources();
  after(() => res.close());

  it('cache.maxValueBytes is checked before compression: a compressible 1 MB value is refused at 100 kB', async () => {
    const a = await res.readyEngine(uniquePrefix('maxvalue'), {
      cache: { maxValueBytes: 100_000, compressThresholdBytes: 1_000 },
    });
    const raw = res.redis();
    const big = 'x'.repeat(1_000_000); // deflates to about 1 kB
    await assert.rejects(
      a.getOrLoad('big', () => big),
      (e: unknown) => e instanceof ValueTooLargeError && e.bytes > 1_000_000 && e.limit === 100_000,
    );
    await assert.rejects(a.set('big', big), ValueTooLargeError);
    await sleep(5);
    assert.equal(await raw.exists(a.keys.entry('big')), 0, 'nothing stored');
    // Under the limit, compression still applies.
    const fits = 'y'.repeat(90_000);
    assert.equal(await a.getOrLoad('fits', () => fits), fits);
    const stored = (await raw.getBuffer(a.keys.entry('fits'))) as Buffer;
    assert.ok(stored.length < 5_000, `stored compressed: ${stored.length} bytes`);
  });

  it('L1 is sized by what it holds, not by the compressed bytes', async () => {
    const maxBytes = 1_000_000;
    const a = await res.readyEngine(uniquePrefix('l1size'), {
      l1: { maxBytes },
      cache: { compressThresholdBytes: 1_000 },
    });
    for (let i = 0; i < 10; i++) {
      // 400 kB each in memory, about 1 kB each compressed.
      const value = `${i}`.padEnd(400_000, 'z');
      assert.equal(await a.getOrLoad(`v${i}`, () => value), value);
    }
    const { entries, bytes } = a.l1Stats;
    assert.ok(entries <= 2, `L1 holds ${entries} values of 400 kB under a 1 MB bound`);
    assert.ok(bytes <= maxBytes && bytes >= entries * 400_000, `L1 counts ${bytes} bytes`);
  });

  it('the L1 tag index keeps nothing of entries lru-cache refused (each above l1.maxBytes)', async () => {
    const a = await res.readyEngine(uniquePrefix('l1index'), {
      l1: { maxBytes: 10_000 },
      cache: { compressThresholdBytes: 0 },
    });
    for (let i = 0; i < 200; i++) {
      const value = incompressible(20_000);
      assert.equal(await a.getOrLoad(`k${i}`, () => value, { tags: [`tag:${i}`] }), value);
    }
    assert.equal(a.l1Stats.entries, 0, 'every value was too large for L1');
    assert.equal(a.l1Stats.indexed, 0, 'and none of their keys stayed in the tag index');
    // Entries L1 did take are indexed, and leave the index when evicted.
    for (let i = 0; i < 50; i++) await a.getOrLoad(`s${i}`, () => 'small', { tags: [`tag:${i}`] });
    assert.equal(a.l1Stats.indexed, a.l1Stats.entries);
    assert.ok(a.l1Stats.entries > 0);
  });

  describe('what L2 hands back is bounded too', () => {
    const packr = new Packr({ useRecords: false, moreTypes: true });

    /** Replaces the payload of a real entry (same token, epoch, times), raw or deflated. */
    async function plant(
      prefix: string,
      key: string,
      payload: Buffer,
      compressed: boolean,
    ): Promise<void> {
      const filler = await res.readyEngine(prefix, { l1: { enabled: false } });
      await filler.getOrLoad(key, () => 'placeholder');
      const raw = res.redis();
      const stored = (await raw.getBuffer(filler.keys.entry(key))) as Buffer;
      const state = parseEntry(stored);
      assert.equal(state.kind, 'data');
      if (state.kind !== 'data') return;
      const token = stored.toString('latin1', 1, 17);
      await raw.set(
        filler.keys.entry(key),
        encodeEntry(token, state.envelope, payload, compressed),
        'PX',
        60_000,
      );
    }

    const cases: Array<[string, () => { payload: Buffer; compressed: boolean }]> = [
      [
        'a deflate bomb (1 kB that inflates to 50 MB)',
        () => ({ payload: deflateRawSync(packr.pack('z'.repeat(50_000_000))), compressed: true }),
      ],
      ['a corrupted deflate stream', () => ({ payload: randomBytes(2_000), compressed: true })],
      [
        'an uncompressed payload above cache.maxValueBytes',
        () => ({ payload: packr.pack(incompressible(200_000)), compressed: false }),
      ],
    ];
    for (const [what, make] of cases) {
      it(`${what}: a miss with a corrupt-entry event, never a crash or a hit`, async () => {
        const prefix = uniquePrefix('bomb');
        const { payload, compressed } = make();
        await plant(prefix, 'k', payload, compressed);
        const reader = await res.readyEngine(prefix, {
          l1: { enabled: false },
          cache: { maxValueBytes: 100_000 },
        });
        const corrupt: string[] = [];
        reader.events.on('corrupt-entry', (k) => corrupt.push(k));
        const heapBefore = process.memoryUsage().heapUsed;
        assert.equal(await reader.get('k'), undefined);
        assert.equal(await reader.getOrLoad('k', () => 'from the loader'), 'from the loader');
        assert.ok(corrupt.length >= 1 && corrupt.every((k) => k === 'k'), String(corrupt));
        assert.ok(
          process.memoryUsage().heapUsed - heapBefore < 40_000_000,
          'nothing of 50 MB was kept',
        );
      });
    }
  });
});
