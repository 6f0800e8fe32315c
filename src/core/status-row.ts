/**
 * The row shown by `status`, `status --json` and `GET /v1/batches` (DESIGN.md §7).
 */
import type { BatchRecord } from './record.js';

export interface StatusRow {
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

function iso(ms: number | null): string | null {
  return ms === null || !Number.isFinite(ms) || ms >= Number.MAX_SAFE_INTEGER ? null : new Date(ms).toISOString();
}

export function toStatusRow(rec: BatchRecord): StatusRow {
  const open = rec.state === 'pending' || rec.state === 'fetching';
  return {
    applyId: rec.applyId,
    productKey: rec.productKey,
    name: rec.name,
    state: rec.state,
    status: rec.status,
    outcome: open ? null : rec.outcome,
    polls: rec.polls,
    firstSeenAt: iso(rec.firstSeenAt) ?? '',
    settledAt: open ? null : iso(rec.settledAt),
    nextPollAt: open ? iso(rec.nextDueAt) : null,
    lastError: rec.lastError ? `${rec.lastError.code}: ${rec.lastError.message}` : null,
    labels: rec.labels,
    resultFile: rec.resultFile,
    deviceCount: rec.deviceCount,
  };
}

/** Rows sorted by productKey, then applyId (numerically when possible). */
export function toStatusRows(records: Iterable<BatchRecord>): StatusRow[] {
  const rows = [...records].map(toStatusRow);
  rows.sort(
    (a, b) =>
      a.productKey.localeCompare(b.productKey) ||
      a.applyId.length - b.applyId.length ||
      a.applyId.localeCompare(b.applyId),
  );
  return rows;
}

const COLUMNS: (keyof StatusRow)[] = [
  'applyId',
  'productKey',
  'name',
  'status',
  'outcome',
  'polls',
  'firstSeenAt',
  'settledAt',
  'nextPollAt',
  'lastError',
];

/** A plain-text table with the same fields as the JSON. */
export function formatStatusTable(rows: readonly StatusRow[]): string {
  const cells = rows.map((r) => COLUMNS.map((c) => cell(r[c])));
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? '').length)));
  const line = (values: string[]): string =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(COLUMNS.map(String)), ...cells.map(line)].join('\n') + '\n';
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
