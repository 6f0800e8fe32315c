/**
 * Benchmark "real-path": the whole daemon, started from its built CLI with a YAML file, against a plain loop over
 * the official SDK (sdk-loop.ts) doing the same work, both polling the simulator in a third process.
 *
 * Method (docs/benchmarks.md, "Real path"):
 * - The simulator: `node dist/cli.js simulator --port 0 --scenario FILE --qps QueryBatchRegisterDeviceStatus=0`,
 *   `batches` batches that never settle (random names, they stay in CREATE), every request logged at debug to a
 *   file, from which the benchmark counts the status polls of each window (the same count for both sides).
 * - The daemon: `node dist/cli.js run --config FILE`, statusQps 30, concurrency 8, devices.fetch off, polling
 *   delays uniform in [interval − 1 s, interval + 1 s] (initialDelay, maxDelay), so `batches / interval` polls a
 *   second in steady state (350 / 12 s ≈ 29 polls/s). Fresh state directory per run; default housekeeping
 *   (the scheduled reload every minute is part of what a user pays).
 * - The SDK loop: the same batches, each polled every `interval` (fixed), state as one JSON file written at
 *   most once a second; transpiled to plain JavaScript so that Node runs it without a loader, like dist/.
 * - Each run: start, wait until ready (daemon `/readyz` 200; loop prints its ready line), a warm-up (which holds
 *   every batch's first poll: `batches / statusQps` seconds at the budget), then a window of `windowMs` in
 *   which CPU (utime + stime of `/proc/PID/stat`) and context switches (every thread) are read at both ends;
 *   RSS (VmRSS) is sampled every 100 ms over the whole run. CPU per poll = CPU in the window / status polls the
 *   simulator logged in the window. The daemon's `/metrics` is read just outside the window (before the first
 *   and after the last `/proc` reading) to cross-check the poll count and count config reloads.
 * - The transport floor (floor-loop.ts, `floor: true`): the same polls on a bare undici pool, V3-signed, one timer
 *   per poll, nothing else; what no client can go below at this rate on this machine.
 * - Rounds alternate which side runs first; figures are medians over rounds.
 * - Idle: the daemon with 0 batches, CPU ms and context switches per second over `idleWindowMs`.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

import ts from 'typescript';

import { DISPATCH_TICK_MS } from '../../src/core/scheduler.js';

import {
  builtCli,
  countSimulatorRequests,
  freePort,
  httpGet,
  imageNodeOptions,
  promSum,
  REPO,
  SIM_AK,
  SIM_PRODUCT,
  SIM_SECRET,
  sleep,
  spawnNode,
  startSimulatorProcess,
  type ChildHandle,
  type SimulatorProcess,
} from './cli-child.js';
import { applyIdOf, configPathIn, daemonEnv, writeDaemonConfig, writeScenario } from './config-gen.js';
import { delta, median, RssSampler, snapshot, type ProcDelta, type ProcSnapshot } from './proc.js';

const STATUS_ACTION = 'QueryBatchRegisterDeviceStatus';

export interface RealPathOptions {
  /** Pending batches. @default 350 */
  batches?: number;
  /** Mean poll interval per batch, ms (the daemon draws in ±1 s around it). @default 12000 */
  intervalMs?: number;
  /** The daemon's statusQps. @default 30 */
  statusQps?: number;
  /**
   * Wait after ready before the window: every batch's first poll, and the JIT's warm-up (at 29 polls a second the
   * hot functions are still being optimised for a minute or more, on background threads that count in the CPU).
   * @default max(90 s, batches/statusQps + 8 s)
   */
  warmupMs?: number;
  /** Measured window per run. @default 30000 */
  windowMs?: number;
  /** Rounds (each = one daemon run + one SDK-loop run + one floor run + one idle run). @default 3 */
  rounds?: number;
  /** Also measure the transport floor (floor-loop.ts) each round. @default true */
  floor?: boolean;
  /**
   * The floor's timing (FLOOR_TICK_MS): every this many ms it sends the polls due by then, as the daemon's dispatch
   * tick does; 0 = one loop and one wake-up per poll. @default DISPATCH_TICK_MS (100)
   */
  floorTickMs?: number;
  /**
   * With `floorTickMs` 0: the floor's loops start in groups of this many (FLOOR_BURST), so its polls leave that many
   * per wake-up. @default 1
   */
  floorBurst?: number;
  /** Idle daemon: warm-up and window. @default 5000 / 20000 */
  idleWarmupMs?: number;
  idleWindowMs?: number;
  /** Keep the work directory (configs, logs, state) for inspection. @default false */
  keep?: boolean;
  /** Node options of the daemon child (e.g. `--cpu-prof`). @default the image's, {@link imageNodeOptions} */
  daemonNodeArgs?: string[];
  /** Progress lines. @default console.log */
  log?: (line: string) => void;
}

