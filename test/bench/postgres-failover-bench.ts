/**
 * Failover time, file backend against PostgreSQL, in the same run (issue #16): `kill -9` of the daemon that polls,
 * then the time until a status request reaches the simulator again.
 *
 * - file: one daemon on a state directory; after the kill a new one starts at once on the same directory (what a
 *   supervisor that restarts at once does at best: Kubernetes adds its own restart delay and, when the node died,
 *   the volume's move). The figure includes the new process's start.
 * - postgres: an owner and a standby already connected (`state.postgres.lease` = `leaseMs`); after the kill the
 *   standby takes the account over when the lease lapses. Before each round a new standby is started and waits.
 *
 * Both poll `batches` pending batches (never settling) from one in-process simulator. The daemons run from
 * source through tsx (no build needed), so the file figure carries tsx's start-up too; `startMs` shows it apart.
 *
 *   npm run bench -- failover           (1000 batches, 3 rounds, lease 3 s; `--smoke`: 200 batches, 2 rounds)
 *   npx tsx test/bench/postgres-failover-bench.ts [batches] [rounds] [leaseMs]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { startTestPostgres } from '../helpers/postgres-server.js';
import { formatTable } from './table.js';

/** Options of {@link benchFailover}. */
export interface FailoverBenchOptions {
  /** Pending batches the daemons poll. @default 1000 */
  batches?: number;
  /** Kills per backend. @default 3 */
  rounds?: number;
  /** `state.postgres.lease`. @default 3000 */
  leaseMs?: number;
}

/** One kill and what followed, in ms after the kill. */
export interface FailoverRun {
  /** Until the replacement logged `iot-batch-watcher running` (file: the new process; postgres: the standby). */
  runningMs: number;
  /** Until the first status request after the kill reached the simulator. */
  pollingMs: number;
}

/** Result of {@link benchFailover}. */
export interface FailoverBenchResult {
  batches: number;
  rounds: number;
  leaseMs: number;
  /** Spawn to `running` of a fresh file daemon with an empty state (tsx start-up + config + ledger), median. */
  fileColdStartMs: number;
  file: FailoverRun[];
  postgres: FailoverRun[];
  fileMedianMs: number;
  postgresMedianMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
}

async function waitFor<T>(check: () => T | null, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`failover bench: no ${what} within ${timeoutMs} ms`);
    await sleep(10);
  }
}

function firstStatusAfter(sim: SimulatorHandle, t: number): number | null {
  const e = sim.control.requestLog().find((x) => x.action === 'QueryBatchRegisterDeviceStatus' && x.at > t);
  return e ? e.at : null;
}

function lineTime(child: Child, pattern: RegExp): number | null {
  const line = child.stdout.find((l) => pattern.test(l));
  if (!line) return null;
  const time = (JSON.parse(line) as { time?: string }).time;
  return time ? Date.parse(time) : null;
}

/** Waits for a stdout line; fails at once when the child exits first (a config error, a crash). */
async function line(child: Child, pattern: RegExp, timeoutMs: number): Promise<void> {
  await Promise.race([
    child.waitFor(pattern, timeoutMs),
    child.exited.then((e) => {
      throw new Error(`failover bench: the daemon exited (${e.code ?? e.signal}) before ${pattern}: ${child.stderr.join('').slice(0, 500)}`);
    }),
  ]);
}

async function kill9(child: Child): Promise<number> {
  const at = Date.now();
  child.proc.kill('SIGKILL');
  await child.exited;
  return at;
}

