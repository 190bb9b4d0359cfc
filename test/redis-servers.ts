import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './helpers.js';

/**
 * Servers not stopped yet: killed when the test process exits however it ends (a failed
 * hook, an uncaught error), so no orphan keeps a port or gossips to a later test's nodes.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A redis-server of the test's own, on a free loopback port, in a temporary directory. */
export interface PrivateRedis {
  readonly port: number;
  readonly dir: string;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal (SIGKILL a master, SIGSTOP a lagging replica, SIGCONT it). */
  signal(signal: NodeJS.Signals): void;
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
  const extra = args(dir, port);
  // A config file (sentinel.conf) must come first on redis-server's command line.
  const file = extra[0] !== undefined && !extra[0].startsWith('--') ? extra.splice(0, 1) : [];
  const child = spawn(
    'redis-server',
    [...file, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      reject(new Error(`redis-server did not start:\n${output}`));
    }, 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk;
      // A server says it is ready; a sentinel, that it monitors its master.
      if (/Ready to accept connections|\+monitor master/.test(output)) {
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
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    stop: () => {
      stopping ??= stop(child).finally(() => rmSync(dir, { recursive: true, force: true }));
      return stopping;
    },
  };
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  child.kill('SIGCONT'); // a stopped server cannot act on SIGTERM
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
