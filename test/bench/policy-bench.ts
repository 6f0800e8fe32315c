/**
 * Benchmark 2: polling policy, simulated in virtual time (no network, no timers).
 *
 * Population: `batches` batches whose completion time (from the batch's start) is lognormal with median 3 min
 * and p99 40 min (sigma = ln(40/3) / 2.326). A poll at or after the completion time sees the final status; the
 * detection lag is `first poll time ≥ completion − completion`. Answers are instant (0 ms request latency).
 *
 * Policies (delays between polls of one batch; every policy polls once at the batch's start):
 * - ours: the product's own code: `createRecord` + `applyStatus` (src/core/transitions.ts, which draws delays
 *   with `nextDelayMs` from src/core/backoff.ts: first poll immediate, then uniform in [2 s, min(60 s,
 *   2 s·2^(n−1))], reset on a phase change), scheduled on the real `DueHeap` and gated by the real
 *   `RateLimiterSet` configured as src/daemon.ts does (statusQps, window 1020 ms), exactly like the watcher
 *   loop: take the earliest due batch; if the bucket refuses, wait what it says; poll; push the next due time.
 *   Run with the default budget (statusQps 5), with the account limit (30), and without a budget.
 * - aliyun CLI `--waiter`: fixed 5 s (reference §6).
 * - AWS SDK v3 waiters (@smithy/util-waiter `runPolling`): attempt n ≥ 1 waits uniform in
 *   [minDelay, minDelay·2^(n−1)] while n ≤ log2(maxDelay/minDelay) + 1, and exactly maxDelay after that;
 *   minDelay 2 s, maxDelay 120 s.
 * - Terraform `StateChangeConf` (helper/retry, no Delay/MinTimeout/PollInterval): the first refresh is
 *   immediate, then waits 200 ms, 400 ms, … doubling, capped at 10 s (its `wait` starts at 100 ms and is
 *   doubled before the first sleep).
 * - google-gax LRO (`startPolling_`, default backoff 100 ms ×1.3 up to 60 s): waits 100 ms, 130 ms, …, capped
 *   at 60 s, no jitter.
 * The classic policies have no shared budget: each batch polls on its own, and their peak QPS is what they
 * would send.
 *
 * Arrivals (assumptions, stated in docs/benchmarks.md): `burst` (every batch starts at t = 0) and `spread Nh`
 * (starts uniform over N hours; 1 h and 8 h by default). With the default budget of 5 status calls per second,
 * 10,000 batches need more calls than the budget allows unless their starts are spread over several hours, so
 * our lag is dominated by the budget in `burst` and `spread 1h`; `spread 8h` shows the policy itself.
 */
import type { BatchConfig } from '../../src/config/types.js';
import { createSeededRandom, type Random } from '../../src/core/clock.js';
import { DueHeap } from '../../src/core/heap.js';
import type { BatchStatusResult } from '../../src/core/ports.js';
import { RateLimiterSet } from '../../src/core/rate-limiter.js';
import type { BatchRecord } from '../../src/core/record.js';
import { applyStatus, createRecord } from '../../src/core/transitions.js';
import { FloatBuffer, mean, peakInWindow, percentile } from './stats.js';
import { defaultPolling } from '../helpers/config.js';

export interface PolicyBenchOptions {
  /** @default 10000 */
  batches?: number;
  /** @default 1 */
  seed?: number;
  /** Arrival windows of the spread scenarios, in hours (0 = burst). @default [0, 1, 8] */
  spreadHours?: number[];
  /** Budgets to run our policy with (0 = none). @default [5, 30, 0] */
  budgets?: number[];
}

export interface PolicyFigures {
  policy: string;
  scenario: string;
  /** The statusQps budget (null = none). */
  budgetQps: number | null;
  callsPerBatch: number;
  meanLagSec: number;
  p50LagSec: number;
  p99LagSec: number;
  /** Most polls in any 1-second window. */
  peakQps: number;
  /** Simulated time until the last batch was detected (hours). */
  makespanHours: number;
}

export interface PolicyBenchResult {
  batches: number;
  completion: { medianSec: number; p99Sec: number; sigma: number; sampleMedianSec: number; sampleP99Sec: number; sampleMeanSec: number };
  scenarios: string[];
  rows: PolicyFigures[];
  targets: {
    /** Per scenario and budget: our calls per batch below every fixed-interval policy (aliyun 5 s, and Terraform whose interval is fixed at 10 s after 7 polls). */
    fewerCallsThanFixed: { scenario: string; budgetQps: number | null; met: boolean }[];
    /** Our p99 lag below AWS's. */
    lowerP99LagThanAws: { scenario: string; budgetQps: number | null; met: boolean }[];
    /** Our peak QPS never above the budget. */
    peakWithinBudget: { scenario: string; budgetQps: number; peakQps: number; met: boolean }[];
  };
}

