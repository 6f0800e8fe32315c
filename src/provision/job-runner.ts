/**
 * Runs one provisioning job to the end: plans its chunks, submits the due ones one at a time under the submit
 * budget, watches every ApplyId, and writes the report and factory CSV whenever a chunk settles. The decisions
 * are chunk-transitions.ts'; this file performs them through ports, so it runs against fakes in tests and
 * against the daemon's watcher and ledger in production.
 *
 * Order of one submission: take a budget token, make the intent durable (`submitting`), send, make the answer
 * durable (the ApplyId, `watching`), announce it, start watching. Every save waits for the ones before it.
 *
 * Announcements (the `emit` port: durable events in the daemon) are at least once: each one's fact is recorded in
 * the job state (`announced`) after `emit` resolved, and a start announces again what a crash left unrecorded.
 *
 * In the daemon a run can be told about appended names ({@link ProvisionRunner.extend}) and told to stop submitting
 * while it keeps watching what it submitted ({@link ProvisionRunner.drain}).
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
  /**
   * Announces a fact. `fact` identifies it within the job (stable across restarts): the same fact is announced again
   * only when a crash came between announcing it and recording that it was. A returned promise (a durable event) is
   * awaited; any other return value is ignored.
   */
  emit(type: 'provision.chunk_submitted' | 'provision.chunk_parked' | 'provision.settled', fields: Record<string, unknown>, fact: string): unknown;
  /** Progress after every change (the CLI's progress line). */
  onProgress?(state: JobState): void;
  /**
   * A save of a submission's answer failed and is retried in `delayMs` (the store is down for a moment). `applyId`
   * is the answer's, so an operator can adopt it should the process die before the save succeeds.
   */
  onSaveRetry?(info: { chunk: number; applyId: string | null; delayMs: number; error: unknown }): void;
  retry?: RetryPolicy;
}

/** Delays of the retried save of a submission's answer: 1 s doubling to 30 s. */
const ANSWER_SAVE_RETRY: RetryPolicy = { initialDelayMs: 1000, maxDelayMs: 30_000 };

/** Store errors that end a save for good: another process owns the state now (retrying cannot help). */
const OWNERSHIP_LOST = new Set(['LeaseLost', 'LeaseNotHeld', 'LedgerLocked']);

