/**
 * Benchmark 3: scale. `batches` batches (100,000 by default) in one process, through the real Watcher
 * (src/core/watcher.ts) with the real Outbox (one sink that acknowledges at once), a file ledger in a temp
 * directory (fsync on, as in production) and an in-memory fake API that answers at once and never settles a
 * batch (status CREATE forever).
 *
 * Measured:
 * - cold start: `Watcher.start()` with an empty ledger, on a sample of `coldStartBatches` batches: every batch is
 *   recorded (`batch.added` + record; the watcher appends new batches in chunks of 1,000), then the loop
 *   starts. Per-batch time, extrapolated linearly to `batches`.
 * - load: the ledger is seeded with one `createRecord` per batch (appended in groups of 1000, which is what the
 *   cold start would leave behind), then `Watcher.start()` loads it and reconciles the 100,000 batches.
 * - RSS and heap right after that start ("after load"), and the peak RSS seen while polling.
 * - polling: the loop runs with the status budget effectively off (statusQps 1e6, concurrency 64) for
 *   `pollMs` of wall time; CPU of the process per poll, with the fake API's own CPU measured separately and
 *   subtracted. This is the end-to-end cost of one poll in the product (loop, heap, backoff, state machine,
 *   event journaling, ledger encoding and write, outbox acks), not only the scheduling.
 * - scheduling overhead per poll, as the target means it: `benchScheduler` (scheduler-bench.ts: heap + backoff
 *   + token bucket on a fake clock, the loop's bookkeeping with no I/O) with the same number of batches.
 * - ledger append cost: `benchLedger` (ledger-bench.ts: one batch record per append, 64 in flight, fsync on).
 * - restart: stop the watcher, close the ledger, then open it again and `start()` a new watcher with the same
 *   configuration (load the snapshot + journal, reconcile, spread the overdue polls): wall time.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

import { pino } from 'pino';

import type { BatchConfig, CompiledConfig, PollingPolicy } from '../../src/config/types.js';
import { createRecord } from '../../src/core/transitions.js';
import { createSeededRandom, systemClock } from '../../src/core/clock.js';
import type { BatchStatusResult, BatchTarget, CallOptions, IotApi } from '../../src/core/ports.js';
import type { BatchRecord } from '../../src/core/record.js';
import { ApiBudget } from '../../src/core/api-budget.js';
import { StateStore } from '../../src/core/state-store.js';
import { Watcher } from '../../src/core/watcher.js';
import type { WatcherEvent } from '../../src/events.js';
import { openFileLedger, type FileLedger } from '../../src/ledger/file-ledger.js';
import { Outbox } from '../../src/sinks/outbox.js';
import { benchLedger, type LedgerBenchResult } from './ledger-bench.js';
import { benchScheduler, type SchedulerBenchResult } from './scheduler-bench.js';
import { defaultPolling, testAccount } from '../helpers/config.js';

export interface ScaleBenchOptions {
  /** @default 100000 */
  batches?: number;
  /** Wall time of the polling phase. @default 15000 */
  pollMs?: number;
  /** Polls for benchScheduler. @default 1000000 */
  schedulerPolls?: number;
  /** Records for benchLedger. @default = batches */
  ledgerRecords?: number;
  /** Batches of the cold-start sample. @default 500 */
  coldStartBatches?: number;
  /** Restarts measured (the median is the figure). @default 3 */
  restarts?: number;
  /** Events of the outbox drain measurement. @default 1000 */
  outboxEvents?: number;
}

