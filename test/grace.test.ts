/**
 * An opt-in, bounded grace (`cache.graceMs`): while PostgreSQL is unreachable (a restart),
 * a read whose loader fails with a connection error gets the last value this process
 * loaded for the key, if it is at most `graceMs` old, and a `grace-served` event (a
 * metric) says so; any other loader error, an older value or no grace at all still
 * reach the caller.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { freePort, REDIS_CONFIG, Resources, sleep, uniquePrefix } from './helpers.js';

describe('grace while PostgreSQL is down', () => {
  const res = new Resources();
  const pools: pg.Pool[] = [];
  after(async () => {
    for (const p of pools) await p.end();
    await res.close();
  });

  /** A real pg connection error: a pool pointed at a port nothing listens on. */
  const unreachable = async () => {
    const pool = new pg.Pool({
      ...pgConfig(`postgres://127.0.0.1:${await freePort()}/test`),
      max: 1,
    });
    pool.on('error', () => {});
    pools.push(pool);
    return async (): Promise<never> => {
      await pool.query('SELECT 1');
      throw new Error('unreachable');
    };
  };

  it('serves the last value within graceMs on a connection error, marked; not past it, not for other errors', async () => {
    const prefix = uniquePrefix('grace');
    const engine = res.engine(prefix, { redis: REDIS_CONFIG, cache: { graceMs: 400 } });
    assert.ok(await engine.ready());
    const served: Array<[string, number]> = [];
    engine.events.on('grace-served', (key, ageMs) => served.push([key, ageMs]));
    assert.deepEqual(await engine.getOrLoad('k', () => ({ v: 1 })), { v: 1 });
    await engine.delete(['k']); // invalidated: the next read must load
    const down = await unreachable();
    assert.deepEqual(await engine.getOrLoad('k', down), { v: 1 }, 'the last value, in grace');
    assert.equal(served.length, 1);
    assert.equal(served[0]?.[0], 'k');
    await assert.rejects(
      engine.getOrLoad('k', () => Promise.reject(new Error('a bug'))),
      /a bug/,
    );
    await sleep(450);
    await assert.rejects(
      engine.getOrLoad('k', down),
      (e: unknown) => (e as { code?: string }).code === 'ECONNREFUSED',
    );
    await assert.rejects(engine.getOrLoad('never-loaded', down));
  });

  it('is off by default', async () => {
    const engine = res.engine(uniquePrefix('nograce'), { redis: REDIS_CONFIG });
    assert.ok(await engine.ready());
    await engine.getOrLoad('k', () => 1);
    await engine.delete(['k']);
    await assert.rejects(engine.getOrLoad('k', await unreachable()));
  });
});
