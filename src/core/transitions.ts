/**
 * The batch state machine of DESIGN.md §3, as pure functions: (record, observation, now, random) → (record, effects).
 * The batch runner (batch-runner.ts) performs the effects; nothing here does I/O or reads the clock. Every due
 * time (`nextDueAt`, and the retry times the scheduler uses when a step could not be recorded) is decided here;
 * what happens once the outcome is known is in settle-transitions.ts.
 *
 * Status handling (the contract table):
 *
 * | seen status    | until: checked  | until: created, register: false          | until: created, register: true        |
 * |----------------|-----------------|------------------------------------------|---------------------------------------|
 * | CHECK, CREATE  | keep polling    | keep polling                             | keep polling                          |
 * | CHECK_SUCCESS  | settle checked  | awaiting_registration, poll slowly       | BatchRegisterDeviceWithApplyId once   |
 * | CHECK_FAILED   | check_failed    | check_failed                             | check_failed                          |
 * | CREATE_SUCCESS | created         | created                                  | created                               |
 * | CREATE_FAILED  | create_failed   | create_failed                            | create_failed                         |
 * | anything else  | unexpected_status, keep polling                                                              |
 *
 * Phases: `check` (CHECK), `awaiting` (CHECK_SUCCESS while waiting for a registration), `create` (CREATE).
 * A phase change resets the backoff (attempt 1: the next delay is `initialDelay`) and the stalled clock.
 * A status that moves backwards (create → check) is reported as `batch.unexpected_status` with a reason and
 * polling continues.
 *
 * Registration (`register: true`) is at most once per ApplyId: the `intent` is journaled before the call. After
 * a crash or a transient failure with the intent on record, the call is repeated only once a fresh poll still
 * shows CHECK_SUCCESS (so the first call did not land); a business error saying the batch is already being
 * created counts as done.
 */
import type { BatchConfig } from '../config/types.js';
import type { DaemonError } from '../errors.js';
import type { EventType, Outcome, WatcherEvent } from '../events.js';
import { nextDelayMs, spreadOverdueMs } from './backoff.js';
import type { Random } from './clock.js';
import type { BatchStatusResult } from './ports.js';
import { type BatchRecord, DEFAULT_ACCOUNT, accountOf, eventId } from './record.js';

/** Keep at most this many history samples per batch (first ones and the latest). */
export const MAX_HISTORY = 50;

export type Effect =
  | { kind: 'emit'; type: EventType; discriminator: string; fields: Partial<WatcherEvent> }
  /** Call BatchRegisterDeviceWithApplyId; the record with `registration.state = 'intent'` must be durable first. */
  | { kind: 'register' }
  /** The outcome is known; fetch devices if needed, write the result file, then mark settled. */
  | { kind: 'settle' }
  /** Stop the whole daemon: retrying cannot help. */
  | { kind: 'fatal'; error: DaemonError };

export interface Step {
  rec: BatchRecord;
  effects: Effect[];
}

export type Phase = 'check' | 'awaiting' | 'create' | 'unknown';

const KNOWN_STATUSES = new Set(['CHECK', 'CHECK_SUCCESS', 'CHECK_FAILED', 'CREATE', 'CREATE_SUCCESS', 'CREATE_FAILED']);

export function isKnownStatus(status: string | null): boolean {
  return status !== null && KNOWN_STATUSES.has(status);
}

/** The phase a status belongs to; `awaiting` is CHECK_SUCCESS. */
export function phaseOf(status: string | null): Phase {
  switch (status) {
    case 'CHECK':
    case 'CHECK_FAILED':
      return 'check';
    case 'CHECK_SUCCESS':
      return 'awaiting';
    case 'CREATE':
    case 'CREATE_SUCCESS':
    case 'CREATE_FAILED':
      return 'create';
    default:
      return 'unknown';
  }
}

const PHASE_ORDER: Record<Phase, number> = { unknown: -1, check: 0, awaiting: 1, create: 2 };