export interface ScaleBenchResult {
  batches: number;
  coldStart: { batches: number; wallMs: number; appendedRecords: number; groupWrites: number; msPerBatch: number; extrapolatedSec: number };
  seed: { wallMs: number; records: number };
  load: { wallMs: number };
  afterLoad: {
    /** RSS after `Watcher.start()` returned with every batch loaded (the target). */
    rssMb: number;
    heapUsedMb: number;
    /** RSS of the process before anything was built (Node + tsx + the imported modules). */
    baselineRssMb: number;
    /** RSS once the 100k-batch configuration objects exist, before the watcher starts. */
    configRssMb: number;
    /** Off-heap memory after load (mostly the ledger file buffers, freed shortly after). */
    externalMb: number;
    /** RSS after the polling phase and a full GC (the 100k batches still loaded). */
    afterPollingRssMb: number;
  };
  polling: {
    wallMs: number;
    polls: number;
    pollsPerSec: number;
    cpuUsPerPoll: number;
    fakeApiCpuUsPerPoll: number;
    /** cpuUsPerPoll − fakeApiCpuUsPerPoll */
    productCpuUsPerPoll: number;
    ledgerRecordsPerPoll: number;
    peakRssMb: number;
    compactions: number;
  };
  scheduler: SchedulerBenchResult;
  ledger: LedgerBenchResult;
  outbox: { events: number; wallMs: number; eventsPerSec: number };
  restart: {
    /** Median over the restarts. */
    wallMs: number;
    runsMs: number[];
    loadMs: number;
    batchesLoaded: number;
    outboxEntries: number;
    journalBytesBefore: number;
    snapshotBytesBefore: number;
    rssMb: number;
  };
  targets: {
    rssMb: { limit: number; value: number; met: boolean };
    schedulingUsPerPoll: { limit: number; value: number; met: boolean };
    restartMs: { limit: number; value: number; met: boolean };
  };
}

const PK = 'a1SimProduct1';
const POLICY: PollingPolicy = defaultPolling;

export function makeConfig(n: number, stateDir: string): CompiledConfig {
  const batches: BatchConfig[] = [];
  for (let i = 0; i < n; i += 1) {
    const applyId = String(1_000_000 + i);
    batches.push({
      account: 'default',
      applyId,
      productKey: PK,
      key: `${PK}/${applyId}`,
      name: null,
      until: 'created',
      register: false,
      iotInstanceId: null,
      regionId: 'cn-shanghai',
      endpoint: 'http://127.0.0.1:1',
      labels: {},
      polling: POLICY,
      entryHash: `h${i}`,
      source: null,
    });
  }
  return {
    file: null,
    alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1', iotInstanceId: null, signatureVersion: 'v3', requestTimeoutMs: 10_000, credentials: 'env' },
    polling: POLICY,
    accounts: [testAccount({ requestTimeoutMs: 10_000, rateLimit: { statusQps: 1_000_000, pageQps: 1_000_000, submitQps: 5, concurrency: 64 } })],
    rateLimit: { statusQps: 1_000_000, pageQps: 1_000_000, concurrency: 64 },
    devices: { fetch: false, includeSecrets: false },
    state: { dir: stateDir },
    output: { resultsDir: join(stateDir, 'results'), eventsFile: null, webhook: null },
    http: { listen: null },
    housekeeping: { reloadConfig: '*/1 * * * *', summary: '*/15 * * * *', prune: '0 3 * * *', retentionMs: 30 * 86_400_000 },
    batches,
  };
}

/** An IotApi that answers CREATE at once, forever, and counts its calls (the watcher takes each poll's token). */
class InstantApi implements IotApi {
  calls = 0;
  async queryBatchRegisterDeviceStatus(target: BatchTarget, _options?: CallOptions): Promise<BatchStatusResult> {
    this.calls += 1;
    return { status: 'CREATE', validNames: [], invalidNames: [], invalidDetails: [], requestId: target.applyId };
  }
  async queryPageByApplyId(): Promise<never> {
    throw new Error('not used');
  }
  async listAllDevicesByApplyId(): Promise<never> {
    throw new Error('not used');
  }
  async batchRegisterDeviceWithApplyId(): Promise<never> {
    throw new Error('not used');
  }
  async batchCheckDeviceNames(): Promise<never> {
    throw new Error('not used');
  }
  async batchRegisterDevice(): Promise<never> {
    throw new Error('not used');
  }
}

const mb = (bytes: number): number => bytes / (1024 * 1024);

interface Running {
  watcher: Watcher;
  outbox: Outbox;
  ledger: FileLedger;
  api: InstantApi;
}

