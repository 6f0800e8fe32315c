/**
 * The row shown by `status`, `status --json` and `GET /v1/batches` (DESIGN.md §7). The plain table that shows it
 * is src/ops/status-view.ts.
 */
import { type BatchRecord, DEFAULT_ACCOUNT, accountOf } from './record.js';

export interface StatusRow {
  /**
   * The account of the batch (DESIGN.md §11), for accounts other than `default`: a file without `accounts` keeps
   * the row of §7 exactly (absent, or null in rows other code builds, means `default`, as src/ops/status-view.ts
   * reads it). {@link toStatusRow} never sets null.
   */
  account?: string | null;
  applyId: string;
  productKey: string;
  name: string | null;
  state: BatchRecord['state'];
  /** Last status seen, or null. */
  status: string | null;
  /** null while pending. */
  outcome: string | null;
  polls: number;
  firstSeenAt: string;
  settledAt: string | null;
  nextPollAt: string | null;
  lastError: string | null;
  labels: Record<string, string>;
  resultFile: string | null;
  deviceCount: number | null;
}

/** Formats dates, remembering the last one: the batches of one start or reload share their firstSeenAt. */
class IsoMemo {
  #ms = Number.NaN;
  #iso = '';
  format(ms: number | null): string | null {
    if (ms === null || !Number.isFinite(ms) || ms >= Number.MAX_SAFE_INTEGER) return null;
    if (ms !== this.#ms) {
      this.#iso = new Date(ms).toISOString();
      this.#ms = ms;
    }
    return this.#iso;
  }
}

// NOTE: one memo per field: the fields of one row differ, the same field of consecutive rows often does not.
const firstSeenIso = new IsoMemo();
const settledIso = new IsoMemo();
const nextPollIso = new IsoMemo();

/**
 * `code: message`, without saying the code twice: API errors already name it in their message
 * (`QueryDeviceBatch: iot.x.Code (HTTP 400): ...`).
 */
export function errorText(code: string, message: string): string {
  return code === '' || message.includes(code) ? message : `${code}: ${message}`;
}

export function toStatusRow(rec: BatchRecord): StatusRow {
  const open = rec.state === 'pending' || rec.state === 'fetching';
  const account = accountOf(rec);
  return {
    ...(account === DEFAULT_ACCOUNT ? {} : { account }),
    applyId: rec.applyId,
    productKey: rec.productKey,
    name: rec.name,
    state: rec.state,
    status: rec.status,
    outcome: open ? null : rec.outcome,
    polls: rec.polls,
    firstSeenAt: firstSeenIso.format(rec.firstSeenAt) ?? '',
    settledAt: open ? null : settledIso.format(rec.settledAt),
    nextPollAt: open ? nextPollIso.format(rec.nextDueAt) : null,
    lastError: rec.lastError ? errorText(rec.lastError.code, rec.lastError.message) : null,
    labels: rec.labels,
    resultFile: rec.resultFile,
    deviceCount: rec.deviceCount,
  };
}

/** Rows sorted by account, productKey, then applyId (numerically: ApplyIds are decimal strings without leading zeros). */
export function toStatusRows(records: Iterable<BatchRecord>): StatusRow[] {
  const rows: StatusRow[] = [];
  for (const rec of records) rows.push(toStatusRow(rec));
  // NOTE: code-unit comparison, not localeCompare: ProductKeys and ApplyIds are ASCII, and ICU collation costs
  // a noticeable share of `status` at 20,000 batches.
  rows.sort((a, b) => cmp(a.account ?? DEFAULT_ACCOUNT, b.account ?? DEFAULT_ACCOUNT) || cmp(a.productKey, b.productKey) || a.applyId.length - b.applyId.length || cmp(a.applyId, b.applyId));
  return rows;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