/** Figures of one measured run of one side. */
export interface SideRun {
  side: Side;
  round: number;
  order: number;
  windowMs: number;
  /** Status polls the simulator logged in the window. */
  polls: number;
  pollsPerSec: number;
  cpuMs: number;
  userMs: number;
  systemMs: number;
  cpuMsPerPoll: number;
  userMsPerPoll: number;
  systemMsPerPoll: number;
  /** CPU of the main thread (event loop) alone, per poll; the rest is other threads (fs thread pool, GC). */
  mainThreadCpuMsPerPoll: number;
  ctxSwitchesPerSec: number;
  ctxSwitchesPerPoll: number;
  mainThreadCtxSwitchesPerSec: number;
  /** CPU from ready to the end of the window / polls in that span (includes each batch's first poll). */
  cpuMsPerPollFromReady: number;
  /** ms from spawn to ready. */
  startMs: number;
  maxRssMb: number;
  /** The side's own count of polls in the window (daemon: ibw_api_requests_total delta), for a cross-check. */
  ownPollCount: number | null;
  /** Daemon only: config reloads counted by ibw_config_reloads_total during the window. */
  reloadsInWindow: number | null;
  /** Status polls that were not answered `ok` (throttled, errors) in the window. */
  notOk: number;
  /**
   * Most status requests the simulator logged in any 1-second sliding window from ready to the end of the window
   * (the daemon's budget is `statusQps`; the first polls of every batch are in this span).
   */
  busiestSecond: number;
}

/** The measured programs: the daemon, the official-SDK loop, the transport floor. */
export type Side = 'daemon' | 'sdk' | 'floor';

export interface IdleRun {
  round: number;
  windowMs: number;
  cpuMsPerSec: number;
  ctxSwitchesPerSec: number;
  mainThreadCtxSwitchesPerSec: number;
  maxRssMb: number;
}

export interface RealPathResult {
  options: Required<Omit<RealPathOptions, 'log' | 'daemonNodeArgs'>>;
  runs: SideRun[];
  idle: IdleRun[];
  median: {
    daemonCpuMsPerPoll: number;
    sdkCpuMsPerPoll: number;
    /** median over rounds of (daemon / sdk) of that round. */
    ratio: number;
    daemonCpuMsPerPollFromReady: number;
    daemonPollsPerSec: number;
    sdkPollsPerSec: number;
    daemonCtxSwitchesPerPoll: number;
    sdkCtxSwitchesPerPoll: number;
    daemonMaxRssMb: number;
    sdkMaxRssMb: number;
    idleCpuMsPerSec: number;
    idleCtxSwitchesPerSec: number;
    idleMainThreadCtxSwitchesPerSec: number;
    /** The transport floor (NaN without `floor`): CPU ms per poll, and daemon / floor, SDK loop / floor per round. */
    floorCpuMsPerPoll: number;
    floorCtxSwitchesPerPoll: number;
    daemonFloorRatio: number;
    sdkFloorRatio: number;
    /** The floor over the SDK loop: the lowest daemon / SDK ratio any client could reach (median of rounds). */
    floorSdkRatio: number;
  };
  target: { ratio: number; met: boolean };
  workDir: string | null;
  /** Node options the daemon child ran with. */
  daemonNodeArgs: string[];
}

/**
 * Transpiles sdk-loop.ts to plain JavaScript under data/bench/ (git- and eslint-ignored; module resolution from
 * there still finds the repository's node_modules).
 */