/** A fresh record for a batch first seen at `now`; its first poll is due immediately. */
export function createRecord(batch: BatchConfig, now: number): BatchRecord {
  return {
    key: batch.key,
    // NOTE: only for accounts other than `default`, so records of a file without `accounts` stay as they were.
    ...(batch.account === DEFAULT_ACCOUNT ? {} : { account: batch.account }),
    applyId: batch.applyId,
    productKey: batch.productKey,
    name: batch.name,
    labels: { ...batch.labels },
    entryHash: batch.entryHash,
    state: 'pending',
    status: null,
    attempt: 0,
    polls: 0,
    firstSeenAt: now,
    phaseStartedAt: now,
    nextDueAt: now,
    stalledWarned: false,
    registration: null,
    lastError: null,
    history: [],
    validNames: [],
    invalidNames: [],
    invalidDetails: [],
    outcome: null,
    settledAt: null,
    reason: null,
    resultFile: null,
    deviceCount: null,
    fetchAttempts: 0,
    eventSeq: 0,
  };
}

/** The `batch.added` step for a new record. */
export function added(rec: BatchRecord): Step {
  return { rec, effects: [emit('batch.added', 'added', {})] };
}

/** An `emit` effect. */
export function emit(type: EventType, discriminator: string, fields: Partial<WatcherEvent>): Effect {
  return { kind: 'emit', type, discriminator, fields };
}

/** When the batch times out (`polling.timeout` from first sight). */
export function deadlineOf(rec: BatchRecord, batch: BatchConfig): number {
  return rec.firstSeenAt + batch.polling.timeoutMs;
}

/** Schedules the next poll: backoff (capped for awaiting), never past the timeout deadline. */
function schedule(rec: BatchRecord, batch: BatchConfig, now: number, random: Random): BatchRecord {
  const cap =
    phaseOf(rec.status) === 'awaiting' && !batch.register && batch.until === 'created'
      ? Math.max(batch.polling.maxDelayMs, batch.polling.awaitingRegistrationDelayMs)
      : undefined;
  const delay = nextDelayMs(batch.polling, Math.max(1, rec.attempt), random, cap);
  const due = Math.min(now + delay, Math.max(now, deadlineOf(rec, batch)));
  return { ...rec, nextDueAt: due };
}

/** The outcome is known: the record moves to `fetching` (devices, result file), due at once. */
export function settle(rec: BatchRecord, outcome: Outcome, now: number, reason: string | null): BatchRecord {
  return { ...rec, state: 'fetching', outcome, settledAt: now, reason, nextDueAt: now, fetchAttempts: 0 };
}

function pushHistory(history: BatchRecord['history'], status: string, at: number): BatchRecord['history'] {
  const next = [...history, { status, at }];
  // NOTE: keep the first samples (how it started) and the newest; a flapping batch must not grow without bound.
  return next.length > MAX_HISTORY ? [...next.slice(0, 10), ...next.slice(next.length - (MAX_HISTORY - 10))] : next;
}

/**
 * Checks the deadlines of a pending batch before it is polled: `timed_out` once `polling.timeout` has passed
 * since first sight, and one `batch.stalled` per phase once it lasted `polling.stalledAfter`.
 */
export function checkDeadlines(rec: BatchRecord, batch: BatchConfig, now: number): Step {
  if (rec.state !== 'pending') return { rec, effects: [] };
  if (now >= deadlineOf(rec, batch)) {
    const reason = `no final status after ${batch.polling.timeoutMs} ms (polling.timeout)`;
    return { rec: settle(rec, 'timed_out', now, reason), effects: [{ kind: 'settle' }] };
  }
  const phaseMs = now - rec.phaseStartedAt;
  if (!rec.stalledWarned && phaseMs >= batch.polling.stalledAfterMs) {
    return {
      rec: { ...rec, stalledWarned: true },
      effects: [
        emit('batch.stalled', `stalled-${rec.status ?? 'none'}`, {
          phaseMs,
          reason: `status ${rec.status ?? '(none yet)'} for ${phaseMs} ms (polling.stalledAfter ${batch.polling.stalledAfterMs} ms)`,
        }),
      ],
    };
  }
  return { rec, effects: [] };
}