/** Whether a failed save may succeed later: a store error (database or disk) other than a lost ownership. */
function retryableSave(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { kind, code } = err as { kind?: unknown; code?: unknown };
  return kind === 'store' && !(typeof code === 'string' && OWNERSHIP_LOST.has(code));
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
  /** The device file as re-read while running (appended names), applied at the loop's next turn. */
  #extension: DeviceList | null = null;
  /** No more submissions; the run ends once the watches in flight end. */
  #draining = false;
  /** The run has decided to end: extend() is refused from then on. */
  #closed = false;
  /** The submission in flight, if any. */
  #submitting: Promise<void> | null = null;

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

  /** Announces a fact once (at least once across crashes; see the module comment). */
  async #announce(type: 'provision.chunk_submitted' | 'provision.chunk_parked' | 'provision.settled', fields: Record<string, unknown>, fact: string): Promise<void> {
    if (this.#current().announced?.includes(fact) === true) return;
    await this.#o.emit(type, { job: this.#o.spec.name, productKey: this.#o.spec.productKey, ...fields }, fact);
    const state = this.#current();
    this.#state = { ...state, announced: [...(state.announced ?? []), fact] };
    const next = this.#saving.then(() => this.#o.store.save(this.#current()));
    this.#saving = next.catch(() => undefined);
    await next;
  }

  async #perform(rec: ChunkRecord, effects: readonly ChunkEffect[], signal: AbortSignal | undefined): Promise<void> {
    for (const effect of effects) {
      if (effect.kind === 'persist') await this.#put(rec);
      else if (effect.kind === 'emit') await this.#announce(effect.type, effect.fields, chunkFact(effect.type, rec));
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
    // NOTE: until it is durable the answer lives only here. A save that fails for a moment (the database restarting,
    // a full disk) is retried rather than ending the run: the chunk would stay `submitting`, and a count chunk would
    // be parked at the next run although its ApplyId was known. Not past a lost ownership, nor past stop().
    for (let delayMs = ANSWER_SAVE_RETRY.initialDelayMs; ; delayMs = Math.min(delayMs * 2, ANSWER_SAVE_RETRY.maxDelayMs)) {
      try {
        await this.#perform(step.rec, step.effects, signal);
        return;
      } catch (err) {
        if (!retryableSave(err) || signal?.aborted === true) throw err;
        this.#o.onSaveRetry?.({ chunk: index, applyId: answer.ok ? answer.applyId : null, delayMs, error: err });
        await this.#o.clock.sleep(delayMs, signal);
      }
    }
  }

  /**
   * Hands a running job the device file as read again (names appended to it are planned and submitted; names removed
   * change nothing submitted). Returns false when the run is ending (or ended): start a new run instead.
   */
  extend(devices: DeviceList): boolean {
    if (this.#closed || this.#state === null) return false;
    this.#extension = devices;
    this.#notify();
    return true;
  }

  /**
   * Stops submitting: the submission in flight (if any) finishes, no other one starts, and the run ends once the
   * chunks already submitted have settled. Resolves when no submission is in flight.
   */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#notify();
    await this.#submitting?.catch(() => undefined);
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
    for (const { chunk, effect } of reconciled.effects) {
      if (effect.kind === 'emit') await this.#announce(effect.type, effect.fields, chunkFact(effect.type, this.#chunk(chunk)));
    }
    // Announcements a crash may have left unrecorded (no-ops when recorded).
    for (const rec of this.#state.chunks) {
      if (rec.applyId !== null && rec.state !== 'planned' && rec.state !== 'submitting' && rec.state !== 'submission_unknown') {
        await this.#announce('provision.chunk_submitted', submittedFields(rec), chunkFact('provision.chunk_submitted', rec));
      } else if (rec.state === 'submission_unknown') {
        await this.#announce('provision.chunk_parked', { chunk: rec.index, reason: rec.reason }, chunkFact('provision.chunk_parked', rec));
      }
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
      if (this.#extension !== null && !this.#draining) {
        // NOTE: nothing is `submitting` here (submissions are awaited below), so reconciling recovers nothing.
        const extended = reconcileJob(this.#current(), o.spec, this.#extension, o.clock.now());
        this.#extension = null;
        this.#state = extended.state;
        const saved = this.#saving.then(() => o.store.save(this.#current()));
        this.#saving = saved.catch(() => undefined);
        await saved;
        o.onProgress?.(this.#state);
      }
      const now = o.clock.now();
      const due = this.#draining ? undefined : this.#current().chunks.find((c) => isDue(c, now));
      if (due !== undefined) {
        this.#submitting = this.#submit(due.index, signal);
        try {
          await this.#submitting;
        } finally {
          this.#submitting = null;
        }
        continue;
      }
      if ((isJobSettled(this.#current()) || this.#draining) && this.#watches.size === 0) {
        this.#closed = true;
        break;
      }
      // Sleep until the next retry is due or a watch ends, whichever comes first.
      let next = Infinity;
      if (!this.#draining) for (const c of this.#current().chunks) if (c.state === 'planned') next = Math.min(next, c.notBefore);
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
    if (report.settled) {
      const d = report.summary.devices;
      await this.#announce('provision.settled', { outcome: report.outcome, ...d, chunks: report.summary.chunks.total }, `settled:${report.summary.chunks.total}:${d.requested}:${d.created}:${d.rejected}`);
    }
    return report;
  }
}

function submittedFields(rec: ChunkRecord): Record<string, unknown> {
  return { chunk: rec.index, applyId: rec.applyId, requested: rec.requested, submission: rec.submissions };
}

/** The fact of a chunk's announcement: stable for the same submission (or parking) of the chunk. */
function chunkFact(type: 'provision.chunk_submitted' | 'provision.chunk_parked' | 'provision.settled', rec: ChunkRecord): string {
  return type === 'provision.chunk_submitted' ? `submitted:${rec.index}:${rec.applyId ?? ''}` : `parked:${rec.index}:${rec.applyIds.length}`;
}
