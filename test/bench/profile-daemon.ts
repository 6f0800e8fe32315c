/**
 * `npm run bench:profile`: where the built daemon's CPU, syscalls and wake-ups go, in the real-path steady state
 * (the same simulator, YAML and rate as real-path-bench.ts) and idle (0 batches). Not part of `npm run bench`.
 *
 * Per scenario (steady, idle), two daemon runs, because the profiler's sampling signals (about 450 a second:
 * tgkill, rt_sigprocmask, rt_sigreturn, futex) would swamp the syscall counts and context switches:
 * - run A, no profiler: warm-up; a window of `/proc` deltas (CPU, context switches) and the status polls the
 *   simulator logged; then `strace -c -f` attached to every thread for up to 20 s (counts per syscall; strace
 *   slows the process, so no CPU figure comes from that window); then `strace -f -tt -T` for 2 s, the raw
 *   sequence, kept in the output directory;
 * - run B, `node --cpu-prof`: warm-up; a window; SIGTERM; the profile (written at exit) is cut to the window by
 *   sample time and analysed: self time by function (dist frames mapped to src/ through the source maps),
 *   inclusive time of src/ functions, GC / native / idle shares.
 *
 *   npm run bench:profile -- [--out-dir DIR] [--window-ms 30000] [--batches 350] [--no-strace]
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  builtCli,
  countSimulatorRequests,
  freePort,
  httpGet,
  REPO,
  sleep,
  spawnNode,
  startSimulatorProcess,
  type SimulatorProcess,
} from './cli-child.js';
import { configPathIn, daemonEnv, writeDaemonConfig, writeScenario } from './config-gen.js';
import { delta, snapshot } from './proc.js';
import { formatTable } from './table.js';

const STATUS_ACTION = 'QueryBatchRegisterDeviceStatus';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const maps = new Map<string, SourceMap | null>();
function sourceMapOf(url: string): SourceMap | null {
  if (maps.has(url)) return maps.get(url) ?? null;
  let map: SourceMap | null = null;
  try {
    const file = fileURLToPath(url);
    if (existsSync(`${file}.map`)) map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')) as ConstructorParameters<typeof SourceMap>[0]);
  } catch {
    map = null;
  }
  maps.set(url, map);
  return map;
}

/** `src/core/watcher.ts:123 fnName` for a dist frame, `node:internal/... fn` or `(native) fn` otherwise. */
function frameLabel(cf: ProfileNode['callFrame']): { label: string; inSrc: boolean } {
  const fn = cf.functionName || '(anonymous)';
  if (cf.url === '') return { label: fn, inSrc: false };
  if (cf.url.startsWith('file://')) {
    const map = sourceMapOf(cf.url);
    const found = map?.findEntry(cf.lineNumber, cf.columnNumber);
    const entry = found !== undefined && 'originalSource' in found ? found : undefined;
    if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
      const src = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : resolve(fileURLToPath(cf.url), '..', entry.originalSource);
      return { label: `${relative(REPO, src)}:${entry.originalLine + 1} ${fn}`, inSrc: true };
    }
    const path = relative(REPO, fileURLToPath(cf.url));
    return { label: `${path}:${cf.lineNumber + 1} ${fn}`, inSrc: false };
  }
  return { label: `${cf.url}:${cf.lineNumber + 1} ${fn}`, inSrc: false };
}

interface ProfileSummary {
  windowMs: number;
  sampledMs: number;
  idleMs: number;
  gcMs: number;
  programMs: number;
  busyMs: number;
  self: { label: string; ms: number; pct: number }[];
  inclusiveSrc: { label: string; ms: number; pct: number }[];
}

