/**
 * `npm run bench`: runs the benchmarks of docs/benchmarks.md, prints a table per benchmark and writes
 * every raw figure to `bench-results.json` (in the working directory).
 *
 *   npm run bench                      full run (about 20 minutes on 2 cores)
 *   npm run bench -- --smoke           small sizes (for CI)
 *   npm run bench -- real-path         one benchmark (or several: `real-path yaml-scale`, or --only=a,b)
 *                                      of: client, policy, scale, quota, postgres, failover, real-path, yaml-scale, two-account
 *   npm run bench -- --out=FILE        write the JSON elsewhere
 *
 * Sizes of the real-path benchmarks (defaults in brackets are the full run's):
 *   --rounds=N       real-path rounds [3]          --window-ms=N   real-path measured window [30000]
 *   --warmup-ms=N    real-path warm-up after ready [max(90000, batches/statusQps + 8 s)]; V8 is still compiling
 *                    every side's hot path at 90 s, 240000 measures after it has finished (docs/benchmarks.md §5)
 *   --floor-tick-ms=N real-path: the floor sends the polls due every N ms, like the daemon's tick; 0 = a wake-up per poll [100]
 *   --floor-burst=N  real-path, with --floor-tick-ms=0: the floor's loops start N at a time [1]
 *   --daemon-node-args="--flag …"   real-path, yaml-scale: Node options of the daemon child (e.g. V8 flags to compare)
 *   --batches=N      real-path batches [350]       --sizes=A,B     yaml-scale batch counts [100000,20000]
 *   --keep           keep their work directories (configs, logs, state) and print where
 *   --client-code=dist|src   where the client benchmark loads our client from [dist: the build, as users run it;
 *                    src: the sources through tsx]
 *
 * real-path, yaml-scale and two-account drive the built CLI, and client the built client: run `npm run build` first.
 *
 * Exit code 0 when every benchmark ran (whether or not its targets were met: the JSON and the table say
 * which), 1 when one crashed. Not a vitest test.
 */
import { writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { benchClients, type ClientBenchResult } from './client-bench.js';
import { benchPolicies, type PolicyBenchResult } from './policy-bench.js';
import { benchFailover, printFailover } from './postgres-failover-bench.js';
import { benchPostgresLedger, printPostgresLedger } from './postgres-ledger-bench.js';
import { benchQuota, type QuotaBenchResult } from './quota-bench.js';
import { benchRealPath, type RealPathResult } from './real-path-bench.js';
import { benchScale, type ScaleBenchResult } from './scale-bench.js';
import { formatTable } from './table.js';
import { benchTwoAccounts, type TwoAccountBenchResult } from './two-account-bench.js';
import { benchYamlScale, type YamlScaleResult } from './yaml-scale-bench.js';

const ALL = ['client', 'policy', 'scale', 'quota', 'postgres', 'failover', 'real-path', 'yaml-scale', 'two-account'] as const;
type BenchName = (typeof ALL)[number];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string', default: 'bench-results.json' },
    rounds: { type: 'string' },
    'window-ms': { type: 'string' },
    'daemon-node-args': { type: 'string' },
    'warmup-ms': { type: 'string' },
    'floor-burst': { type: 'string' },
    'floor-tick-ms': { type: 'string' },
    batches: { type: 'string' },
    sizes: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'client-code': { type: 'string', default: 'dist' },
  },
});
const smoke = values.smoke ?? false;
const named = [...positionals, ...(values.only?.split(',') ?? [])].map((s) => s.trim()).filter((s) => s !== '');
const only = (named.length > 0 ? named : [...ALL]) as BenchName[];
for (const name of only) {
  if (!(ALL as readonly string[]).includes(name)) {
    console.error(`expected benchmark names among ${ALL.join(', ')}, got \`${name}\``);
    process.exit(2);
  }
}
const intArg = (flag: string, raw: string | undefined): number | undefined => {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${flag}: expected a non-negative integer, got \`${raw}\``);
    process.exit(2);
  }
  return n;
};
const rounds = intArg('rounds', values.rounds);
const windowMs = intArg('window-ms', values['window-ms']);
const warmupMs = intArg('warmup-ms', values['warmup-ms']);
const floorBurst = intArg('floor-burst', values['floor-burst']);
const floorTickMs = intArg('floor-tick-ms', values['floor-tick-ms']);
const daemonNodeArgs = values['daemon-node-args']?.split(' ').filter((a) => a !== '');
const rpBatches = intArg('batches', values.batches);
const sizes = values.sizes?.split(',').map((x) => intArg('sizes', x.trim()) as number);
const keep = values.keep ?? false;
const clientCode = values['client-code'];
if (clientCode !== 'src' && clientCode !== 'dist') {
  console.error(`--client-code: expected dist or src, got \`${String(clientCode)}\``);
  process.exit(2);
}

