import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './helpers.js';

/**
 * docker-compose.yml, read as text (no Docker engine here, no YAML parser among the
 * dependencies): what `docker compose up -d --wait` needs (a healthcheck per service),
 * what walcache needs of PostgreSQL (wal2json, wal_level=logical, slots), and that the
 * URLs docs/quick-start.md gives Docker users reach what the file publishes.
 */
const compose = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
const quickStart = readFileSync(join(ROOT, 'docs', 'quick-start.md'), 'utf8');

/** The block nested under `key:` in `text` (the lines indented deeper than the key), or null. */
function section(text: string, key: string): string | null {
  const lines = text.split('\n');
  const indentOf = (line: string) => line.length - line.trimStart().length;
  const content = lines.filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  const top = Math.min(...content.map(indentOf));
  const at = lines.findIndex((l) => indentOf(l) === top && l.trim() === `${key}:`);
  if (at < 0) return null;
  const body: string[] = [];
  for (const line of lines.slice(at + 1)) {
    if (line.trim() !== '' && !line.trimStart().startsWith('#') && indentOf(line) <= top) break;
    body.push(line);
  }
  return body.join('\n');
}

/** `key: value` directly in a block (quotes removed), or null. */
function scalar(block: string, key: string): string | null {
  const m = new RegExp(`^\\s*${key}:\\s*(.+?)\\s*$`, 'm').exec(block);
  return m ? (m[1] as string).replace(/^["']|["']$/g, '') : null;
}

/** The items of a `- item` list block, quotes removed. */
function items(block: string | null): string[] {
  return (block ?? '')
    .split('\n')
    .map((l) => /^\s*-\s+(.+?)\s*$/.exec(l)?.[1])
    .filter((v): v is string => v !== undefined)
    .map((v) => v.replace(/^["']|["']$/g, ''));
}

function service(name: string): string {
  const services = section(compose, 'services');
  assert.ok(services, 'a services: section');
  const block = section(services, name);
  assert.ok(block, `a ${name} service`);
  return block;
}

/** The quick start's Docker block: `export DATABASE_URL=... REDIS_URL=...`. */
function dockerEnv(): Record<string, string> {
  const docker = quickStart.slice(quickStart.indexOf('## Services with Docker'));
  const block = /```sh\n([\s\S]*?)```/.exec(docker)?.[1] ?? '';
  assert.match(block, /^docker compose up -d --wait\b/m);
  assert.match(block, /^npm ci\b/m);
  assert.doesNotMatch(block, /npm run setup/);
  const env: Record<string, string> = {};
  for (const m of block.matchAll(/\b([A-Z_]+)=(\S+)/g)) env[m[1] as string] = m[2] as string;
  return env;
}

describe('docker-compose.yml', () => {
  it('every service has a healthcheck, so `docker compose up -d --wait` waits for it', () => {
    for (const name of ['postgres', 'redis']) {
      const healthcheck = section(service(name), 'healthcheck');
      assert.ok(healthcheck, `${name} has a healthcheck`);
      assert.match(healthcheck, /^\s*test:\s*\[\s*"CMD/m, `${name}: a healthcheck test`);
      assert.ok(Number(scalar(healthcheck, 'retries')) > 0, `${name}: retries`);
    }
    assert.match(compose, /docker compose up -d --wait/);
  });

  it('PostgreSQL runs with wal_level=logical, room for slots, and wal2json built in', () => {
    const postgres = service('postgres');
    const command = items(section(postgres, 'command'));
    const settings = command.filter((_, i) => command[i - 1] === '-c');
    assert.ok(settings.includes('wal_level=logical'), command.join(' '));
    assert.ok(
      settings.some((s) => /^max_replication_slots=[1-9]/.test(s)),
      command.join(' '),
    );
    assert.ok(
      settings.some((s) => /^max_wal_senders=[1-9]/.test(s)),
      command.join(' '),
    );
    const plugins = settings.find((s) => s.startsWith('output_plugin_libraries='));
    assert.match(plugins ?? '', /\bwal2json\b/);
    const context = scalar(section(postgres, 'build') ?? '', 'context');
    assert.ok(context, 'postgres is built from a Dockerfile');
    const dockerfile = readFileSync(join(ROOT, context, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /apt-get install .*postgresql-\$\{PG_MAJOR\}-wal2json/);
  });

  it('the URLs the quick start gives Docker users match the user, database and ports the file sets', () => {
    const env = dockerEnv();
    const db = new URL(env.DATABASE_URL ?? '');
    const postgres = service('postgres');
    const environment = section(postgres, 'environment') ?? '';
    // The image's superuser is POSTGRES_USER, postgres when unset; trust: no password.
    assert.equal(db.username, scalar(environment, 'POSTGRES_USER') ?? 'postgres');
    assert.equal(scalar(environment, 'POSTGRES_HOST_AUTH_METHOD'), 'trust');
    assert.equal(db.password, '');
    assert.equal(db.pathname, `/${scalar(environment, 'POSTGRES_DB')}`);
    assert.ok(items(section(postgres, 'ports')).includes(`${db.hostname}:${db.port}:5432`));
    const healthcheck = section(postgres, 'healthcheck') ?? '';
    assert.match(healthcheck, new RegExp(`-U ${db.username} -d ${db.pathname.slice(1)}`));
    const redis = new URL(env.REDIS_URL ?? '');
    assert.ok(
      items(section(service('redis'), 'ports')).includes(`${redis.hostname}:${redis.port}:6379`),
    );
    // Published on the loopback only: trust authentication must not face a network.
    for (const port of [
      ...items(section(postgres, 'ports')),
      ...items(section(service('redis'), 'ports')),
    ])
      assert.match(port, /^127\.0\.0\.1:/);
  });
});
