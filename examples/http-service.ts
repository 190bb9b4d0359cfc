/**
 * A small node:http service reading through a walcache repository, with HTTP caching:
 * every response carries an ETag (the cached entry's version) and `Cache-Control` derived
 * from the entity's TTL, and a client revalidating with `If-None-Match` gets a 304.
 *
 *   GET /users/:id          one user (never its password_hash: denied in the config)
 *   GET /users/:id/orders   the user's orders (a cached query)
 *   GET /users/:id/stats    the user with its order count and total (a cached aggregate)
 *   PUT /users/:id/name     { "name": "..." }: renames the user; answers the new row and ETag
 *
 * Run it (Postgres and Redis from DATABASE_URL and REDIS_URL, or REDIS_CLUSTER_NODES):
 *
 *   node --import tsx examples/http-service.ts
 *   curl -i localhost:3000/users/1
 *   curl -i localhost:3000/users/1 -H 'If-None-Match: "<the ETag>"'     # 304
 *   curl -i -X PUT localhost:3000/users/1/name -d '{"name":"Ada L."}'
 *
 * It creates the schema `walcache_example` with a few rows (idempotent). Writes through
 * this service are read back at once here; writes made elsewhere reach the cache through
 * the invalidation worker (`walcache setup` then `walcache worker`), or after the TTL.
 */
import { realpathSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { pathToFileURL } from 'node:url';
import { type ColumnType, type Generated, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  createRepository,
  DEFAULT_DATABASE_URL,
  defineConfig,
  type Freshness,
  InvalidKeyError,
  InvalidWriteError,
  pgConfig,
  type Repository,
  sendCached,
  type WalcacheConfigInput,
} from '../src/index.js';

/** A bigint column: pg returns int8 as a string; it may be written as a number or a bigint. */
type Int8<Update = never> = ColumnType<string, string | number | bigint, Update>;

/** The Kysely `Database` type the service expects. */
export interface Database {
  users: {
    id: Int8;
    email: string;
    name: string;
    tenant_id: Generated<number>;
    password_hash: Generated<string>;
  };
  orders: {
    id: Int8;
    user_id: Int8<string | number | bigint>;
    status: Generated<string>;
    /** numeric(12,2): a string */
    total: ColumnType<string, string | number | undefined, string | number>;
  };
}

/** The tables (unqualified: run with the service's schema first on the search_path). Idempotent. */
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS users (
  id            bigint PRIMARY KEY,
  email         text NOT NULL UNIQUE,
  name          text NOT NULL,
  tenant_id     int NOT NULL DEFAULT 1,
  password_hash text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS orders (
  id      bigint PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users (id),
  status  text NOT NULL DEFAULT 'open',
  total   numeric(12,2) NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
-- The worker needs the old row's values (orders.user_id) to invalidate the old owner's lists.
ALTER TABLE users REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;`;

/** A few rows for the demo. Idempotent. */
export const SEED_SQL = `
INSERT INTO users (id, email, name, tenant_id, password_hash) VALUES
  (1, 'ada@example.com', 'Ada Lovelace', 1, 'scrypt$not-a-real-hash'),
  (2, 'alan@example.com', 'Alan Turing', 1, 'scrypt$not-a-real-hash'),
  (3, 'grace@example.com', 'Grace Hopper', 2, 'scrypt$not-a-real-hash')
ON CONFLICT DO NOTHING;
INSERT INTO orders (id, user_id, status, total) VALUES
  (1, 1, 'paid', 120.50), (2, 1, 'open', 35.00), (3, 1, 'paid', 9.99),
  (4, 2, 'open', 250.00)
ON CONFLICT DO NOTHING;`;

/** The walcache config of the service (shared with the worker in a real deployment). */
export function serviceConfig(
  options: {
    schema?: string;
    prefix?: string;
    redisUrl?: string;
    /** The `redis` settings (a cluster's nodes, say), instead of `redisUrl`. */
    redis?: WalcacheConfigInput['redis'];
  } = {},
) {
  return defineConfig({
    prefix: options.prefix ?? process.env.WALCACHE_PREFIX ?? 'walcache-example',
    // Without a URL, the environment's: REDIS_CLUSTER_NODES (a cluster) or REDIS_URL, else the local default.
    redis: options.redis ?? (options.redisUrl === undefined ? {} : { url: options.redisUrl }),
    defaultSchema: options.schema ?? 'public',
    cache: { ttlMs: 60_000, staleWhileRevalidateMs: 30_000 },
    entities: {
      users: {
        table: 'users',
        key: 'id',
        unique: ['email'],
        deny: ['password_hash'],
        ttlMs: 30_000,
      },
      orders: { table: 'orders', key: 'id' },
    },
    // Cached queries pinning these columns depend on one user's rows, not the whole table.
    invalidateBy: { users: ['id'], orders: ['user_id'] },
  });
}

/** The repository `createService` reads through. */
export type ServiceRepository = Repository<Database, ReturnType<typeof serviceConfig>>;

/**
 * The service, not listening yet. `db` must resolve the unqualified table names to the
 * config's `defaultSchema` (its search_path), as `repo.cached()` tags queries by it.
 */
export function createService({
  repo,
  db,
}: {
  repo: ServiceRepository;
  db: Kysely<Database>;
}): Server {
  // Cached queries live as long as `cache.ttlMs` (entities may set their own TTL).
  const queries: Freshness = {
    ttlMs: repo.config.cache.ttlMs,
    staleWhileRevalidateMs: repo.config.cache.staleWhileRevalidateMs,
  };

  const routes: Record<string, Partial<Record<string, Handler>>> = {
    '': {
      GET: async (req, res, id) => {
        sendCached(req, res, await repo.users.findById(id), repo.users.freshness);
      },
    },
    '/orders': {
      GET: async (req, res, id) => {
        if ((await repo.users.findById(id)) === undefined) return notFound(req, res);
        const orders = await repo.cached(
          db
            .selectFrom('orders')
            .select(['id', 'status', 'total'])
            .where('user_id', '=', id)
            .orderBy('id'),
          { name: 'user-orders' },
        );
        sendCached(req, res, orders, queries);
      },
    },
    '/stats': {
      GET: async (req, res, id) => {
        const [stats] = await repo.cached(
          db
            .selectFrom('users')
            .leftJoin('orders', 'orders.user_id', 'users.id')
            .select((eb) => [
              'users.id',
              'users.name',
              'users.email',
              eb.fn.count<string>('orders.id').as('order_count'),
              eb.fn.coalesce(eb.fn.sum<string>('orders.total'), eb.lit(0)).as('order_total'),
            ])
            .where('users.id', '=', id)
            .groupBy('users.id'),
          { name: 'user-stats' },
        );
        sendCached(req, res, stats, queries);
      },
    },
    '/name': {
      PUT: async (req, res, id) => {
        const body = await readJson(req);
        const name = (body as { name?: unknown } | null)?.name;
        if (typeof name !== 'string' || name.trim() === '' || name.length > 200)
          throw new HttpError(
            400,
            'expected a JSON body { "name": a non-empty string of at most 200 characters }',
          );
        // Evicts the user's key and tags in this process at once: the next GET here reads
        // the new row. Other processes are invalidated by the worker.
        const { rows } = await repo.users.update(id, { name: name.trim() });
        // The body is the new representation of /users/:id, and the ETag is that one's.
        if (rows[0] !== undefined) res.setHeader('Content-Location', `/users/${id}`);
        sendCached(req, res, rows[0], repo.users.freshness);
      },
    },
  };

  return createServer((req, res) => {
    handle(routes, req, res).catch((error: unknown) => fail(res, error));
  });
}

type Handler = (req: IncomingMessage, res: ServerResponse, id: string) => Promise<void>;

const USER_ROUTE = /^\/users\/([^/]+)(\/[a-z]+)?\/?$/;
/** A positive int8: digits only, so Postgres never sees an id it would reject. */
const ID = /^[1-9][0-9]{0,18}$/;
const MAX_ID = 2n ** 63n - 1n;
const MAX_BODY_BYTES = 16 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

async function handle(
  routes: Record<string, Partial<Record<string, Handler>>>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { pathname } = new URL(req.url ?? '/', 'http://localhost');
  const match = USER_ROUTE.exec(pathname);
  const methods = match ? routes[match[2] ?? ''] : undefined;
  if (match === null || methods === undefined) throw new HttpError(404, 'no such route');
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
  const handler = methods[method];
  if (handler === undefined) {
    const allow = Object.keys(methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
    throw new HttpError(405, 'method not allowed', { Allow: allow.join(', ') });
  }
  const id = match[1] as string; // percent-encoded digits are not digits: 400
  if (!ID.test(id) || BigInt(id) > MAX_ID)
    throw new HttpError(400, 'a user id is a positive integer');
  await handler(req, res, id);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'request body too large');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'the request body is not valid JSON');
  }
}

function notFound(req: IncomingMessage, res: ServerResponse): void {
  sendCached(req, res, undefined, { ttlMs: 0, staleWhileRevalidateMs: 0 });
}

/** Errors as JSON: the client's mistakes with their reason, anything else as a bare 500. */
function fail(res: ServerResponse, error: unknown): void {
  let status = 500;
  let message = 'internal error';
  let headers: Record<string, string> = {};
  if (error instanceof HttpError) {
    ({ status, message, headers } = error);
  } else if (error instanceof InvalidKeyError || error instanceof InvalidWriteError) {
    status = 400;
    message = error.message;
  } else {
    console.error('request failed:', error);
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: message });
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

// --- run directly --------------------------------------------------------------------

const EXAMPLE_SCHEMA = 'walcache_example';

async function main(): Promise<void> {
  const pool = new pg.Pool({
    ...pgConfig(process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL),
    options: `-c search_path=${EXAMPLE_SCHEMA}`,
  });
  // A PostgreSQL restart ends every connection with a FATAL. pg-pool listens for it only on
  // idle clients; a checked-out client (a query or transaction in flight) emits `error`
  // with no listener, and an unhandled `error` ends the process. Listen on every client.
  pool.on('error', (error) => console.error('idle Postgres connection failed:', error.message));
  pool.on('connect', (client) =>
    client.on('error', (error) => console.error('Postgres connection failed:', error.message)),
  );
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${EXAMPLE_SCHEMA}`);
  await pool.query(SCHEMA_SQL);
  await pool.query(SEED_SQL);

  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const repo = createRepository({ db, config: serviceConfig({ schema: EXAMPLE_SCHEMA }) });
  const server = createService({ repo, db });
  const port = Number(process.env.PORT ?? 3000);
  server.listen(port, () => {
    const address = server.address();
    const actual = typeof address === 'object' && address !== null ? address.port : port;
    console.log(`walcache example listening on http://localhost:${actual}/users/1`);
  });

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(`${signal}: closing`);
    server.close();
    server.closeAllConnections();
    Promise.resolve()
      .then(() => repo.close())
      .then(() => db.destroy())
      // Kysely ends the pool only if it ran a query; all reads may have been cache hits.
      .then(() => (pool.ending ? undefined : pool.end()))
      .catch((error: unknown) => {
        console.error('shutdown failed:', error);
        process.exitCode = 1;
      });
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

function runDirectly(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (runDirectly()) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