const f = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : String(n));
const ok = (met: boolean): string => (met ? 'met' : 'MISSED');

function printClient(r: ClientBenchResult): void {
  console.log(`\n1. Client throughput: QueryBatchRegisterDeviceStatus against the simulator (separate process, QPS limits off); our client from ${r.code === 'dist' ? 'dist/ (built)' : 'src/ through tsx'}`);
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
    rows.push([
      '',
      `ours/floor CPU per request: ${f(l.floorRatio, 2)}× (SDK/floor ${f(l.sdkFloorRatio, 2)}×); ours/SDK per CPU-s: ${f(l.cpuEfficiencyRatio, 2)}×; wall: ${f(l.throughputRatio, 2)}×; SDK/ours above the floor: ${f(l.overheadRatio, 2)}×`,
    ]);
  }
  console.log(formatTable(['conc', 'client', 'requests', 'req/s', 'CPU µs/req', 'req/CPU-s', 'p50 ms', 'p99 ms', 'new conns', 'errors'], rows));
  console.log(`target ≥ 3× per CPU-second at every concurrency: ${ok(r.target.met)} (lowest ${f(r.minCpuEfficiencyRatio, 2)}×)`);
  console.log(
    `target ours ≤ 1.2× the transport floor's CPU per request at every concurrency (issue #14): ${ok(r.floorTarget.met)} (${r.levels.map((l) => `c=${l.concurrency} ${f(l.floorRatio, 2)}×`).join(', ')})`,
  );
}

function printRealPath(r: RealPathResult): void {
  const o = r.options;
  console.log(
    `\n5. Real path: built daemon CLI vs an official-SDK loop, ${o.batches} pending batches, ~${f((o.batches * 1000) / o.intervalMs, 1)} polls/s, ` +
      `simulator in its own process; warm-up ${f(o.warmupMs / 1000, 0)} s, window ${f(o.windowMs / 1000, 0)} s, ${o.rounds} round(s), medians; ` +
      `daemon node options: ${r.daemonNodeArgs.join(' ') || 'none'}`,
  );
  const rows = r.runs.map((x) => [
    String(x.round),
    x.side,
    String(x.polls),
    f(x.pollsPerSec, 1),
    f(x.cpuMsPerPoll, 3),
    `${f(x.userMsPerPoll, 3)} / ${f(x.systemMsPerPoll, 3)}`,
    f(x.mainThreadCpuMsPerPoll, 3),
    f(x.ctxSwitchesPerPoll, 1),
    f(x.ctxSwitchesPerSec, 0),
    f(x.maxRssMb, 0),
    x.side === 'daemon' ? `${f(x.cpuMsPerPollFromReady, 3)}` : '',
    x.reloadsInWindow === null ? '' : String(x.reloadsInWindow),
    String(x.busiestSecond),
  ]);
  console.log(
    formatTable(['round', 'side', 'polls', 'polls/s', 'CPU ms/poll', 'user / sys', 'main thread', 'ctx sw/poll', 'ctx sw/s', 'max RSS MB', 'ms/poll from ready', 'reloads', 'busiest second'], rows),
  );
  const m = r.median;
  console.log(
    formatTable(
      ['median', 'value'],
      [
        ['daemon CPU ms per poll (steady state)', f(m.daemonCpuMsPerPoll, 3)],
        ['daemon CPU ms per poll from ready (incl. first polls and their events)', f(m.daemonCpuMsPerPollFromReady, 3)],
        ['SDK loop CPU ms per poll', f(m.sdkCpuMsPerPoll, 3)],
        ['ratio daemon / SDK loop (median of per-round ratios; target ≤ 0.333)', `${f(m.ratio, 3)} ${ok(r.target.met)}`],
        ['context switches per poll, daemon / SDK loop', `${f(m.daemonCtxSwitchesPerPoll, 1)} / ${f(m.sdkCtxSwitchesPerPoll, 1)}`],
        ['max RSS MB, daemon / SDK loop', `${f(m.daemonMaxRssMb, 0)} / ${f(m.sdkMaxRssMb, 0)}`],
        ['idle daemon (0 batches): CPU ms per second', f(m.idleCpuMsPerSec, 2)],
        [
          `transport floor (bare undici dispatch, signed, ${r.options.floorTickMs > 0 ? `the polls due every ${r.options.floorTickMs} ms sent together` : 'one timer per poll'}) CPU ms per poll; ctx sw per poll`,
          `${f(m.floorCpuMsPerPoll, 3)}; ${f(m.floorCtxSwitchesPerPoll, 1)}`,
        ],
        ['ratio daemon / floor; SDK loop / floor', `${f(m.daemonFloorRatio, 2)} / ${f(m.sdkFloorRatio, 2)}`],
        ['ratio floor / SDK loop (the lowest daemon / SDK ratio a client on undici grouping its polls so could reach)', f(m.floorSdkRatio, 3)],
        ['idle daemon: context switches per second, all threads / main thread', `${f(m.idleCtxSwitchesPerSec, 1)} / ${f(m.idleMainThreadCtxSwitchesPerSec, 1)}`],
      ],
    ),
  );
  if (r.workDir !== null) console.log(`work directory kept: ${r.workDir}`);
}

