/**
 * Benchmark 4: quota use. The real Daemon (src/daemon.ts: watcher loop, adaptive token bucket, our client)
 * against the simulator, in wall time (these are rates), measured from the simulator's request log.
 *
 * - (a) `batches` due batches (5,000), statusQps 20, the simulator's QueryBatchRegisterDeviceStatus limit 30:
 *   achieved QPS / 20 (target ≥ 0.95) and throttles (target 0).
 * - (b) the same daemon (statusQps 20) against a simulator limited at 10: throttle rate (target < 5 %) and
 *   achieved QPS / 10 (target ≥ 0.85) over the whole run, and over its second half (steady state).
 *
 * Batches never settle (simulator outcome `never`), so every batch stays due for the whole run: the demand
 * always exceeds the budget. The simulator runs in this process (its CPU is not what is measured); the daemon
 * uses a memory ledger, a result writer stub, no HTTP server, no housekeeping. "Achieved QPS" counts accepted
 * (non-throttled) status requests per second of the measured window, which starts at the first status request.
 */
import { pino } from 'pino';

import type { BatchConfig, CompiledConfig, PollingPolicy } from '../../src/config/types.js';
import { Daemon } from '../../src/daemon.js';
import { createMemoryLedger } from '../../src/ledger/memory-ledger.js';
import { startSimulator, type RequestLogEntry } from '../../src/simulator/server.js';
import { defaultPolling, testAccount } from '../helpers/config.js';

export interface QuotaBenchOptions {
  /** @default 5000 */
  batches?: number;
  /** Wall time of each scenario. @default 30000 */
  durationMs?: number;
}

export interface QuotaScenarioResult {
  name: string;
  daemonStatusQps: number;
  simulatorLimit: number;
  durationMs: number;
  requests: number;
  accepted: number;
  throttled: number;
  otherErrors: number;
  achievedQps: number;
  /** achievedQps / the relevant limit (the daemon's budget in (a), the simulator's limit in (b)). */
  utilisation: number;
  throttleRate: number;
  /** The same over the second half of the window. */
  steady: { achievedQps: number; utilisation: number; throttleRate: number };
  /** Most accepted requests in any 1-second window. */
  peakAcceptedPerSec: number;
  /** Accepted requests per whole second of the window (the shape of the adaptation). */
  perSecond: number[];
  targets: Record<string, { limit: number; value: number; met: boolean }>;
}

export interface QuotaBenchResult {
  batches: number;
  a: QuotaScenarioResult;
  b: QuotaScenarioResult;
}

const PK = 'a1SimProduct1';
const POLICY: PollingPolicy = defaultPolling;

function config(url: string, applyIds: string[], statusQps: number): CompiledConfig {
  const batches: BatchConfig[] = applyIds.map((applyId, i) => ({
    account: 'default',
    applyId,
    productKey: PK,
    key: `${PK}/${applyId}`,
    name: null,
    until: 'created',
    register: false,
    iotInstanceId: null,
    regionId: 'cn-shanghai',
    endpoint: url,
    labels: {},
    polling: POLICY,
    entryHash: `h${i}`,
    source: null,
  }));
  return {
    file: null,
    alibaba: { regionId: 'cn-shanghai', endpoint: url, iotInstanceId: null, signatureVersion: 'v3', requestTimeoutMs: 10_000, credentials: 'env' },
    polling: POLICY,
    accounts: [testAccount({ endpoint: url, requestTimeoutMs: 10_000, rateLimit: { statusQps, pageQps: 5, submitQps: 5, concurrency: 8 } })],
    rateLimit: { statusQps, pageQps: 5, concurrency: 8 },
    devices: { fetch: true, includeSecrets: false },
    state: { dir: '/nonexistent-bench-state' },
    output: { resultsDir: '/nonexistent-bench-results', eventsFile: null, webhook: null },
    http: { listen: null },
    housekeeping: { reloadConfig: '*/1 * * * *', summary: '*/15 * * * *', prune: '0 3 * * *', retentionMs: 30 * 86_400_000 },
    batches,
  };
}