export async function startWatcher(config: CompiledConfig, seed: number): Promise<Running> {
  const logger = pino({ level: 'silent' });
  const ledger = await openFileLedger({ dir: config.state.dir });
  const api = new InstantApi();
  const random = createSeededRandom(seed);
  const budget = new ApiBudget({
    rates: config.rateLimit,
    clock: systemClock,
    tuning: (qps) => ({ ratePerSec: qps, windowMs: 1020, penaltyCooldownMs: 1000 }),
  });
  const store = new StateStore({ ledger, log: logger, now: () => systemClock.now() });
  const outbox = new Outbox({
    sinks: [{ name: 'log', deliver: async (_e: WatcherEvent) => {}, close: async () => {} }],
    ledger: store,
    clock: systemClock,
    random,
    logger,
  });
  store.publishTo(outbox);
  const watcher = new Watcher({
    config,
    store,
    budget,
    statusApi: api,
    api,
    results: { write: async (r) => `/dev/null/${r.applyId}` },
    clock: systemClock,
    random,
    log: logger,
  });
  await watcher.start();
  outbox.start();
  return { watcher, outbox, ledger, api };
}

export async function stopWatcher(r: Running): Promise<void> {
  await r.watcher.stop();
  await r.outbox.flush(5000);
  await r.outbox.stop();
  await r.ledger.close();
}

/** CPU µs per call of the fake API alone (to subtract from the per-poll cost). */
async function fakeApiCost(calls: number): Promise<number> {
  const api = new InstantApi();
  const target = { productKey: PK, applyId: '1', iotInstanceId: null };
  const c0 = process.cpuUsage();
  for (let i = 0; i < calls; i += 1) await api.queryBatchRegisterDeviceStatus(target);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / calls;
}

/** The cold start: a sample of batches into an empty ledger. */
async function coldStart(n: number, dir: string): Promise<{ wallMs: number; appendedRecords: number; groupWrites: number }> {
  const t0 = performance.now();
  const run = await startWatcher(makeConfig(n, dir), 3);
  const wallMs = performance.now() - t0;
  const stats = run.ledger.stats();
  await stopWatcher(run);
  return { wallMs, appendedRecords: stats.appendedRecords, groupWrites: stats.groupWrites };
}

/**
 * Writes one record per batch, 1000 per append, all appends in flight together: each batch as it is after its
 * first poll (status CREATE, attempt 1, due now), i.e. a daemon in steady state, so polls emit no events.
 */
export async function seedLedger(config: CompiledConfig): Promise<number> {
  const ledger = await openFileLedger({ dir: config.state.dir });
  const now = Date.now();
  const seen = (b: BatchConfig): BatchRecord => ({
    ...createRecord(b, now - 1000),
    status: 'CREATE',
    attempt: 1,
    polls: 1,
    history: [{ status: 'CREATE', at: now - 1000 }],
    nextDueAt: now,
  });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < config.batches.length; i += 1000) {
    writes.push(ledger.append(config.batches.slice(i, i + 1000).map((b) => ({ t: 'batch' as const, rec: seen(b) }))));
  }
  await Promise.all(writes);
  await ledger.close();
  return config.batches.length;
}

/**
 * The outbox's drain rate with an instant sink over a file ledger (fsync on): `events` events are journaled at
 * once (one append), handed to the outbox, and timed until every ack/done record is durable.
 */
export async function outboxDrain(events: number, dir: string): Promise<{ events: number; wallMs: number; eventsPerSec: number }> {
  const ledger = await openFileLedger({ dir });
  const outbox = new Outbox({
    sinks: [{ name: 'log', deliver: async () => {}, close: async () => {} }],
    ledger,
    clock: systemClock,
    random: createSeededRandom(4),
    logger: pino({ level: 'silent' }),
  });
  const at = new Date().toISOString();
  const entries = Array.from({ length: events }, (_, i) => ({
    event: { id: `${1_000_000 + i}:added:1`, type: 'batch.added' as const, at, applyId: String(1_000_000 + i), productKey: PK, name: null, labels: {}, status: null },
    acked: [] as string[],
  }));
  await ledger.append(entries.map((entry) => ({ t: 'event' as const, entry })));
  outbox.start();
  const t0 = performance.now();
  for (const entry of entries) outbox.enqueue(entry);
  const drained = await outbox.flush(120_000);
  const wallMs = performance.now() - t0;
  await outbox.stop();
  await ledger.close();
  if (!drained) throw new Error('outbox did not drain within 120 s');
  return { events, wallMs, eventsPerSec: (events * 1000) / wallMs };
}

