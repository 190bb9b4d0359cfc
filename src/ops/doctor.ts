import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { CacheEngine } from '../cache/cache-engine.js';
import { parseHeartbeat } from '../cache/heartbeat.js';
import { createRedisClient, isCluster, masters, type RedisClient } from '../cache/redis-client.js';
import type { ResolvedConfig } from '../config/config.js';
import { pgConfig, redactUrl } from '../config/database.js';
import {
  cacheEndpoint,
  describeEndpoint,
  endpointUser,
  queuesEndpoint,
  type RedisEndpoint,
} from '../config/redis-endpoint.js';
import type { DecoderName } from '../config/schema.js';
import {
  checkModel,
  type ModelProblem,
  quoteTable,
  searchPathProblems,
} from '../database/model-check.js';
import {
  assertSlotName,
  checkWalLevel,
  explainServerError,
  readSlot,
  type SlotInfo,
} from '../database/slot.js';
import { poolQuery, readCatalog, unpublishedTables } from '../database/table-catalog.js';
import { SetupError } from '../errors/typed-errors.js';
import { resolveWarmerSql } from '../jobs/warm.js';
import { warmerSqlChecks } from '../jobs/warmer-sql.js';
import { Keys } from '../keys/redis-keys.js';
import { buildChangeModel } from '../model/table-model.js';
import { queueRedisUrl } from '../queues/walcache-queues.js';
import { EVICTION_POLICY_FIX, mayEvictWriteBehind } from '../write-behind/eviction-policy.js';
import { WriteBehindStore } from '../write-behind/write-behind-store.js';
import { probeAcl, recommendedAcl } from './redis-acl.js';

export type DoctorStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  /** What was checked: `postgres`, `wal_level`, `slot`, `redis-persistence`, `worker`, ... */
  readonly name: string;
  readonly status: DoctorStatus;
  /** One line, readable on its own. */
  readonly detail: string;
  /** What to run or change; every `fail` has one, most `warn`s too. */
  readonly fix?: string;
}

