/**
 * The state machine of one provisioning chunk (DESIGN.md §13), as pure functions: (record, observation, now)
 * → (record, effects). A runner performs the effects; nothing here does I/O or reads the clock.
 *
 * | from                | observation                                    | to                                       |
 * |---------------------|------------------------------------------------|------------------------------------------|
 * | planned (due)       | start                                          | submitting, then `submit` once durable   |
 * | submitting          | answer with an ApplyId                         | watching (ApplyId durable), `watch`      |
 * | submitting          | CreateDeviceTaskIsRunning / throttled / not sent | planned, retry after a delay           |
 * | submitting          | answered with a batch error (bad product, …)   | failed, with Alibaba's reason            |
 * | submitting          | outcome unknown (timeout after send, reset)    | names: planned (a check creates nothing) |
 * |                     |                                                | count: submission_unknown (never resent) |
 * | submitting          | found so at start-up (crash inside the call)   | as "outcome unknown"                     |
 * | watching            | batch settled                                  | checked / created / partial / failed;    |
 * |                     |                                                | CHECK_FAILED: resubmit the names left    |
 * | submission_unknown  | operator: the ApplyId found, or "not sent"     | watching, or planned                     |
 *
 * Exactly-once: the submission intent (state `submitting`) is durable before the call. A names chunk is only
 * ever *checked* by its submission; it is registered by the batch watcher (`register: true`, at most once per
 * ApplyId), so checking it again after a lost answer creates nothing: the lost ApplyId is never registered.
 * A count chunk's BatchRegisterDevice creates devices at once, so it is never sent twice unless the error
 * proves the call was not processed.
 */

import type { ChunkName, PlannedChunk } from './chunk-plan.js';
import type { ChunkState, ProvisionedDevice } from './provision-report.js';

/** The Alibaba code that means "another creation task of this product is running": wait and retry. */
export const TASK_RUNNING_CODE = 'iot.device.CreateDeviceTaskIsRunning';

/** Most submissions of one names chunk (each CHECK_FAILED drops the refused names and checks the rest again). */
export const MAX_CHECK_ROUNDS = 5;

/** The durable record of one chunk. */
export interface ChunkRecord {
  index: number;
  kind: 'names' | 'count';
  /** Names chunks: the names the next (or current) submission carries. Count chunks: empty. */
  names: readonly ChunkName[];
  /** Devices the chunk asked for when planned. */
  requested: number;
  /** Count chunks: the Count to send. */
  count: number;
  state: ChunkState;
  /** Submissions made so far (names chunks may be checked again). */
  submissions: number;
  /** The ApplyId being watched (or last watched), or null. */
  applyId: string | null;
  /** Every ApplyId this chunk got, oldest first (a names chunk checked again gets a new one). */
  applyIds: readonly string[];
  /** When the current intent was recorded (ms), or null. */
  intentAt: number | null;
  /** Not before this time (ms) is a planned chunk submitted; 0 = now. */
  notBefore: number;
  /** Failed attempts in a row, for the retry delay. */
  retries: number;
  reason: string | null;
  /** Names the check or the creation refused, with Alibaba's reason. */
  rejected: readonly { deviceName: string; reason: string }[];
  devices: readonly ProvisionedDevice[];
}

/** What a failed submission tells (from the client's ApiError / DaemonError, without importing the adapter). */
export interface SubmitFailure {
  code: string;
  message: string;
  /** The service cannot have acted on the request (refused before processing, or never sent). */
  notProcessed: boolean;
  /** The service answered with a business error (so it did not create anything). */
  answered: boolean;
  scope: 'attempt' | 'batch' | 'process';
}

/** What the batch watcher reported when the chunk's ApplyId settled. */
export interface ChunkBatchOutcome {
  outcome: 'checked' | 'check_failed' | 'created' | 'create_failed' | 'timed_out' | 'rejected' | 'cancelled';
  /** Names refused by the check or the creation, with Alibaba's reason (ErrorMsg). */
  invalid: readonly { deviceName: string; reason: string }[];
  devices: readonly ProvisionedDevice[];
  reason: string | null;
}

/** Effects for the runner, in order. */
export type ChunkEffect =
  /** Make the record durable (everything that follows waits for it). */
  | { kind: 'persist' }
  /** Send the submission (BatchCheckDeviceNames or BatchRegisterDevice) under the submit budget. */
  | { kind: 'submit' }
  /** Watch the ApplyId as a batch; `register` for until: created names chunks. */
  | { kind: 'watch'; applyId: string; register: boolean; until: 'created' | 'checked' }
  | { kind: 'emit'; type: 'provision.chunk_submitted' | 'provision.chunk_parked'; fields: Record<string, unknown> }
  /** Stop: retrying cannot help (bad credentials, …). */
  | { kind: 'fatal'; failure: SubmitFailure };