/** Applies one successful QueryBatchRegisterDeviceStatus answer. */
export function applyStatus(
  rec0: BatchRecord,
  batch: BatchConfig,
  result: BatchStatusResult,
  now: number,
  random: Random,
): Step {
  const effects: Effect[] = [];
  const status = result.status;
  const previous = rec0.status;
  let rec: BatchRecord = {
    ...rec0,
    polls: rec0.polls + 1,
    attempt: rec0.attempt + 1,
    lastError: null,
    validNames: result.validNames,
    invalidNames: result.invalidNames,
    invalidDetails: result.invalidDetails,
  };

  if (status === null || !isKnownStatus(status)) {
    const shown = status ?? '(missing Data.Status)';
    if (status !== previous || rec0.polls === 0) {
      if (status !== null) rec = { ...rec, status, history: pushHistory(rec.history, status, now) };
      effects.push(
        emit('batch.unexpected_status', `unexpected-${shown}`, {
          reason: `unexpected status ${shown}; polling continues`,
          previousStatus: previous,
        }),
      );
    }
    return { rec: schedule(rec, batch, now, random), effects };
  }

  if (status !== previous) {
    const oldPhase = phaseOf(previous);
    const newPhase = phaseOf(status);
    rec = { ...rec, status, history: pushHistory(rec.history, status, now) };
    effects.push(emit('batch.status_changed', status, { previousStatus: previous }));
    if (previous !== null && isKnownStatus(previous) && PHASE_ORDER[newPhase] < PHASE_ORDER[oldPhase]) {
      effects.push(
        emit('batch.unexpected_status', `regression-${status}`, {
          previousStatus: previous,
          reason: `status went backwards from ${previous} to ${status}; polling continues`,
        }),
      );
    }
    if (newPhase !== oldPhase) {
      rec = { ...rec, attempt: 1, phaseStartedAt: now, stalledWarned: false };
    }
  }

  switch (status) {
    case 'CHECK':
    case 'CREATE':
      return { rec: schedule(rec, batch, now, random), effects };
    case 'CHECK_FAILED':
      return { rec: settle(rec, 'check_failed', now, null), effects: [...effects, { kind: 'settle' }] };
    case 'CREATE_SUCCESS':
      return { rec: settle(rec, 'created', now, null), effects: [...effects, { kind: 'settle' }] };
    case 'CREATE_FAILED':
      return { rec: settle(rec, 'create_failed', now, null), effects: [...effects, { kind: 'settle' }] };
    case 'CHECK_SUCCESS':
      return checkSuccess(rec, batch, previous, now, random, effects);
    default:
      return { rec: schedule(rec, batch, now, random), effects };
  }
}

function checkSuccess(
  rec: BatchRecord,
  batch: BatchConfig,
  previous: string | null,
  now: number,
  random: Random,
  effects: Effect[],
): Step {
  if (batch.until === 'checked') {
    return { rec: settle(rec, 'checked', now, null), effects: [...effects, { kind: 'settle' }] };
  }
  if (!batch.register) {
    if (previous !== 'CHECK_SUCCESS') {
      effects.push(
        emit('batch.awaiting_registration', 'awaiting', {
          reason: 'names checked; waiting for BatchRegisterDeviceWithApplyId (register: false)',
        }),
      );
    }
    return { rec: schedule(rec, batch, now, random), effects };
  }
  // register: true
  const reg = rec.registration;
  if (reg === null || reg.state === 'intent') {
    // NOTE: with an intent already on record, this fresh CHECK_SUCCESS shows the earlier call did not land.
    // `error` non-null marks a repeated call: the earlier one's answer was lost (or the process died waiting).
    const next: BatchRecord = { ...rec, registration: { state: 'intent', at: now, error: reg === null ? null : (reg.error ?? 'NoAnswerRecorded') } };
    return { rec: { ...next, nextDueAt: now }, effects: [...effects, { kind: 'register' }] };
  }
  // Registered already (or failed permanently, which parks the batch elsewhere): keep polling for CREATE.
  return { rec: schedule(rec, batch, now, random), effects };
}

