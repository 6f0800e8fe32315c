/**
 * What the daemon knows about one batch. This is what the ledger stores (DESIGN.md §5). Times are epoch ms.
 * It never holds device secrets: those go only to the result file.
 */
import type { Outcome, WatcherEvent } from '../events.js';

/**
 * Lifecycle of a batch record:
 *
 *   pending ──(final status / timeout)──► fetching ──(devices fetched or not needed, result written)──► settled
 *      │                                     │
 *      ├──(batch-fatal API error)──► parked (outcome rejected; re-armed → pending when its YAML entry changes)
 *      ├──(its account's process-fatal error, several accounts; fetching too)──► parked (no outcome, `parkedFrom`;
 *      │     re-armed to where it was at the account's next start: src/core/account-parking.ts)
 *      └──(removed from YAML)──► settled (outcome cancelled)
 *
 * `fetching` covers the time between knowing the outcome and having written the result file (device paging
 * with retries); it survives restarts, so a crash there re-fetches and rewrites idempotently.
 */
export type BatchState = 'pending' | 'fetching' | 'settled' | 'parked';

export interface InvalidDetail {
  deviceName: string;
  errors: string[];
  nickName: string | null;
}

export interface StatusSample {
  status: string;
  at: number;
}

export interface BatchRecord {
  /** {@link batchKey}: `${productKey}/${applyId}` for account `default`, `${account}:${productKey}/${applyId}` else. */
  key: string;
  /** The account the batch belongs to; absent in records written before accounts existed, which means `default`. */
  account?: string;
  applyId: string;
  productKey: string;
  name: string | null;
  labels: Record<string, string>;
  /** The YAML entry hash this record was armed with. */
  entryHash: string;
  state: BatchState;
  /** Last status seen, or null before the first answer. */
  status: string | null;
  /** Backoff position within the current phase (0 = next poll is the first of the phase). */
  attempt: number;
  /** Successful and failed polls of the status API. */
  polls: number;
  firstSeenAt: number;
  /** When the current phase (CHECK, CREATE, awaiting registration...) was first seen. */
  phaseStartedAt: number;
  nextDueAt: number;
  /** batch.stalled already emitted for the current phase. */
  stalledWarned: boolean;
  /** BatchRegisterDeviceWithApplyId: `intent` is journaled before the call, `done`/`failed` after. */
  registration: { state: 'intent' | 'done' | 'failed'; at: number; error: string | null } | null;
  lastError: { code: string; message: string; at: number } | null;
  history: StatusSample[];
  validNames: string[];
  invalidNames: string[];
  invalidDetails: InvalidDetail[];
  outcome: Outcome | null;
  settledAt: number | null;
  /** Why it settled this way when the status alone does not tell (rejected, timed_out, cancelled, fetch failure). */
  reason: string | null;
  /** Result file written for this outcome (relative to nothing: absolute path), and its device count. */
  resultFile: string | null;
  deviceCount: number | null;
  /** Device fetch attempts while `fetching`; the last failure is in lastError. */
  fetchAttempts: number;
  /** Number of events emitted for this batch so far; makes event ids stable and unique. */
  eventSeq: number;
  /**
   * Set only while the batch is parked by its account's process-fatal error (src/core/account-parking.ts): the
   * state it is re-armed to at the account's next start. Absent in every other record.
   */
  parkedFrom?: 'pending' | 'fetching';
}

/** A pending delivery of one event to the sinks; removed once every sink acknowledged it. */
export interface OutboxEntry {
  event: WatcherEvent;
  /** Sink names that have acknowledged the event. */
  acked: string[];
}

/** The account of a ledger without accounts (DESIGN.md §11): its keys, ids and paths keep their old form. */
export const DEFAULT_ACCOUNT = 'default';

/**
 * The ledger key of a batch, its identity `(account, productKey, applyId)`. Account `default` keeps the format of
 * ledgers written before accounts existed, so such a state directory opens unchanged; other accounts are prefixed
 * `<account>:` (account names are `[a-z0-9-]`, ProductKeys never hold `:`, so keys never collide).
 */
export function batchKey(productKey: string, applyId: string, account: string = DEFAULT_ACCOUNT): string {
  return account === DEFAULT_ACCOUNT ? `${productKey}/${applyId}` : `${account}:${productKey}/${applyId}`;
}

/** The account of a record; records from before accounts existed belong to `default`. */
export function accountOf(rec: Pick<BatchRecord, 'account'>): string {
  return rec.account ?? DEFAULT_ACCOUNT;
}

/**
 * The id of a record's `seq`-th event: `<applyId>:<discriminator>:<seq>` for account `default` (the ids consumers
 * already de-duplicate on), prefixed `<account>:` for other accounts so ids stay unique across accounts.
 */
export function eventId(rec: Pick<BatchRecord, 'account' | 'applyId'>, discriminator: string, seq: number): string {
  const account = accountOf(rec);
  const id = `${rec.applyId}:${discriminator}:${seq}`;
  return account === DEFAULT_ACCOUNT ? id : `${account}:${id}`;
}