/** Self and inclusive time per function over the samples whose time since profile start is in [fromMs, toMs). */
function analyse(profile: CpuProfile, fromMs: number, toMs: number, top = 30): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let t = 0;
  let sampled = 0;
  let idle = 0;
  let gc = 0;
  let program = 0;
  for (let i = 0; i < profile.samples.length; i += 1) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    t += dt;
    if (t < fromMs || t >= toMs) continue;
    // NOTE: the sample's weight is the interval to the next sample.
    const w = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(profile.samples[i] as number);
    if (!node) continue;
    sampled += w;
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idle += w;
      continue;
    }
    if (name === '(garbage collector)') gc += w;
    if (name === '(program)') program += w;
    const { label } = frameLabel(node.callFrame);
    self.set(label, (self.get(label) ?? 0) + w);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      if (!n) break;
      const fl = frameLabel(n.callFrame);
      if (!fl.inSrc || seen.has(fl.label)) continue;
      seen.add(fl.label);
      incl.set(fl.label, (incl.get(fl.label) ?? 0) + w);
    }
  }
  const busy = sampled - idle;
  const rank = (m: Map<string, number>): { label: string; ms: number; pct: number }[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([label, ms]) => ({ label, ms, pct: (100 * ms) / busy }));
  return { windowMs: toMs - fromMs, sampledMs: sampled, idleMs: idle, gcMs: gc, programMs: program, busyMs: busy, self: rank(self), inclusiveSrc: rank(incl) };
}

interface StraceRow {
  syscall: string;
  calls: number;
  errors: number;
  seconds: number;
}

/** Parses the summary table of `strace -c`. */
function parseStraceSummary(text: string): StraceRow[] {
  const rows: StraceRow[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)?\s*(\S+)\s*$/.exec(line);
    if (!m || m[6] === 'total') continue;
    rows.push({ syscall: m[6] as string, calls: Number(m[4]), errors: Number(m[5] ?? 0), seconds: Number(m[2]) });
  }
  return rows.sort((a, b) => b.calls - a.calls);
}

