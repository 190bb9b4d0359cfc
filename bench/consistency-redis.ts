/**
 * Child process of bench/consistency.ts: owns the benchmark's private redis-server (the
 * shared one is never touched) and injects its faults. Without persistence, so a restart
 * comes back empty. Driven over IPC (bench/cdc-common.ts protocol).
 *
 * Requests: start { port } -> { pid }, freeze { ms } (SIGSTOP, then SIGCONT),
 * restart (SIGKILL, then a new empty server on the same port), stop.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { type Envelope, now, serve, sleep } from './cdc-common.js';
import { exitWithParent } from './children.js';

let server: ChildProcess | null = null;
let port = 0;

function ping(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(200, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

async function launch(): Promise<number> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
    ],
    { stdio: 'ignore' },
  );
  server = child;
  const deadline = Date.now() + 10_000;
  while (!(await ping())) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`redis-server on port ${port} did not start`);
    await sleep(20);
  }
  return child.pid as number;
}

async function kill(): Promise<void> {
  const s = server;
  server = null;
  if (!s || s.exitCode !== null || s.signalCode !== null) return;
  const exited = new Promise((resolve) => s.once('exit', resolve));
  s.kill('SIGKILL');
  await exited;
}

async function handle(message: Envelope): Promise<Envelope> {
  switch (message.type) {
    case 'start':
      port = Number(message.port);
      return { type: 'started', pid: await launch() };
    case 'freeze': {
      const s = server as ChildProcess;
      const stoppedAt = now();
      s.kill('SIGSTOP');
      try {
        await sleep(Number(message.ms));
      } finally {
        s.kill('SIGCONT');
      }
      return { type: 'resumed', stoppedAt, resumedAt: now() };
    }
    case 'restart': {
      const downAt = now();
      await kill();
      const pid = await launch();
      return { type: 'restarted', downAt, upAt: now(), pid };
    }
    case 'stop':
      await kill();
      setImmediate(() => process.disconnect?.());
      return { type: 'stopped' };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
}

serve(handle);
exitWithParent(kill);
process.send?.({ type: 'ready' });
