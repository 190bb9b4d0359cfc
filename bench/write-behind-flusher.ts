/**
 * The write-behind benchmark's flusher, in its own process as `walcache jobs` would be:
 * flushes the entity in a loop until the parent asks it to stop (`{ type: 'stop' }`, the
 * reply carries the rows it flushed) or goes away.
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pgConfig } from '../src/config/database.js';
import { CacheEngine, resolveConfig } from '../src/index.js';
import { flushWriteBehind } from '../src/write-behind/write-behind-flush.js';
import { WriteBehindStore } from '../src/write-behind/write-behind-store.js';
import { serve } from './cdc-common.js';
import { exitWithParent } from './children.js';

const config = resolveConfig(JSON.parse(process.argv[2] as string));
const entity = process.argv[3] as string;
const db = new Kysely({
  dialect: new PostgresDialect({ pool: new pg.Pool({ ...pgConfig(config.databaseUrl), max: 2 }) }),
});
const engine = new CacheEngine({ config });
const store = new WriteBehindStore(config);
let rows = 0;
let stopping = false;
let loop: Promise<void> = Promise.resolve();

/** Ends the loop after the flush in progress (its transaction commits or rolls back), then closes. */
async function stop(): Promise<void> {
  stopping = true;
  await loop.catch(() => {});
  await engine.close();
  await store.close();
  await db.destroy();
}

serve(async (message) => {
  if (message.type !== 'stop') throw new Error(`unknown request ${message.type}`);
  await stop();
  setImmediate(() => process.disconnect?.());
  return { type: 'stopped', rows };
});
exitWithParent(stop);

await engine.ready();
loop = (async () => {
  while (!stopping) {
    try {
      const result = await flushWriteBehind({ engine, db, config, entity, store });
      rows += result.rows;
      if (result.rows === 0) await new Promise((r) => setTimeout(r, 5));
    } catch (error) {
      // As `walcache jobs` retries a failed flush job: nothing was cleared, try again.
      console.error(`flush failed, retrying: ${error instanceof Error ? error.message : error}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
})();
process.send?.({ type: 'ready' });
