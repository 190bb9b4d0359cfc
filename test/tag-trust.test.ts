import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Resources, uniquePrefix, waitFor } from './helpers.js';

/**
 * Tag versions are trusted in memory while the bus is healthy (like the epoch): these
 * tests read through L2 only (`skipL1`), so a version trusted too long would serve the
 * entry after its tag was bumped.
 */
describe('trusted tag versions', () => {
  const res = new Resources();
  after(() => res.close());
  const options = { tags: ['t:1'], skipL1: true } as const;

  it("another process's bump reaches a process that trusts the old version", async () => {
    const prefix = uniquePrefix('trust');
    const a = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const b = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    let loads = 0;
    const loader = async () => ++loads;
    assert.equal(await a.getOrLoad('k', loader, options), 1);
    assert.equal(await b.getOrLoad('k', loader, options), 1, 'an L2 hit; b now trusts t:1');
    assert.equal(await b.getOrLoad('k', loader, options), 1);
    let heard = 0;
    b.events.on('bus-invalidate', () => heard++);
    await a.invalidateTags(['t:1']);
    await waitFor('b heard the bump', () => heard > 0);
    assert.equal(await b.getOrLoad('k', loader, options), 2, 'the bump made it a miss');
  });

  it('a bump in this process is seen by its next read, even one racing the bump', async () => {
    const a = await res.readyEngine(uniquePrefix('trust2'), { cache: { earlyRefreshBeta: 0 } });
    let loads = 0;
    const loader = async () => ++loads;
    await a.getOrLoad('k', loader, options);
    assert.equal(await a.getOrLoad('k', loader, options), 1);
    for (let i = 0; i < 20; i++) {
      const racing = a.getOrLoad('k', loader, options);
      await a.invalidateTags(['t:1']);
      await racing;
      const before = loads;
      await a.getOrLoad('k', loader, options);
      assert.equal(loads, before + 1, `round ${i}: the read after the bump loads`);
    }
  });

  it('with the bus down nothing is trusted', async () => {
    const prefix = uniquePrefix('trust3');
    const a = await res.readyEngine(prefix, { cache: { earlyRefreshBeta: 0 } });
    const b = await res.readyEngine(prefix, {
      cache: { earlyRefreshBeta: 0 },
      bus: { enabled: false },
    });
    let loads = 0;
    const loader = async () => ++loads;
    await a.getOrLoad('k', loader, options);
    await b.getOrLoad('k', loader, options);
    await a.invalidateTags(['t:1']);
    assert.equal(await b.getOrLoad('k', loader, options), 2, 'read from Redis at once');
  });
});