/** One step: the next record and what to do. */
export interface ChunkStep {
  rec: ChunkRecord;
  effects: ChunkEffect[];
}

/** Retry delays of a submission, in ms. */
export interface RetryPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** The default submission retry policy: 2 s doubling to 60 s. */
export const DEFAULT_SUBMIT_RETRY: RetryPolicy = { initialDelayMs: 2000, maxDelayMs: 60_000 };

/** The first record of a planned chunk. */
export function newChunkRecord(chunk: PlannedChunk): ChunkRecord {
  const names = chunk.kind === 'names' ? chunk.names : [];
  const count = chunk.kind === 'count' ? chunk.count : 0;
  return {
    index: chunk.index,
    kind: chunk.kind,
    names,
    requested: chunk.kind === 'names' ? names.length : count,
    count,
    state: 'planned',
    submissions: 0,
    applyId: null,
    applyIds: [],
    intentAt: null,
    notBefore: 0,
    retries: 0,
    reason: null,
    rejected: [],
    devices: [],
  };
}

function retryDelayMs(policy: RetryPolicy, retries: number): number {
  const raw = policy.initialDelayMs * 2 ** Math.min(retries, 30);
  return Math.min(policy.maxDelayMs, raw);
}

/** Whether a planned chunk may be submitted now. */
export function isDue(rec: ChunkRecord, now: number): boolean {
  return rec.state === 'planned' && rec.notBefore <= now;
}

/** Records the intent; the runner persists it, then submits. */
export function startSubmission(rec: ChunkRecord, now: number): ChunkStep {
  if (rec.state !== 'planned') throw new Error(`chunk ${rec.index} is ${rec.state}, not planned`);
  return { rec: { ...rec, state: 'submitting', intentAt: now }, effects: [{ kind: 'persist' }, { kind: 'submit' }] };
}

/** The submission answered with an ApplyId (and, for a check, the names refused at once). */
export function submissionAccepted(
  rec: ChunkRecord,
  answer: { applyId: string; refused: readonly { deviceName: string; reason: string }[] },
  until: 'created' | 'checked',
): ChunkStep {
  const next: ChunkRecord = {
    ...rec,
    state: 'watching',
    applyId: answer.applyId,
    applyIds: [...rec.applyIds, answer.applyId],
    submissions: rec.submissions + 1,
    intentAt: null,
    retries: 0,
    reason: null,
    rejected: mergeRejected(rec.rejected, answer.refused),
  };
  const watchUntil = rec.kind === 'count' ? 'created' : until;
  return {
    rec: next,
    effects: [
      { kind: 'persist' },
      { kind: 'emit', type: 'provision.chunk_submitted', fields: { chunk: rec.index, applyId: answer.applyId, requested: rec.requested, submission: next.submissions } },
      { kind: 'watch', applyId: answer.applyId, register: rec.kind === 'names' && watchUntil === 'created', until: watchUntil },
    ],
  };
}

function mergeRejected(
  old: readonly { deviceName: string; reason: string }[],
  more: readonly { deviceName: string; reason: string }[],
): { deviceName: string; reason: string }[] {
  const seen = new Set(old.map((r) => r.deviceName));
  const out = [...old];
  for (const r of more) {
    if (seen.has(r.deviceName)) continue;
    seen.add(r.deviceName);
    out.push(r);
  }
  return out;
}

/** How to resolve a parked count chunk (docs/provisioning.md). */
export const SUBMISSION_UNKNOWN_ADVICE =
  'look for an application of this many devices made around that time in the console (Devices > Batch management) and run ' +
  '`iot-batch-watcher provision resolve --name <job> --chunk <n> --apply-id <ApplyId>`; if there is none, run it with --not-submitted to submit the chunk';

function parkUnknown(rec: ChunkRecord, why: string): ChunkStep {
  const reason = `BatchRegisterDevice for ${rec.count} devices may or may not have reached Alibaba (${why}); it is never sent again by itself: ${SUBMISSION_UNKNOWN_ADVICE}`;
  return {
    rec: { ...rec, state: 'submission_unknown', reason },
    effects: [{ kind: 'persist' }, { kind: 'emit', type: 'provision.chunk_parked', fields: { chunk: rec.index, reason } }],
  };
}

function retryLater(rec: ChunkRecord, now: number, policy: RetryPolicy, reason: string): ChunkStep {
  return {
    rec: { ...rec, state: 'planned', intentAt: null, notBefore: now + retryDelayMs(policy, rec.retries), retries: rec.retries + 1, reason },
    effects: [{ kind: 'persist' }],
  };
}

