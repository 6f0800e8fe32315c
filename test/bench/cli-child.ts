/**
 * Child processes of the real-path benchmarks: the BUILT CLI (`node dist/cli.js ...`, so no tsx or transpiler
 * is charged to the product), the simulator started through that CLI, and small HTTP and file helpers.
 *
 * `npm run build` must have run first: {@link builtCli} says so when `dist/cli.js` is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

export const REPO = resolve(import.meta.dirname, '../..');

/** The simulator's default AccessKey pair (DESIGN.md §9). */
export const SIM_AK = 'SimAccessKeyId';
export const SIM_SECRET = 'SimAccessKeySecret';
export const SIM_PRODUCT = 'a1SimProduct1';

/** Absolute path of the built CLI; throws a clear error when the build is missing. */
export function builtCli(): string {
  const cli = resolve(REPO, 'dist/cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first (the real-path benchmarks drive the built CLI)`);
  return cli;
}

/**
 * The node options the container image runs the daemon with: `NODE_OPTIONS` of the Dockerfile's `ENV`, split on
 * spaces ([] when it sets none). The benchmarks start the daemon with them, so they measure what the image runs.
 */
export function imageNodeOptions(dockerfile = resolve(REPO, 'Dockerfile')): string[] {
  const m = /^\s*(?:ENV\s+)?NODE_OPTIONS=("([^"]*)"|[^\s\\]*)/m.exec(readFileSync(dockerfile, 'utf8'));
  if (m === null) return [];
  const value = m[2] ?? m[1] ?? '';
  return value.split(' ').filter((a) => a !== '');
}

/** A running child process with its stdout split into lines. */
export interface ChildHandle {
  proc: ChildProcess;
  pid: number;
  /** Every stdout line so far (when stdout is piped). */
  lines: string[];
  /** Resolves with the first stdout line (past or future) that matches. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
  /** Sends `signal` (default SIGTERM) unless the child already exited, then waits for the exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Extra `node` flags before the script (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** Write stdout to this file instead of a pipe (then `lines` stays empty). */
  stdoutFile?: string;
  /** Write stderr to this file (default: kept in memory, last 64 kB). */
  stderrFile?: string;
  /** Run this program instead of node (e.g. `strace`), with node's path and arguments after `wrapperArgs`. */
  wrapper?: { command: string; args: string[] };
}

/** Every child still running, killed when this process exits so that an interrupted benchmark leaves none behind. */
const live = new Set<ChildProcess>();
let exitHook = false;
function track(proc: ChildProcess): void {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of live) p.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));
}

/** Spawns `node <script> ...args` and tracks its output. */
export function spawnNode(script: string, args: string[], options: SpawnOptions = {}): ChildHandle {
  const outFd = options.stdoutFile === undefined ? null : openSync(options.stdoutFile, 'a');
  const errFd = options.stderrFile === undefined ? null : openSync(options.stderrFile, 'a');
  const nodeArgv = [...(options.nodeArgs ?? []), script, ...args];
  const [command, argv] = options.wrapper ? [options.wrapper.command, [...options.wrapper.args, process.execPath, ...nodeArgv]] : [process.execPath, nodeArgv];
  const proc = spawn(command, argv, {
    cwd: options.cwd ?? REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...(options.env ?? {}) },
    stdio: ['ignore', outFd ?? 'pipe', errFd ?? 'pipe'],
  });
  if (outFd !== null) closeSync(outFd);
  if (errFd !== null) closeSync(errFd);
  if (proc.pid === undefined) throw new Error(`cannot spawn ${command}`);
  track(proc);
  const lines: string[] = [];
  const watchers: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      for (const w of [...watchers]) {
        if (w.pattern.test(line)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-65_536);
  });
  const exited = once(proc, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    atMs: performance.now(),
  }));
  const tail = (): string => (stderr || lines.slice(-20).join('\n')).slice(-4000);
  return {
    proc,
    pid: proc.pid,
    lines,
    exited,
    waitForLine(pattern, timeoutMs) {
      const hit = lines.find((l) => pattern.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((resolveLine, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${String(pattern)} within ${timeoutMs} ms; output:\n${tail()}`)), timeoutMs);
        watchers.push({
          pattern,
          resolve: (l) => {
            clearTimeout(timer);
            resolveLine(l);
          },
        });
        void exited.then((e) => {
          clearTimeout(timer);
          reject(new Error(`child exited (${String(e.code ?? e.signal)}) before a line matching ${String(pattern)}; output:\n${tail()}`));
        });
      });
    },
    async stop(signal = 'SIGTERM', timeoutMs = 60_000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export { freePort } from '../helpers/wait.js';
/** A simulator started through the built CLI. */
export interface SimulatorProcess {
  url: string;
  port: number;
  child: ChildHandle;
  /** Its stderr (pino JSON at `debug`: one line per request) when `logRequests` was set. */
  logFile: string | null;
}

export interface SimulatorProcessOptions {
  scenarioPath: string;
  /** Extra CLI flags (`--qps ...`, `--time-scale N`). */
  args?: string[];
  /** Log every request (LOG_LEVEL=debug) to this file, so the benchmark can count requests per window. */
  logFile?: string;
  readyTimeoutMs?: number;
}

/** Starts `node dist/cli.js simulator --port 0 --scenario FILE ...` and waits for its URL line. */
export async function startSimulatorProcess(o: SimulatorProcessOptions): Promise<SimulatorProcess> {
  const child = spawnNode(builtCli(), ['simulator', '--port', '0', '--scenario', o.scenarioPath, ...(o.args ?? [])], {
    env: { LOG_LEVEL: o.logFile === undefined ? 'warn' : 'debug' },
    ...(o.logFile === undefined ? {} : { stderrFile: o.logFile }),
  });
  const line = await child.waitForLine(/^simulator listening on /, o.readyTimeoutMs ?? 120_000);
  const url = line.replace(/^simulator listening on /, '').trim();
  return { url, port: Number(new URL(url).port), child, logFile: o.logFile ?? null };
}

/**
 * Counts the requests of `action` in a simulator debug log whose `time` (epoch ms) lies in `[fromEpochMs,
 * toEpochMs)`, by outcome.
 */
export function countSimulatorRequests(logFile: string, action: string, fromEpochMs: number, toEpochMs: number): { total: number; ok: number } {
  let total = 0;
  let ok = 0;
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"simulator request"') || !line.includes(action)) continue;
    let rec: { time?: number; action?: string; outcome?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue;
    }
    if (rec.action !== action || rec.time === undefined || rec.time < fromEpochMs || rec.time >= toEpochMs) continue;
    total += 1;
    if (rec.outcome === 'ok') ok += 1;
  }
  return { total, ok };
}

/** The answer of one HTTP GET, with its latency. */
export interface HttpAnswer {
  status: number;
  body: string;
  ms: number;
}

/** GET `url` on a fresh connection; rejects on a network error or after `timeoutMs`. */
export function httpGet(url: string, timeoutMs = 60_000): Promise<HttpAnswer> {
  const t0 = performance.now();
  return new Promise((resolveAnswer, reject) => {
    const req = request(url, { method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Sums the samples of a Prometheus counter whose labels contain every `labels` pair. */
export function promSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

/** Resolves after `ms` of wall time. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
