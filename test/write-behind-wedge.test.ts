import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { InvalidKeyError } from '../src/index.js';
import { waitFor } from './helpers.js';
import { countersSuite } from './write-behind-helpers.js';

/**
 * One record never holds up the others (issue 14, case 3): whatever PostgreSQL refuses
 * about one row stays with that row's record and counts toward its dead-lettering; only
 * the server's own trouble (connection, shutdown, cancel, serialization) fails a flush.
 */
describe('write-behind: one record does not wedge the entity', () => {
  const suite = countersSuite('wbwedge');
  const { scope, pool, repo, store, flush, row } = suite;
  const deadCodes = async () =>
    new Map((await store.deadLetters('counters', 1000)).map((d) => [d.key, d.code]));

  before(async () => {
    await scope.create(`
      CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL, note text, extra int);
      CREATE INDEX counters_note ON counters (note);
      INSERT INTO counters (id, value) SELECT g, 0 FROM generate_series(1, 100) g;`);
  });
  after(() => suite.close());

  it("ids that name one row ('01' and 1) are flushed as one row, the later write winning per column", async () => {
    await repo.counters.writeBehind('01' as never, { value: 1, note: 'first' });
    await repo.counters.writeBehind(1, { note: 'second' });
    await repo.counters.writeBehind(3, { value: 1 });
    await repo.counters.writeBehind('03' as never, { value: 2 });
    await repo.counters.writeBehind(2, { value: 2 });
    const result = await flush();
    assert.deepEqual([result.failed, result.remaining], [0, 0]);
    assert.deepEqual(await row(1), { id: 1, value: 1, note: 'second' });
    assert.deepEqual(await row(3), { id: 3, value: 2, note: null });
    assert.deepEqual(await row(2), { id: 2, value: 2, note: null });
  });

  it('a value too big for a btree index is dead-lettered (54000); the other rows flush', async () => {
    const huge = randomBytes(6_000).toString('base64');
    await repo.counters.writeBehind(4, { note: huge });
    await repo.counters.writeBehind(5, { value: 5 });
    const first = await flush();
    assert.deepEqual([first.rows, first.failed, first.dead], [1, 1, 0]);
    assert.equal((await row(5))?.value, 5, 'the other row was written');
    const second = await flush();
    assert.deepEqual([second.failed, second.dead, second.remaining], [1, 1, 0]);
    assert.equal((await deadCodes()).get('counters:4'), '54000');
    assert.equal((await repo.counters.findById(4))?.note, null, 'reads see the database again');
  });

  it('a column dropped under a pending write (42703) stays with its record; a key of the wrong type is refused before it is queued', async () => {
    await repo.counters.writeBehind(6, { extra: 1 });
    await scope.q('ALTER TABLE $schema.counters DROP COLUMN extra');
    // Ids are checked against the key column's type (canonical keys): 'abc' never reaches
    // Redis, so it cannot fail a flush with 22P02 either.
    await assert.rejects(repo.counters.writeBehind('abc' as never, { value: 1 }), InvalidKeyError);
    await repo.counters.writeBehind(7, { value: 7 });
    const first = await flush();
    assert.deepEqual([first.rows, first.failed], [1, 1]);
    assert.equal((await row(7))?.value, 7);
    await flush();
    const codes = await deadCodes();
    assert.equal(codes.get('counters:6'), '42703');
    assert.equal((await store.stats('counters')).pending, 0);
  });

  it("the server's own failure (a cancelled statement) fails the flush and counts no attempt", async () => {
    const locker = await pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM ${scope.schema}.counters WHERE id = 9 FOR UPDATE`);
      await repo.counters.writeBehind(9, { value: 9 });
      const { dead } = await store.stats('counters');
      for (let attempt = 0; attempt < 3; attempt++) {
        const flushing = flush().then(
          () => null,
          (error: unknown) => error,
        );
        let pid: number | undefined;
        await waitFor('the flush waits for the row lock', async () => {
          const { rows } = await scope.q<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%$schema%'`,
          );
          pid = rows[0]?.pid;
          return pid !== undefined;
        });
        await scope.q('SELECT pg_cancel_backend($1)', [pid]);
        assert.equal(((await flushing) as { code?: string } | null)?.code, '57014');
      }
      const after = await store.stats('counters');
      assert.deepEqual([after.pending, after.dead], [1, dead], 'not dead-lettered (maxAttempts 2)');
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    const result = await flush();
    assert.deepEqual([result.rows, result.failed], [1, 0]);
    assert.equal((await row(9))?.value, 9);
  });

  it('a 5 MB id, and ids of the wrong shape, are refused with InvalidKeyError before anything is queued', async () => {
    const before = await store.stats('counters');
    for (const id of ['x'.repeat(5 * 1024 * 1024), Number.NaN, null, { id: 1 }, [1, 2]])
      await assert.rejects(
        repo.counters.writeBehind(id as never, { value: 1 }),
        (e: unknown) => e instanceof InvalidKeyError,
        `id ${String(id).slice(0, 20)}`,
      );
    const after = await store.stats('counters');
    assert.deepEqual([after.pending, after.dead], [before.pending, before.dead]);
  });
});
