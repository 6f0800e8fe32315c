/**
 * Parking by account (DESIGN.md §11): with several accounts, a process-fatal API error of one account (bad
 * AccessKey, signature mismatch) stops that account only. Its open batches are recorded as `parked` with the
 * reason, durably, so `status` (offline too) and `/v1/batches` show why nothing moves; the other accounts go on.
 *
 * Unlike a batch rejected by the API (parked with outcome `rejected` until its YAML entry changes), a batch parked
 * by its account has no outcome: nothing is wrong with the batch. It remembers the state it was parked from
 * (`parkedFrom`) and is re-armed at the next start of its account (the operator fixed the key and restarted, or a
 * reload changed the account's credentials), resuming at its recorded position. Pure functions, no I/O.
 */
import type { DaemonError } from '../errors.js';
import { type BatchRecord, accountOf } from './record.js';
import type { Step } from './transitions.js';

/** Whether a record was parked by its account's fatal error (not by a rejection of the batch itself). */
export function isAccountParked(rec: BatchRecord): boolean {
  return rec.state === 'parked' && rec.parkedFrom !== undefined;
}

/** Whether parking by account applies to a record: it still has work to do (pending or fetching). */
export function isParkable(rec: BatchRecord): boolean {
  return rec.state === 'pending' || rec.state === 'fetching';
}

/** The step that parks an open record because its account hit `error` (no event: the fatal log line tells). */
export function parkForAccount(rec: BatchRecord, error: DaemonError, now: number): Step {
  const from = rec.state === 'fetching' ? 'fetching' : 'pending';
  const message = `account "${accountOf(rec)}" parked: ${error.message}`;
  return { rec: { ...rec, state: 'parked', parkedFrom: from, lastError: { code: error.code, message, at: now } }, effects: [] };
}

/**
 * The step that re-arms a record parked by its account: back to the state it was parked from, due at `dueAt`,
 * with its backoff position, deadlines (measured from first sight) and event sequence kept.
 */
export function unparkForAccount(rec: BatchRecord, dueAt: number): Step {
  const { parkedFrom, ...rest } = rec;
  return { rec: { ...rest, state: parkedFrom ?? 'pending', nextDueAt: dueAt }, effects: [] };
}