export interface DoctorReport {
  /** No check failed (warnings allowed). */
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

export interface DoctorOptions {
  readonly config: ResolvedConfig;
  /** Replication slot the worker uses. @default 'walcache' */
  readonly slot?: string;
  /** Output plugin the worker uses. @default 'wal2json' */
  readonly decoder?: DecoderName;
  /** Publication the worker reads with pgoutput. @default 'walcache' */
  readonly publication?: string;
}

/** A worker heartbeat older than this fails (the worker writes one at least every 5 s). */
export const HEARTBEAT_MAX_AGE_MS = 15_000;
/** Worker lag (now − commit time of the last applied transaction) above this warns. */
export const WORKER_LAG_WARN_MS = 60_000;
/** WAL retained by the slot above this warns. */
export const RETAINED_WAL_WARN_BYTES = 1024 ** 3;
/** A write-behind record pending longer than this warns. */
export const WRITE_BEHIND_OLDEST_WARN_MS = 60_000;

const DECODERS: readonly DecoderName[] = ['wal2json', 'pgoutput'];
const PG_TIMEOUT_MS = 10_000;

/**
 * Checks a walcache deployment end to end and says what to fix: PostgreSQL (reachable,
 * `wal_level`, the output plugin, the slot and its retained WAL, replica identity), Redis
 * (reachable, persistence, eviction policies of the cache and the queues), the worker's
 * heartbeat and the write-behind backlog. Read-only, except a temporary logical slot
 * created and dropped to test the plugin when the real slot does not exist yet.
 *
 * Problems are `fail` / `warn` checks, never exceptions: a check that throws becomes a
 * `fail` with the error. Throws only for bad options (slot name, decoder). Every
 * connection it opens is closed before it returns.
 *
 * @example
 * const report = await doctor({ config, slot: 'walcache' });
 * for (const c of report.checks) if (c.status !== 'ok') console.log(c.status, c.detail, c.fix);
 */
export async function doctor(options: DoctorOptions): Promise<DoctorReport> {
  const { config } = options;
  const slot = options.slot ?? options.config.worker.slot;
  const decoder = options.decoder ?? options.config.worker.decoder;
  assertSlotName(slot);
  if (!DECODERS.includes(decoder))
    throw new SetupError(
      `Unknown decoder ${JSON.stringify(decoder)}`,
      `use ${DECODERS.join(' or ')}`,
    );
  const checks: DoctorCheck[] = [];
  const slotInfo = await postgresChecks(
    config,
    slot,
    decoder,
    options.publication ?? options.config.worker.publication,
    checks,
  );
  await redisChecks(config, slot, checks, slotInfo);
  checks.push(...(await warmerSqlChecks(config, (file) => resolveWarmerSql(file))));
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

// --- PostgreSQL ----------------------------------------------------------------------

async function postgresChecks(
  config: ResolvedConfig,
  slot: string,
  decoder: DecoderName,
  publication: string,
  checks: DoctorCheck[],
): Promise<SlotInfo | undefined> {
  const pool = new pg.Pool({
    ...pgConfig(config.databaseUrl, {
      application_name: 'walcache-doctor',
      connectionTimeoutMillis: PG_TIMEOUT_MS,
      statement_timeout: PG_TIMEOUT_MS,
    }),
    max: 2,
  });
  pool.on('error', () => {});
  try {
    const reached = await check(
      checks,
      'postgres',
      'check databaseUrl in the config (or DATABASE_URL) and that PostgreSQL is running',
      async () => {
        const { rows } = await pool.query<{ version: string; db: string }>(
          "SELECT current_setting('server_version') AS version, current_database() AS db",
        );
        return ok(
          'postgres',
          `PostgreSQL ${rows[0]?.version} reachable at ${redactUrl(config.databaseUrl)}`,
        );
      },
      (message) => `cannot connect to PostgreSQL at ${redactUrl(config.databaseUrl)}: ${message}`,
    );
    if (!reached) return undefined;

    let walLevelOk = false;
    await check(checks, 'wal_level', 'see the PostgreSQL error', async () => {
      await checkWalLevel(pool);
      walLevelOk = true;
      return ok('wal_level', 'wal_level = logical');
    });

    let found: SlotRead | undefined;
    await check(
      checks,
      'slot',
      `run walcache setup --slot ${slot} --decoder ${decoder}`,
      async () => {
        found = await readSlotFully(pool, slot);
        return slotCheck(found, slot, decoder);
      },
    );

    await check(
      checks,
      'output-plugin',
      `run walcache setup --slot ${slot} --decoder ${decoder}; its error names the fix`,
      () => pluginCheck(pool, slot, decoder, found, walLevelOk),
    );

    const info = found?.info;
    if (found?.kind === 'ok' && info) {
      checks.push(
        info.active
          ? ok('slot-active', `slot ${slot} is streamed by a worker (pid ${info.activePid})`)
          : {
              name: 'slot-active',
              status: 'warn',
              detail: `slot ${slot} has no worker attached: changes are not being invalidated, and WAL piles up`,
              fix: `start walcache worker --slot ${slot} --decoder ${decoder}`,
            },
      );
      checks.push(walStatusCheck(info, slot, decoder));
      checks.push(
        info.retainedBytes > RETAINED_WAL_WARN_BYTES
          ? {
              name: 'slot-retained-wal',
              status: 'warn',
              detail: `slot ${slot} retains ${formatBytes(info.retainedBytes)} of WAL (above ${formatBytes(RETAINED_WAL_WARN_BYTES)}): the worker is behind or not running`,
              fix: `start walcache worker --slot ${slot} (or check why it lags: its /metrics and logs); if the slot is abandoned, SELECT pg_drop_replication_slot('${slot}');`,
            }
          : ok(
              'slot-retained-wal',
              `slot ${slot} retains ${formatBytes(info.retainedBytes)} of WAL`,
            ),
      );
    }

    await check(checks, 'max_slot_wal_keep_size', 'see the PostgreSQL error', async () => {
      const { rows } = await pool.query<{ setting: string; unit: string | null }>(
        "SELECT setting, unit FROM pg_settings WHERE name = 'max_slot_wal_keep_size'",
      );
      const row = rows[0];
      if (!row)
        return ok(
          'max_slot_wal_keep_size',
          'max_slot_wal_keep_size is not known to this server (before 13): slots retain WAL without bound',
        );
      if (row.setting === '-1')
        return {
          name: 'max_slot_wal_keep_size',
          status: 'warn',
          detail:
            'max_slot_wal_keep_size = -1: a stopped worker makes its slot retain WAL without bound, which can fill the disk and stop PostgreSQL',
          fix: "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf();  (size it below the free disk; a slot past it is lost, and the worker recreates it and bumps the cache epoch)",
        };
      return ok(
        'max_slot_wal_keep_size',
        `max_slot_wal_keep_size = ${row.setting}${row.unit ?? ''}`,
      );
    });

    await check(
      checks,
      'replica-identity',
      'run walcache setup (it reports the table problems it finds)',
      () => tableChecks(pool, config, decoder, publication, checks),
    );
    return found?.kind === 'ok' ? (found.info ?? undefined) : undefined;
  } finally {
    await pool.end().catch(() => {});
  }
}

interface SlotRead {
  readonly kind: 'ok' | 'missing' | 'physical' | 'other-database';
  readonly info: SlotInfo | null;
  readonly database: string | null;
  readonly current: string;
}

async function readSlotFully(pool: pg.Pool, slot: string): Promise<SlotRead> {
  const { rows } = await pool.query<{
    slot_type: string;
    database: string | null;
    current: string;
  }>(
    `SELECT slot_type, database, current_database() AS current
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = rows[0];
  if (!row) return { kind: 'missing', info: null, database: null, current: '' };
  if (row.slot_type !== 'logical')
    return { kind: 'physical', info: null, database: null, current: row.current };
  if (row.database !== row.current)
    return { kind: 'other-database', info: null, database: row.database, current: row.current };
  return {
    kind: 'ok',
    info: await readSlot(pool, slot),
    database: row.database,
    current: row.current,
  };
}

function slotCheck(found: SlotRead, slot: string, decoder: DecoderName): DoctorCheck {
  const drop = `SELECT pg_drop_replication_slot('${slot}');`;
  switch (found.kind) {
    case 'missing':
      return {
        name: 'slot',
        status: 'fail',
        detail: `replication slot ${slot} does not exist: nothing records the changes the cache must drop`,
        fix: `walcache setup --slot ${slot} --decoder ${decoder}  (the worker also creates it at start, bumping the cache epoch)`,
      };
    case 'physical':
      return {
        name: 'slot',
        status: 'fail',
        detail: `slot ${slot} exists but is a physical replication slot`,
        fix: `use another --slot (or, if it is unused, ${drop})`,
      };
    case 'other-database':
      return {
        name: 'slot',
        status: 'fail',
        detail: `slot ${slot} belongs to database ${found.database}, not ${found.current}: a logical slot streams one database`,
        fix: 'use another --slot for this database',
      };
  }
  const info = found.info;
  if (!info) throw new Error(`slot ${slot} vanished while it was read`);
  if (info.plugin !== decoder)
    return {
      name: 'slot',
      status: 'fail',
      detail: `slot ${slot} uses the ${info.plugin} plugin, not ${decoder}`,
      fix: `use --decoder ${info.plugin}, or another --slot (or, if no worker uses it, ${drop} then walcache setup)`,
    };
  return ok('slot', `slot ${slot} exists (${info.plugin})`);
}

function walStatusCheck(info: SlotInfo, slot: string, decoder: DecoderName): DoctorCheck {
  if (info.walStatus === 'lost')
    return {
      name: 'slot-wal-status',
      status: 'fail',
      detail: `slot ${slot} is lost (wal_status = lost): PostgreSQL removed WAL it had not consumed, so some invalidations are gone`,
      fix: `start walcache worker --slot ${slot} --decoder ${decoder}: it recreates the slot and bumps the cache epoch (do not drop it by hand); raise max_slot_wal_keep_size so it does not happen again`,
    };
  if (info.walStatus === 'unreserved')
    return {
      name: 'slot-wal-status',
      status: 'warn',
      detail: `slot ${slot} has wal_status = unreserved: it is past max_slot_wal_keep_size and about to lose WAL`,
      fix: `start walcache worker --slot ${slot} now (or raise max_slot_wal_keep_size)`,
    };
  return ok('slot-wal-status', `slot ${slot} wal_status = ${info.walStatus ?? 'unknown'}`);
}

/** Allowed by `output_plugin_libraries` (where the server has it) and installed. */
async function pluginCheck(
  pool: pg.Pool,
  slot: string,
  decoder: DecoderName,
  found: SlotRead | undefined,
  walLevelOk: boolean,
): Promise<DoctorCheck> {
  const name = 'output-plugin';
  const { rows } = await pool.query<{ setting: string }>(
    "SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'",
  );
  const allowList = rows[0] === undefined ? null : parsePluginList(rows[0].setting);
  if (allowList !== null && !allowList.includes(decoder))
    return {
      name,
      status: 'fail',
      detail: `PostgreSQL refuses the ${decoder} output plugin: output_plugin_libraries is ${allowList.length > 0 ? allowList.join(', ') : 'empty'}`,
      fix: allowListFix(allowList, decoder),
    };
  const allowed = allowList === null ? '' : ', in output_plugin_libraries';
  if (found?.kind === 'ok' && found.info?.plugin === decoder)
    return ok(name, `${decoder} is usable: slot ${slot} uses it${allowed}`);
  if (decoder === 'pgoutput') return ok(name, `pgoutput is built in${allowed}`);
  if (!walLevelOk)
    return {
      name,
      status: 'warn',
      detail: `could not test that ${decoder} is installed: wal_level is not logical`,
      fix: 'set wal_level = logical (see above) and run walcache doctor again',
    };
  // No slot with the plugin: create a temporary one (dropped at once, and with the session).
  const probe = `walcache_doctor_${randomBytes(4).toString('hex')}`;
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_create_logical_replication_slot($1, $2, true)', [probe, decoder]);
    await client.query('SELECT pg_drop_replication_slot($1)', [probe]);
  } catch (error) {
    broken = true;
    if ((error as { code?: string }).code === '57014')
      return {
        name,
        status: 'warn',
        detail: `could not test that ${decoder} is installed: creating a temporary slot waited ${PG_TIMEOUT_MS / 1000} s (a long-running transaction delays it)`,
        fix: 'run walcache doctor again when the long transaction ends, or walcache setup',
      };
    const explained = explainServerError(error, decoder);
    if (explained instanceof SetupError)
      return { name, status: 'fail', detail: firstLine(explained.message), fix: explained.fix };
    throw error;
  } finally {
    client.release(broken);
  }
  return ok(name, `${decoder} is installed${allowed} (tested with a temporary slot)`);
}

/** `'pgoutput, test_decoding'` (or `'"a", b'`) as names. */
export function parsePluginList(setting: string): string[] {
  return setting
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter((s) => s.length > 0);
}

/** The ALTER SYSTEM that allows `decoder`, keeping the defaults and every plugin already listed. */
export function allowListFix(current: readonly string[], decoder: string): string {
  const list = [...new Set(['pgoutput', 'test_decoding', ...current, decoder])];
  return `ALTER SYSTEM SET output_plugin_libraries = ${list.map((p) => `'${p.replaceAll("'", "''")}'`).join(', ')}; SELECT pg_reload_conf();  (keep any plugin already listed; or use --decoder pgoutput, which is always allowed)`;
}

/**
 * The config against the catalog: every table exists and is a plain table, its key,
 * unique and tag columns exist with types that can be keys or tags, its replica identity
 * carries the old values the worker needs, and (pgoutput) the publication sends it. Each
 * gap would leave entries stale silently; each goes to `out` with its fix.
 */
async function tableChecks(
  pool: pg.Pool,
  config: ResolvedConfig,
  decoder: DecoderName,
  publication: string,
  out: DoctorCheck[],
): Promise<DoctorCheck> {
  const model = buildChangeModel(config);
  const configured = [...model.keys()].sort();
  if (configured.length === 0)
    return ok('replica-identity', 'the config names no tables (entities / invalidateBy)');
  const query = poolQuery(pool);
  const catalog = await readCatalog(query, configured);
  const problems: Array<Pick<ModelProblem, 'detail' | 'fix'> & { kind?: string }> = [
    ...checkModel(model, catalog),
    // The database URL's own search_path: the service's pool may set another.
    ...(await searchPathProblems(query, config)),
  ];
  for (const p of problems)
    out.push({
      name: p.kind === 'identity' ? 'replica-identity' : 'table',
      status: 'fail',
      detail: p.detail,
      fix: p.fix,
    });
  if (decoder === 'pgoutput') {
    const missing = await unpublishedTables(query, publication, configured);
    if (missing === null || missing.length > 0)
      out.push({
        name: 'publication',
        status: 'fail',
        detail:
          missing === null
            ? `the publication ${publication} does not exist: the worker (pgoutput) would receive nothing`
            : `the publication ${publication} does not send ${missing.join(', ')}: their changes never reach the worker`,
        fix:
          missing === null
            ? `walcache setup --decoder pgoutput --publication ${publication}`
            : `ALTER PUBLICATION ${publication} ADD TABLE ${missing.map(quoteTable).join(', ')};  (or run walcache setup again)`,
      });
  }
  const full = configured.filter((t) => catalog.get(t)?.replicaIdentity === 'f');
  return ok(
    'replica-identity',
    `${catalog.size} of ${configured.length} configured table${configured.length > 1 ? 's' : ''} found${problems.length === 0 ? ', keys and tags match their columns' : ''}${full.length > 0 ? `; REPLICA IDENTITY FULL on ${full.join(', ')}` : ''}`,
  );
}

// --- Redis ---------------------------------------------------------------------------

interface RedisInfo {
  readonly runId: string | undefined;
  readonly version: string | undefined;
  readonly aof: boolean;
  readonly maxmemory: number;
  readonly policy: string | undefined;
}

async function redisChecks(
  config: ResolvedConfig,
  slot: string,
  checks: DoctorCheck[],
  /** The configured slot as PostgreSQL showed it; undefined when it could not be read. */
  slotInfo: SlotInfo | undefined,
): Promise<void> {
  const cacheUrl = config.redis.url;
  const queuesUrl = queueRedisUrl(config);
  const cacheWhere = whereIs(cacheEndpoint(config));
  const queuesWhere = whereIs(queuesEndpoint(config));
  const clients: RedisClient[] = [];
  const open = async (endpoint: RedisEndpoint, role: string): Promise<RedisClient> => {
    const client = openRedis(
      endpoint,
      `walcache:${config.prefix}:doctor:${role}`,
      config.redis.connectTimeoutMs,
      false,
    );
    clients.push(client);
    await connectRedis(client);
    return client;
  };
  try {
    const writeBehind = Object.entries(config.entities)
      .filter(([, e]) => e.writeBehind)
      .map(([name]) => name);
    let cache: RedisClient | undefined;
    let cacheInfo: RedisInfo | undefined;
    await check(
      checks,
      'redis',
      'check redis.url in the config (or REDIS_URL) and that Redis is running',
      async () => {
        cache = await open(cacheEndpoint(config), 'cache');
        cacheInfo = await readRedisInfo(cache);
        return ok('redis', `Redis ${cacheInfo.version ?? ''} reachable at ${cacheWhere} (cache)`);
      },
      (message) => `cannot reach the cache Redis at ${cacheWhere}: ${message}`,
    );
    if (cache !== undefined) {
      const client = cache;
      await check(checks, 'redis-topology', 'see the Redis error', () => topologyCheck(client));
    }

    if (cacheInfo) {
      const info = cacheInfo;
      // The cache refills from PostgreSQL: its server needs no persistence. What must
      // survive a restart (queued jobs, pending write-behind writes) lives on the queues'
      // server, checked below.
      checks.push(
        ok(
          'redis-persistence',
          `cache Redis: appendonly ${info.aof ? 'yes' : 'no'} (a cache needs none: a restart empties it and it refills from PostgreSQL)`,
        ),
      );
      checks.push(
        info.policy === 'noeviction' && info.maxmemory > 0
          ? {
              name: 'redis-eviction',
              status: 'warn',
              detail: `the cache Redis has maxmemory ${formatBytes(info.maxmemory)} with maxmemory-policy noeviction: once full, every cache write fails instead of evicting old entries`,
              fix: 'CONFIG SET maxmemory-policy allkeys-lru on the cache server (and keep the job queues and write-behind on a noeviction server: jobs.redisUrl)',
            }
          : ok(
              'redis-eviction',
              `cache Redis: maxmemory-policy ${info.policy ?? 'unknown'}, maxmemory ${info.maxmemory > 0 ? formatBytes(info.maxmemory) : 'unlimited'}`,
            ),
      );
    }

    let queuesInfo: RedisInfo | undefined;
    if (queuesUrl === cacheUrl) {
      queuesInfo = cacheInfo;
    } else {
      await check(
        checks,
        'queues-redis',
        'check jobs.redisUrl in the config and that its Redis is running',
        async () => {
          const queues = await open(queuesEndpoint(config), 'queues');
          queuesInfo = await readRedisInfo(queues);
          return ok(
            'queues-redis',
            `Redis ${queuesInfo.version ?? ''} reachable at ${queuesWhere} (job queues)`,
          );
        },
        (message) => `cannot reach the job queues' Redis at ${queuesWhere}: ${message}`,
      );
    }
    if (queuesInfo) checks.push(...queuesRoleChecks(queuesInfo, writeBehind));
    if (cacheInfo && queuesInfo) {
      const shared =
        queuesInfo === cacheInfo ||
        (cacheInfo.runId !== undefined && cacheInfo.runId === queuesInfo.runId);
      if (shared) {
        const cost =
          cacheInfo.policy === 'noeviction'
            ? 'with noeviction the cache cannot evict, so a full server refuses cache fills and job writes alike'
            : `with ${cacheInfo.policy ?? 'its policy'} Redis may evict BullMQ's keys (lost jobs)${writeBehind.length > 0 ? ' and pending write-behind writes' : ''}`;
        checks.push({
          name: 'redis-shared',
          status: 'warn',
          detail: `the cache and the job queues share one Redis server, and one maxmemory-policy: ${cost} (fine in development)`,
          fix: 'in production, point jobs.redisUrl at a Redis with maxmemory-policy noeviction, and give the cache an LRU policy',
        });
      }
    }

    if (writeBehind.length > 0 && queuesInfo) await writeBehindChecks(config, writeBehind, checks);

    const redis = cache;
    if (redis === undefined) return;
    await check(checks, 'redis-acl', 'see the Redis error', async () => {
      const endpoint = cacheEndpoint(config);
      const user = endpointUser(endpoint);
      const subscriber = openRedis(
        endpoint,
        `walcache:${config.prefix}:doctor:acl`,
        config.redis.connectTimeoutMs,
        false,
      );
      const denied = await probeAcl(redis, subscriber, new Keys(config.prefix), config);
      if (denied.commands.length === 0 && denied.patterns.length === 0)
        return ok(
          'redis-acl',
          `Redis user ${user} may run every command walcache needs on ${config.prefix}:* and its bus channel`,
        );
      if (denied.patterns.length === 0 && denied.commands.every((c) => c === 'info'))
        return {
          name: 'redis-acl',
          status: 'warn',
          detail: `Redis user ${user} may not run INFO: walcache works, but doctor and stats cannot read the server's settings`,
          fix: `ACL SETUSER ${user} +info`,
        };
      const parts = [
        denied.commands.length > 0 ? `may not run ${denied.commands.join(', ')}` : '',
        denied.patterns.length > 0
          ? `may not use the keys or channel of ${denied.patterns.join(', ')}`
          : '',
      ].filter((p) => p !== '');
      return {
        name: 'redis-acl',
        status: 'fail',
        detail: `Redis user ${user} ${parts.join('; ')}: walcache needs them on ${config.prefix}:*`,
        fix: recommendedAcl(user, config.prefix, isCluster(redis)),
      };
    });
    await check(checks, 'worker', `start walcache worker --slot ${slot}`, async () => {
      const key = new Keys(config.prefix).heartbeat();
      const raw = await redis.get(key);
      const beat = parseHeartbeat(raw);
      if (beat === null)
        return {
          name: 'worker',
          status: 'fail',
          detail:
            raw === null
              ? `worker not running: no heartbeat at ${key} (prefix ${config.prefix})`
              : `worker heartbeat at ${key} is not one walcache wrote`,
          fix: `start walcache worker --slot ${slot} with this config (same prefix and Redis)`,
        };
      const now = Date.now();
      const age = Math.max(0, now - beat.appliedAt);
      // Commit time 0: the worker has applied no commit yet (a new slot, an idle database).
      const lag = beat.commitTime > 0 ? Math.max(0, now - beat.commitTime) : null;
      // A fresh heartbeat outlives its worker by up to HEARTBEAT_MAX_AGE_MS; the slot
      // knows at once whether anything streams it.
      if (slotInfo !== undefined && !slotInfo.active)
        return {
          name: 'worker',
          status: 'fail',
          detail: `worker not running on slot ${slot}: nothing streams it (pg_replication_slots.active is false), although the last heartbeat is ${formatMs(age)} old (at ${beat.lsn}): the worker stopped since, or runs on another slot`,
          fix: `start walcache worker --slot ${slot} (or read its logs and /readyz if one should be running: it may be failing to connect)`,
        };
      if (age > HEARTBEAT_MAX_AGE_MS)
        return {
          name: 'worker',
          status: 'fail',
          detail: `worker not running: its last heartbeat is ${formatMs(age)} old (above ${formatMs(HEARTBEAT_MAX_AGE_MS)}; it writes one every 5 s), at ${beat.lsn}`,
          fix: `start walcache worker --slot ${slot} (or read its logs and /readyz: it may be stuck or standing by without an active peer)`,
        };
      if (lag === null)
        return ok(
          'worker',
          `worker alive: heartbeat ${formatMs(age)} ago, no commit applied yet, at ${beat.lsn}`,
        );
      if (lag > WORKER_LAG_WARN_MS)
        return {
          name: 'worker',
          status: 'warn',
          detail: `worker alive (heartbeat ${formatMs(age)} ago) but ${formatMs(lag)} behind: it applied up to ${beat.lsn}`,
          fix: 'check the worker logs and walcache_worker_lag_seconds; a large transaction or a slow Redis holds it back',
        };
      return ok(
        'worker',
        `worker alive: heartbeat ${formatMs(age)} ago, lag ${formatMs(lag)}, applied up to ${beat.lsn}`,
      );
    });
  } finally {
    for (const client of clients) client.disconnect();
  }
}