function peakPerSecond(times: number[]): number {
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi += 1) {
    while ((times[lo] as number) <= (times[hi] as number) - 1000) lo += 1;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

function summarise(entries: RequestLogEntry[], from: number, to: number): { requests: number; accepted: number; throttled: number; other: number; acceptedTimes: number[] } {
  const inWindow = entries.filter((e) => e.action === 'QueryBatchRegisterDeviceStatus' && e.at >= from && e.at < to);
  const acceptedTimes = inWindow.filter((e) => e.outcome === 'ok').map((e) => e.at);
  const throttled = inWindow.filter((e) => e.outcome === 'Throttling.User').length;
  return { requests: inWindow.length, accepted: acceptedTimes.length, throttled, other: inWindow.length - acceptedTimes.length - throttled, acceptedTimes };
}

async function scenario(name: string, batches: number, durationMs: number, daemonQps: number, simLimit: number): Promise<QuotaScenarioResult> {
  const sim = await startSimulator({ port: 0, qps: { QueryBatchRegisterDeviceStatus: simLimit }, timeScale: 1000, requestLogLimit: 200_000, seed: 11 });
  const applyIds: string[] = [];
  for (let i = 0; i < batches; i += 1) applyIds.push(sim.control.addBatch({ productKey: PK, mode: 'random', count: 1, outcome: 'never' }));
  const daemon = new Daemon({
    config: config(sim.url, applyIds, daemonQps),
    logger: pino({ level: 'silent' }),
    env: {},
    credentials: { get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }) },
    ledger: createMemoryLedger(),
    results: { write: async (r) => `/dev/null/${r.applyId}` },
    http: false,
    housekeeping: false,
  });
  try {
    await daemon.start();
    // Wait for the first status request, then measure `durationMs` from it.
    let first: number | undefined;
    while (first === undefined) {
      first = sim.control.requestLog().find((e) => e.action === 'QueryBatchRegisterDeviceStatus')?.at;
      if (first === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    const end = first + durationMs;
    await new Promise((r) => setTimeout(r, Math.max(0, end - Date.now() + 200)));
    await daemon.stop();
    const log = sim.control.requestLog();
    const all = summarise(log, first, end);
    const half = summarise(log, first + durationMs / 2, end);
    const limit = Math.min(daemonQps, simLimit);
    const achievedQps = (all.accepted * 1000) / durationMs;
    const steadyQps = (half.accepted * 1000) / (durationMs / 2);
    const perSecond: number[] = [];
    for (let t = first; t + 1000 <= end; t += 1000) perSecond.push(all.acceptedTimes.filter((x) => x >= t && x < t + 1000).length);
    const result: QuotaScenarioResult = {
      name,
      daemonStatusQps: daemonQps,
      simulatorLimit: simLimit,
      durationMs,
      requests: all.requests,
      accepted: all.accepted,
      throttled: all.throttled,
      otherErrors: all.other,
      achievedQps,
      utilisation: achievedQps / limit,
      throttleRate: all.requests === 0 ? 0 : all.throttled / all.requests,
      steady: { achievedQps: steadyQps, utilisation: steadyQps / limit, throttleRate: half.requests === 0 ? 0 : half.throttled / half.requests },
      peakAcceptedPerSec: peakPerSecond(all.acceptedTimes),
      perSecond,
      targets: {},
    };
    return result;
  } finally {
    if (daemon.state !== 'stopped') await daemon.stop();
    await sim.close();
  }
}

/** Runs benchmark 4. */
export async function benchQuota(options: QuotaBenchOptions = {}): Promise<QuotaBenchResult> {
  const batches = options.batches ?? 5000;
  const durationMs = options.durationMs ?? 30_000;
  const a = await scenario('a: budget 20 under a limit of 30', batches, durationMs, 20, 30);
  a.targets = {
    utilisation: { limit: 0.95, value: a.utilisation, met: a.utilisation >= 0.95 },
    throttles: { limit: 0, value: a.throttled, met: a.throttled === 0 },
  };
  const b = await scenario('b: budget 20 under a limit of 10', batches, durationMs, 20, 10);
  b.targets = {
    throttleRate: { limit: 0.05, value: b.throttleRate, met: b.throttleRate < 0.05 },
    utilisation: { limit: 0.85, value: b.utilisation, met: b.utilisation >= 0.85 },
  };
  return { batches, a, b };
}
