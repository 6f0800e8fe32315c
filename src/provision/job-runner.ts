/**
 * Runs one provisioning job to the end: plans its chunks, submits the due ones one at a time under the submit
 * budget, watches every ApplyId, and writes the report and factory CSV whenever a chunk settles. The decisions
 * are chunk-transitions.ts'; this file performs them through ports, so it runs against fakes in tests and
 * against the daemon's watcher and ledger in production.
 *
 * Order of one submission: take a budget token, make the intent durable (`submitting`), send, make the answer
 * durable (the ApplyId, `watching`), announce it, start watching. Every save waits for the ones before it.
 */

import type { Clock } from '../core/clock.js';
import {
  type ChunkBatchOutcome,
  type ChunkEffect,
  type ChunkRecord,
  type RetryPolicy,
  type SubmitFailure,
  DEFAULT_SUBMIT_RETRY,
  batchSettled,
  isDue,
  startSubmission,
  submissionAccepted,
  submissionFailed,
} from './chunk-transitions.js';
import type { DeviceList } from './device-list.js';
import { type JobSpec, type JobState, isJobSettled, jobView, reconcileJob, withChunk } from './job-state.js';
import { type ProvisionReport, buildProvisionReport } from './provision-report.js';

/** What a submission answered. */
export type SubmitAnswer =
  | { ok: true; applyId: string; refused: readonly { deviceName: string; reason: string }[] }
  | { ok: false; failure: SubmitFailure };

/** Sends a chunk's BatchCheckDeviceNames or BatchRegisterDevice. Never throws: failures are answers. */
export interface ChunkSubmitter {
  submit(rec: ChunkRecord, spec: JobSpec, signal?: AbortSignal): Promise<SubmitAnswer>;
}

/** Watches an ApplyId as a batch until it settles (the daemon's watcher, with `register` and `until`). */
export interface ChunkWatcher {
  watch(req: { spec: JobSpec; chunk: number; applyId: string; register: boolean; until: 'created' | 'checked' }, signal?: AbortSignal): Promise<ChunkBatchOutcome>;
}

/** Durable job state. `save` resolves once the state is durable. */
export interface JobStore {
  load(name: string): Promise<JobState | null>;
  save(state: JobState): Promise<void>;
}

/** The account's submit budget (Alibaba: 10 QPS for each submit action). */
export interface SubmitBudget {
  acquire(action: 'BatchCheckDeviceNames' | 'BatchRegisterDevice', signal?: AbortSignal): Promise<void>;
}

/** Options of {@link ProvisionRunner}. */
export interface ProvisionRunnerOptions {
  spec: JobSpec;
  /** The device file as read now (names jobs), null for count jobs. */
  devices: DeviceList | null;
  store: JobStore;
  submitter: ChunkSubmitter;
  watcher: ChunkWatcher;
  budget: SubmitBudget;
  clock: Clock;
  /** Writes the report and CSV (provision-output-writer.ts in production). */
  writeOutputs(report: ProvisionReport): Promise<void>;
  emit(type: 'provision.chunk_submitted' | 'provision.chunk_parked' | 'provision.settled', fields: Record<string, unknown>): void;
  /** Progress after every change (the CLI's progress line). */
  onProgress?(state: JobState): void;
  retry?: RetryPolicy;
}

/** The fatal end of a job: retrying cannot help (credentials, signature). */
export class ProvisionFatalError extends Error {
  override name = 'ProvisionFatalError';
  constructor(readonly failure: SubmitFailure) {
    super(`${failure.code}: ${failure.message}`);
  }
}

/** See the module comment. */
export class ProvisionRunner {
  #state: JobState | null = null;
  #saving: Promise<void> = Promise.resolve();
  #wake: (() => void) | null = null;
  /** The first error of a watch (or its bookkeeping): the run ends with it. */
  #error: { error: unknown } | null = null;
  readonly #watches = new Set<Promise<void>>();
  readonly #o: ProvisionRunnerOptions;

  constructor(options: ProvisionRunnerOptions) {
    this.#o = options;
  }

  /** The current state (after `run` has loaded it). */
  get state(): JobState | null {
    return this.#state;
  }

  #current(): JobState {
    if (this.#state === null) throw new Error('ProvisionRunner: not started');
    return this.#state;
  }

