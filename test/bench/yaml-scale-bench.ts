/**
 * Benchmark "yaml-scale": the built daemon started from a generated YAML file with many batches (100,000 in the
 * full run, then 20,000), against the simulator in its own process that knows every batch (they stay pending).
 *
 * Per size, in order:
 * 1. `validate --config FILE`: wall time and max RSS (`/usr/bin/time -v` when present, else VmHWM sampled
 *    every 100 ms).
 * 2. `run --config FILE`: RSS (VmRSS) and `GET /healthz` latency sampled every 100 ms from spawn to exit (one
 *    request at a time on a fresh connection; samples before the port listens are not latencies and are
 *    dropped), `/readyz` polled every 100 ms until 200: time to ready, RSS at ready.
 * 3. After `settleMs`: SIGHUP with the file unchanged (the scheduled reload does the same work: the product's
 *    cron is set to never fire during the run, so that SIGHUP stands in for it at a known moment). The reload
 *    is complete when `ibw_config_reloads_total` grows (read every 250 ms, so the duration is an upper bound).
 * 4. After `settleMs`: one batch added to the file (written to a temp file and renamed over it); the daemon's
 *    file watch reloads it; SIGHUP is sent as well only if no reload completed within 20 s (trigger
 *    `file-watch+SIGHUP`; the daemon coalesces a SIGHUP with a reload in progress). Checked: the `ibw_batches`
 *    gauge sums to size + 1.
 * 5. `status --config FILE` while the daemon runs: wall time, exit code.
 * 6. SIGTERM: time to exit, exit code.
 *
 * Worst /healthz latency is reported for start-up (first answer → ready), each reload (signal → complete +
 * 1 s), and overall. Every figure of issue #14's table comes out of this file and real-path-bench.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, utimesSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import {
  builtCli,
  freePort,
  httpGet,
  imageNodeOptions,
  promSum,
  sleep,
  spawnNode,
  startSimulatorProcess,
  type ChildHandle,
  type SimulatorProcess,
} from './cli-child.js';
import { configPathIn, daemonEnv, writeDaemonConfig, writeScenario, type DaemonConfigOptions } from './config-gen.js';
import { readMemory, RssSampler } from './proc.js';

export interface YamlScaleOptions {
  /** Batch counts, one daemon run each. @default [100000, 20000] */
  sizes?: number[];
  /** Wait between the phases (ready → reload 1 → reload 2 → SIGTERM). @default 10000 */
  settleMs?: number;
  /** Give up on a phase after this long. @default 300000 */
  phaseTimeoutMs?: number;
  /** Keep the work directory. @default false */
  keep?: boolean;
  /** Node options of the daemon child (e.g. V8 heap flags to compare). @default the image's, {@link imageNodeOptions} */
  daemonNodeArgs?: string[];
  log?: (line: string) => void;
}

export interface LatencyStats {
  samples: number;
  maxMs: number;
  p99Ms: number;
  /** Samples that failed (connection reset, timeout) after the port first answered. */
  failed: number;
}

export interface ReloadFigures {
  trigger: 'SIGHUP' | 'file-watch' | 'file-watch+SIGHUP';
  /** Signal (or rename) → the reload counter grew, as seen by polling /metrics (upper bound). */
  durationMs: number;
  outcome: string;
  healthz: LatencyStats;
  rssAfterMb: number;
  maxRssDuringMb: number;
}

export interface YamlScaleRun {
  batches: number;
  yamlMb: number;
  validate: { wallMs: number; maxRssMb: number; exitCode: number | null; method: string };
  /** spawn → `/readyz` 200. */
  readyMs: number;
  /** spawn → /healthz first answered. */
  firstHealthzMs: number;
  rssAtReadyMb: number;
  maxRssStartMb: number;
  healthzStartup: LatencyStats;
  reloadUnchanged: ReloadFigures;
  reloadAdded: ReloadFigures & { batchesAfter: number };
  /** `maxRssDuringMb`: the daemon's largest RSS sample while the `status` command ran. */
  status: { wallMs: number; exitCode: number | null; bytes: number; maxRssDuringMb: number };
  /** `maxRssDuringMb`: the daemon's largest RSS sample from SIGTERM to its exit. */
  sigterm: { exitMs: number; exitCode: number | null; signal: string | null; maxRssDuringMb: number };
  maxRssMb: number;
  healthzOverall: LatencyStats;
}