async function strace(pid: number, args: string[], outFile: string, ms: number): Promise<void> {
  const tids = readdirSync(`/proc/${pid}/task`);
  const proc = spawn('strace', [...args, '-o', outFile, ...tids.flatMap((t) => ['-p', t])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(proc, 'exit');
  await sleep(ms);
  proc.kill('SIGINT');
  await exited;
  if (!existsSync(outFile)) throw new Error(`strace wrote nothing: ${err}`);
}

interface WindowFigures {
  polls: number;
  windowMs: number;
  cpuMs: number;
  userMs: number;
  systemMs: number;
  cpuMsPerPoll: number;
  mainThreadCpuMs: number;
  ctxSwitchesPerSec: number;
  mainThreadCtxSwitchesPerSec: number;
}

interface ScenarioResult {
  name: string;
  batches: number;
  /** The run without profiler or strace: the clean /proc figures. */
  plain: WindowFigures;
  /** The run under --cpu-prof (the profiler's own sampling signals inflate its CPU and context switches). */
  profiled: WindowFigures | null;
  profile: ProfileSummary | null;
  strace: { windowMs: number; polls: number; rows: StraceRow[] } | null;
  files: string[];
}

interface DaemonRun {
  child: ReturnType<typeof spawnNode>;
  spawnedAt: number;
  dir: string;
}

async function startDaemon(sim: SimulatorProcess, dir: string, batches: number, nodeArgs: string[]): Promise<DaemonRun> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = configPathIn(dir);
  writeDaemonConfig(config, {
    endpoint: sim.url,
    stateDir: join(dir, 'state'),
    resultsDir: join(dir, 'results'),
    listen: `127.0.0.1:${port}`,
    batches,
    statusQps: 30,
    initialDelay: '11s',
    maxDelay: '13s',
  });
  const spawnedAt = performance.now();
  const child = spawnNode(builtCli(), ['run', '--config', config], {
    env: daemonEnv(),
    nodeArgs,
    stdoutFile: join(dir, 'daemon.log'),
    stderrFile: join(dir, 'daemon.err'),
    cwd: dir,
  });
  for (;;) {
    try {
      if ((await httpGet(`http://127.0.0.1:${port}/readyz`, 5000)).status === 200) break;
    } catch {
      // not yet
    }
    if (child.proc.exitCode !== null) throw new Error(`daemon exited ${child.proc.exitCode}`);
    await sleep(50);
  }
  return { child, spawnedAt, dir };
}

async function measureWindow(sim: SimulatorProcess, pid: number, windowMs: number): Promise<{ fig: WindowFigures; fromMs: number; toMs: number }> {
  const e0 = Date.now();
  const p0 = snapshot(pid, performance.now());
  await sleep(windowMs);
  const p1 = snapshot(pid, performance.now());
  const e1 = Date.now();
  await sleep(300);
  const polls = countSimulatorRequests(sim.logFile as string, STATUS_ACTION, e0, e1).total;
  const d = delta(p0, p1);
  const sec = d.wallMs / 1000;
  return {
    fig: {
      polls,
      windowMs: d.wallMs,
      cpuMs: d.cpuMs,
      userMs: d.userMs,
      systemMs: d.systemMs,
      cpuMsPerPoll: polls > 0 ? d.cpuMs / polls : Number.NaN,
      mainThreadCpuMs: d.mainThreadCpuMs,
      ctxSwitchesPerSec: d.ctxSwitches / sec,
      mainThreadCtxSwitchesPerSec: d.mainThreadCtxSwitches / sec,
    },
    fromMs: p0.atMs,
    toMs: p1.atMs,
  };
}

async function profileScenario(sim: SimulatorProcess, outDir: string, name: string, batches: number, o: { windowMs: number; warmupMs: number; useStrace: boolean }): Promise<ScenarioResult> {
  const files: string[] = [];
  // Run A: no profiler. /proc figures, then strace.
  const a = await startDaemon(sim, join(outDir, name, 'plain'), batches, []);
  let plain: WindowFigures;
  let straceResult: ScenarioResult['strace'] = null;
  try {
    await sleep(o.warmupMs);
    plain = (await measureWindow(sim, a.child.pid, o.windowMs)).fig;
    if (o.useStrace) {
      const sFile = join(a.dir, 'strace-c.txt');
      const s0 = Date.now();
      await strace(a.child.pid, ['-c', '-f'], sFile, Math.min(20_000, o.windowMs));
      const s1 = Date.now();
      await sleep(300);
      straceResult = { windowMs: s1 - s0, polls: countSimulatorRequests(sim.logFile as string, STATUS_ACTION, s0, s1).total, rows: parseStraceSummary(readFileSync(sFile, 'utf8')) };
      files.push(sFile);
      const tFile = join(a.dir, 'strace-tt.txt');
      await strace(a.child.pid, ['-f', '-tt', '-T'], tFile, 2000);
      files.push(tFile);
    }
  } finally {
    await a.child.stop('SIGTERM', 30_000);
  }
  // Run B: under --cpu-prof; the profile is cut to the window by sample time.
  const profDir = join(outDir, name, 'cpu-prof');
  const b = await startDaemon(sim, join(outDir, name, 'profiled'), batches, ['--cpu-prof', '--cpu-prof-dir', profDir]);
  let profiled: WindowFigures | null;
  let profile: ProfileSummary | null = null;
  try {
    await sleep(o.warmupMs);
    const w = await measureWindow(sim, b.child.pid, o.windowMs);
    profiled = w.fig;
    await b.child.stop('SIGTERM', 30_000);
    const prof = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (prof !== undefined) {
      files.push(join(profDir, prof));
      const cpu = JSON.parse(readFileSync(join(profDir, prof), 'utf8')) as CpuProfile;
      // NOTE: the profile starts when node boots, a few ms after spawn; the window is placed by the same offset.
      profile = analyse(cpu, w.fromMs - b.spawnedAt, w.toMs - b.spawnedAt);
    }
  } finally {
    await b.child.stop('SIGKILL', 5000);
  }
  return { name, batches, plain, profiled, profile, strace: straceResult, files };
}

function describe(label: string, w: WindowFigures): string {
  const sec = w.windowMs / 1000;
  return (
    `${label}: ${w.polls} polls in ${sec.toFixed(1)} s (${(w.polls / sec).toFixed(1)}/s); CPU ${w.cpuMs.toFixed(0)} ms ` +
    `(user ${w.userMs.toFixed(0)}, sys ${w.systemMs.toFixed(0)}; main thread ${w.mainThreadCpuMs.toFixed(0)}) = ${(w.cpuMs / sec).toFixed(1)} ms/s${w.polls > 0 ? `, ${w.cpuMsPerPoll.toFixed(3)} ms/poll` : ''}; ` +
    `ctx switches ${w.ctxSwitchesPerSec.toFixed(0)}/s (main thread ${w.mainThreadCtxSwitchesPerSec.toFixed(0)}/s)`
  );
}

function print(r: ScenarioResult): void {
  console.log(`\n## ${r.name}: ${r.batches} batches`);
  console.log(describe('without profiler', r.plain));
  if (r.profiled) console.log(describe('under --cpu-prof', r.profiled));
  const polls = r.profiled?.polls ?? 0;
  const sec = (r.profiled?.windowMs ?? 1) / 1000;
  if (r.profile) {
    const p = r.profile;
    console.log(
      `main-thread profile: ${p.sampledMs.toFixed(0)} ms sampled, idle ${((100 * p.idleMs) / p.sampledMs).toFixed(1)} %, busy ${p.busyMs.toFixed(0)} ms ` +
        `(GC ${p.gcMs.toFixed(0)} ms, (program) ${p.programMs.toFixed(0)} ms)`,
    );
    const per = (ms: number): string => (polls > 0 ? `${((ms * 1000) / polls).toFixed(1)} µs/poll` : `${(ms / sec).toFixed(2)} ms/s`);
    console.log(formatTable(['self time', 'ms', '% busy', 'cost'], p.self.map((x) => [x.label, x.ms.toFixed(1), x.pct.toFixed(1), per(x.ms)])));
    console.log(formatTable(['inclusive (src/ frames)', 'ms', '% busy', 'cost'], p.inclusiveSrc.map((x) => [x.label, x.ms.toFixed(1), x.pct.toFixed(1), per(x.ms)])));
  }
  if (r.strace) {
    const s = r.strace;
    const ssec = s.windowMs / 1000;
    console.log(`strace -c -f over ${ssec.toFixed(1)} s, ${s.polls} polls (strace slows the process; counts, not times, are the point):`);
    console.log(
      formatTable(
        ['syscall', 'calls', 'per second', 'per poll', 'errors'],
        s.rows.slice(0, 25).map((x) => [x.syscall, String(x.calls), (x.calls / ssec).toFixed(1), s.polls > 0 ? (x.calls / s.polls).toFixed(2) : '', String(x.errors)]),
      ),
    );
  }
  console.log(`files: ${r.files.join(', ')}`);
}

const { values } = parseArgs({
  options: {
    'out-dir': { type: 'string' },
    'window-ms': { type: 'string', default: '30000' },
    'warmup-ms': { type: 'string', default: '25000' },
    batches: { type: 'string', default: '350' },
    'no-strace': { type: 'boolean', default: false },
  },
});
const outDir = values['out-dir'] ?? join(tmpdir(), `ibw-profile-${Date.now()}`);
mkdirSync(outDir, { recursive: true });
const batches = Number(values.batches);
const windowMs = Number(values['window-ms']);
const warmupMs = Number(values['warmup-ms']);
let useStrace = !(values['no-strace'] ?? false);
if (useStrace) {
  try {
    await once(spawn('strace', ['-V'], { stdio: 'ignore' }), 'exit');
  } catch {
    console.log('strace not found: skipping the syscall counts (apt-get install -y strace)');
    useStrace = false;
  }
}
const scenario = join(outDir, 'scenario.yaml');
writeScenario(scenario, batches);
const sim = await startSimulatorProcess({ scenarioPath: scenario, args: ['--qps', `${STATUS_ACTION}=0`], logFile: join(outDir, 'simulator.log') });
const results: ScenarioResult[] = [];
try {
  results.push(await profileScenario(sim, outDir, 'steady', batches, { windowMs, warmupMs, useStrace }));
  print(results[0] as ScenarioResult);
  results.push(await profileScenario(sim, outDir, 'idle', 0, { windowMs: Math.min(windowMs, 20_000), warmupMs: 5000, useStrace }));
  print(results[1] as ScenarioResult);
} finally {
  await sim.child.stop('SIGTERM', 10_000);
}
writeFileSync(join(outDir, 'profile.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nwrote ${join(outDir, 'profile.json')}`);
process.exit(0);
