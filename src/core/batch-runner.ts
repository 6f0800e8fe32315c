/**
 * The batch runner: the work of one batch when the scheduler dispatches it, and the interpreter of every effect
 * of the state machine (transitions.ts, settle-transitions.ts).
 *
 *   pending  ─► deadlines (timed_out, stalled) ─► one status poll (its token from the API budget, taken right
 *              before the request goes out) ─► applyStatus / applyError
 *   fetching ─► device pages (when the outcome has devices) ─► result file ─► settled (or parked) + batch.settled
 *
 * Every step is recorded (StateStore.commit) before any of its effects runs:
 * - `emit`: the events are recorded with the step and handed to the outbox by the store;
 * - `register`: BatchRegisterDeviceWithApplyId, once the intent is durable; its answer is the next step;
 * - `settle`: the outcome is known: fetch devices, write the result, mark settled;
 * - `fatal`: stop the whole daemon (retrying cannot help).
 *
 * `run` never rejects: it resolves with the key's next due time — the recorded `nextDueAt` of an open batch, a
 * retry time from transitions.ts when a step could not be recorded or the task failed, or null once settled.
 */
import type { BatchConfig, CompiledConfig } from '../config/types.js';
import { DaemonError, coerceError } from '../errors.js';
import type { ApiBudget, Reservation } from './api-budget.js';
import type { Clock, Random } from './clock.js';
import type { DeviceInfo, IotApi, Log, ResultWriter } from './ports.js';
import { isOpen, policyFor } from './reconcile-plan.js';
import type { BatchRecord } from './record.js';
import { buildResult, fetchFailed, needsDevices, resultWriteFailed, settled } from './settle-transitions.js';
import { type StateStore, isQuiet } from './state-store.js';
import {
  type Step,
  applyError,
  applyRegistration,
  applyStatus,
  cancel,
  checkDeadlines,
  retryAfterCrash,
  retryAfterWriteFailure,
} from './transitions.js';

export interface BatchRunnerOptions {
  /** Durable state; its publisher (the outbox) is attached by whoever builds it. */
  store: StateStore;
  /**
   * Status polls take their token here; retried calls take theirs in the API client (one per attempt). With
   * `reserve` (ApiBudget has it) a poll reserves its token when it starts and takes it in `beforeSend`, after
   * signing; without it, it takes the token before calling the API.
   */
  budget: Pick<ApiBudget, 'acquire'> & Partial<Pick<ApiBudget, 'reserve'>>;
  /** For status polls: one attempt per poll, the batch's backoff does the retrying. */
  statusApi: IotApi;
  /** For device paging and registration: retries inside, each attempt budgeted by the client. */
  api: IotApi;
  /** Result files; `remove` (optional) withdraws a stale result when a settled batch is re-armed. */
  results: ResultWriter;
  clock: Clock;
  random: Random;
  log: Log;
  /** The configuration in force (devices, defaults for batches that left the file). */
  config(): CompiledConfig;
  /** The batch's entry in the configuration, if it is still there. */
  entry(key: string): BatchConfig | undefined;
  /** A process-fatal error: the daemon must stop. */
  onFatal(error: DaemonError): void;
  /** A batch settled (result written, event recorded). */
  onSettled?(rec: BatchRecord): void;
}

const STATUS_ACTION = 'QueryBatchRegisterDeviceStatus';

/** A step could not be recorded: the task ends, and the batch is retried from its last durable record. */
const UNRECORDED = false;

/** See the module comment. */
export class BatchRunner {
  readonly #o: BatchRunnerOptions;

  constructor(options: BatchRunnerOptions) {
    this.#o = options;
  }