export function transpileSdkLoop(name = 'sdk-loop'): string {
  const src = readFileSync(resolve(import.meta.dirname, `${name}.ts`), 'utf8');
  const out = ts.transpileModule(src, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true, verbatimModuleSyntax: false },
  });
  const dir = resolve(REPO, 'data/bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, out.outputText);
  return file;
}

function msString(ms: number): string {
  return `${Math.round(ms)}ms`;
}

async function waitReady(url: string, child: ChildHandle, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null) throw new Error(`daemon exited with ${child.proc.exitCode} before /readyz`);
    try {
      const r = await httpGet(`${url}/readyz`, 5000);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) throw new Error(`daemon not ready within ${timeoutMs} ms`);
    await sleep(50);
  }
}

interface Ctx {
  sim: SimulatorProcess;
  work: string;
  o: Required<Omit<RealPathOptions, 'log' | 'daemonNodeArgs'>>;
  daemonNodeArgs: string[];
  sdkScript: string;
  floorScript: string;
  log: (line: string) => void;
}

interface Started {
  child: ChildHandle;
  rss: RssSampler;
  spawnedAt: number;
  readyAt: number;
  metricsUrl: string | null;
}

async function startDaemon(ctx: Ctx, name: string, batches: number): Promise<Started> {
  const dir = join(ctx.work, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = configPathIn(dir);
  const half = 1000;
  writeDaemonConfig(config, {
    endpoint: ctx.sim.url,
    stateDir: join(dir, 'state'),
    resultsDir: join(dir, 'results'),
    listen: `127.0.0.1:${port}`,
    batches,
    statusQps: ctx.o.statusQps,
    initialDelay: msString(ctx.o.intervalMs - half),
    maxDelay: msString(ctx.o.intervalMs + half),
  });
  const spawnedAt = performance.now();
  const child = spawnNode(builtCli(), ['run', '--config', config], {
    env: daemonEnv(),
    nodeArgs: ctx.daemonNodeArgs,
    stdoutFile: join(dir, 'daemon.log'),
    stderrFile: join(dir, 'daemon.err'),
    cwd: dir,
  });
  const rss = new RssSampler(child.pid, () => performance.now());
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child, 120_000);
  return { child, rss, spawnedAt, readyAt: performance.now(), metricsUrl: `${url}/metrics` };
}

async function startSdkLoop(ctx: Ctx, name: string): Promise<Started> {
  const dir = join(ctx.work, name);
  mkdirSync(dir, { recursive: true });
  const list = Array.from({ length: ctx.o.batches }, (_, i) => ({ productKey: SIM_PRODUCT, applyId: applyIdOf(i) }));
  const spawnedAt = performance.now();
  const child = spawnNode(ctx.sdkScript, [], {
    env: {
      SDK_LOOP_ENDPOINT: new URL(ctx.sim.url).host,
      SDK_LOOP_BATCHES: JSON.stringify(list),
      SDK_LOOP_INTERVAL_MS: String(ctx.o.intervalMs),
      SDK_LOOP_STATE: join(dir, 'state.json'),
      ALIBABA_CLOUD_ACCESS_KEY_ID: SIM_AK,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: SIM_SECRET,
    },
    stderrFile: join(dir, 'sdk-loop.err'),
    cwd: dir,
  });
  const rss = new RssSampler(child.pid, () => performance.now());
  await child.waitForLine(/^sdk-loop ready/, 60_000);
  return { child, rss, spawnedAt, readyAt: performance.now(), metricsUrl: null };
}

