import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { InvalidationWorker } from '../src/cdc/invalidation-worker.js';
import { redisEnv, waitFor } from './helpers.js';
import { countersSuite } from './write-behind-helpers.js';

/**
 * Write-behind ordered with every other write of the row (issue 14, case 2): a
 * repository write made after a pending write is never undone by its flush, a deleted
 * row is never brought back, and writes made outside walcache are reported.
 */
describe('write-behind ordering', () => {
  const suite = countersSuite('wborder');
  const { scope, repo, store, flush, row } = suite;
  const { flushAll, config, resolved } = suite;

  before(async () => {
    await scope.create(`CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL, note text);
      INSERT INTO counters (id, value) SELECT g, 0 FROM generate_series(1, 100) g;`);
  });
  after(() => suite.close());

  it('an update after a write-behind wins, in reads and in Postgres; columns it leaves keep the pending value', async () => {
    await repo.counters.writeBehind(1, { value: 7, note: 'behind' });
    const { rows } = await repo.counters.update(1, { value: 5 });
    assert.deepEqual(rows, [{ id: 1, value: 5, note: 'behind' }]);
    assert.deepEqual(await repo.counters.findById(1), { id: 1, value: 5, note: 'behind' });
    await flushAll();
    assert.deepEqual(await row(1), { id: 1, value: 5, note: 'behind' });
    assert.deepEqual(await repo.counters.findById(1), { id: 1, value: 5, note: 'behind' });
  });

  it('a delete after a write-behind is final: no read shows the row, no flush brings it back', async () => {
    await repo.counters.writeBehind(2, { value: 9 });
    await repo.counters.delete(2);
    assert.equal(await repo.counters.findById(2), undefined);
    assert.deepEqual((await repo.counters.findMany([2])).missing, [2]);
    await flushAll();
    assert.equal(await row(2), undefined, 'row 2 was not re-inserted');
  });

  it('a write-behind of a row that does not exist is never inserted: it is dead-lettered, and reads show no row', async () => {
    await repo.counters.delete(3);
    await repo.counters.writeBehind(3, { value: 1 }); // after the delete
    await repo.counters.writeBehind(5000, { value: 1 }); // never existed
    assert.equal(await repo.counters.findById(5000), undefined);
    assert.equal(await repo.counters.findById(3), undefined);
    const first = await flush();
    assert.equal(first.failed, 2);
    await flush();
    assert.equal(await row(3), undefined);
    assert.equal(await row(5000), undefined);
    const dead = await store.deadLetters('counters');
    assert.deepEqual(dead.map((d) => [d.key, d.code, d.values]).sort(), [
      ['counters:3', 'E_MISSING_ROW', { value: 1 }],
      ['counters:5000', 'E_MISSING_ROW', { value: 1 }],
    ]);
    assert.equal((await store.stats('counters')).pending, 0);
  });

  it('an insert after a write-behind of a missing row wins: the flush does not overwrite it', async () => {
    await repo.counters.writeBehind(6001, { value: 1, note: 'behind' });
    await repo.counters.insert({ id: 6001, value: 0, note: 'inserted' });
    assert.deepEqual(await repo.counters.findById(6001), { id: 6001, value: 0, note: 'inserted' });
    await flushAll();
    assert.deepEqual(await row(6001), { id: 6001, value: 0, note: 'inserted' });
  });

  it('a write-behind accepted while an update transaction runs stays newer than it', async () => {
    await repo.counters.writeBehind(4, { value: 7, note: 'a' });
    await repo.transaction(async (tx) => {
      await tx.counters.update(4, { value: 5 });
      await repo.counters.writeBehind(4, { note: 'b' });
    });
    assert.deepEqual(await repo.counters.findById(4), { id: 4, value: 5, note: 'b' });
    await flushAll();
    assert.deepEqual(await row(4), { id: 4, value: 5, note: 'b' });
  });

  it('write-behinds, updates and deletes of the same rows, with two flushers running: each row ends as its last write left it', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => 201 + i);
    await suite.pool.query(
      `INSERT INTO ${scope.schema}.counters (id, value) SELECT unnest($1::int[]), 0 ON CONFLICT DO NOTHING`,
      [ids],
    );
    const last = new Map<number, number | undefined>();
    let writing = true;
    const flushers = [0, 1].map(async () => {
      while (writing) await flush();
    });
    // Four producers, each the only writer of its rows, so each row's writes are ordered.
    await Promise.all(
      [0, 1, 2, 3].map(async (p) => {
        let v = 0;
        for (let i = 0; i < 300; i++) {
          const id = ids[p * 10 + (i % 10)] as number;
          if (last.get(id) === undefined && last.has(id)) continue; // deleted
          v++;
          const dice = (i * 7 + p) % 20;
          if (dice === 0 && i > 250) {
            await repo.counters.delete(id);
            last.set(id, undefined);
          } else if (dice < 5) {
            await repo.counters.update(id, { value: v });
            last.set(id, v);
          } else {
            await repo.counters.writeBehind(id, { value: v });
            last.set(id, v);
          }
        }
      }),
    );
    writing = false;
    await Promise.all(flushers);
    await flushAll();
    for (const id of ids) {
      assert.equal((await row(id))?.value, last.get(id), `row ${id} in Postgres`);
      assert.equal((await repo.counters.findById(id))?.value, last.get(id), `row ${id} read`);
    }
  });

  it('an update rolled back leaves the pending write as it was', async () => {
    await repo.counters.writeBehind(6, { value: 7 });
    await assert.rejects(
      repo.transaction(async (tx) => {
        await tx.counters.update(6, { value: 5 });
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.equal((await repo.counters.findById(6))?.value, 7);
    await flushAll();
    assert.equal((await row(6))?.value, 7);
  });

  it('a service killed between its update commit and clearing the pending write: the flush does not undo the update', async () => {
    await repo.counters.writeBehind(8, { value: 7, note: 'x' });
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'test/fixtures/wb-updater.ts',
        JSON.stringify(config),
        'counters',
        '8',
        JSON.stringify({ value: 5 }),
      ],
      { env: redisEnv(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const [, signal] = await new Promise<[number | null, string | null]>((r) =>
      child.once('exit', (code, sig) => r([code, sig])),
    );
    assert.equal(signal, 'SIGKILL');
    assert.equal(out, 'committed\n', 'killed right after its commit');
    const read = await repo.counters.findById(8);
    await flushAll();
    assert.deepEqual(await row(8), { id: 8, value: 5, note: 'x' }, 'the flush did not undo it');
    assert.deepEqual(read, { id: 8, value: 5, note: 'x' }, 'reads did not show the older 7');
  });

  it('writes made outside walcache to a row with a pending write are reported by the worker; its own are not', async () => {
    const worker = new InvalidationWorker({ config: resolved, slot: scope.slot() });
    const outside: Array<[string, string]> = [];
    worker.events.on('write-behind-outside-write', (entity, key) => outside.push([entity, key]));
    await worker.start();
    try {
      await repo.counters.writeBehind(10, { value: 7 });
      await repo.counters.writeBehind(11, { value: 7 });
      await repo.counters.update(11, { value: 8 }); // through walcache: ordered, not reported
      await scope.q('UPDATE $schema.counters SET value = 100 WHERE id = 10');
      await scope.q('UPDATE $schema.counters SET value = 100 WHERE id = 12'); // nothing pending
      await scope.waitCaughtUp(scope.slot());
      await waitFor('the outside write reported', () => outside.length > 0, 5_000);
      await flushAll(); // the flush's own writes are not reported
      await scope.waitCaughtUp(scope.slot());
      assert.deepEqual(outside, [['counters', 'counters:10']]);
      // What the docs say happens: the pending write is applied at the flush, over it.
      assert.equal((await row(10))?.value, 7);
    } finally {
      await worker.close();
    }
  });
});