/**
 * The queues' server keeps BullMQ's jobs and write-behind's pending writes: it must not
 * evict them (BullMQ needs noeviction; write-behind keys have no TTL, so volatile-*
 * policies keep them too, and walcache refuses write-behind on any other), and it needs
 * persistence for them to survive a restart.
 */
function queuesRoleChecks(info: RedisInfo, writeBehind: readonly string[]): DoctorCheck[] {
  const entities = writeBehind.join(', ');
  const policy = info.policy ?? 'unknown';
  const eviction: DoctorCheck =
    writeBehind.length > 0 && mayEvictWriteBehind(info.policy ?? null)
      ? {
          name: 'queues-eviction',
          status: 'fail',
          detail: `the job queues' Redis has maxmemory-policy ${policy}: it may evict the pending write-behind writes of ${entities} (acknowledged writes lost), so walcache refuses write-behind there (E_EVICTION_POLICY); BullMQ needs noeviction too`,
          fix: EVICTION_POLICY_FIX,
        }
      : info.policy === 'noeviction'
        ? ok('queues-eviction', 'job queues Redis: maxmemory-policy noeviction')
        : {
            name: 'queues-eviction',
            status: 'warn',
            detail: `the job queues' Redis has maxmemory-policy ${policy}: BullMQ needs noeviction, or it can lose jobs and queue state under memory pressure`,
            fix: 'CONFIG SET maxmemory-policy noeviction on the queues server, and point jobs.redisUrl at it (the cache wants an LRU policy on a server of its own)',
          };
  const persistence: DoctorCheck = info.aof
    ? ok('queues-persistence', 'job queues Redis: appendonly yes')
    : writeBehind.length > 0
      ? {
          name: 'queues-persistence',
          status: 'fail',
          detail: `the job queues' Redis runs with appendonly no: pending write-behind writes (${entities}) live only there until flushed, and a restart loses them`,
          fix: 'appendonly yes on the queues server (CONFIG SET appendonly yes, and in redis.conf; appendfsync everysec loses at most a second on a crash)',
        }
      : {
          name: 'queues-persistence',
          status: 'warn',
          detail:
            "the job queues' Redis runs with appendonly no: a restart loses queued jobs (walcache jobs upserts its schedulers again at start); write-behind would lose pending writes",
          fix: 'appendonly yes on the queues server (CONFIG SET appendonly yes, and in redis.conf), required before enabling writeBehind',
        };
  return [eviction, persistence];
}