async function startFloorLoop(ctx: Ctx, name: string): Promise<Started> {
  const dir = join(ctx.work, name);
  mkdirSync(dir, { recursive: true });
  const list = Array.from({ length: ctx.o.batches }, (_, i) => ({ productKey: SIM_PRODUCT, applyId: applyIdOf(i) }));
  const spawnedAt = performance.now();
  const child = spawnNode(ctx.floorScript, [], {
    env: {
      FLOOR_ENDPOINT: ctx.sim.url,
      FLOOR_BATCHES: JSON.stringify(list),
      FLOOR_INTERVAL_MS: String(ctx.o.intervalMs),
      FLOOR_BURST: String(ctx.o.floorBurst),
      FLOOR_TICK_MS: String(ctx.o.floorTickMs),
      FLOOR_DIST: resolve(REPO, 'dist'),
      ALIBABA_CLOUD_ACCESS_KEY_ID: SIM_AK,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: SIM_SECRET,
    },
    stderrFile: join(dir, 'floor-loop.err'),
    cwd: dir,
  });
  const rss = new RssSampler(child.pid, () => performance.now());
  await child.waitForLine(/^floor-loop ready/, 60_000);
  return { child, rss, spawnedAt, readyAt: performance.now(), metricsUrl: null };
}

/** Most `action` requests logged by the simulator in any half-open 1-second window within [from, to). */
export function busiestSecond(logFile: string, action: string, fromEpochMs: number, toEpochMs: number): number {
  const times: number[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"simulator request"') || !line.includes(action)) continue;
    try {
      const rec = JSON.parse(line) as { time?: number; action?: string };
      if (rec.action === action && rec.time !== undefined && rec.time >= fromEpochMs && rec.time < toEpochMs) times.push(rec.time);
    } catch {
      // not a log line
    }
  }
  times.sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < times.length; i += 1) {
    while ((times[i] as number) - (times[j] as number) >= 1000) j += 1;
    max = Math.max(max, i - j + 1);
  }
  return max;
}

interface MetricsCounts {
  statusPolls: number;
  reloads: number;
}

async function readMetrics(url: string | null): Promise<MetricsCounts | null> {
  if (url === null) return null;
  const text = (await httpGet(url, 30_000)).body;
  return { statusPolls: promSum(text, 'ibw_api_requests_total', { action: STATUS_ACTION }), reloads: promSum(text, 'ibw_config_reloads_total') };
}

async function measureSide(ctx: Ctx, side: Side, round: number, order: number): Promise<SideRun> {
  const name = `r${round}-${side}`;
  const s =
    side === 'daemon' ? await startDaemon(ctx, name, ctx.o.batches) : side === 'sdk' ? await startSdkLoop(ctx, name) : await startFloorLoop(ctx, name);
  const pid = s.child.pid;
  try {
    const atReady: ProcSnapshot = snapshot(pid, s.readyAt);
    const readyEpoch = Date.now();
    await sleep(ctx.o.warmupMs);
    const m0 = await readMetrics(s.metricsUrl);
    const e0 = Date.now();
    const p0 = snapshot(pid, performance.now());
    await sleep(ctx.o.windowMs);
    const p1 = snapshot(pid, performance.now());
    const e1 = Date.now();
    const m1 = await readMetrics(s.metricsUrl);
    s.rss.stop();
    // NOTE: the simulator logs a request when it answers; give the last answers of the window time to land.
    await sleep(300);
    const counted = countSimulatorRequests(ctx.sim.logFile as string, STATUS_ACTION, e0, e1);
    const fromReady = countSimulatorRequests(ctx.sim.logFile as string, STATUS_ACTION, readyEpoch, e1);
    const d: ProcDelta = delta(p0, p1);
    const dReady = delta(atReady, p1);
    // NOTE: the simulator's debug log line is not a contract; fall back on the daemon's own counter if it changed.
    const own = m0 && m1 ? m1.statusPolls - m0.statusPolls : null;
    let polls = counted.total;
    if (polls === 0) {
      if (own === null || own === 0) throw new Error(`no status polls counted in the window (simulator log ${String(ctx.sim.logFile)})`);
      ctx.log(`  warning: the simulator log has no "simulator request" lines; using the daemon's ibw_api_requests_total (${own})`);
      polls = own;
    }
    const sec = d.wallMs / 1000;
    const run: SideRun = {
      side,
      round,
      order,
      windowMs: d.wallMs,
      polls,
      pollsPerSec: polls / sec,
      cpuMs: d.cpuMs,
      userMs: d.userMs,
      systemMs: d.systemMs,
      cpuMsPerPoll: d.cpuMs / polls,
      userMsPerPoll: d.userMs / polls,
      systemMsPerPoll: d.systemMs / polls,
      mainThreadCpuMsPerPoll: d.mainThreadCpuMs / polls,
      ctxSwitchesPerSec: d.ctxSwitches / sec,
      ctxSwitchesPerPoll: d.ctxSwitches / polls,
      mainThreadCtxSwitchesPerSec: d.mainThreadCtxSwitches / sec,
      cpuMsPerPollFromReady: dReady.cpuMs / fromReady.total,
      startMs: s.readyAt - s.spawnedAt,
      maxRssMb: s.rss.maxMb,
      ownPollCount: own,
      reloadsInWindow: m0 && m1 ? m1.reloads - m0.reloads : null,
      notOk: counted.total - counted.ok,
      busiestSecond: busiestSecond(ctx.sim.logFile as string, STATUS_ACTION, readyEpoch, e1),
    };
    ctx.log(
      `  round ${round} ${side.padEnd(6)} ${polls} polls in ${(sec).toFixed(1)} s (${run.pollsPerSec.toFixed(1)}/s${run.ownPollCount === null ? '' : `, own count ${run.ownPollCount}`}), ` +
        `${run.cpuMsPerPoll.toFixed(3)} ms CPU/poll (user ${run.userMsPerPoll.toFixed(3)}, sys ${run.systemMsPerPoll.toFixed(3)}; main thread ${run.mainThreadCpuMsPerPoll.toFixed(3)}), ` +
        `${run.ctxSwitchesPerSec.toFixed(0)} ctx sw/s, max RSS ${run.maxRssMb.toFixed(1)} MB, busiest second ${run.busiestSecond}` +
        (run.reloadsInWindow ? `, ${run.reloadsInWindow} reload(s) in window` : ''),
    );
    return run;
  } finally {
    s.rss.stop();
    await s.child.stop('SIGTERM', 30_000);
  }
}