/** Runs both backends against one simulator and one throwaway PostgreSQL server. */
export async function benchFailover(options: FailoverBenchOptions = {}): Promise<FailoverBenchResult> {
  const batches = options.batches ?? 1000;
  const rounds = options.rounds ?? 3;
  const leaseMs = options.leaseMs ?? 3000;
  const server = await startTestPostgres({ durable: true });
  const sim = await startSimulator({ port: 0, seed: 16, timeScale: 1, requestLogLimit: 200_000 });
  const dir = await mkdtemp(join(tmpdir(), 'ibw-failover-bench-'));
  const children: Child[] = [];
  const spawn = (config: string): Child => {
    const c = runCli(['run', '--config', config], { ...SIM_ENV, IBW_DATABASE_URL: server.url });
    children.push(c);
    return c;
  };
  try {
    const ids = Array.from({ length: batches }, (_, i) => String(9_000_000 + i));
    for (const applyId of ids) sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 1, outcome: 'never' });
    const write = async (name: string, state: string): Promise<string> => {
      const file = join(dir, `${name}.yaml`);
      await writeFile(
        file,
        [
          `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
          'polling: { initialDelay: 200ms, maxDelay: 1s, timeout: 1h }',
          'rateLimit: { statusQps: 30, pageQps: 20, concurrency: 8 }',
          state,
          `output: { resultsDir: "${join(dir, `results-${name}`)}" }`,
          'http: { listen: "off" }',
          'batches:',
          ...ids.map((id) => `  - { applyId: "${id}", productKey: a1SimProduct1 }`),
          '',
        ].join('\n'),
      );
      return file;
    };
    const fileConfig = await write('file', `state: { dir: "${join(dir, 'state-file')}" }`);
    const pgConfig = await write('postgres', `state: { dir: "${join(dir, 'state-pg')}", backend: postgres, postgres: { schema: ibw_failover, lease: ${leaseMs}ms } }`);
    const running = /iot-batch-watcher running/;

    // ---- file: kill -9, restart at once on the same directory ----
    const file: FailoverRun[] = [];
    const coldStarts: number[] = [];
    let t0 = Date.now();
    let owner = spawn(fileConfig);
    await line(owner, running, 120_000);
    coldStarts.push(Date.now() - t0);
    for (let r = 0; r < rounds; r += 1) {
      await sleep(1500); // polling in its stride
      const killedAt = await kill9(owner);
      owner = spawn(fileConfig);
      await line(owner, running, 120_000);
      const polled = await waitFor(() => firstStatusAfter(sim, killedAt), 120_000, 'status request after the kill');
      file.push({ runningMs: (lineTime(owner, running) ?? Date.now()) - killedAt, pollingMs: polled - killedAt });
    }
    await kill9(owner);

    // ---- postgres: kill -9 the owner, a connected standby takes over ----
    const postgres: FailoverRun[] = [];
    t0 = Date.now();
    owner = spawn(pgConfig);
    await line(owner, running, 120_000);
    coldStarts.push(Date.now() - t0);
    for (let r = 0; r < rounds; r += 1) {
      const standby = spawn(pgConfig);
      await line(standby, /standing by: another replica owns the account/, 120_000);
      await sleep(1500);
      const killedAt = await kill9(owner);
      await line(standby, running, leaseMs + 60_000);
      const polled = await waitFor(() => firstStatusAfter(sim, killedAt), leaseMs + 60_000, 'status request after the kill');
      postgres.push({ runningMs: (lineTime(standby, running) ?? Date.now()) - killedAt, pollingMs: polled - killedAt });
      owner = standby;
    }
    await kill9(owner);
    return {
      batches,
      rounds,
      leaseMs,
      fileColdStartMs: median(coldStarts),
      file,
      postgres,
      fileMedianMs: median(file.map((x) => x.pollingMs)),
      postgresMedianMs: median(postgres.map((x) => x.pollingMs)),
    };
  } finally {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    await sim.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Prints the comparison as a table. */
export function printFailover(r: FailoverBenchResult): void {
  const f = (n: number): string => n.toFixed(0);
  console.log(
    `\n5b. Failover after kill -9: ${r.batches} pending batches, ${r.rounds} kills per backend, ` +
      `postgres lease ${r.leaseMs} ms (a fresh daemon starts in ${f(r.fileColdStartMs)} ms here, through tsx)`,
  );
  const rows = (['file', 'postgres'] as const).map((b) => [
    b === 'file' ? 'file (restarted at once)' : 'postgres (connected standby)',
    r[b].map((x) => f(x.runningMs)).join(', '),
    r[b].map((x) => f(x.pollingMs)).join(', '),
    f(b === 'file' ? r.fileMedianMs : r.postgresMedianMs),
  ]);
  console.log(formatTable(['backend', 'kill → running, ms', 'kill → first poll, ms', 'median kill → poll, ms'], rows));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [batches, rounds, leaseMs] = process.argv.slice(2).map(Number);
  const result = await benchFailover({
    ...(batches ? { batches } : {}),
    ...(rounds ? { rounds } : {}),
    ...(leaseMs ? { leaseMs } : {}),
  });
  printFailover(result);
  console.log(JSON.stringify(result));
}