interface PreparePhase {
  coldStart: ScaleBenchResult['coldStart'];
  seed: ScaleBenchResult['seed'];
}

type RunPhase = Omit<ScaleBenchResult, 'coldStart' | 'seed' | 'targets'>;

/** Phase 1 (own process): the cold-start sample, then the seeded 100k ledger in `<base>/state`. */
async function preparePhase(options: ScaleBenchOptions, base: string): Promise<PreparePhase> {
  const n = options.batches ?? 100_000;
  const coldN = Math.min(n, options.coldStartBatches ?? 500);
  const cold = await coldStart(coldN, join(base, 'cold'));
  const s0 = performance.now();
  const seeded = await seedLedger(makeConfig(n, join(base, 'state')));
  return {
    coldStart: { batches: coldN, ...cold, msPerBatch: cold.wallMs / coldN, extrapolatedSec: ((cold.wallMs / coldN) * n) / 1000 },
    seed: { wallMs: performance.now() - s0, records: seeded },
  };
}

/** Phase 2 (a fresh process): load, RSS, polling, restart, then the micro-benchmarks. */
async function runPhase(options: ScaleBenchOptions, base: string): Promise<RunPhase> {
  const n = options.batches ?? 100_000;
  const pollMs = options.pollMs ?? 15_000;
  const stateDir = join(base, 'state');
  globalThis.gc?.();
  const baselineRss = process.memoryUsage().rss;
  const config = makeConfig(n, stateDir);
  globalThis.gc?.();
  const configRss = process.memoryUsage().rss;

  // load and reconcile every batch
  const t0 = performance.now();
  const run = await startWatcher(config, 1);
  const loadWallMs = performance.now() - t0;
  globalThis.gc?.();
  const memAfterLoad = process.memoryUsage();

  // polling
  const calls0 = run.api.calls;
  const recs0 = run.ledger.stats().appendedRecords;
  let peakRss = memAfterLoad.rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 250);
  const c0 = process.cpuUsage();
  const p0 = performance.now();
  await new Promise((r) => setTimeout(r, pollMs));
  const polls = run.api.calls - calls0;
  const cpu = process.cpuUsage(c0);
  const pollWall = performance.now() - p0;
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const recsPerPoll = (run.ledger.stats().appendedRecords - recs0) / Math.max(1, polls);
  globalThis.gc?.();
  const afterPollingRss = process.memoryUsage().rss;
  const compactions = run.ledger.stats().compactions;
  await stopWatcher(run);
  const before = await openFileLedger({ dir: stateDir });
  const statsBefore = before.stats();
  await before.close();
  const apiUs = await fakeApiCost(200_000);
  const cpuUsPerPoll = (cpu.user + cpu.system) / Math.max(1, polls);

  // restart: open + load alone, then the whole start of a new watcher (open, load, reconcile, spread)
  globalThis.gc?.();
  const r0 = performance.now();
  const ledger = await openFileLedger({ dir: stateDir });
  const snap = await ledger.load();
  const loadMs = performance.now() - r0;
  await ledger.close();
  const restarts: number[] = [];
  let restartRss = 0;
  for (let k = 0; k < (options.restarts ?? 3); k += 1) {
    globalThis.gc?.();
    const r1 = performance.now();
    const again = await startWatcher(config, 2 + k);
    restarts.push(performance.now() - r1);
    restartRss = Math.max(restartRss, process.memoryUsage().rss);
    const pendingAfterRestart = again.watcher.counts().pending ?? 0;
    // NOTE: stopped at once; its overdue polls were spread over the next second, a few may have run.
    await stopWatcher(again);
    if (pendingAfterRestart !== n) throw new Error(`restart found ${pendingAfterRestart} pending batches, expected ${n}`);
  }
  const sortedRestarts = [...restarts].sort((x, y) => x - y);
  const restartMs = sortedRestarts[Math.floor(sortedRestarts.length / 2)] ?? Number.NaN;

  // micro-benchmarks of the same code paths
  const scheduler = benchScheduler({ batches: n, polls: options.schedulerPolls ?? 1_000_000 });
  const ledgerBench = await benchLedger({ batches: options.ledgerRecords ?? n, baseDir: base });
  const outbox = await outboxDrain(options.outboxEvents ?? 1000, join(base, 'outbox'));

  return {
    batches: n,
    load: { wallMs: loadWallMs },
    afterLoad: {
      rssMb: mb(memAfterLoad.rss),
      heapUsedMb: mb(memAfterLoad.heapUsed),
      baselineRssMb: mb(baselineRss),
      configRssMb: mb(configRss),
      externalMb: mb(memAfterLoad.external),
      afterPollingRssMb: mb(afterPollingRss),
    },
    polling: {
      wallMs: pollWall,
      polls,
      pollsPerSec: (polls * 1000) / pollWall,
      cpuUsPerPoll,
      fakeApiCpuUsPerPoll: apiUs,
      productCpuUsPerPoll: cpuUsPerPoll - apiUs,
      ledgerRecordsPerPoll: recsPerPoll,
      peakRssMb: mb(peakRss),
      compactions,
    },
    scheduler,
    ledger: ledgerBench,
    outbox,
    restart: {
      wallMs: restartMs,
      runsMs: restarts,
      loadMs,
      batchesLoaded: snap.batches.size,
      outboxEntries: snap.outbox.size,
      journalBytesBefore: statsBefore.journalBytes,
      snapshotBytesBefore: statsBefore.snapshotBytes,
      rssMb: mb(restartRss),
    },
  };
}

