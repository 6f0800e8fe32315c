/**
 * Readers of Linux `/proc` counters for the real-path benchmarks: CPU time, RSS and context switches of a child
 * process, read from outside the process so that measuring costs it nothing.
 *
 * - CPU: `utime + stime` of `/proc/PID/stat` (fields 14 and 15, every thread of the process, in clock ticks;
 *   converted to ms with `getconf CLK_TCK`, 100 on every Linux we know of).
 * - RSS: `VmRSS` / `VmHWM` of `/proc/PID/status`.
 * - Context switches: `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of every thread in
 *   `/proc/PID/task/*\/status` (the counters of `/proc/PID/status` are the main thread's only), plus the main
 *   thread's alone, which is the event loop's wake-ups.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clockTicks: number | null = null;

/** Clock ticks per second (`getconf CLK_TCK`), cached. */
export function clockTicksPerSec(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU time of a process so far, in ms (user, system, total). Throws when the process is gone. */
export interface CpuTimes {
  userMs: number;
  systemMs: number;
  totalMs: number;
}

/** Reads `utime`/`stime` of `/proc/PID/stat` (every thread), or of one thread with `tid`. */
export function readCpu(pid: number, tid?: number): CpuTimes {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  // NOTE: field 2 (comm) is in parentheses and may hold spaces; count fields after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const tick = 1000 / clockTicksPerSec();
  const userMs = Number(rest[11]) * tick;
  const systemMs = Number(rest[12]) * tick;
  return { userMs, systemMs, totalMs: userMs + systemMs };
}

function statusField(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** Memory of a process, in MB. */
export interface MemoryFigures {
  rssMb: number;
  /** High-water mark of RSS over the process's life (VmHWM). */
  hwmMb: number;
}

/** Reads `VmRSS` and `VmHWM` of `/proc/PID/status`. */
export function readMemory(pid: number): MemoryFigures {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rssMb: statusField(text, 'VmRSS') / 1024, hwmMb: statusField(text, 'VmHWM') / 1024 };
}

/** Context switches so far. Threads that already exited are not counted (their counters go with them). */
export interface ContextSwitches {
  /** Every live thread: voluntary + nonvoluntary. */
  total: number;
  voluntary: number;
  nonvoluntary: number;
  /** The main thread (the event loop) alone: voluntary + nonvoluntary. */
  mainThread: number;
  threads: number;
}

/** Sums the context-switch counters of every thread of `pid`. */
export function readContextSwitches(pid: number): ContextSwitches {
  let voluntary = 0;
  let nonvoluntary = 0;
  let mainThread = 0;
  let threads = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    } catch {
      continue; // the thread exited between readdir and read
    }
    const v = statusField(text, 'voluntary_ctxt_switches');
    const n = statusField(text, 'nonvoluntary_ctxt_switches');
    voluntary += v;
    nonvoluntary += n;
    threads += 1;
    if (tid === String(pid)) mainThread = v + n;
  }
  return { total: voluntary + nonvoluntary, voluntary, nonvoluntary, mainThread, threads };
}

/** One reading of every counter, with the wall time it was taken at (ms, `performance.now()` scale). */
export interface ProcSnapshot {
  atMs: number;
  cpu: CpuTimes;
  /** The main thread (event loop) alone. */
  mainCpu: CpuTimes;
  ctx: ContextSwitches;
}

/** Reads CPU and context switches of `pid` now. */
export function snapshot(pid: number, atMs: number): ProcSnapshot {
  return { atMs, cpu: readCpu(pid), mainCpu: readCpu(pid, pid), ctx: readContextSwitches(pid) };
}

/** Differences between two snapshots. */
export interface ProcDelta {
  wallMs: number;
  cpuMs: number;
  userMs: number;
  systemMs: number;
  /** CPU of the main thread alone; the rest is libuv's thread pool (fs, fsync), V8's helpers and GC threads. */
  mainThreadCpuMs: number;
  ctxSwitches: number;
  mainThreadCtxSwitches: number;
}

export function delta(a: ProcSnapshot, b: ProcSnapshot): ProcDelta {
  return {
    wallMs: b.atMs - a.atMs,
    cpuMs: b.cpu.totalMs - a.cpu.totalMs,
    userMs: b.cpu.userMs - a.cpu.userMs,
    systemMs: b.cpu.systemMs - a.cpu.systemMs,
    mainThreadCpuMs: b.mainCpu.totalMs - a.mainCpu.totalMs,
    ctxSwitches: b.ctx.total - a.ctx.total,
    mainThreadCtxSwitches: b.ctx.mainThread - a.ctx.mainThread,
  };
}

/**
 * Samples `VmRSS` of `pid` every `intervalMs` until stopped or the process is gone, keeping the maximum and
 * every sample (for timelines).
 */
export class RssSampler {
  maxMb = 0;
  readonly samples: { atMs: number; rssMb: number }[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    private readonly now: () => number,
    intervalMs = 100,
  ) {
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Takes one sample now; returns the RSS in MB, or NaN when the process is gone. */
  sample(): number {
    try {
      const { rssMb } = readMemory(this.pid);
      this.samples.push({ atMs: this.now(), rssMb });
      if (rssMb > this.maxMb) this.maxMb = rssMb;
      return rssMb;
    } catch {
      return Number.NaN;
    }
  }

  /** The largest sample taken in `[fromMs, toMs]`, or NaN when none. */
  maxBetween(fromMs: number, toMs: number): number {
    let best = Number.NaN;
    for (const s of this.samples) if (s.atMs >= fromMs && s.atMs <= toMs && !(s.rssMb <= best)) best = s.rssMb;
    return best;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** The median of a list of numbers (mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
