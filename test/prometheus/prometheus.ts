/**
 * A real Prometheus server for the observability suite: Debian's `prometheus` binary on 127.0.0.1, a free port and
 * a temporary data directory, plus small clients for its HTTP API. Missing binaries are an error, never a skip.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

/** Throws when `name` is not on PATH, saying how to install it. */
export function requireBinary(name: 'prometheus' | 'promtool'): string {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return name;
  } catch {
    throw new Error(`${name} is not installed: this suite needs a real Prometheus (Debian: apt-get install -y prometheus)`);
  }
}

export { freePort } from '../helpers/wait.js';
/** One series of a query answer (`matrix` or `vector`), values as Prometheus sends them. */
export interface Series {
  metric: Record<string, string>;
  values?: [number, string][];
  value?: [number, string];
}

/** A running Prometheus. */
export interface PrometheusHandle {
  readonly url: string;
  readonly proc: ChildProcess;
  readonly output: string[];
  /** GET on the HTTP API; throws on a non-success status with Prometheus's error text. */
  api<T>(path: string, params?: Record<string, string | string[]>): Promise<T>;
  /** `query_range` from `startSec` to now with `stepSec`. */
  queryRange(expr: string, startSec: number, stepSec?: number): Promise<Series[]>;
  /** Instant `query` at now. */
  query(expr: string): Promise<Series[]>;
  stop(): Promise<void>;
}

/** Starts `prometheus` with `configFile`, storing into `dir/data`; resolves when `/-/ready` answers 200. */
export async function startPrometheus(configFile: string, dir: string, port: number): Promise<PrometheusHandle> {
  const proc = spawn(
    requireBinary('prometheus'),
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  proc.stdout.on('data', (d: Buffer) => output.push(d.toString()));
  proc.stderr.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = once(proc, 'exit');
  const url = `http://127.0.0.1:${port}`;

  async function api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const one of Array.isArray(v) ? v : [v]) search.append(k, one);
    const res = await fetch(`${url}${path}?${search.toString()}`);
    const body = (await res.json()) as { status: string; data: T; error?: string; errorType?: string };
    if (!res.ok || body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${res.status} ${body.errorType ?? ''} ${body.error ?? ''}`);
    return body.data;
  }

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${output.join('')}`);
    try {
      const res = await fetch(`${url}/-/ready`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`prometheus not ready after 30 s: ${output.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    proc,
    output,
    api,
    async queryRange(expr, startSec, stepSec = 1) {
      const end = Date.now() / 1000;
      const data = await api<{ result: Series[] }>('/api/v1/query_range', { query: expr, start: String(startSec), end: String(end), step: String(stepSec) });
      return data.result;
    },
    async query(expr) {
      const data = await api<{ result: Series[] }>('/api/v1/query', { query: expr });
      return data.result;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** Polls `probe` every 250 ms until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
