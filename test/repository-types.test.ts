import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Kysely } from 'kysely';
import { type createRepository, defineConfig, type FindManyResult } from '../src/index.js';
import type { TestDB } from './repo-helpers.js';

/**
 * Type tests: `npm run typecheck` fails if the row types stop flowing from the Kysely
 * Database type through the config. The runtime part only checks the file loads.
 */
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_: T): void {}

const config = defineConfig({
  entities: {
    users: { table: 'users', key: 'id', unique: ['email'], deny: ['password_hash'] },
    orders: { table: 'orders', key: 'id' },
    pairs: { table: 'orders', key: ['id', 'user_id'] },
  },
});
type Repo = ReturnType<typeof createRepository<TestDB, typeof config>>;
type User = { id: string; email: string; name: string; tenant_id: number };
type Order = { id: number; user_id: number; status: string; total: string };

function typeChecks(repo: Repo, db: Kysely<TestDB>): void {
  void (async () => {
    const user = await repo.users.findById(1);
    expectType<Equal<typeof user, User | undefined>>(true);
    // @ts-expect-error a denied column is not part of the row type
    void user?.password_hash;
    // @ts-expect-error an order id is a number
    void repo.orders.findById('1');
    void repo.users.findById(1n);
    void repo.pairs.findById([1, 7]);
    // @ts-expect-error a composite key takes a tuple
    void repo.pairs.findById(1);
    // @ts-expect-error only unique columns
    void repo.users.findBy('name', 'x');
    const many = await repo.orders.findMany([1, 2]);
    expectType<Equal<typeof many, FindManyResult<Order, number>>>(true);
    const rows = await repo.cached(db.selectFrom('orders').select(['id', 'total']));
    expectType<Equal<typeof rows, { id: number; total: string }[]>>(true);
    // @ts-expect-error unknown column in a patch
    void repo.users.update(1, { nope: 1 });
    // @ts-expect-error no such entity
    void repo.accounts;
    await repo.transaction(async (tx) => {
      const updated = await tx.users.update('1', { name: 'x' });
      expectType<Equal<typeof updated, User[]>>(true);
    });
  });
}

it('the type tests compile (npm run typecheck)', () => {
  assert.equal(typeof typeChecks, 'function');
});