function printYamlScale(r: YamlScaleResult): void {
  console.log(
    `\n6. Many batches from YAML: the built daemon CLI (node options: ${r.daemonNodeArgs.join(' ') || 'none'}), simulator in its own process, /healthz and RSS sampled every 100 ms`,
  );
  const rows: string[][] = [];
  for (const x of r.runs) {
    const n = x.batches.toLocaleString('en');
    rows.push(
      [n, 'YAML file', `${f(x.yamlMb, 1)} MB`],
      [n, 'validate: wall / max RSS', `${f(x.validate.wallMs / 1000, 2)} s / ${f(x.validate.maxRssMb, 0)} MB (exit ${String(x.validate.exitCode)})`],
      [n, 'spawn → first /healthz answer', `${f(x.firstHealthzMs / 1000, 2)} s`],
      [n, 'spawn → /readyz 200', `${f(x.readyMs / 1000, 2)} s`],
      [n, 'RSS at ready / max during start-up', `${f(x.rssAtReadyMb, 0)} / ${f(x.maxRssStartMb, 0)} MB`],
      [n, 'worst /healthz during start-up (after its first answer)', `${f(x.healthzStartup.maxMs, 0)} ms`],
      [
        n,
        'reload, file unchanged (SIGHUP): duration ≤ / worst /healthz',
        `${f(x.reloadUnchanged.durationMs / 1000, 2)} s / ${f(x.reloadUnchanged.healthz.maxMs, 0)} ms (${x.reloadUnchanged.outcome})`,
      ],
      [n, '  RSS after / max during', `${f(x.reloadUnchanged.rssAfterMb, 0)} / ${f(x.reloadUnchanged.maxRssDuringMb, 0)} MB`],
      [
        n,
        `reload, one batch added (${x.reloadAdded.trigger}): duration ≤ / worst /healthz`,
        `${f(x.reloadAdded.durationMs / 1000, 2)} s / ${f(x.reloadAdded.healthz.maxMs, 0)} ms (${x.reloadAdded.outcome}, ${x.reloadAdded.batchesAfter} batches after)`,
      ],
      [n, '  RSS after / max during', `${f(x.reloadAdded.rssAfterMb, 0)} / ${f(x.reloadAdded.maxRssDuringMb, 0)} MB`],
      [n, '`status` while running; the daemon\'s max RSS meanwhile', `${f(x.status.wallMs / 1000, 2)} s (exit ${String(x.status.exitCode)}); ${f(x.status.maxRssDuringMb, 0)} MB`],
      [n, 'SIGTERM → exit; max RSS meanwhile', `${f(x.sigterm.exitMs / 1000, 2)} s (code ${String(x.sigterm.exitCode)}); ${f(x.sigterm.maxRssDuringMb, 0)} MB`],
      [n, 'max RSS over the run / worst /healthz over the run', `${f(x.maxRssMb, 0)} MB / ${f(x.healthzOverall.maxMs, 0)} ms (${x.healthzOverall.failed} failed)`],
    );
  }
  console.log(formatTable(['batches', 'measure', 'value'], rows));
  console.log(
    formatTable(
      ['target (issue #14)', 'wanted', 'value', 'met?'],
      Object.entries(r.targets).map(([k, t]) => [k, t.target, f(t.value, 1), ok(t.met)]),
    ),
  );
  if (r.workDir !== null) console.log(`work directory kept: ${r.workDir}`);
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

function printTwoAccounts(r: TwoAccountBenchResult): void {
  const o = r.options;
  console.log(
    `\n8. Two accounts in one daemon (built CLI), each against its own simulator process (limit 30 status QPS), ${o.batches} due batches per account; ` +
      `warm-up ${f(o.warmupMs / 1000, 0)} s, window ${f(o.windowMs / 1000, 0)} s`,
  );
  const rows = r.accounts.map((a) => [
    a.name,
    String(a.budget),
    String(a.requests),
    String(a.throttled),
    f(a.achievedQps, 2),
    f(a.utilisation, 3),
    String(a.peakPerSec),
    a.daemonThrottledTotal === null ? '-' : String(a.daemonThrottledTotal),
    a.daemonRateQps === null ? '-' : f(a.daemonRateQps, 2),
    Object.entries(a.targets)
      .map(([k, t]) => `${k} ${ok(t.met)}`)
      .join(', '),
  ]);
  console.log(formatTable(['account', 'budget', 'requests', 'throttled', 'QPS', 'QPS/budget', 'busiest s', 'daemon throttled', 'rate at end', 'targets'], rows));
  for (const a of r.accounts) console.log(`  ${a.name} accepted per second: ${a.perSecond.join(' ')}`);
  if (r.workDir !== null) console.log(`  work directory kept: ${r.workDir}`);
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const started = performance.now();
const results: Record<string, unknown> = {
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(totalmem() / 1024 ** 3),
    platform: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    /** 1/5/15-minute load averages when the run started: the machine may be shared. */
    loadAverageAtStart: loadavg(),
  },
  commit: gitCommit(),
  date: new Date().toISOString(),
  mode: smoke ? 'smoke' : 'full',
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
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
      ? benchClients({ rounds: 1, warmup: 100, requestsPerRun: () => 300, code: clientCode })
      : benchClients({ rounds: 5, warmup: 500, requestsPerRun: (c) => (c === 1 ? 2000 : 4000), code: clientCode }),
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
await step('failover', () => benchFailover(smoke ? { batches: 200, rounds: 2 } : { batches: 1000, rounds: 3 }), printFailover);
await step(
  'real-path',
  () =>
    benchRealPath({
      ...(smoke ? { batches: 60, intervalMs: 3000, warmupMs: 5000, windowMs: 6000, rounds: 1, idleWarmupMs: 1000, idleWindowMs: 4000 } : {}),
      ...(rounds === undefined ? {} : { rounds }),
      ...(windowMs === undefined ? {} : { windowMs }),
      ...(warmupMs === undefined ? {} : { warmupMs }),
      ...(floorBurst === undefined ? {} : { floorBurst }),
      ...(floorTickMs === undefined ? {} : { floorTickMs }),
      ...(rpBatches === undefined ? {} : { batches: rpBatches }),
      ...(daemonNodeArgs === undefined ? {} : { daemonNodeArgs }),
      keep,
    }),
  printRealPath,
);
await step(
  'yaml-scale',
  () =>
    benchYamlScale({
      sizes: sizes ?? (smoke ? [2000, 500] : [100_000, 20_000]),
      settleMs: smoke ? 2000 : 10_000,
      keep,
      ...(daemonNodeArgs === undefined ? {} : { daemonNodeArgs }),
    }),
  printYamlScale,
);

await step(
  'two-account',
  () => benchTwoAccounts(smoke ? { batches: 100, warmupMs: 4000, windowMs: 6000, keep } : { keep }),
  printTwoAccounts,
);

results.timingsMs = { ...timings, total: Math.round(performance.now() - started) };
await writeFile(values.out ?? 'bench-results.json', `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nwrote ${values.out ?? 'bench-results.json'} (total ${f((performance.now() - started) / 1000, 1)} s)`);
process.exit(failed ? 1 : 0);