/** Applies the answer of BatchRegisterDeviceWithApplyId. */
export function applyRegistration(
  rec: BatchRecord,
  batch: BatchConfig,
  outcome: { ok: true; requestId: string | null } | { ok: false; error: DaemonError },
  now: number,
  random: Random,
): Step {
  // NOTE: a repeated call (the first one's answer was lost) that gets a batch-level refusal most likely found
  // the application already registered; polling, not the refusal, decides what happened.
  const repeated = rec.registration?.error !== null && rec.registration?.error !== undefined;
  const alreadyDone = !outcome.ok && (outcome.error.alreadyRegistered || (repeated && outcome.error.scope === 'batch'));
  if (outcome.ok || alreadyDone) {
    const next: BatchRecord = {
      ...rec,
      registration: { state: 'done', at: now, error: null },
      attempt: 1,
      lastError: null,
    };
    return {
      rec: schedule(next, batch, now, random),
      effects: [
        emit('batch.registration_requested', 'registration', {
          reason: outcome.ok ? 'BatchRegisterDeviceWithApplyId accepted' : `already registered (${outcome.error.code})`,
        }),
      ],
    };
  }
  // NOTE: a refusal for this batch (or the process) is final: the registration failed and the batch is parked or
  // the daemon stops. Anything else leaves the intent on record; a fresh CHECK_SUCCESS repeats the call.
  const failed = outcome.error.scope !== 'attempt';
  return applyError(
    { ...rec, registration: { state: failed ? 'failed' : 'intent', at: rec.registration?.at ?? now, error: outcome.error.code } },
    batch,
    outcome.error,
    now,
    random,
    false,
  );
}

/**
 * Applies an API error from a status poll (or a registration call). Transient: back off and retry.
 * Batch-fatal: park as `rejected`. Process-fatal: stop everyone.
 */
export function applyError(
  rec0: BatchRecord,
  batch: BatchConfig,
  error: DaemonError,
  now: number,
  random: Random,
  countsAsPoll = true,
): Step {
  const rec: BatchRecord = {
    ...rec0,
    polls: countsAsPoll ? rec0.polls + 1 : rec0.polls,
    attempt: rec0.attempt + 1,
    lastError: { code: error.code, message: error.message, at: now },
  };
  if (error.scope === 'process') {
    return { rec: { ...rec, nextDueAt: now }, effects: [{ kind: 'fatal', error }] };
  }
  if (error.scope === 'batch') {
    const reason = `${error.code}: ${error.message}`;
    const parked: BatchRecord = { ...settle(rec, 'rejected', now, reason) };
    return {
      rec: parked,
      effects: [emit('batch.rejected', 'rejected', { reason, outcome: 'rejected' }), { kind: 'settle' }],
    };
  }
  return { rec: schedule(rec, batch, now, random), effects: [] };
}

/** The batch left the YAML while it was not settled. */
export function cancel(rec: BatchRecord, now: number): Step {
  const reason = 'removed from the configuration while pending';
  return {
    rec: settle(rec, 'cancelled', now, reason),
    effects: [emit('batch.cancelled', 'cancelled', { reason, outcome: 'cancelled' }), { kind: 'settle' }],
  };
}

/** Builds a full event from a record and an emit effect; advances the record's event sequence. */
export function buildEvent(
  rec: BatchRecord,
  effect: Extract<Effect, { kind: 'emit' }>,
  now: number,
): { rec: BatchRecord; event: WatcherEvent } {
  const seq = rec.eventSeq + 1;
  const event: WatcherEvent = {
    id: eventId(rec, effect.discriminator, seq),
    type: effect.type,
    at: new Date(now).toISOString(),
    account: accountOf(rec),
    applyId: rec.applyId,
    productKey: rec.productKey,
    name: rec.name,
    labels: rec.labels,
    status: rec.status,
    polls: rec.polls,
    ...effect.fields,
  };
  return { rec: { ...rec, eventSeq: seq }, event };
}

// Due times outside a poll answer.
/** A step could not be recorded: retry the batch from its last durable record after the policy's first delay. */
export function retryAfterWriteFailure(batch: BatchConfig, now: number): number {
  return now + batch.polling.initialDelayMs;
}

/** A task failed unexpectedly (a bug): retry the batch after the policy's longest delay. */
export function retryAfterCrash(batch: BatchConfig, now: number): number {
  return now + batch.polling.maxDelayMs;
}

/** The window over which overdue polls are spread at start: one budget's worth of seconds, at least 1 s. */
export function overdueWindowMs(overdue: number, statusQps: number): number {
  return Math.max(1000, Math.ceil((overdue * 1000) / Math.max(0.1, statusQps)));
}

/** When a recorded open batch is due after a start: an overdue one somewhere in the window, others as recorded. */
export function resumeAt(rec: BatchRecord, now: number, windowMs: number, random: Random): number {
  return spreadOverdueMs(now, rec.nextDueAt, windowMs, random);
}