async function measureIdle(ctx: Ctx, round: number): Promise<IdleRun> {
  const s = await startDaemon(ctx, `r${round}-idle`, 0);
  try {
    await sleep(ctx.o.idleWarmupMs);
    const p0 = snapshot(s.child.pid, performance.now());
    await sleep(ctx.o.idleWindowMs);
    const p1 = snapshot(s.child.pid, performance.now());
    s.rss.stop();
    const d = delta(p0, p1);
    const sec = d.wallMs / 1000;
    const run: IdleRun = {
      round,
      windowMs: d.wallMs,
      cpuMsPerSec: d.cpuMs / sec,
      ctxSwitchesPerSec: d.ctxSwitches / sec,
      mainThreadCtxSwitchesPerSec: d.mainThreadCtxSwitches / sec,
      maxRssMb: s.rss.maxMb,
    };
    ctx.log(
      `  round ${round} idle   ${run.cpuMsPerSec.toFixed(2)} ms CPU/s, ${run.ctxSwitchesPerSec.toFixed(1)} ctx sw/s (main thread ${run.mainThreadCtxSwitchesPerSec.toFixed(1)}), max RSS ${run.maxRssMb.toFixed(1)} MB`,
    );
    return run;
  } finally {
    s.rss.stop();
    await s.child.stop('SIGTERM', 30_000);
  }
}

