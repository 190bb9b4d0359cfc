import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './helpers.js';

/** A redis-server of the test's own, on a free loopback port, in a temporary directory. */
export interface PrivateRedis {
  readonly port: number;
  readonly dir: string;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `redis-server` with `args` (no persistence, loopback only) and waits until it
 * says it is ready. `files` are written into its directory first (ACL files, certs...).
 */
export async function startRedis(
  args: (dir: string, port: number) => string[],
  files: Record<string, string> = {},
): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'walcache-redis-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...args(dir, port)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start:\n${output}`)),
      10_000,
    );
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}):\n${output}`));
    });
  });
  child.removeAllListeners('exit');
  let stopping: Promise<void> | undefined;
  return {
    port,
    dir,
    stop: () => {
      stopping ??= stop(child).finally(() => rmSync(dir, { recursive: true, force: true }));
      return stopping;
    },
  };
}

/**
 * A Redis Cluster of the test's own: `masters` private servers (no replicas), the slots
 * split evenly between them; `args(i)` are added to server i's (its own settings, to make
 * masters differ). `nodes` are their `host:port` seeds.
 */
export async function startCluster(
  masters: number,
  args: (i: number) => string[] = () => [],
): Promise<{ nodes: string[]; stop(): Promise<void> }> {
  const servers = await Promise.all(
    Array.from({ length: masters }, (_, i) =>
      startRedis((_dir, port) => [
        '--port',
        String(port),
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        ...args(i),
      ]),
    ),
  );
  const stopAll = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  const admins = servers.map((s) => new Redis(s.port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
  try {
    for (const [i, admin] of admins.entries()) {
      const from = Math.floor((16384 * i) / masters);
      const to = Math.floor((16384 * (i + 1)) / masters) - 1;
      await admin.cluster('ADDSLOTSRANGE', from, to);
      if (i > 0) await admin.cluster('MEET', '127.0.0.1', (servers[0] as PrivateRedis).port);
    }
    await waitFor(
      'the private cluster ok',
      async () => {
        const states = await Promise.all(admins.map((a) => a.cluster('INFO')));
        return states.every((info) => String(info).includes('cluster_state:ok'));
      },
      15_000,
    );
  } catch (error) {
    await stopAll();
    throw error;
  } finally {
    for (const admin of admins) admin.disconnect();
  }
  return { nodes: servers.map((s) => `127.0.0.1:${s.port}`), stop: stopAll };
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 3_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Throwaway certificates: a CA, a server certificate for 127.0.0.1/localhost, a client certificate. */
export interface TestCerts {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  remove(): void;
}

export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'walcache-certs-'));
  const path = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(
    path('server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  writeFileSync(path('client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=walcache test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  for (const [name, cn] of [
    ['server', 'localhost'],
    ['client', 'walcache'],
  ] as const) {
    openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    );
  }
  return {
    dir,
    ca: path('ca.crt'),
    serverCert: path('server.crt'),
    serverKey: path('server.key'),
    clientCert: path('client.crt'),
    clientKey: path('client.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