/** Backlog and dead letters of each write-behind entity, read where they live (the queues' Redis). */
async function writeBehindChecks(
  config: ResolvedConfig,
  writeBehind: readonly string[],
  checks: DoctorCheck[],
): Promise<void> {
  const store = new WriteBehindStore(config);
  try {
    for (const entity of writeBehind) {
      await check(checks, 'write-behind', 'see the Redis error', async () => {
        const s = await store.stats(entity);
        const detail = `write-behind ${entity}: ${s.pending} pending, oldest ${formatMs(s.oldestAgeMs)}, ${s.dead} dead letter${s.dead === 1 ? '' : 's'}`;
        if (s.dead > 0)
          return {
            name: 'write-behind',
            status: 'warn',
            detail: `${detail}: PostgreSQL refused some writes for good`,
            fix: `new WriteBehindStore(config).deadLetters('${entity}') lists them with their errors; fix the rows, then re-apply or delete ${store.keys.writeBehindDead(entity)} (on the queues' Redis)`,
          };
        if (s.oldestAgeMs > WRITE_BEHIND_OLDEST_WARN_MS)
          return {
            name: 'write-behind',
            status: 'warn',
            detail: `${detail}: flushes are not keeping up (above ${formatMs(WRITE_BEHIND_OLDEST_WARN_MS)})`,
            fix: 'is walcache jobs running? Check its logs and walcache_jobs_failures_total',
          };
        return ok('write-behind', detail);
      });
    }
  } finally {
    await store.close();
  }
}