/** Runs the real-path benchmark. */
export async function benchRealPath(options: RealPathOptions = {}): Promise<RealPathResult> {
  const batches = options.batches ?? 350;
  const statusQps = options.statusQps ?? 30;
  const o: Ctx['o'] = {
    batches,
    intervalMs: options.intervalMs ?? 12_000,
    statusQps,
    warmupMs: options.warmupMs ?? Math.max(90_000, Math.ceil((batches / statusQps) * 1000) + 8000),
    windowMs: options.windowMs ?? 30_000,
    rounds: options.rounds ?? 3,
    idleWarmupMs: options.idleWarmupMs ?? 5000,
    idleWindowMs: options.idleWindowMs ?? 20_000,
    keep: options.keep ?? false,
    floor: options.floor ?? true,
    floorBurst: options.floorBurst ?? 1,
    floorTickMs: options.floorTickMs ?? DISPATCH_TICK_MS,
  };
  const log = options.log ?? ((l: string) => console.log(l));
  builtCli();
  const work = mkdtempSync(join(tmpdir(), 'ibw-real-path-'));
  const scenario = join(work, 'scenario.yaml');
  writeScenario(scenario, batches);
  const sim = await startSimulatorProcess({
    scenarioPath: scenario,
    args: ['--qps', `${STATUS_ACTION}=0`],
    logFile: join(work, 'simulator.log'),
  });
  const ctx: Ctx = { sim, work, o, daemonNodeArgs: options.daemonNodeArgs ?? imageNodeOptions(), sdkScript: transpileSdkLoop(), floorScript: transpileSdkLoop('floor-loop'), log };
  log(`  simulator ${sim.url} (pid ${sim.child.pid}); work dir ${work}`);
  const runs: SideRun[] = [];
  const idle: IdleRun[] = [];
  try {
    for (let round = 1; round <= o.rounds; round += 1) {
      const base: Side[] = o.floor ? ['daemon', 'sdk', 'floor'] : ['daemon', 'sdk'];
      // Rotate which side runs first, so no side always runs on the same part of the machine's load.
      const order = base.map((_, i) => base[(i + round - 1) % base.length] as Side);
      for (const [i, side] of order.entries()) runs.push(await measureSide(ctx, side, round, i));
      idle.push(await measureIdle(ctx, round));
    }
  } finally {
    await sim.child.stop('SIGTERM', 10_000);
    if (!o.keep) rmSync(work, { recursive: true, force: true });
  }
  const of = (side: Side): SideRun[] => runs.filter((r) => r.side === side);
  /** Median over rounds of a / b (CPU per poll) of the same round. */
  const ratioOf = (a: Side, b: Side): number => {
    const ratios: number[] = [];
    for (let round = 1; round <= o.rounds; round += 1) {
      const x = runs.find((r) => r.round === round && r.side === a);
      const y = runs.find((r) => r.round === round && r.side === b);
      if (x && y) ratios.push(x.cpuMsPerPoll / y.cpuMsPerPoll);
    }
    return ratios.length === 0 ? Number.NaN : median(ratios);
  };
  const med = (side: Side, pick: (r: SideRun) => number): number => (of(side).length === 0 ? Number.NaN : median(of(side).map(pick)));
  const ratio = ratioOf('daemon', 'sdk');
  return {
    options: o,
    runs,
    idle,
    median: {
      daemonCpuMsPerPoll: med('daemon', (r) => r.cpuMsPerPoll),
      sdkCpuMsPerPoll: med('sdk', (r) => r.cpuMsPerPoll),
      ratio,
      daemonCpuMsPerPollFromReady: med('daemon', (r) => r.cpuMsPerPollFromReady),
      daemonPollsPerSec: med('daemon', (r) => r.pollsPerSec),
      sdkPollsPerSec: med('sdk', (r) => r.pollsPerSec),
      daemonCtxSwitchesPerPoll: med('daemon', (r) => r.ctxSwitchesPerPoll),
      sdkCtxSwitchesPerPoll: med('sdk', (r) => r.ctxSwitchesPerPoll),
      daemonMaxRssMb: med('daemon', (r) => r.maxRssMb),
      sdkMaxRssMb: med('sdk', (r) => r.maxRssMb),
      idleCpuMsPerSec: median(idle.map((r) => r.cpuMsPerSec)),
      idleCtxSwitchesPerSec: median(idle.map((r) => r.ctxSwitchesPerSec)),
      idleMainThreadCtxSwitchesPerSec: median(idle.map((r) => r.mainThreadCtxSwitchesPerSec)),
      floorCpuMsPerPoll: med('floor', (r) => r.cpuMsPerPoll),
      floorCtxSwitchesPerPoll: med('floor', (r) => r.ctxSwitchesPerPoll),
      daemonFloorRatio: ratioOf('daemon', 'floor'),
      sdkFloorRatio: ratioOf('sdk', 'floor'),
      floorSdkRatio: ratioOf('floor', 'sdk'),
    },
    target: { ratio: 1 / 3, met: ratio <= 1 / 3 },
    workDir: o.keep ? work : null,
    daemonNodeArgs: ctx.daemonNodeArgs,
  };
}