const REPO = resolve(import.meta.dirname, '../..');
const TSX_LOADER = pathToFileURL(resolve(REPO, 'node_modules/tsx/dist/loader.mjs')).href;

async function inChild<T>(phase: 'prepare' | 'run', base: string, options: ScaleBenchOptions): Promise<T> {
  const args = ['--expose-gc', '--import', TSX_LOADER, resolve(import.meta.dirname, 'scale-bench.ts'), '--child', phase, base, JSON.stringify(options)];
  const proc = spawn(process.execPath, args, {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((done) => proc.once('exit', (c) => done(c)));
  if (code !== 0) throw new Error(`scale benchmark child (${phase}) exited with ${String(code)}`);
  return JSON.parse(out.trim().split('\n').pop() ?? '') as T;
}

/**
 * Runs benchmark 3 in two fresh Node processes (`--expose-gc`): one prepares the ledger, the other loads it, so
 * the RSS after load is not inflated by the preparation or by the other benchmarks.
 */
export async function benchScale(options: ScaleBenchOptions = {}): Promise<ScaleBenchResult> {
  const base = await mkdtemp(join(tmpdir(), 'ibw-scale-bench-'));
  try {
    const prepared = await inChild<PreparePhase>('prepare', base, options);
    const ran = await inChild<RunPhase>('run', base, options);
    return {
      ...ran,
      ...prepared,
      targets: {
        rssMb: { limit: 250, value: ran.afterLoad.rssMb, met: ran.afterLoad.rssMb <= 250 },
        schedulingUsPerPoll: { limit: 20, value: ran.scheduler.usPerPoll, met: ran.scheduler.usPerPoll <= 20 },
        restartMs: { limit: 2000, value: ran.restart.wallMs, met: ran.restart.wallMs <= 2000 },
      },
    };
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

const childAt = process.argv.indexOf('--child');
if (childAt >= 0 && process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const phase = process.argv[childAt + 1];
  const base = process.argv[childAt + 2] ?? '';
  const opts = JSON.parse(process.argv[childAt + 3] ?? '{}') as ScaleBenchOptions;
  const result = phase === 'prepare' ? await preparePhase(opts, base) : await runPhase(opts, base);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