/** Where an endpoint is, for messages: its redacted URL, or its topology. */
function whereIs(endpoint: RedisEndpoint): string {
  return endpoint.cluster || endpoint.sentinel
    ? describeEndpoint(endpoint)
    : redactUrl(endpoint.url);
}

/**
 * What the client found: one server, a Sentinel-managed master, or a cluster (its state,
 * masters, replicas per master, slots served). A cluster that is not `ok`, or a master
 * without a replica, is a warning: a failover would lose that shard's entries.
 */
async function topologyCheck(client: RedisClient): Promise<DoctorCheck> {
  if (!isCluster(client)) {
    const role = /^role:(.*)$/m.exec(await client.info('replication'))?.[1]?.trim();
    const sentinel = client.options.sentinels ? `sentinel master "${client.options.name}"` : '';
    // Behind Sentinel the options hold no address: the connection knows the master's.
    const where = `${client.stream?.remoteAddress ?? client.options.host ?? '?'}:${client.stream?.remotePort ?? client.options.port ?? '?'}`;
    return ok(
      'redis-topology',
      `${sentinel ? `${sentinel} at ${where}` : `one server`} (role ${role ?? 'unknown'})`,
    );
  }
  const info = String(await client.cluster('INFO'));
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  const nodes = String(await client.cluster('NODES'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.split(' '));
  const primaries = nodes.filter((n) => n[2]?.includes('master') && !n[2]?.includes('fail'));
  const replicasOf = (id: string) =>
    nodes.filter((n) => n[3] === id && !n[2]?.includes('fail')).length;
  const bare = primaries.filter((n) => replicasOf(n[0] ?? '') === 0).map((n) => n[1]);
  const state = field('cluster_state');
  const slots = field('cluster_slots_ok');
  const replicas = nodes.filter((n) => n[2]?.includes('slave') && !n[2]?.includes('fail')).length;
  const failed = nodes.filter((n) => n[2]?.includes('fail')).length;
  const detail = `cluster ${state ?? '?'}: ${primaries.length} masters, ${replicas} replicas${failed > 0 ? `, ${failed} failed` : ''}, ${slots ?? '?'}/16384 slots served`;
  if (state !== 'ok')
    return {
      name: 'redis-topology',
      status: 'fail',
      detail,
      fix: 'redis-cli --cluster check <node>: some slots are not served',
    };
  if (bare.length > 0)
    return {
      name: 'redis-topology',
      status: 'warn',
      detail: `${detail}; no replica for ${bare.join(', ')}`,
      fix: 'add a replica per master (redis-cli --cluster add-node --cluster-slave)',
    };
  return ok('redis-topology', `${detail}, each master replicated`);
}

/**
 * INFO of a server. Of a cluster, every master's (the settings are per node, and each
 * master holds its own share of the keys): appendonly only if every master has it, and
 * the eviction settings of the master that may lose most (one that may evict keys
 * without a TTL, else one that refuses writes once full), else the first's.
 */
async function readRedisInfo(client: RedisClient): Promise<RedisInfo> {
  const nodes = masters(client);
  const infos = await Promise.all(
    (nodes.length > 0 ? nodes : [client]).map(async (node) => parseInfo(await node.info())),
  );
  const first = infos[0] as RedisInfo;
  const worst =
    infos.find((i) => mayEvictWriteBehind(i.policy ?? null)) ??
    infos.find((i) => i.policy === 'noeviction' && i.maxmemory > 0) ??
    first;
  return {
    ...first,
    aof: infos.every((i) => i.aof),
    maxmemory: worst.maxmemory,
    policy: worst.policy,
  };
}

function parseInfo(text: string): RedisInfo {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(text)?.[1]?.trim();
  return {
    runId: field('run_id'),
    version: field('redis_version'),
    aof: field('aof_enabled') === '1',
    maxmemory: Number(field('maxmemory') ?? 0),
    policy: field('maxmemory_policy'),
  };
}

// --- shared helpers (also used by stats) ----------------------------------------------

/**
 * A plain ioredis client for operator commands: not connected until `connect()`.
 * `retry: false` gives up after the first failed connection (doctor); `true` keeps
 * reconnecting (stats --watch).
 */
export function openRedis(
  endpoint: RedisEndpoint,
  name: string,
  connectTimeoutMs: number,
  retry: boolean,
): RedisClient {
  const client = createRedisClient(endpoint, {
    connectionName: name,
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    commandTimeout: 5_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: retry
      ? (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 3_000)
      : () => null,
  });
  // ioredis reports the cause (ECONNREFUSED, auth) as an event and rejects commands with
  // "Connection is closed.": keep the cause for the error message.
  client.on('error', (error: Error) => lastErrors.set(client, error));
  // A cluster reports a seed it could not reach this way.
  client.on('node error', (error: Error) => lastErrors.set(client, error));
  return client;
}

const lastErrors = new WeakMap<RedisClient, Error>();

/** The last connection error of a client from `openRedis`. */
export function lastRedisError(client: RedisClient): Error | undefined {
  return lastErrors.get(client);
}

/** Connects a client from `openRedis`; a failure throws the cause, not "Connection is closed". */
export async function connectRedis(client: RedisClient): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    throw lastErrors.get(client) ?? error;
  }
}