export interface YamlScaleResult {
  runs: YamlScaleRun[];
  targets: Record<string, { target: string; value: number; met: boolean }>;
  workDir: string | null;
  /** Node options the daemon child ran with. */
  daemonNodeArgs: string[];
}

/** How long to wait for the file watch's reload before sending SIGHUP as well. */
const WATCH_FALLBACK_MS = 20_000;

interface HealthSample {
  atMs: number;
  ms: number;
  ok: boolean;
}

/** Samples `GET /healthz` every `intervalMs` (sequentially) until stopped. */
class HealthSampler {
  readonly samples: HealthSample[] = [];
  firstOkAt: number | null = null;
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(url: string, intervalMs = 100) {
    this.#done = (async () => {
      while (!this.#stopped) {
        const t0 = performance.now();
        try {
          const r = await httpGet(url, 120_000);
          const ok = r.status === 200;
          if (ok && this.firstOkAt === null) this.firstOkAt = t0 + r.ms;
          this.samples.push({ atMs: t0, ms: r.ms, ok });
        } catch {
          if (this.firstOkAt !== null) this.samples.push({ atMs: t0, ms: performance.now() - t0, ok: false });
        }
        const wait = intervalMs - (performance.now() - t0);
        if (wait > 0) await sleep(wait);
      }
    })();
  }

  stats(fromMs: number, toMs: number): LatencyStats {
    const inRange = this.samples.filter((s) => s.atMs + s.ms >= fromMs && s.atMs <= toMs);
    const ms = inRange.filter((s) => s.ok).map((s) => s.ms).sort((a, b) => a - b);
    return {
      samples: inRange.length,
      maxMs: ms.length === 0 ? Number.NaN : (ms[ms.length - 1] as number),
      p99Ms: ms.length === 0 ? Number.NaN : (ms[Math.min(ms.length - 1, Math.ceil(ms.length * 0.99) - 1)] as number),
      failed: inRange.filter((s) => !s.ok).length,
    };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

function run(command: string, args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string; wallMs: number }> {
  const t0 = performance.now();
  return new Promise((resolveRun) => {
    execFile(command, args, { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, maxBuffer: 1024 ** 3 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : null;
      resolveRun({ code, stdout, stderr, wallMs: performance.now() - t0 });
    });
  });
}

async function timeValidate(config: string, cwd: string): Promise<YamlScaleRun['validate']> {
  const cli = builtCli();
  if (existsSync('/usr/bin/time')) {
    const r = await run('/usr/bin/time', ['-v', process.execPath, cli, 'validate', '--config', config], daemonEnv(), cwd);
    const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
    return { wallMs: r.wallMs, maxRssMb: m ? Number(m[1]) / 1024 : Number.NaN, exitCode: r.code, method: '/usr/bin/time -v' };
  }
  const t0 = performance.now();
  const child = spawnNode(cli, ['validate', '--config', config], { env: daemonEnv(), cwd });
  let hwm = 0;
  const timer = setInterval(() => {
    try {
      hwm = Math.max(hwm, readMemory(child.pid).hwmMb);
    } catch {
      // exited
    }
  }, 100);
  const e = await child.exited;
  clearInterval(timer);
  return { wallMs: e.atMs - t0, maxRssMb: hwm, exitCode: e.code, method: 'VmHWM sampled every 100 ms' };
}

async function metricsOf(url: string): Promise<{ reloads: Record<string, number>; batches: number }> {
  const text = (await httpGet(url, 120_000)).body;
  const reloads: Record<string, number> = {};
  for (const outcome of ['ok', 'invalid', 'error']) reloads[outcome] = promSum(text, 'ibw_config_reloads_total', { outcome });
  return { reloads, batches: promSum(text, 'ibw_batches') };
}

const totalReloads = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

/** Waits until the reload counter exceeds `before`; returns the outcome that grew and when it was seen. */
async function waitReload(metricsUrl: string, before: Record<string, number>, timeoutMs: number): Promise<{ atMs: number; outcome: string } | null> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    try {
      const m = await metricsOf(metricsUrl);
      if (totalReloads(m.reloads) > totalReloads(before)) {
        const outcome = Object.keys(m.reloads).find((k) => (m.reloads[k] ?? 0) > (before[k] ?? 0)) ?? '?';
        return { atMs: performance.now(), outcome };
      }
    } catch {
      // not answering: keep trying
    }
    await sleep(250);
  }
  return null;
}

