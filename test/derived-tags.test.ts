import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { deferred, Resources, uniquePrefix } from './helpers.js';

describe('tags derived from the loaded value (tagsOf)', () => {
  const res = new Resources();
  after(() => res.close());

  it('an invalidation of a derived tag during the load is not recorded as seen: the value is loaded again', async () => {
    const engine = await res.readyEngine(uniquePrefix('derived'), {
      cache: { earlyRefreshBeta: 0 },
    });
    const gate = deferred();
    const entered = deferred();
    let db = { id: 1, tenant: 5, name: 'old' };
    let loads = 0;
    const loader = async () => {
      loads++;
      if (loads === 1) {
        entered.resolve();
        await gate.promise;
      }
      return { ...db };
    };
    const options = { tagsOf: (row: { tenant: number }) => [`tenant:${row.tenant}`] };
    const reading = engine.getOrLoad('row:1', loader, options);
    await entered.promise;
    // The first load has read 'old'; the row changes and its tenant tag is bumped by hand.
    db = { ...db, name: 'new' };
    await engine.invalidateTags(['tenant:5']);
    gate.resolve();
    assert.equal(
      (await reading).name,
      'new',
      'the second load, under the settled versions, answers',
    );
    assert.equal(loads, 2);
    assert.equal(
      (await engine.getOrLoad('row:1', (): typeof db => assert.fail('cached'), options)).name,
      'new',
    );
    await engine.invalidateTags(['tenant:5']);
    assert.equal(
      (await engine.getOrLoad('row:1', async () => ({ ...db, name: 'reloaded' }), options)).name,
      'reloaded',
      'the derived tag invalidates the entry',
    );
  });

  it('a row whose derived tags change between the two loads is answered but not cached', async () => {
    const engine = await res.readyEngine(uniquePrefix('derived2'), {
      cache: { earlyRefreshBeta: 0 },
    });
    let tenant = 1;
    const loader = async () => ({ tenant: tenant++ });
    const options = { tagsOf: (row: { tenant: number }) => [`tenant:${row.tenant}`] };
    // Bumped a moment ago: a load may have missed it, so the fill loads again.
    await engine.invalidateTags(['tenant:1', 'tenant:3']);
    assert.deepEqual(await engine.getOrLoad('row:2', loader, options), { tenant: 2 });
    assert.equal(await engine.get('row:2'), undefined, 'not filled');
    assert.deepEqual(await engine.getOrLoad('row:2', loader, options), { tenant: 4 });
  });

  it('derived tags that did not move during the load cost no second load', async () => {
    const engine = await res.readyEngine(uniquePrefix('derived3'), {
      cache: { earlyRefreshBeta: 0 },
    });
    let loads = 0;
    const options = { tagsOf: (row: { tenant: number }) => [`tenant:${row.tenant}`] };
    const loader = async () => {
      loads++;
      return { tenant: 9 };
    };
    await engine.getOrLoad('row:3', loader, options);
    assert.equal(loads, 1, 'a tag version created by this fill');
    await engine.invalidateTags(['tenant:9']);
    await engine.getOrLoad('row:3', loader, options);
    assert.equal(loads, 2, 'the old entry named its tags: read before the load');
    await engine.getOrLoad('row:4', loader, options);
    assert.equal(loads, 4, 'a new key, its tag bumped a moment ago: loaded again');
    await new Promise((r) => setTimeout(r, 1_100));
    await engine.getOrLoad('row:5', loader, options);
    assert.equal(loads, 5, 'an old version: one load');
  });
});
