/**
 * A throwaway PostgreSQL 15 server for tests and benchmarks: `initdb` into a temporary directory, then
 * `pg_ctl start` listening on 127.0.0.1 only, on a free port, with no Unix socket.
 *
 * `initdb` refuses to run as root, so under root (CI runs `.ci/run` as root) the server runs as the `postgres`
 * user through `su`; the temporary directory is then handed to that user. As any other user it runs as that
 * user. Durability settings are off (fsync, synchronous_commit, full_page_writes) unless `durable` (benchmarks):
 * the data is thrown away.
 *
 * Host authentication is scram-sha-256 with a random password, so tests exercise a URL that carries a
 * password (and can check that it never reaches a log line).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where Debian/Ubuntu install PostgreSQL 15; `IBW_PG_BIN` overrides it. */
const DEFAULT_BIN = '/usr/lib/postgresql/15/bin';

/** A running test server. */
export interface TestPostgres {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  password: string;
  /** Milliseconds from the first initdb call until the server accepted connections. */
  startMs: number;
  /**
   * Stops the server at once (`-m immediate`: connections drop as in a crash) and keeps its data, so
   * {@link TestPostgres.resume} brings it back on the same port: "the database went away".
   */
  halt(): Promise<void>;
  /** Starts a halted server again (same data, port and password). */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** os.tmpdir() when every ancestor lets others through (the server runs as `postgres`), else /tmp. */
async function traversableTmp(): Promise<string> {
  let dir = tmpdir();
  const start = dir;
  for (;;) {
    if (((await stat(dir)).mode & 0o001) === 0) return '/tmp';
    const parent = dirname(dir);
    if (parent === dir) return start;
    dir = parent;
  }
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('cannot resolve the postgres user');
  return { uid, gid };
}

/**
 * Starts a server. Throws (with the server log when there is one) when it cannot start: callers fail, never
 * skip.
 */
export async function startTestPostgres(options: { bin?: string; durable?: boolean } = {}): Promise<TestPostgres> {
  const bin = options.bin ?? process.env.IBW_PG_BIN ?? DEFAULT_BIN;
  for (const tool of ['initdb', 'pg_ctl']) {
    if (!existsSync(join(bin, tool))) {
      throw new Error(`PostgreSQL test server: ${join(bin, tool)} not found (install postgresql-15 or set IBW_PG_BIN)`);
    }
  }
  const started = performance.now();
  const asRoot = process.getuid?.() === 0;
  const base = await mkdtemp(join(asRoot ? await traversableTmp() : tmpdir(), 'ibw-pg-'));
  const dataDir = join(base, 'data');
  const logFile = join(base, 'server.log');
  const pwFile = join(base, 'pw');
  const password = randomBytes(12).toString('hex');
  await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  if (asRoot) {
    // mkdtemp made `base` 0700 root: give it (and the password file) to postgres; os.tmpdir() is traversable.
    const { uid, gid } = await postgresIds();
    await chown(base, uid, gid);
    await chown(pwFile, uid, gid);
  }
  await chmod(base, 0o700);

  const exec = async (tool: string, args: string[]): Promise<void> => {
    const path = join(bin, tool);
    if (asRoot) {
      const cmd = [path, ...args].map(shellQuote).join(' ');
      await run('su', ['postgres', '-s', '/bin/bash', '-c', cmd], { cwd: base });
    } else {
      await run(path, args, { cwd: base });
    }
  };

  const port = await freePort();
  const serverOptions = [
    '-c listen_addresses=127.0.0.1', `-c port=${port}`, "-c unix_socket_directories=''",
    ...(options.durable ? [] : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
    '-c max_connections=200', '-c shared_buffers=32MB',
  ].join(' ');
  try {
    await exec('initdb', [
      '-D', dataDir, '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions',
      '--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${pwFile}`,
    ]);
    await exec('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '30', '-o', serverOptions, 'start']);
  } catch (err) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    await rm(base, { recursive: true, force: true }).catch(() => undefined);
    const detail = err instanceof Error ? err.message : String(err);
    throw new Error(`PostgreSQL test server did not start: ${detail}${log === '' ? '' : `\nserver log:\n${log}`}`, { cause: err });
  }
  const startMs = performance.now() - started;
  let stopped = false;
  let halted = false;
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    password,
    startMs,
    async halt() {
      if (stopped || halted) return;
      halted = true;
      await exec('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    },
    async resume() {
      if (stopped || !halted) return;
      await exec('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '30', '-o', serverOptions, 'start']);
      halted = false;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        if (!halted) await exec('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    },
  };
}
