/**
 * The watcher: the three parts of the watch loop put together, behind the API the daemon and the library use.
 *
 * - state-store.ts — durable state and its image (the ledger), queries, health;
 * - reconcile-plan.ts — configuration × image → steps and due times (at start and on reload);
 * - scheduler.ts — the loop: due times, concurrency, sleep and wake, grace drain;
 * - batch-runner.ts — one batch's work (poll, register, fetch, settle) and every effect;
 * - api-budget.ts — when an API call may go out.
 *
 * Lifecycle (`WatcherState`):
 *
 *   created ──start()──► running ──stop()──► stopping ──(in-flight done or grace over)──► stopped
 *                           └──(process-fatal API error)──► stopping (fatal) ──► stopped
 */
import type { BatchConfig, CompiledConfig } from '../config/types.js';
import { AbortedError, type DaemonError, coerceError } from '../errors.js';
import type { ApiBudget } from './api-budget.js';
import { BatchRunner, type BatchRunnerOptions } from './batch-runner.js';
import type { JournalRecord } from './ports.js';
import { systemYield } from './clock.js';
import { type PlannedStep, type ReconcileInput, entryStep, isOpen, planEntries, planRemovals, planResumes } from './reconcile-plan.js';
import type { BatchRecord } from './record.js';
import { Scheduler } from './scheduler.js';
import type { StateStore } from './state-store.js';
import type { StatusRow } from './status-row.js';

export type WatcherState = 'created' | 'running' | 'stopping' | 'stopped';

/** New and changed batches are recorded this many at a time during reconciliation (one append per chunk). */
const RECONCILE_CHUNK = 1000;
/**
 * Batches planned (and records checked for removal) between two yields during reconciliation. NOTE: 2,000, not
 * 5,000: a slice of 5,000 (planned, recorded, events built) held the loop for up to about 100 ms at start-up.
 */
const RECONCILE_SLICE = 2000;

export interface WatcherHooks {
  /** A batch settled (result written, event journaled). */
  onSettled?(rec: BatchRecord): void;
}

/** The runner's adapters (see {@link BatchRunnerOptions}), plus what the loop and reconciliation need. */
export interface WatcherOptions extends Pick<BatchRunnerOptions, 'store' | 'statusApi' | 'api' | 'results' | 'clock' | 'random' | 'log'> {
  config: CompiledConfig;
  /** The account's API budget: the scheduler holds budgeted work until it may go out. */
  budget: Pick<ApiBudget, 'acquire' | 'delayMs'>;
  hooks?: WatcherHooks;
  /** How long requests in flight may finish after stop(). @default 5000 */
  shutdownGraceMs?: number;
  /** Longest single sleep of the loop. @default 60000 */
  maxSleepMs?: number;
  /** The loop's wake-up tick (`SchedulerOptions.wakeTickMs`); give the budget the same (`tickMs`). @default 0 (off) */
  wakeTickMs?: number;
  /**
   * Lets I/O in between slices of a large reconciliation (start-up, reload).
   * @default a macrotask turn ({@link systemYield})
   */
  yieldToLoop?: () => Promise<void>;
}

export interface RunResult {
  /** Why the loop ended. */
  reason: 'stopped' | 'fatal';
  error: DaemonError | null;
}

/** See the module comment. */
export class Watcher {
  #state: WatcherState = 'created';
  #config: CompiledConfig;
  #batches = new Map<string, BatchConfig>();
  readonly #o: WatcherOptions;
  readonly #store: StateStore;
  readonly #scheduler: Scheduler;
  readonly #runner: BatchRunner;
  #fatal: DaemonError | null = null;
  #done: Promise<RunResult> | null = null;
  #resolveDone: ((result: RunResult) => void) | null = null;
  #ending = false;
  #settledWaiters: (() => void)[] = [];