/** The submission failed; decides between retry, failure, parking and stopping. */
export function submissionFailed(rec: ChunkRecord, failure: SubmitFailure, now: number, policy: RetryPolicy = DEFAULT_SUBMIT_RETRY): ChunkStep {
  if (failure.scope === 'process') return { rec, effects: [{ kind: 'fatal', failure }] };
  if (failure.code === TASK_RUNNING_CODE) return retryLater(rec, now, policy, `waiting: ${failure.message}`);
  const nothingCreated = failure.notProcessed || failure.answered;
  if (nothingCreated && failure.scope === 'attempt') return retryLater(rec, now, policy, `retrying: ${failure.message}`);
  if (nothingCreated) {
    return { rec: { ...rec, state: 'failed', intentAt: null, reason: `${failure.code}: ${failure.message}` }, effects: [{ kind: 'persist' }] };
  }
  // The call may have been processed and its answer lost.
  if (rec.kind === 'names') return retryLater(rec, now, policy, `checking again (a check creates nothing): ${failure.message}`);
  return parkUnknown(rec, `${failure.code}: ${failure.message}`);
}

/** At start-up, a chunk found `submitting`: the daemon stopped inside the call's window. */
export function recoverSubmitting(rec: ChunkRecord, now: number): ChunkStep {
  if (rec.state !== 'submitting') return { rec, effects: [] };
  if (rec.kind === 'names') {
    return { rec: { ...rec, state: 'planned', intentAt: null, notBefore: now, reason: 'checking again after a restart inside the submission (a check creates nothing)' }, effects: [{ kind: 'persist' }] };
  }
  return parkUnknown(rec, 'the daemon stopped while the call was in flight');
}

/** The chunk's ApplyId settled. */
export function batchSettled(rec: ChunkRecord, result: ChunkBatchOutcome, now: number): ChunkStep {
  const rejected = mergeRejected(rec.rejected, result.invalid);
  const base = { ...rec, rejected, devices: mergeDevices(rec.devices, result.devices), retries: 0 };
  switch (result.outcome) {
    case 'checked':
      return { rec: { ...base, state: 'checked', reason: null }, effects: [{ kind: 'persist' }] };
    case 'created':
      return { rec: { ...base, state: 'created', reason: null }, effects: [{ kind: 'persist' }] };
    case 'create_failed':
      return {
        rec: { ...base, state: base.devices.length > 0 ? 'partial' : 'failed', reason: result.reason ?? 'CREATE_FAILED' },
        effects: [{ kind: 'persist' }],
      };
    case 'check_failed': {
      // NOTE: Alibaba checks all or nothing: the names that passed must be checked again under a new ApplyId.
      const refused = new Set(result.invalid.map((r) => r.deviceName));
      const left = rec.names.filter((n) => !refused.has(n.deviceName));
      if (rec.kind === 'names' && left.length > 0 && left.length < rec.names.length && rec.submissions < MAX_CHECK_ROUNDS) {
        return {
          rec: { ...base, state: 'planned', names: left, notBefore: now, intentAt: null, reason: `CHECK_FAILED: checking the ${left.length} names left again` },
          effects: [{ kind: 'persist' }],
        };
      }
      return { rec: { ...base, state: 'failed', reason: result.reason ?? 'CHECK_FAILED' }, effects: [{ kind: 'persist' }] };
    }
    default:
      return { rec: { ...base, state: 'failed', reason: result.reason ?? result.outcome }, effects: [{ kind: 'persist' }] };
  }
}

function mergeDevices(old: readonly ProvisionedDevice[], more: readonly ProvisionedDevice[]): ProvisionedDevice[] {
  const seen = new Set(old.map((d) => d.deviceName));
  const out = [...old];
  for (const d of more) {
    if (seen.has(d.deviceName)) continue;
    seen.add(d.deviceName);
    out.push(d);
  }
  return out;
}

/** The operator's resolution of a parked count chunk: the ApplyId it found, or "it was not sent". */
export function resolveUnknown(rec: ChunkRecord, resolution: { applyId: string } | { notSubmitted: true }, now: number): ChunkStep {
  if (rec.state !== 'submission_unknown') throw new Error(`chunk ${rec.index} is ${rec.state}, not submission_unknown`);
  if ('applyId' in resolution) return submissionAccepted(rec, { applyId: resolution.applyId, refused: [] }, 'created');
  return { rec: { ...rec, state: 'planned', intentAt: null, notBefore: now, reason: 'resolved by the operator: not submitted' }, effects: [{ kind: 'persist' }] };
}
