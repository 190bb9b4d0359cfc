import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  analyze,
  lowestNines,
  medianNines,
  nines,
  staleness,
} from '../bench/consistency-analysis.js';

describe('bench:consistency arithmetic', () => {
  // Row 1: version 1 acknowledged at t=100, version 2 at t=200.
  const acks = new Map<number, number[]>([[1, [undefined as unknown as number, 100, 200]]]);

  it('a read is as stale as the first write it missed was old when it began', () => {
    assert.equal(staleness(acks, 150, 1, 1), 0, 'saw every write acknowledged before it');
    assert.equal(staleness(acks, 150, 1, 0), 50, 'missed version 1, acknowledged 50 ms before');
    assert.equal(staleness(acks, 250, 1, 0), 150, 'measured from the first missed write');
    assert.equal(staleness(acks, 90, 1, 0), 0, 'version 1 not acknowledged yet');
    assert.equal(staleness(acks, 250, 1, 2), 0);
    assert.equal(staleness(acks, 250, 2, 0), 0, 'a row never written');
  });

  it('nines per threshold and per fault window; errors are counted, not judged', () => {
    const reads = {
      t: [150, 150, 250, 250, 1000],
      id: [1, 1, 1, 1, 1],
      v: [1, 0, 0, -1, 2],
      ms: [1, 2, 3, 4, 5],
      l1: [1, 1, 0, 0, 1],
    };
    const stats = analyze(reads, acks, [{ name: 'freeze', from: 200, to: 300 }]);
    const all = stats.all;
    assert.ok(all);
    assert.equal(all.reads, 5);
    assert.equal(all.errors, 1);
    assert.deepEqual(all.staleBeyond, [2, 2, 1, 0], 'beyond 0, 10, 100 and 1000 ms');
    assert.deepEqual(all.staleBeyondFromL1, [1, 1, 0, 0], 'the 50 ms stale read came from L1');
    assert.equal(all.l1Reads, 3);
    assert.equal(all.worstStalenessMs, 150);
    assert.equal(all.maxReadMs, 5);
    assert.equal(nines(all, 0), Math.round(-Math.log10(2 / 4) * 100) / 100);
    assert.equal(nines(all, 3), 'inf');
    assert.equal(stats.freeze?.reads, 2);
    assert.equal(stats.steady?.reads, 3);
    assert.equal(lowestNines(['inf', 2.5, 1.2]), 1.2);
    assert.equal(lowestNines(['inf', 'inf']), 'inf');
    assert.equal(medianNines([3, 'inf', 1]), 3);
  });
});
