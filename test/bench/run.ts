/**
 * `npm run bench`: runs the four benchmarks of docs/benchmarks.md, prints a table per benchmark and writes
 * every raw figure to `bench-results.json` (in the working directory).
 *
 *   npm run bench                      full run (a few minutes on 2 cores)
 *   npm run bench -- --smoke           small sizes, under a minute (for CI)
 *   npm run bench -- --only=policy,quota   a subset: client, policy, scale, quota, postgres
 *   npm run bench -- --out=FILE        write the JSON elsewhere
 *
 * Exit code 0 when every benchmark ran (whether or not its targets were met: the JSON and the table say
 * which), 1 when one crashed. Not a vitest test.
 */
import { writeFile } from 'node:fs/promises';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { benchClients, type ClientBenchResult } from './client-bench.js';
import { benchPolicies, type PolicyBenchResult } from './policy-bench.js';
import { benchPostgresLedger, printPostgresLedger } from './postgres-ledger-bench.js';
import { benchQuota, type QuotaBenchResult } from './quota-bench.js';
import { benchScale, type ScaleBenchResult } from './scale-bench.js';
import { formatTable } from './table.js';

const ALL = ['client', 'policy', 'scale', 'quota', 'postgres'] as const;
type BenchName = (typeof ALL)[number];

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string', default: 'bench-results.json' },
  },
});
const smoke = values.smoke ?? false;
const only = (values.only?.split(',').map((s) => s.trim()) ?? [...ALL]) as BenchName[];
for (const name of only) {
  if (!(ALL as readonly string[]).includes(name)) {
    console.error(`--only: expected a comma-separated subset of ${ALL.join(', ')}, got \`${name}\``);
    process.exit(2);
  }
}

const f = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : String(n));
const ok = (met: boolean): string => (met ? 'met' : 'MISSED');

function printClient(r: ClientBenchResult): void {
  console.log('\n1. Client throughput: QueryBatchRegisterDeviceStatus against the simulator (separate process, QPS limits off)');
  const rows: string[][] = [];
  for (const l of r.levels) {
    for (const [name, x] of [
      ['ours', l.ours],
      ['official SDK', l.sdk],
      ['transport floor', l.floor],
    ] as const) {
      rows.push([
        String(l.concurrency),
        name,
        String(x.requests),
        f(x.requestsPerSec, 0),
        f(x.cpuMsPerRequest * 1000, 0),
        f(x.requestsPerCpuSec, 0),
        f(x.p50Ms, 2),
        f(x.p99Ms, 2),
        String(x.connections),
        String(x.errors),
      ]);
    }
    rows.push(['', `ratio ours/SDK per CPU-s: ${f(l.cpuEfficiencyRatio, 2)}×; wall: ${f(l.throughputRatio, 2)}×; above the floor: ${f(l.overheadRatio, 2)}×`]);
  }
  console.log(formatTable(['conc', 'client', 'requests', 'req/s', 'CPU µs/req', 'req/CPU-s', 'p50 ms', 'p99 ms', 'new conns', 'errors'], rows));
  console.log(`target ≥ 3× per CPU-second at every concurrency: ${ok(r.target.met)} (lowest ${f(r.minCpuEfficiencyRatio, 2)}×)`);
}

function printPolicy(r: PolicyBenchResult): void {
  console.log(
    `\n2. Polling policy: ${r.batches} batches, completion lognormal (sample median ${f(r.completion.sampleMedianSec, 0)} s, p99 ${f(r.completion.sampleP99Sec, 0)} s), virtual time, instant answers`,
  );
  const rows = r.rows.map((x) => [
    x.scenario,
    x.policy,
    f(x.callsPerBatch, 1),
    f(x.meanLagSec, 1),
    f(x.p99LagSec, 1),
    String(x.peakQps),
  ]);
  console.log(formatTable(['arrivals', 'policy', 'calls/batch', 'mean lag s', 'p99 lag s', 'peak QPS'], rows));
  const line = (label: string, items: { scenario: string; budgetQps: number | null; met: boolean }[]): void => {
    console.log(`${label}: ${items.map((i) => `${i.scenario}/${i.budgetQps ?? 'none'} ${ok(i.met)}`).join(', ')}`);
  };
  line('target fewer calls than fixed-interval policies', r.targets.fewerCallsThanFixed);
  line('target lower p99 lag than AWS', r.targets.lowerP99LagThanAws);
  console.log(
    `target peak QPS ≤ budget: ${r.targets.peakWithinBudget.map((i) => `${i.scenario}/${i.budgetQps} peak ${i.peakQps} ${ok(i.met)}`).join(', ')}`,
  );
}