/**
 * An engine over a client the caller owns, without L1 or the bus (no subscription): for
 * reading the cache's own keys (the worker's heartbeat). `close()` leaves the client open.
 */
export function detachedEngine(config: ResolvedConfig, redis: RedisClient): CacheEngine {
  return new CacheEngine({
    // It reads write-behind state, never an entry: it needs no encryption keys.
    config: {
      ...config,
      l1: { ...config.l1, enabled: false },
      bus: { ...config.bus, enabled: false },
      encryption: { ...config.encryption, all: false },
    },
    redis,
  });
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function ok(name: string, detail: string): DoctorCheck {
  return { name, status: 'ok', detail };
}

/** An error's message; Node's AggregateError (a refused dual-stack connect) has none of its own. */
export function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && !error.message && error.errors.length > 0)
    return errorMessage(error.errors[0]);
  if (error instanceof Error)
    return error.message || (error as { code?: string }).code || error.name;
  return String(error);
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

/**
 * Runs one check; its result (or the error it threw, as a `fail`) is appended.
 * Resolves true when the check did not fail.
 */
async function check(
  checks: DoctorCheck[],
  name: string,
  fix: string,
  run: () => Promise<DoctorCheck>,
  describe: (message: string) => string = (message) => `${name} check failed: ${message}`,
): Promise<boolean> {
  try {
    const result = await run();
    checks.push(result);
    return result.status !== 'fail';
  } catch (error) {
    if (error instanceof SetupError) {
      checks.push({ name, status: 'fail', detail: firstLine(error.message), fix: error.fix });
    } else {
      const message = errorMessage(error);
      checks.push({ name, status: 'fail', detail: describe(message), fix });
    }
    return false;
  }
}