  #chunk(index: number): ChunkRecord {
    const rec = this.#current().chunks.find((c) => c.index === index);
    if (rec === undefined) throw new Error(`ProvisionRunner: no chunk ${index}`);
    return rec;
  }

  /** Sets a chunk's record and makes the whole state durable (after every earlier save). */
  async #put(rec: ChunkRecord): Promise<void> {
    this.#state = withChunk(this.#current(), rec);
    this.#o.onProgress?.(this.#state);
    const next = this.#saving.then(() => this.#o.store.save(this.#current()));
    this.#saving = next.catch(() => undefined);
    await next;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #perform(rec: ChunkRecord, effects: readonly ChunkEffect[], signal: AbortSignal | undefined): Promise<void> {
    for (const effect of effects) {
      if (effect.kind === 'persist') await this.#put(rec);
      else if (effect.kind === 'emit') this.#o.emit(effect.type, { job: this.#o.spec.name, productKey: this.#o.spec.productKey, ...effect.fields });
      else if (effect.kind === 'fatal') throw new ProvisionFatalError(effect.failure);
      else if (effect.kind === 'watch') this.#startWatch(rec.index, effect, signal);
      // 'submit' is performed by #submit itself.
    }
  }

  #startWatch(index: number, effect: Extract<ChunkEffect, { kind: 'watch' }>, signal: AbortSignal | undefined): void {
    const watch = (async () => {
      const outcome = await this.#o.watcher.watch({ spec: this.#o.spec, chunk: index, applyId: effect.applyId, register: effect.register, until: effect.until }, signal);
      const step = batchSettled(this.#chunk(index), outcome, this.#o.clock.now());
      await this.#perform(step.rec, step.effects, signal);
      await this.#o.writeOutputs(this.report());
    })();
    this.#watches.add(watch);
    watch
      .catch((error: unknown) => {
        this.#error ??= { error };
      })
      .finally(() => {
        this.#watches.delete(watch);
        this.#notify();
      });
  }

  async #submit(index: number, signal: AbortSignal | undefined): Promise<void> {
    const action = this.#chunk(index).kind === 'names' ? 'BatchCheckDeviceNames' : 'BatchRegisterDevice';
    await this.#o.budget.acquire(action, signal);
    const intent = startSubmission(this.#chunk(index), this.#o.clock.now());
    await this.#perform(intent.rec, intent.effects.filter((e) => e.kind !== 'submit'), signal);
    const answer = await this.#o.submitter.submit(intent.rec, this.#o.spec, signal);
    const now = this.#o.clock.now();
    const step = answer.ok
      ? submissionAccepted(intent.rec, { applyId: answer.applyId, refused: answer.refused }, this.#o.spec.until)
      : submissionFailed(intent.rec, answer.failure, now, this.#o.retry ?? DEFAULT_SUBMIT_RETRY);
    await this.#perform(step.rec, step.effects, signal);
  }

  /** The report of the current state. */
  report(): ProvisionReport {
    return buildProvisionReport(jobView(this.#current(), this.#o.spec));
  }

  /**
   * Runs the job until every chunk has settled (or is parked), then writes the outputs, emits
   * `provision.settled` and returns the report.
   *
   * @throws ProvisionFatalError when a submission says nobody can make progress; the signal's reason when aborted.
   */
  async run(signal?: AbortSignal): Promise<ProvisionReport> {
    const o = this.#o;
    const reconciled = reconcileJob(await o.store.load(o.spec.name), o.spec, o.devices, o.clock.now());
    this.#state = reconciled.state;
    await o.store.save(this.#state);
    for (const { effect } of reconciled.effects) {
      if (effect.kind === 'emit') o.emit(effect.type, { job: o.spec.name, productKey: o.spec.productKey, ...effect.fields });
    }
    // Chunks already watching (a restart) are watched again; the watcher resumes their batches.
    for (const rec of this.#state.chunks) {
      if (rec.state === 'watching' && rec.applyId !== null) {
        const until = rec.kind === 'count' ? 'created' : o.spec.until;
        this.#startWatch(rec.index, { kind: 'watch', applyId: rec.applyId, register: rec.kind === 'names' && until === 'created', until }, signal);
      }
    }
    o.onProgress?.(this.#state);
    for (;;) {
      signal?.throwIfAborted();
      if (this.#error !== null) throw this.#error.error;
      const now = o.clock.now();
      const due = this.#current().chunks.find((c) => isDue(c, now));
      if (due !== undefined) {
        await this.#submit(due.index, signal);
        continue;
      }
      if (isJobSettled(this.#current()) && this.#watches.size === 0) break;
      // Sleep until the next retry is due or a watch ends, whichever comes first.
      let next = Infinity;
      for (const c of this.#current().chunks) if (c.state === 'planned') next = Math.min(next, c.notBefore);
      const woken = new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      const sleeper = new AbortController();
      const onAbort = () => {
        sleeper.abort(signal?.reason);
        this.#notify();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        // NOTE: the sleep is cut short when the race ends; its rejection then is expected, and swallowed.
        const sleep = Number.isFinite(next) ? o.clock.sleep(Math.max(0, next - now), sleeper.signal).catch(() => undefined) : null;
        await Promise.race(sleep === null ? [woken] : [woken, sleep]);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        sleeper.abort();
      }
    }
    await this.#saving;
    const report = this.report();
    await o.writeOutputs(report);
    o.emit('provision.settled', { job: o.spec.name, productKey: o.spec.productKey, outcome: report.outcome, ...report.summary.devices, chunks: report.summary.chunks.total });
    return report;
  }
}
