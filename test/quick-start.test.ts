import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  deleteByPrefix,
  keysMatching,
  REDIS_URL,
  ROOT,
  redisEnv,
  testRedis,
  uniquePrefix,
  waitFor,
} from './helpers.js';
import { DATABASE_URL, PgScope } from './pg-helpers.js';
import { scratchProject } from './project-helpers.js';

/**
 * docs/quick-start.md, run as a newcomer would run it. Each block after a
 * `<!-- quick-start: ... -->` comment is taken from the page, in its order:
 *
 *   sql <name>     run against the database (`app` renamed to this test's schema)
 *   file <path>    written into a scratch project (see scratchProject: `walcache`
 *                  resolves to this repository's sources, nothing is built)
 *   run            each `npx ...` line, run to a zero exit
 *   start <name>   one `npx ...` line, started and left running
 *
 * `npx walcache` is `node --import tsx src/cli/main.ts` of this repository and `npx tsx`
 * is `node --import tsx`. The only other changes: this test's own slot and publication
 * (`--slot`, `--publication` added to setup and worker), key prefix (WALCACHE_PREFIX)
 * and a free metrics port (WALCACHE_PORT=0), so it runs beside other tests.
 */
interface Block {
  readonly kind: string;
  readonly arg: string;
  readonly body: string;
}

const PAGE = join(ROOT, 'docs', 'quick-start.md');

function blocks(markdown: string): Block[] {
  const found: Block[] = [];
  const marked = /<!-- quick-start: (\S+)(?: (\S+))? -->\n```\w*\n([\s\S]*?)```/g;
  for (const m of markdown.matchAll(marked))
    found.push({ kind: m[1] as string, arg: m[2] ?? '', body: m[3] as string });
  return found;
}

/** The commands of a block: one a line, comments and blank lines dropped. */
function commands(body: string): string[][] {
  return body
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter((line) => line !== '')
    .map((line) => line.split(/\s+/));
}

