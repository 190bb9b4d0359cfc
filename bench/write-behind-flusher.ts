/**
 * The write-behind benchmark's flusher, in its own process as `walcache jobs` would be:
 * flushes the entity in a loop and, on SIGTERM, prints the rows it flushed and exits.
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { CacheEngine, pgConfig, resolveConfig } from '../src/index.js';
import { flushWriteBehind } from '../src/jobs/write-behind.js';

const config = resolveConfig(JSON.parse(process.argv[2] as string));
const entity = process.argv[3] as string;
const db = new Kysely({
  dialect: new PostgresDialect({ pool: new pg.Pool({ ...pgConfig(config.databaseUrl), max: 2 }) }),
});
const engine = new CacheEngine({ config });
await engine.ready();
let rows = 0;
let stop = false;
process.on('SIGTERM', () => {
  stop = true;
});
process.stdout.write('ready\n');
while (!stop) {
  const result = await flushWriteBehind({ engine, db, config, entity });
  rows += result.rows;
  if (result.rows === 0) await new Promise((r) => setTimeout(r, 5));
}
process.stdout.write(`flushed ${rows}\n`);
await engine.close();
await db.destroy();