  constructor(options: WatcherOptions) {
    this.#o = options;
    this.#config = options.config;
    this.#store = options.store;
    this.#runner = new BatchRunner({
      store: options.store,
      budget: options.budget,
      statusApi: options.statusApi,
      api: options.api,
      results: options.results,
      clock: options.clock,
      random: options.random,
      log: options.log,
      config: () => this.#config,
      entry: (key) => this.#batches.get(key),
      onFatal: (error) => this.#setFatal(error),
      onSettled: (rec) => options.hooks?.onSettled?.(rec),
    });
    this.#scheduler = new Scheduler({
      run: async (key, signal) => this.#afterRun(key, await this.#runner.run(key, signal)),
      // A pending batch's next work is a status poll: hold it until the budget has a token for it.
      holdMs: (key, now) => (this.#store.record(key)?.state === 'pending' ? options.budget.delayMs('QueryBatchRegisterDeviceStatus', now) : 0),
      concurrency: options.config.rateLimit.concurrency,
      clock: options.clock,
      log: options.log,
      graceMs: options.shutdownGraceMs ?? 5000,
      ...(options.maxSleepMs !== undefined ? { maxSleepMs: options.maxSleepMs } : {}),
      ...(options.wakeTickMs !== undefined ? { wakeTickMs: options.wakeTickMs } : {}),
    });
  }

  get state(): WatcherState {
    return this.#state;
  }

  /** Aborted when requests in flight must give up (shutdown past the grace period). Shared by every request. */
  get requestSignal(): AbortSignal {
    return this.#scheduler.signal;
  }

  get storeHealthy(): boolean {
    return this.#store.healthy;
  }

  get config(): CompiledConfig {
    return this.#config;
  }

  /** Loads the state (if not yet), reconciles it with the configuration and starts the loop. */
  async start(): Promise<void> {
    if (this.#state !== 'created') throw new Error(`Watcher.start() called in state ${this.#state}`);
    await this.#store.load();
    this.#state = 'running';
    await this.#reconcile(this.#config, true);
    this.#scheduler.start();
    this.#done = new Promise<RunResult>((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Ends the loop once (stop() or a fatal error): the scheduler drains, then done() resolves. */
  #end(): void {
    if (this.#ending) return;
    this.#ending = true;
    void this.#scheduler.stop().then(() => {
      this.#state = 'stopped';
      this.#notifySettled(true);
      this.#resolveDone?.(this.#fatal ? { reason: 'fatal', error: this.#fatal } : { reason: 'stopped', error: null });
    });
  }

  /** Resolves when the loop has ended (after stop() or a fatal error). */
  async done(): Promise<RunResult> {
    if (!this.#done) throw new Error('Watcher not started');
    return this.#done;
  }

  /** Applies a new configuration: added batches start, removed ones are cancelled, changed parked ones re-armed. */
  async reload(config: CompiledConfig): Promise<{ added: number; cancelled: number; rearmed: number }> {
    if (this.#state !== 'running') throw new Error(`Watcher.reload() called in state ${this.#state}`);
    this.#config = config;
    return this.#reconcile(config, false);
  }

  /** Stops scheduling, lets requests in flight finish within the grace period, then aborts the rest. */
  async stop(): Promise<RunResult> {
    if (this.#state === 'created') {
      this.#state = 'stopped';
      return { reason: 'stopped', error: null };
    }
    if (this.#state === 'running') this.#state = 'stopping';
    this.#end();
    return this.done();
  }

  /**
   * Stops the loop as a process-fatal error would (done() resolves with reason `fatal`): for conditions an
   * adapter finds outside an API call, such as a ledger whose lease another process took over.
   */
  fail(error: DaemonError): void {
    this.#setFatal(error);
  }

  /** Rows for `status` and `/v1/batches`. */
  list(): StatusRow[] {
    return this.#store.list();
  }

  /** Number of batch records per state (for the `ibw_batches{state}` gauge). */
  counts(): Record<string, number> {
    return this.#store.counts();
  }

  /** Outcome counts of settled batches (for the summary line). */
  outcomes(): Record<string, number> {
    return this.#store.outcomes();
  }

  record(key: string): BatchRecord | undefined {
    return this.#store.record(key);
  }

  /** Whether every batch of the current configuration has settled (or is parked). */
  allSettled(): boolean {
    for (const key of this.#batches.keys()) {
      const rec = this.#store.record(key);
      if (!rec || isOpen(rec)) return false;
    }
    return true;
  }

  /** Resolves once every configured batch has settled, or the loop ended. */
  whenAllSettled(): Promise<void> {
    if (this.allSettled() || this.#state === 'stopped') return Promise.resolve();
    return new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /** Drops settled batches older than the retention that are no longer in the configuration. */
  async prune(now = this.#o.clock.now()): Promise<number> {
    const cutoff = now - this.#config.housekeeping.retentionMs;
    const undelivered = this.#store.undeliveredKeys();
    const records: JournalRecord[] = [];
    for (const rec of this.#store.records()) {
      if (isOpen(rec) || (rec.settledAt ?? now) >= cutoff || this.#batches.has(rec.key) || undelivered.has(rec.key)) continue;
      records.push({ t: 'forget', key: rec.key });
    }
    await this.#store.append(records);
    return records.length;
  }

  // ---------------------------------------------------------------------------------------------------------

  async #reconcile(config: CompiledConfig, atStart: boolean): Promise<{ added: number; cancelled: number; rearmed: number }> {
    // NOTE: at 100,000 batches every pass below is a slice at a time with a yield between slices, so the HTTP
    // probes and the polls in flight keep going (issue #14); each slice is planned right before it is recorded.
    const yieldToLoop = this.#o.yieldToLoop ?? systemYield;
    const now = this.#o.clock.now();
    const batches = new Map<string, BatchConfig>();
    for (let i = 0; i < config.batches.length; i += 1) {
      if (i > 0 && i % RECONCILE_SLICE === 0) await yieldToLoop();
      const b = config.batches[i]!;
      batches.set(b.key, b);
    }
    this.#batches = batches;
    const input: ReconcileInput = {
      batches,
      records: { get: (key) => this.#store.record(key), values: () => this.#store.records() },
      busy: (key) => this.#scheduler.busy(key),
      scheduled: (key) => this.#scheduler.scheduled(key),
      now,
      atStart,
      statusQps: config.rateLimit.statusQps,
      random: this.#o.random,
    };
    const stats = { added: 0, cancelled: 0, rearmed: 0 };
    const resume: BatchRecord[] = [];
    const unparked: BatchRecord[] = [];
    for (let i = 0; i < config.batches.length; i += RECONCILE_SLICE) {
      if (i > 0) await yieldToLoop();
      // Stopped meanwhile (SIGTERM during a reload): the rest is planned again at the next start.
      if (this.#state !== 'running') return this.#abandon(atStart, stats);
      const slice = planEntries(input, config.batches.slice(i, i + RECONCILE_SLICE));
      for (const rec of slice.resume) resume.push(rec);
      for (const rec of slice.unparked) unparked.push(rec);
      await this.#recordPlanned(slice.steps, stats);
    }
    const { schedule, steps: unparkSteps } = planResumes(input, resume, unparked);
    await this.#recordPlanned(unparkSteps, stats);
    for (let i = 0; i < schedule.length; i += 1) {
      if (i > 0 && i % RECONCILE_SLICE === 0) await yieldToLoop();
      const { key, dueAt } = schedule[i]!;
      this.#scheduler.push(key, dueAt);
    }
    // Records no longer in the file, a slice at a time (records added meanwhile are in the file).
    const records = [...this.#store.records()];
    for (let i = 0; i < records.length; i += RECONCILE_SLICE) {
      await yieldToLoop();
      if (this.#state !== 'running') return this.#abandon(atStart, stats);
      const removals = planRemovals(input, records.slice(i, i + RECONCILE_SLICE).map((r) => this.#store.record(r.key) ?? r));
      await this.#recordPlanned(removals.steps, stats);
      for (const { key, dueAt } of removals.schedule) this.#scheduler.push(key, dueAt);
    }
    this.#notifySettled();
    return stats;
  }

  /**
   * A reconciliation cut short by stop(): a reload ends with what it recorded; a start fails with AbortedError
   * (SIGTERM while a large file is still being reconciled: the graceful stop must not wait for the rest).
   */
  #abandon<T>(atStart: boolean, stats: T): T {
    if (atStart) throw new AbortedError('stopped while reconciling the configuration at start');
    return stats;
  }

  /** Records planned steps in chunks (one append each) and schedules what they start. */
  async #recordPlanned(steps: readonly PlannedStep[], stats: { added: number; cancelled: number; rearmed: number }): Promise<void> {
    for (let i = 0; i < steps.length; i += RECONCILE_CHUNK) {
      const chunk = steps.slice(i, i + RECONCILE_CHUNK);
      // Not recorded: picked up by the next reload (or, for a pending batch that left the file, by its next run).
      if (!(await this.#record(chunk))) continue;
      for (const { step, kind } of chunk) {
        if (kind === 'renamed') continue;
        this.#scheduler.push(step.rec.key, step.rec.nextDueAt);
        stats[kind] += 1;
      }
    }
  }

  /** Withdraws the stale results of re-armed batches, then records the steps in one append. */
  async #record(planned: readonly PlannedStep[]): Promise<boolean> {
    for (const p of planned) {
      if (!p.withdrawResult || !this.#o.results.remove) continue;
      try {
        await this.#o.results.remove(p.step.rec.productKey, p.step.rec.applyId);
      } catch (err) {
        this.#o.log.warn({ err: coerceError(err), applyId: p.step.rec.applyId }, 'could not withdraw the result file of a re-armed batch');
      }
    }
    return this.#store.commit(planned.map((p) => p.step));
  }

  /** After a task: a batch whose entry changed meanwhile is re-planned; waiters hear of settled batches. */
  async #afterRun(key: string, due: number | null): Promise<number | null> {
    const rec = this.#store.record(key);
    if (rec && this.#state === 'running') {
      const entry = this.#batches.get(key);
      const now = this.#o.clock.now();
      // Removed from the file while its task ran: the next run cancels it.
      if (!entry && rec.state === 'pending') return now;
      const planned = entry ? entryStep(entry, rec, now) : null;
      if (planned && (await this.#record([planned])) && planned.kind === 'rearmed') due = planned.step.rec.nextDueAt;
    }
    this.#notifySettled();
    return due;
  }

  #notifySettled(force = false): void {
    if (this.#settledWaiters.length === 0) return;
    if (force || this.allSettled()) {
      const waiters = this.#settledWaiters;
      this.#settledWaiters = [];
      for (const w of waiters) w();
    }
  }

  #setFatal(error: DaemonError): void {
    if (this.#fatal) return;
    this.#fatal = error;
    if (this.#state === 'running') this.#state = 'stopping';
    this.#end();
  }
}