  /** Does the due work of `key`; resolves with its next due time (never rejects). */
  async run(key: string, signal: AbortSignal): Promise<number | null> {
    const rec = this.#o.store.record(key);
    if (!rec) return null;
    const entry = this.#o.entry(key);
    const policy = policyFor(this.#o.config(), entry, rec);
    try {
      if (!(await this.work(rec, entry, policy, signal))) return retryAfterWriteFailure(policy, this.#o.clock.now());
    } catch (err) {
      this.#o.log.error({ err: coerceError(err), key }, 'batch task failed unexpectedly; will retry');
      return retryAfterCrash(policy, this.#o.clock.now());
    }
    const after = this.#o.store.record(key);
    return after && isOpen(after) ? after.nextDueAt : null;
  }

  private async work(rec: BatchRecord, entry: BatchConfig | undefined, policy: BatchConfig, signal: AbortSignal): Promise<boolean> {
    if (rec.state === 'fetching') return this.settle(rec, policy, signal);
    if (rec.state !== 'pending') return true;
    if (!entry) return this.apply(cancel(rec, this.#o.clock.now()), policy, signal);
    const deadlines = checkDeadlines(rec, entry, this.#o.clock.now());
    if (deadlines.effects.length > 0) {
      if (!(await this.apply(deadlines, entry, signal))) return UNRECORDED;
      const now = this.#o.store.record(rec.key);
      if (now?.state !== 'pending') return true;
      return this.poll(now, entry, signal);
    }
    return this.poll(rec, entry, signal);
  }

  /** Records a step, then performs its effects in order. Resolves false when something could not be recorded. */
  private async apply(step: Step, policy: BatchConfig, signal: AbortSignal): Promise<boolean> {
    if (!(await this.#o.store.commit([step]))) return UNRECORDED;
    for (const effect of step.effects) {
      switch (effect.kind) {
        case 'emit':
          break; // recorded with the step; the store handed the event to the outbox
        case 'register':
          if (!(await this.register(policy, signal))) return UNRECORDED;
          break;
        case 'settle': {
          const rec = this.#o.store.record(step.rec.key);
          if (rec?.state === 'fetching') return this.settle(rec, policy, signal);
          break;
        }
        case 'fatal':
          this.#o.onFatal(effect.error);
          break;
      }
    }
    return true;
  }

  private async poll(rec: BatchRecord, batch: BatchConfig, signal: AbortSignal): Promise<boolean> {
    const { clock, random, log } = this.#o;
    const started = clock.now();
    let step: Step;
    let requestId: string | null = null;
    // The token is reserved now (this task was dispatched because one was free) and taken in beforeSend, after
    // signing, so the server sees the spacing the budget granted.
    const { budget } = this.#o;
    let reservation: Reservation | null = null;
    try {
      if (budget.reserve) reservation = budget.reserve(STATUS_ACTION);
      else await budget.acquire(STATUS_ACTION, signal);
      const r = reservation;
      const result = await this.#o.statusApi.queryBatchRegisterDeviceStatus(
        { productKey: batch.productKey, applyId: batch.applyId, iotInstanceId: batch.iotInstanceId },
        r === null
          ? { signal, endpoint: batch.endpoint }
          : { signal, endpoint: batch.endpoint, beforeSend: () => r.take(signal), onSent: () => r.sent() },
      );
      // NOTE: an IotApi that ignores beforeSend still pays for its request (late, but never for free).
      if (reservation !== null && !reservation.taken) await reservation.take(signal);
      requestId = result.requestId;
      step = applyStatus(rec, batch, result, clock.now(), random);
    } catch (err) {
      // Unknown whether it went out: charge it, as above (nothing is charged for an aborted poll).
      if (reservation !== null && !reservation.taken && !signal.aborted) await reservation.take(signal).catch(() => undefined);
      const e = toDaemonError(err);
      if (e.kind === 'aborted' || signal.aborted) return true;
      if (e.kind === 'internal') log.error({ err: e, applyId: rec.applyId }, 'unexpected error while polling');
      step = applyError(rec, batch, e, clock.now(), random);
    } finally {
      reservation?.cancel();
    }
    if (log.isLevelEnabled?.('debug') !== false) {
      const now = clock.now();
      log.debug(
        {
          applyId: rec.applyId,
          productKey: rec.productKey,
          status: step.rec.status,
          attempt: step.rec.attempt,
          delayMs: Math.max(0, step.rec.nextDueAt - now),
          requestId,
          durationMs: now - started,
          error: step.rec.lastError?.code,
        },
        'poll',
      );
    }
    // A poll that only moved the backoff is recorded in the next group (see StateStore.defer for the bound).
    if (isQuiet(rec, step)) {
      this.#o.store.defer(step.rec);
      return true;
    }
    return this.apply(step, batch, signal);
  }

  private async register(batch: BatchConfig, signal: AbortSignal): Promise<boolean> {
    const { clock, random, log } = this.#o;
    let outcome: Parameters<typeof applyRegistration>[2];
    try {
      const res = await this.#o.api.batchRegisterDeviceWithApplyId(
        { productKey: batch.productKey, applyId: batch.applyId, iotInstanceId: batch.iotInstanceId },
        { signal, endpoint: batch.endpoint },
      );
      outcome = { ok: true, requestId: res.requestId };
      log.info({ applyId: batch.applyId, productKey: batch.productKey, requestId: res.requestId }, 'BatchRegisterDeviceWithApplyId accepted');
    } catch (err) {
      const e = toDaemonError(err);
      if (e.kind === 'aborted' || signal.aborted) return true;
      log.warn({ applyId: batch.applyId, productKey: batch.productKey, code: e.code, err: e }, 'BatchRegisterDeviceWithApplyId failed');
      outcome = { ok: false, error: e };
    }
    const rec = this.#o.store.record(batch.key);
    if (!rec) return true;
    return this.apply(applyRegistration(rec, batch, outcome, clock.now(), random), batch, signal);
  }

  /** The `settle` effect: devices (when the outcome has some), the result file, then settled. */
  private async settle(rec: BatchRecord, policy: BatchConfig, signal: AbortSignal): Promise<boolean> {
    const { clock, random, log, store } = this.#o;
    const config = this.#o.config();
    let devices: DeviceInfo[] = [];
    if (config.devices.fetch && needsDevices(rec.outcome)) {
      try {
        const all = await this.#o.api.listAllDevicesByApplyId(
          { applyId: rec.applyId, iotInstanceId: policy.iotInstanceId },
          { signal, endpoint: policy.endpoint },
        );
        devices = all.devices;
      } catch (err) {
        const e = toDaemonError(err);
        if (e.kind === 'aborted' || signal.aborted) return true;
        const step = fetchFailed(rec, policy, e, clock.now(), random);
        const fields = { applyId: rec.applyId, productKey: rec.productKey, code: e.code, fetchAttempts: step.rec.fetchAttempts };
        if (e.scope === 'batch') log.warn({ ...fields, reason: step.rec.reason }, 'device fetch refused; the batch is parked until its entry changes');
        else if (e.scope === 'attempt') {
          log.warn({ ...fields, delayMs: step.rec.nextDueAt - clock.now() }, 'device fetch failed; the batch stays recorded and is retried');
        }
        return this.apply(step, policy, signal);
      }
    }
    let file: string;
    try {
      file = await this.#o.results.write(buildResult(rec, devices, config.devices.includeSecrets));
      store.reportResultWrite(true);
    } catch (err) {
      const e =
        err instanceof DaemonError
          ? err
          : new DaemonError(`result file write failed: ${coerceError(err).message}`, { kind: 'store', scope: 'attempt', code: 'ResultWrite', cause: err });
      log.error({ applyId: rec.applyId, productKey: rec.productKey, err: e }, 'could not write the result file; will retry');
      store.reportResultWrite(false, e);
      return this.apply(resultWriteFailed(rec, policy, e, clock.now(), random), policy, signal);
    }
    if (!(await store.commit([settled(rec, file, devices.length)]))) return UNRECORDED;
    const stored = store.record(rec.key);
    if (stored) this.#o.onSettled?.(stored);
    return true;
  }
}

function toDaemonError(err: unknown): DaemonError {
  if (err instanceof DaemonError) return err;
  const e = coerceError(err);
  return new DaemonError(`internal error: ${e.message}`, { kind: 'internal', scope: 'attempt', code: 'Internal', cause: e });
}