async function measureSize(batches: number, sim: SimulatorProcess, work: string, o: Required<Omit<YamlScaleOptions, 'log' | 'sizes' | 'keep'>>, log: (l: string) => void): Promise<YamlScaleRun> {
  const dir = join(work, `n${batches}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = configPathIn(dir);
  const base: DaemonConfigOptions = {
    endpoint: sim.url,
    stateDir: join(dir, 'state'),
    resultsDir: join(dir, 'results'),
    listen: `127.0.0.1:${port}`,
    batches,
    statusQps: 30,
    initialDelay: '2s',
    maxDelay: '60s',
    // NOTE: never fires during a run (1 January, 00:00), so SIGHUP stands in for the scheduled reload.
    reloadConfig: '0 0 1 1 *',
  };
  writeDaemonConfig(config, base);
  const yamlMb = readFileSync(config).length / 1024 ** 2;
  // NOTE: the file of the second reload (one batch added) is written now, before the daemon starts: generating the
  // 7 MB text blocks this process (and so the /healthz sampler's reading of an answer) for 140-240 ms at 100,000
  // batches, which would be charged to the daemon. It lives outside conf/, which the daemon watches.
  const next = join(dir, 'next-config.yaml');
  writeDaemonConfig(next, { ...base, batches: batches + 1 });

  const validate = await timeValidate(config, dir);
  log(`  ${batches}: validate ${(validate.wallMs / 1000).toFixed(2)} s, max RSS ${validate.maxRssMb.toFixed(0)} MB (exit ${String(validate.exitCode)})`);

  const url = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const child: ChildHandle = spawnNode(builtCli(), ['run', '--config', config], {
    env: daemonEnv(),
    nodeArgs: o.daemonNodeArgs,
    stdoutFile: join(dir, 'daemon.log'),
    stderrFile: join(dir, 'daemon.err'),
    cwd: dir,
  });
  const rss = new RssSampler(child.pid, () => performance.now(), 100);
  const health = new HealthSampler(`${url}/healthz`, 100);
  try {
    let readyAt = Number.NaN;
    const deadline = t0 + o.phaseTimeoutMs;
    while (performance.now() < deadline) {
      if (child.proc.exitCode !== null) throw new Error(`daemon exited with ${child.proc.exitCode} before ready: ${readFileSync(join(dir, 'daemon.err'), 'utf8').slice(-2000)}`);
      try {
        if ((await httpGet(`${url}/readyz`, 120_000)).status === 200) {
          readyAt = performance.now();
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    if (!Number.isFinite(readyAt)) throw new Error(`not ready within ${o.phaseTimeoutMs} ms`);
    const rssAtReady = rss.sample();
    const firstOk = health.firstOkAt ?? readyAt;
    log(`  ${batches}: ready after ${((readyAt - t0) / 1000).toFixed(2)} s, RSS ${rssAtReady.toFixed(0)} MB`);

    const reload = async (kind: 'unchanged' | 'added'): Promise<ReloadFigures & { batchesAfter: number }> => {
      await sleep(o.settleMs);
      const before = await metricsOf(`${url}/metrics`);
      const s0 = performance.now();
      let trigger: ReloadFigures['trigger'] = 'SIGHUP';
      let seen: { atMs: number; outcome: string } | null;
      if (kind === 'unchanged') {
        child.proc.kill('SIGHUP');
        seen = await waitReload(`${url}/metrics`, before.reloads, o.phaseTimeoutMs);
      } else {
        // A fresh modification time, as if written now: the daemon's stability wait runs as before.
        const nowS = Date.now() / 1000;
        utimesSync(next, nowS, nowS);
        renameSync(next, config);
        trigger = 'file-watch';
        // NOTE: a reload in progress cannot be seen from outside until it ends; a SIGHUP during one is coalesced
        // with it by the daemon, so the fallback is harmless when the watch did fire but the reload is slow.
        seen = await waitReload(`${url}/metrics`, before.reloads, WATCH_FALLBACK_MS);
        if (seen === null) {
          trigger = 'file-watch+SIGHUP';
          child.proc.kill('SIGHUP');
          seen = await waitReload(`${url}/metrics`, before.reloads, o.phaseTimeoutMs);
        }
      }
      if (seen === null) throw new Error(`reload (${kind}) not seen within ${o.phaseTimeoutMs} ms`);
      await sleep(1000);
      const after = await metricsOf(`${url}/metrics`);
      const fig = {
        trigger,
        durationMs: seen.atMs - s0,
        outcome: seen.outcome,
        healthz: health.stats(s0, seen.atMs + 1000),
        rssAfterMb: rss.sample(),
        maxRssDuringMb: rss.maxBetween(s0, performance.now()),
        batchesAfter: after.batches,
      };
      log(
        `  ${batches}: reload (${kind}, ${trigger}) ${fig.outcome} in ≤ ${(fig.durationMs / 1000).toFixed(2)} s, worst /healthz ${fig.healthz.maxMs.toFixed(0)} ms, ` +
          `RSS after ${fig.rssAfterMb.toFixed(0)} MB (max ${fig.maxRssDuringMb.toFixed(0)}), batches ${fig.batchesAfter}`,
      );
      return fig;
    };
    const reloadUnchanged = await reload('unchanged');
    const reloadAdded = await reload('added');

    await sleep(1000);
    const statusAt = performance.now();
    const st = await run(process.execPath, [builtCli(), 'status', '--config', config], daemonEnv({ LOG_LEVEL: 'warn' }), dir);
    const statusRssMb = rss.maxBetween(statusAt, performance.now());
    log(`  ${batches}: status ${(st.wallMs / 1000).toFixed(2)} s (exit ${String(st.code)}, ${st.stdout.length} bytes), daemon RSS max ${statusRssMb.toFixed(0)} MB`);

    const rssBeforeSigterm = rss.sample();
    const s0 = performance.now();
    child.proc.kill('SIGTERM');
    const e = await child.exited;
    const exitMs = e.atMs - s0;
    // NOTE: the sample taken just before the signal counts, so a quick exit that no sample caught is not NaN.
    const sigtermRssMb = Math.max(rssBeforeSigterm, rss.maxBetween(s0, e.atMs) || 0);
    log(`  ${batches}: SIGTERM → exit in ${(exitMs / 1000).toFixed(2)} s (code ${String(e.code)}, signal ${String(e.signal)}), RSS max ${sigtermRssMb.toFixed(0)} MB`);
    await health.stop();
    rss.stop();
    // The timelines, for --keep: where a peak outside the phases above happened.
    writeFileSync(
      join(dir, 'timeline.json'),
      JSON.stringify({ t0, readyAt, rss: rss.samples.map((x) => [Math.round(x.atMs - t0), Math.round(x.rssMb)]), healthz: health.samples.map((x) => [Math.round(x.atMs - t0), Math.round(x.ms), x.ok]) }),
    );
    return {
      batches,
      yamlMb,
      validate,
      readyMs: readyAt - t0,
      firstHealthzMs: firstOk - t0,
      rssAtReadyMb: rssAtReady,
      maxRssStartMb: Math.max(rss.maxBetween(t0, readyAt), rssAtReady),
      healthzStartup: health.stats(firstOk, readyAt),
      reloadUnchanged: { ...reloadUnchanged },
      reloadAdded,
      status: { wallMs: st.wallMs, exitCode: st.code, bytes: st.stdout.length, maxRssDuringMb: statusRssMb },
      sigterm: { exitMs, exitCode: e.code, signal: e.signal, maxRssDuringMb: sigtermRssMb },
      maxRssMb: rss.maxMb,
      healthzOverall: health.stats(firstOk, e.atMs),
    };
  } finally {
    await health.stop();
    rss.stop();
    await child.stop('SIGKILL', 5000);
  }
}

/** Runs the yaml-scale benchmark. */
export async function benchYamlScale(options: YamlScaleOptions = {}): Promise<YamlScaleResult> {
  const sizes = options.sizes ?? [100_000, 20_000];
  const o = { settleMs: options.settleMs ?? 10_000, phaseTimeoutMs: options.phaseTimeoutMs ?? 300_000, daemonNodeArgs: options.daemonNodeArgs ?? imageNodeOptions() };
  const log = options.log ?? ((l: string) => console.log(l));
  builtCli();
  const work = mkdtempSync(join(tmpdir(), 'ibw-yaml-scale-'));
  const scenario = join(work, 'scenario.yaml');
  // The largest size plus the one batch a reload adds; smaller sizes use a prefix of the same ApplyIds.
  writeScenario(scenario, Math.max(...sizes) + 1);
  const simStart = performance.now();
  const sim = await startSimulatorProcess({ scenarioPath: scenario, args: ['--qps', 'QueryBatchRegisterDeviceStatus=0'], readyTimeoutMs: 600_000 });
  log(`  simulator with ${Math.max(...sizes) + 1} batches ready in ${((performance.now() - simStart) / 1000).toFixed(1)} s; work dir ${work}`);
  const runs: YamlScaleRun[] = [];
  try {
    for (const n of sizes) runs.push(await measureSize(n, sim, work, o, log));
  } finally {
    await sim.child.stop('SIGTERM', 10_000);
    if (!(options.keep ?? false)) rmSync(work, { recursive: true, force: true });
  }
  const big = runs.find((r) => r.batches === Math.max(...sizes));
  // NOTE: the reload and `status` targets are the at 20,000 batches (the smaller size in a smoke run); a run
  // of one size has none, rather than holding 100,000 batches to them.
  const mid = runs.find((r) => r.batches === 20_000) ?? (sizes.length > 1 ? runs.find((r) => r.batches === Math.min(...sizes)) : undefined);
  const targets: YamlScaleResult['targets'] = {};
  if (big) {
    const t = (name: string, target: string, value: number, met: boolean): void => {
      targets[`${big.batches}: ${name}`] = { target, value, met };
    };
    t('time to /readyz 200 (s)', '≤ 10', big.readyMs / 1000, big.readyMs <= 10_000);
    t('RSS at ready (MB)', '≤ 300', big.rssAtReadyMb, big.rssAtReadyMb <= 300);
    const afterReload = Math.max(big.reloadUnchanged.maxRssDuringMb, big.reloadUnchanged.rssAfterMb);
    t('RSS through the first reload (MB)', '≤ 300, flat', afterReload, afterReload <= 300);
    t('worst /healthz latency (ms)', '≤ 100', big.healthzOverall.maxMs, big.healthzOverall.maxMs <= 100);
    t('SIGTERM to exit (s)', '≤ 5', big.sigterm.exitMs / 1000, big.sigterm.exitMs <= 5000);
    t('validate (s)', '≤ 3', big.validate.wallMs / 1000, big.validate.wallMs <= 3000);
  }
  if (mid) {
    const worst = Math.max(mid.reloadUnchanged.healthz.maxMs, mid.reloadAdded.healthz.maxMs);
    targets[`${mid.batches}: worst /healthz during a reload (ms)`] = { target: '≤ 100', value: worst, met: worst <= 100 };
    targets[`${mid.batches}: status (s)`] = { target: '≤ 1', value: mid.status.wallMs / 1000, met: mid.status.wallMs <= 1000 };
  }
  return { runs, targets, workDir: options.keep ? work : null, daemonNodeArgs: o.daemonNodeArgs };
}