function printScale(r: ScaleBenchResult): void {
  console.log(`\n3. Scale: ${r.batches} batches, real Watcher + Outbox, file ledger (fsync on), instant fake API`);
  const rows: string[][] = [
    ['RSS after load (target ≤ 250 MB)', `${f(r.afterLoad.rssMb)} MB`, ok(r.targets.rssMb.met)],
    ['  of which: node+tsx+modules / +config objects', `${f(r.afterLoad.baselineRssMb)} / ${f(r.afterLoad.configRssMb)} MB`, ''],
    ['heap used / off-heap after load', `${f(r.afterLoad.heapUsedMb)} / ${f(r.afterLoad.externalMb)} MB`, ''],
    ['RSS after the polling phase + full GC', `${f(r.afterLoad.afterPollingRssMb)} MB`, ''],
    ['peak RSS while polling', `${f(r.polling.peakRssMb)} MB`, ''],
    ['scheduling overhead per poll (benchScheduler, target ≤ 20 µs)', `${f(r.scheduler.usPerPoll, 2)} µs`, ok(r.targets.schedulingUsPerPoll.met)],
    ['end-to-end CPU per poll in the Watcher (minus fake API)', `${f(r.polling.productCpuUsPerPoll, 1)} µs`, ''],
    ['polls per second (CPU-bound, budget off)', f(r.polling.pollsPerSec, 0), ''],
    ['ledger append per record (benchLedger, 64 in flight, fsync)', `${f(r.ledger.appendUsPerRecord, 1)} µs`, ''],
    ['ledger compaction of all records', `${f(r.ledger.compactMs, 0)} ms`, ''],
    ['restart: open + load + reconcile, median (target ≤ 2 s)', `${f(r.restart.wallMs, 0)} ms (runs ${r.restart.runsMs.map((x) => f(x, 0)).join(', ')})`, ok(r.targets.restartMs.met)],
    ['  ledger open + load alone', `${f(r.restart.loadMs, 0)} ms`, ''],
    ['first load of the seeded ledger (journal only)', `${f(r.load.wallMs, 0)} ms`, ''],
    [`cold start, ${r.coldStart.batches} new batches (${r.coldStart.groupWrites} group writes)`, `${f(r.coldStart.msPerBatch, 2)} ms/batch`, ''],
    [`  extrapolated to ${r.batches} new batches`, `${f(r.coldStart.extrapolatedSec, 0)} s`, ''],
    ['outbox drain, instant sink', `${f(r.outbox.eventsPerSec, 0)} events/s`, ''],
  ];
  console.log(formatTable(['measure', 'value', 'target'], rows));
}

function printQuota(r: QuotaBenchResult): void {
  console.log(`\n4. Quota use: real Daemon against the simulator, ${r.batches} due batches that never settle`);
  const rows = [r.a, r.b].map((x) => [
    x.name,
    `${x.durationMs / 1000} s`,
    String(x.requests),
    String(x.throttled),
    f(x.achievedQps, 2),
    f(x.utilisation, 3),
    `${f(x.throttleRate * 100, 1)} %`,
    `${f(x.steady.utilisation, 3)} / ${f(x.steady.throttleRate * 100, 1)} %`,
    Object.entries(x.targets)
      .map(([k, t]) => `${k} ${ok(t.met)}`)
      .join(', '),
  ]);
  console.log(formatTable(['scenario', 'window', 'requests', 'throttled', 'QPS', 'QPS/limit', 'throttle rate', '2nd half', 'targets'], rows));
}

const started = performance.now();
const results: Record<string, unknown> = {
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(totalmem() / 1024 ** 3),
    platform: `${platform()} ${release()} ${arch()}`,
    node: process.version,
  },
  date: new Date().toISOString(),
  mode: smoke ? 'smoke' : 'full',
  command: `npm run bench${smoke ? ' -- --smoke' : ''}`,
};
const timings: Record<string, number> = {};
let failed = false;

async function step<T>(name: BenchName, run: () => Promise<T> | T, print: (r: T) => void): Promise<void> {
  if (!only.includes(name)) return;
  const t0 = performance.now();
  try {
    const r = await run();
    results[name] = r;
    print(r);
  } catch (err) {
    failed = true;
    results[name] = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
    console.error(`\nbenchmark ${name} failed:`, err);
  }
  timings[name] = Math.round(performance.now() - t0);
  console.log(`(${name}: ${f(timings[name] / 1000, 1)} s)`);
}

console.log(`iot-batch-watcher benchmarks (${smoke ? 'smoke' : 'full'}) on ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}`);

await step(
  'client',
  () =>
    smoke
      ? benchClients({ rounds: 1, warmup: 100, requestsPerRun: () => 300 })
      : benchClients({ rounds: 5, warmup: 500, requestsPerRun: (c) => (c === 1 ? 2000 : 4000) }),
  printClient,
);
await step('policy', () => benchPolicies(smoke ? { batches: 1000 } : { batches: 10_000 }), printPolicy);
await step(
  'scale',
  () =>
    smoke
      ? benchScale({ batches: 5000, pollMs: 3000, coldStartBatches: 100, schedulerPolls: 100_000, ledgerRecords: 5000, outboxEvents: 200 })
      : benchScale({ batches: 100_000, pollMs: 15_000 }),
  printScale,
);
await step('quota', () => (smoke ? benchQuota({ batches: 500, durationMs: 6000 }) : benchQuota({ batches: 5000, durationMs: 30_000 })), printQuota);
await step('postgres', () => benchPostgresLedger(smoke ? { batches: 5000, appends: 1000 } : { batches: 100_000 }), printPostgresLedger);

results.timingsMs = { ...timings, total: Math.round(performance.now() - started) };
await writeFile(values.out ?? 'bench-results.json', `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nwrote ${values.out ?? 'bench-results.json'} (total ${f((performance.now() - started) / 1000, 1)} s)`);
process.exit(failed ? 1 : 0);