const MIN = 60_000;
const MEDIAN_MS = 3 * MIN;
const P99_MS = 40 * MIN;
const Z99 = 2.326;
const SIGMA = Math.log(P99_MS / MEDIAN_MS) / Z99;

/** A standard normal draw (Box–Muller) from the seeded source. */
function normal(random: Random): number {
  let u = random.float();
  while (u <= 0) u = random.float();
  const v = random.float();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

interface Population {
  start: Float64Array;
  done: Float64Array;
}

function population(n: number, spreadMs: number, seed: number): Population {
  const random = createSeededRandom(seed);
  const start = new Float64Array(n);
  const done = new Float64Array(n);
  for (let i = 0; i < n; i += 1) {
    const s = spreadMs > 0 ? Math.floor(random.float() * spreadMs) : 0;
    start[i] = s;
    done[i] = s + Math.round(MEDIAN_MS * Math.exp(SIGMA * normal(random)));
  }
  return { start, done };
}

/** Delay in ms after the n-th poll (n ≥ 1) of a classic per-batch policy. */
type DelayFn = (n: number, random: Random) => number;

const CLASSIC: { name: string; delay: DelayFn }[] = [
  { name: 'aliyun CLI waiter (fixed 5 s)', delay: () => 5000 },
  {
    name: 'AWS SDK v3 waiter (2 s..120 s)',
    delay: (n, random) => {
      const min = 2000;
      const max = 120_000;
      const ceiling = Math.log(max / min) / Math.log(2) + 1;
      if (n > ceiling) return max;
      return min + random.float() * (min * 2 ** (n - 1) - min);
    },
  },
  { name: 'Terraform StateChangeConf (0.1 s doubling to 10 s)', delay: (n) => Math.min(10_000, 100 * 2 ** n) },
  { name: 'google-gax LRO (0.1 s ×1.3 to 60 s)', delay: (n) => Math.min(60_000, 100 * 1.3 ** (n - 1)) },
];

interface RunOut {
  calls: number;
  lags: Float64Array;
  pollTimes: FloatBuffer;
  lastDetect: number;
}

function runClassic(pop: Population, delay: DelayFn, seed: number): RunOut {
  const random = createSeededRandom(seed);
  const n = pop.start.length;
  const lags = new Float64Array(n);
  const pollTimes = new FloatBuffer();
  let calls = 0;
  let lastDetect = 0;
  for (let i = 0; i < n; i += 1) {
    let t = pop.start[i] as number;
    const done = pop.done[i] as number;
    for (let k = 1; ; k += 1) {
      pollTimes.push(t);
      calls += 1;
      if (t >= done) break;
      t += delay(k, random);
    }
    lags[i] = t - done;
    lastDetect = Math.max(lastDetect, t);
  }
  return { calls, lags, pollTimes, lastDetect };
}

const PK = 'a1SimProduct1';

function runOurs(pop: Population, budgetQps: number, seed: number): RunOut {
  const random = createSeededRandom(seed);
  const n = pop.start.length;
  const batch: BatchConfig = {
    account: 'default',
    applyId: '0',
    productKey: PK,
    key: `${PK}/0`,
    name: null,
    until: 'created',
    register: false,
    iotInstanceId: null,
    regionId: 'cn-shanghai',
    endpoint: 'http://127.0.0.1:1',
    labels: {},
    // The product defaults (DESIGN.md §2).
    polling: defaultPolling,
    entryHash: 'h',
    source: null,
  };
  const limiter =
    budgetQps > 0
      ? new RateLimiterSet<'status'>({ status: { ratePerSec: budgetQps, windowMs: 1020, penaltyCooldownMs: 1000 } }, 0)
      : null;
  const heap = new DueHeap();
  const recs: (BatchRecord | null)[] = new Array<BatchRecord | null>(n).fill(null);
  for (let i = 0; i < n; i += 1) heap.push(String(i), pop.start[i] as number);
  const lags = new Float64Array(n);
  const pollTimes = new FloatBuffer();
  const answer = (status: string): BatchStatusResult => ({ status, validNames: [], invalidNames: [], invalidDetails: [], requestId: null });
  let now = 0;
  let calls = 0;
  let lastDetect = 0;
  for (;;) {
    const top = heap.peek();
    if (top === undefined) break;
    if (top.dueAt > now) now = top.dueAt;
    if (limiter) {
      const wait = limiter.tryTake('status', now);
      if (wait > 0) {
        now += wait;
        continue;
      }
    }
    heap.pop();
    const i = Number(top.key);
    const rec = recs[i] ?? createRecord({ ...batch, applyId: top.key, key: `${PK}/${top.key}` }, pop.start[i] as number);
    const done = pop.done[i] as number;
    const step = applyStatus(rec, batch, answer(now >= done ? 'CREATE_SUCCESS' : 'CREATE'), now, random);
    pollTimes.push(now);
    calls += 1;
    if (step.rec.state === 'pending') {
      recs[i] = step.rec;
      heap.push(top.key, step.rec.nextDueAt);
    } else {
      recs[i] = null;
      lags[i] = now - done;
      lastDetect = Math.max(lastDetect, now);
    }
  }
  return { calls, lags, pollTimes, lastDetect };
}

function figures(policy: string, scenario: string, budgetQps: number | null, out: RunOut, n: number): PolicyFigures {
  const lags = out.lags.slice().sort();
  return {
    policy,
    scenario,
    budgetQps,
    callsPerBatch: out.calls / n,
    meanLagSec: mean(lags) / 1000,
    p50LagSec: percentile(lags, 0.5) / 1000,
    p99LagSec: percentile(lags, 0.99) / 1000,
    peakQps: peakInWindow(out.pollTimes.sorted(), 1000),
    makespanHours: out.lastDetect / 3_600_000,
  };
}

/** Runs benchmark 2. */
export function benchPolicies(options: PolicyBenchOptions = {}): PolicyBenchResult {
  const n = options.batches ?? 10_000;
  const seed = options.seed ?? 1;
  const spreadHours = options.spreadHours ?? [0, 1, 8];
  const budgets = options.budgets ?? [5, 30, 0];
  const rows: PolicyFigures[] = [];
  const scenarios = spreadHours.map((h) => (h > 0 ? `spread ${h}h` : 'burst'));
  let sample: Float64Array | null = null;
  for (const [k, scenario] of scenarios.entries()) {
    const pop = population(n, (spreadHours[k] as number) * 3_600_000, seed);
    if (sample === null) {
      sample = new Float64Array(n);
      for (let i = 0; i < n; i += 1) sample[i] = (pop.done[i] as number) - (pop.start[i] as number);
      sample.sort();
    }
    for (const b of budgets) rows.push(figures(b > 0 ? `ours (statusQps ${b})` : 'ours (no budget)', scenario, b > 0 ? b : null, runOurs(pop, b, seed + 100), n));
    for (const c of CLASSIC) rows.push(figures(c.name, scenario, null, runClassic(pop, c.delay, seed + 200), n));
  }
  const s = sample ?? new Float64Array(0);
  const ourRows = rows.filter((r) => r.policy.startsWith('ours'));
  const row = (scenario: string, prefix: string): PolicyFigures | undefined => rows.find((r) => r.scenario === scenario && r.policy.startsWith(prefix));
  return {
    batches: n,
    completion: {
      medianSec: MEDIAN_MS / 1000,
      p99Sec: P99_MS / 1000,
      sigma: SIGMA,
      sampleMedianSec: percentile(s, 0.5) / 1000,
      sampleP99Sec: percentile(s, 0.99) / 1000,
      sampleMeanSec: mean(s) / 1000,
    },
    scenarios,
    rows,
    targets: {
      fewerCallsThanFixed: ourRows.map((r) => {
        const fixed = [row(r.scenario, 'aliyun'), row(r.scenario, 'Terraform')];
        return { scenario: r.scenario, budgetQps: r.budgetQps, met: fixed.every((f) => f !== undefined && r.callsPerBatch < f.callsPerBatch) };
      }),
      lowerP99LagThanAws: ourRows.map((r) => {
        const aws = row(r.scenario, 'AWS');
        return { scenario: r.scenario, budgetQps: r.budgetQps, met: aws !== undefined && r.p99LagSec < aws.p99LagSec };
      }),
      peakWithinBudget: ourRows
        .filter((r) => r.budgetQps !== null)
        .map((r) => ({ scenario: r.scenario, budgetQps: r.budgetQps as number, peakQps: r.peakQps, met: r.peakQps <= (r.budgetQps as number) })),
    },
  };
}
