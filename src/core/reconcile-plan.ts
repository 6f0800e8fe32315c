/**
 * Reconciliation as a pure plan, in the style of transitions.ts: configuration × image × in-flight × now → the
 * steps to record and the keys to schedule. The watcher records the steps (in chunks) and schedules the keys;
 * nothing here does I/O or reads the clock.
 *
 * For each batch of the file:
 * - a record parked by its account (src/core/account-parking.ts) → back where it was, as an open record due now
 *   (spread like the overdue ones at start): the account runs again;
 * - no record yet → a new record (`batch.added`), due at once;
 * - a record that may start again ({@link isRearmable}) → a new record keeping the event sequence, due at once,
 *   and its stale result file withdrawn;
 * - an open record whose name, labels or entry changed → the same record with the new name and labels (its
 *   position, backoff and deadlines, is kept);
 * - an open record not scheduled yet → scheduled at its recorded due time (overdue ones spread at start).
 * For each record no longer in the file: pending → cancelled (`batch.cancelled`, then its result and
 * `batch.settled`); fetching → it still settles; parked by its account → the same, from the state it was parked from.
 * Batches in flight are left alone; their task's end re-plans the one key ({@link entryStep}).
 */
import type { BatchConfig, CompiledConfig } from '../config/types.js';
import type { Random } from './clock.js';
import { isAccountParked, unparkForAccount } from './account-parking.js';
import { type BatchRecord, accountOf } from './record.js';
import { type Step, added, cancel, createRecord, overdueWindowMs, resumeAt } from './transitions.js';

/** What a planned step is; once recorded, `added`, `rearmed` and `cancelled` keys are due at once. */
export type PlannedKind = 'added' | 'rearmed' | 'renamed' | 'cancelled';

export interface PlannedStep {
  step: Step;
  kind: PlannedKind;
  /** A re-armed batch: withdraw the result file of its previous outcome once the new record is durable. */
  withdrawResult: boolean;
}

export interface ReconcileInput {
  /** The configuration's batches by key. */
  batches: ReadonlyMap<string, BatchConfig>;
  /** The image's records. */
  records: { get(key: string): BatchRecord | undefined; values(): Iterable<BatchRecord> };
  /** A task is running for this key (re-planned when it ends). */
  busy(key: string): boolean;
  /** The key is already scheduled. */
  scheduled(key: string): boolean;
  now: number;
  /** First reconcile after loading the ledger: overdue polls are spread instead of bursting. */
  atStart: boolean;
  statusQps: number;
  random: Random;
}

export interface ReconcilePlan {
  steps: PlannedStep[];
  /** Keys to schedule now, with their due times. */
  schedule: { key: string; dueAt: number }[];
}

/** See the module comment. */
export function planReconcile(input: ReconcileInput): ReconcilePlan {
  const { batches, records, now } = input;
  const steps: PlannedStep[] = [];
  const resume: BatchRecord[] = [];
  const unparked: BatchRecord[] = [];
  for (const batch of batches.values()) {
    if (input.busy(batch.key)) continue;
    const rec = records.get(batch.key);
    if (rec && isAccountParked(rec)) {
      unparked.push(rec);
      continue;
    }
    const planned = entryStep(batch, rec, now);
    if (planned) steps.push(planned);
    if (rec && isOpen(rec) && !input.scheduled(batch.key) && planned?.kind !== 'rearmed') resume.push(rec);
  }
  const overdue = (input.atStart ? resume.filter((rec) => rec.nextDueAt <= now).length : 0) + unparked.length;
  const windowMs = overdueWindowMs(overdue, input.statusQps);
  const schedule = resume.map((rec) => ({
    key: rec.key,
    dueAt: input.atStart ? resumeAt(rec, now, windowMs, input.random) : rec.nextDueAt,
  }));
  // NOTE: the whole account stopped at once, so all of its batches are due again at once: spread like a restart.
  for (const rec of unparked) {
    steps.push({ step: unparkForAccount(rec, resumeAt({ ...rec, nextDueAt: now }, now, windowMs, input.random)), kind: 'rearmed', withdrawResult: false });
  }
  for (const rec0 of records.values()) {
    if (batches.has(rec0.key) || input.busy(rec0.key)) continue;
    const rec = isAccountParked(rec0) ? unparkForAccount(rec0, now).rec : rec0;
    if (rec.state === 'pending') steps.push({ step: cancel(rec, now), kind: 'cancelled', withdrawResult: false });
    else if (rec !== rec0) steps.push({ step: { rec, effects: [] }, kind: 'rearmed', withdrawResult: false });
    else if (rec.state === 'fetching' && !input.scheduled(rec.key)) schedule.push({ key: rec.key, dueAt: rec.nextDueAt });
  }
  return { steps, schedule };
}

/** The step one configured batch needs given its record, or null (see the module comment). */
export function entryStep(batch: BatchConfig, rec: BatchRecord | undefined, now: number): PlannedStep | null {
  if (rec && isAccountParked(rec)) return { step: unparkForAccount(rec, now), kind: 'rearmed', withdrawResult: false };
  if (!rec) return { step: added(createRecord(batch, now)), kind: 'added', withdrawResult: false };
  if (isRearmable(rec, batch)) {
    const fresh = added(createRecord(batch, now));
    return { step: { rec: { ...fresh.rec, eventSeq: rec.eventSeq }, effects: fresh.effects }, kind: 'rearmed', withdrawResult: rec.resultFile !== null };
  }
  if (isOpen(rec) && (rec.name !== batch.name || rec.entryHash !== batch.entryHash)) {
    const renamed: BatchRecord = { ...rec, name: batch.name, labels: { ...batch.labels }, entryHash: batch.entryHash };
    return { step: { rec: renamed, effects: [] }, kind: 'renamed', withdrawResult: false };
  }
  return null;
}

/**
 * A settled batch starts again from scratch (a new record, `batch.added`) when:
 * - it was rejected (parked) and its YAML entry changed (the operator fixed something);
 * - it timed out and its entry changed (e.g. a longer `polling.timeout`);
 * - it was cancelled (removed from the file) and is back in the file.
 */
export function isRearmable(rec: BatchRecord, batch: BatchConfig): boolean {
  if (rec.state === 'parked') return rec.entryHash !== batch.entryHash;
  if (rec.state !== 'settled') return false;
  if (rec.outcome === 'cancelled') return true;
  return rec.outcome === 'timed_out' && rec.entryHash !== batch.entryHash;
}

/** Pending or fetching: the batch still has work to do. */
export function isOpen(rec: BatchRecord): boolean {
  return rec.state === 'pending' || rec.state === 'fetching';
}

/**
 * The policy of a batch: its entry in the file, or, once it left the file (cancelled, still settling), the one
 * fallback built from the file's defaults (`polling`, `alibaba`) and the record.
 */
export function policyFor(config: CompiledConfig, entry: BatchConfig | undefined, rec: BatchRecord): BatchConfig {
  if (entry) return entry;
  const account = accountOf(rec);
  // The account's region and endpoint (an account removed from the file too: the file's defaults).
  const inherited = config.accounts.find((a) => a.name === account) ?? config.alibaba;
  return {
    account,
    applyId: rec.applyId,
    productKey: rec.productKey,
    key: rec.key,
    name: rec.name,
    until: 'created',
    register: false,
    iotInstanceId: inherited.iotInstanceId,
    regionId: inherited.regionId,
    endpoint: inherited.endpoint,
    labels: rec.labels,
    polling: config.polling,
    entryHash: rec.entryHash,
    source: null,
  };
}
