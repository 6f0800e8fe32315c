/**
 * Settling a batch whose outcome is known (record state `fetching`), as pure functions in the style of
 * transitions.ts: fetch the devices when the outcome has some, write the result file, then mark it settled.
 *
 *   fetching ──devices fetched (or not needed), result written──► settled (parked when rejected) + batch.settled
 *      ├──device fetch failed, transient──► fetching, retried with the batch's backoff (fetchAttempts + 1)
 *      ├──device fetch refused for this batch (RAM, unknown ApplyId)──► outcome rejected, reason kept ─► parked
 *      └──result file not written──► fetching, retried with backoff
 */
import type { BatchConfig } from '../config/types.js';
import type { DaemonError } from '../errors.js';
import type { Outcome } from '../events.js';
import { nextDelayMs } from './backoff.js';
import type { Random } from './clock.js';
import type { BatchResult, DeviceInfo } from './ports.js';
import { type BatchRecord, accountOf } from './record.js';
import { type Effect, type Step, emit } from './transitions.js';

/** Whether the device list must be fetched for this outcome. */
export function needsDevices(outcome: Outcome | null): boolean {
  return outcome === 'created' || outcome === 'create_failed';
}

/**
 * After a failed device fetch. Transient: retry later with backoff, never drop the batch. Refused for this batch
 * (no permission for QueryPageByApplyId, an unknown ApplyId): park it as `rejected` with the reason, keeping its
 * status and history; it is re-armed when its YAML entry changes. Process-fatal: stop everyone.
 */
export function fetchFailed(rec: BatchRecord, batch: BatchConfig, error: DaemonError, now: number, random: Random): Step {
  const lastError = { code: error.code, message: error.message, at: now };
  if (error.scope === 'process') return { rec: { ...rec, lastError }, effects: [{ kind: 'fatal', error }] };
  if (error.scope === 'batch') {
    const reason = `device list refused (QueryPageByApplyId) after ${rec.status ?? 'no status'}: ${error.code}: ${error.message}`;
    return {
      rec: { ...rec, outcome: 'rejected', reason, lastError, nextDueAt: now, fetchAttempts: rec.fetchAttempts + 1 },
      effects: [emit('batch.rejected', 'rejected', { reason, outcome: 'rejected' }), { kind: 'settle' }],
    };
  }
  return { rec: retryLater(rec, batch, lastError, now, random), effects: [] };
}

/** The result file could not be written: retry later with backoff (the record stays `fetching`). */
export function resultWriteFailed(rec: BatchRecord, batch: BatchConfig, error: DaemonError, now: number, random: Random): Step {
  return { rec: retryLater(rec, batch, { code: error.code, message: error.message, at: now }, now, random), effects: [] };
}

function retryLater(rec: BatchRecord, batch: BatchConfig, lastError: BatchRecord['lastError'], now: number, random: Random): BatchRecord {
  const attempts = rec.fetchAttempts + 1;
  return { ...rec, fetchAttempts: attempts, lastError, nextDueAt: now + nextDelayMs(batch.polling, attempts, random) };
}

/** Marks a record settled once its result file is durable. Rejected batches are parked. */
export function markSettled(rec: BatchRecord, resultFile: string | null, deviceCount: number | null): BatchRecord {
  return {
    ...rec,
    state: rec.outcome === 'rejected' ? 'parked' : 'settled',
    resultFile,
    deviceCount,
    lastError: rec.outcome === 'rejected' ? rec.lastError : null,
    nextDueAt: Number.MAX_SAFE_INTEGER,
  };
}

/** The step of a batch whose result file is written: settled (or parked) with its `batch.settled` event. */
export function settled(rec: BatchRecord, resultFile: string | null, deviceCount: number | null): Step {
  const done = markSettled(rec, resultFile, deviceCount);
  return { rec: done, effects: [settledEffect(done)] };
}

/** The `batch.settled` emit effect for a record whose result is written. */
export function settledEffect(rec: BatchRecord): Extract<Effect, { kind: 'emit' }> {
  return {
    kind: 'emit',
    type: 'batch.settled',
    discriminator: rec.status ?? rec.outcome ?? 'settled',
    fields: {
      outcome: rec.outcome ?? undefined,
      reason: rec.reason ?? undefined,
      resultFile: rec.resultFile,
      deviceCount: rec.deviceCount,
      validNames: rec.validNames,
      invalidNames: rec.invalidNames,
    },
  };
}

/** The result file content (DESIGN.md §4). Secrets are included only when asked. */
export function buildResult(rec: BatchRecord, devices: readonly DeviceInfo[], includeSecrets: boolean): BatchResult {
  return {
    account: accountOf(rec),
    applyId: rec.applyId,
    productKey: rec.productKey,
    name: rec.name,
    labels: rec.labels,
    outcome: rec.outcome ?? 'unknown',
    status: rec.status,
    firstSeenAt: new Date(rec.firstSeenAt).toISOString(),
    settledAt: new Date(rec.settledAt ?? rec.firstSeenAt).toISOString(),
    polls: rec.polls,
    validNames: rec.validNames,
    invalidNames: rec.invalidNames,
    invalidDetails: rec.invalidDetails,
    devices: devices.map((d) =>
      includeSecrets && d.deviceSecret !== null
        ? { deviceName: d.deviceName, iotId: d.iotId, deviceSecret: d.deviceSecret }
        : { deviceName: d.deviceName, iotId: d.iotId },
    ),
    deviceCount: devices.length,
    history: rec.history.map((h) => ({ status: h.status, at: new Date(h.at).toISOString() })),
    reason: rec.reason,
  };
}