describe('docs/quick-start.md', () => {
  const scope = new PgScope('quickstart');
  const project = scratchProject('quick-start');
  const prefix = uniquePrefix('quickstart');
  const slot = scope.slot();
  const publication = `${scope.schema}_pub`;
  const redis = testRedis();
  const children = new Map<string, { child: ChildProcess; output: string[] }>();
  const env = redisEnv({
    DATABASE_URL,
    WALCACHE_PREFIX: prefix,
    WALCACHE_PORT: '0',
    LOG_LEVEL: 'warn',
    // The service's own pg.Pool has no user in the URL: pg falls back to PGUSER, then USER.
    ...(process.env.PGUSER || process.env.USER ? {} : { PGUSER: userInfo().username }),
  });
  const killAll = () => {
    for (const { child } of children.values()) if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killAll);

  const page = blocks(readFileSync(PAGE, 'utf8'));
  const rename = (text: string) => text.replace(/\bapp\b/g, scope.schema);

  function argv(words: readonly string[]): string[] {
    const [npx, tool, ...args] = words;
    assert.equal(npx, 'npx', `a command of the page: ${words.join(' ')}`);
    if (tool === 'tsx') return ['--import', 'tsx', ...args];
    assert.equal(tool, 'walcache', `a command of the page: ${words.join(' ')}`);
    const isolate =
      args[0] === 'setup'
        ? ['--slot', slot, '--publication', publication]
        : args[0] === 'worker'
          ? ['--slot', slot]
          : [];
    return ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), ...args, ...isolate];
  }

  function start(
    name: string,
    words: readonly string[],
  ): { child: ChildProcess; output: string[] } {
    const child = spawn(process.execPath, argv(words), {
      cwd: project.dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    child.stdout?.on('data', (d) => output.push(String(d)));
    child.stderr?.on('data', (d) => output.push(String(d)));
    const entry = { child, output };
    children.set(name, entry);
    return entry;
  }

  async function run(words: readonly string[]): Promise<string> {
    const { child, output } = start(words.join(' '), words);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, `${words.join(' ')}:\n${output.join('')}`);
    return output.join('');
  }

  before(async () => {
    await redis.ping();
  });

  after(async () => {
    for (const { child } of children.values()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const closed = new Promise((resolve) => child.once('close', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await closed;
      clearTimeout(timer);
    }
    process.removeListener('exit', killAll);
    await scope.q(`DROP PUBLICATION IF EXISTS "${publication}"`).catch(() => {});
    await scope.close();
    await deleteByPrefix(redis, prefix);
    redis.disconnect();
    project.remove();
  });

  it('marks the blocks the test runs, in the order of the steps', () => {
    assert.deepEqual(
      page.map((b) => `${b.kind}${b.arg ? ` ${b.arg}` : ''}`),
      [
        'sql schema',
        'file src/db.ts',
        'run',
        'start worker',
        'file src/service.ts',
        'start service',
        'sql update',
      ],
    );
    for (const b of page.filter((b) => b.kind === 'sql' || b.kind === 'run'))
      assert.match(b.body, /\bapp\b/, `the ${b.kind} block names the schema app`);
  });

  it('runs: init, setup, worker, the service; an UPDATE from SQL reaches the service', async (t) => {
    let service: { child: ChildProcess; output: string[] } | undefined;
    for (const block of page) {
      if (block.kind === 'sql' && block.arg === 'schema') {
        await scope.pool.query(rename(block.body));
      } else if (block.kind === 'file') {
        const path = join(project.dir, block.arg);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, rename(block.body));
      } else if (block.kind === 'run') {
        for (const words of commands(rename(block.body))) {
          const output = await run(words);
          // init in the project folder: the next commands find the file without --config.
          if (words[2] === 'init') assert.match(output, /^ {2}walcache setup {4}# /m, output);
        }
      } else if (block.kind === 'start') {
        const [words, ...more] = commands(rename(block.body));
        assert.ok(words !== undefined && more.length === 0, 'one command to start');
        const started = start(block.arg, words);
        if (block.arg === 'service') service = started;
      } else if (block.kind === 'sql' && block.arg === 'update') {
        assert.ok(service, 'the service runs before the update');
        const lines = () => service?.output.join('') ?? '';
        // The first read loads the row and caches it: its entry is in Redis.
        await waitFor(
          'the service reads Ada Lovelace',
          () => lines().includes('user 1: Ada Lovelace'),
          30_000,
        ).catch((error: Error) => assert.fail(`${error.message}; the service said:\n${lines()}`));
        const cached = await keysMatching(redis, `${prefix}*users:1*`);
        assert.ok(cached.length > 0, `users:1 is cached under ${prefix} (${REDIS_URL})`);
        const newName = /SET name = '([^']+)'/.exec(block.body)?.[1];
        assert.ok(newName, 'the update sets a name');
        const updated = Date.now();
        await scope.pool.query(rename(block.body));
        // Without the worker the old name would be served until the entry's TTL (60 s).
        await waitFor(
          `the service reads ${newName}`,
          () => lines().includes(`user 1: ${newName}`),
          20_000,
        ).catch((error: Error) =>
          assert.fail(
            `${error.message}; service:\n${lines()}\nworker:\n${children.get('worker')?.output.join('')}`,
          ),
        );
        const seenAfter = Date.now() - updated;
        assert.ok(seenAfter < 20_000, `the new name after ${seenAfter} ms`);
        t.diagnostic(
          `the service printed the new name ${seenAfter} ms after the UPDATE (it reads once a second)`,
        );
      } else {
        assert.fail(`a block this test does not know: ${block.kind} ${block.arg}`);
      }
    }
    const config = readFileSync(join(project.dir, 'walcache.config.ts'), 'utf8');
    assert.match(config, new RegExp(`table: '${scope.schema}\\.users'`));
    assert.match(config, /deny: \['password_hash'\]/);
    const worker = children.get('worker');
    assert.equal(
      worker?.child.exitCode,
      null,
      `the worker still runs:\n${worker?.output.join('')}`,
    );
  });

  it("the page's TypeScript type-checks: the Database type, the config init wrote, the service", async () => {
    // As the user's tsc would see it, with this repository's compiler options; the scratch
    // `walcache` package points at the sources with a .ts path, hence allowImportingTsExtensions.
    writeFileSync(
      join(project.dir, 'tsconfig.json'),
      `${JSON.stringify({
        extends: join(ROOT, 'tsconfig.json'),
        compilerOptions: { rootDir: '/', noEmit: true, allowImportingTsExtensions: true },
        include: ['src', 'walcache.config.ts'],
      })}\n`,
    );
    const tsc = spawn(
      process.execPath,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'],
      {
        cwd: project.dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.set('tsc', { child: tsc, output: [] });
    let output = '';
    tsc.stdout?.on('data', (d) => {
      output += d;
    });
    tsc.stderr?.on('data', (d) => {
      output += d;
    });
    const code = await new Promise<number | null>((resolve) => tsc.on('close', resolve));
    assert.equal(code, 0, output);
  });

  it('the service and the worker stop on SIGTERM and exit 0 (every connection closed)', async () => {
    for (const name of ['service', 'worker']) {
      const entry = children.get(name);
      assert.ok(entry, name);
      const { child, output } = entry;
      const closed = new Promise<[number | null, string | null]>((resolve) =>
        child.once('close', (code, signal) => resolve([code, signal])),
      );
      child.kill('SIGTERM');
      const timeout = new Promise<'timeout'>((resolve) =>
        setTimeout(() => resolve('timeout'), 10_000).unref(),
      );
      const result = await Promise.race([closed, timeout]);
      assert.deepEqual(result, [0, null], `${name}:\n${output.join('')}`);
    }
  });

  it("the config the page shows is what init writes for the page's table", () => {
    const markdown = readFileSync(PAGE, 'utf8');
    const shown = /For the table above it writes:\n\n```ts\n([\s\S]*?)```/.exec(markdown)?.[1];
    assert.ok(shown, 'the page shows the config');
    const written = readFileSync(join(project.dir, 'walcache.config.ts'), 'utf8');
    // The page leaves out the file's opening comments.
    assert.ok(written.includes(rename(shown)), `written:\n${written}\nshown:\n${shown}`);
  });
});
