/**
 * The plain `status` table (DESIGN.md §7, §14): narrow by default (fits {@link NARROW_WIDTH} columns), every
 * column with `wide`. Columns come from a list, so accounts and provisioning jobs add theirs without touching the
 * layout code. Every cell is escaped ({@link escapeControl}) because names, labels and errors are user text.
 */
import type { StatusRow } from '../core/status-row.js';
import { escapeControl } from './terminal-text.js';

/** Terminal width the narrow table fits in. */
export const NARROW_WIDTH = 100;

/**
 * A row as the view sees it: the §7 row plus fields that later features add (an account name, a provisioning job).
 * Absent means the feature is not there: the account is `default`, the job empty.
 */
export type ViewRow = StatusRow & { account?: string | null; job?: string | null };

/** One column of the table. */
export interface StatusColumn {
  /** Header text (the §7 field name where there is one). */
  header: string;
  /** The cell text (unescaped, untruncated; `-` for nothing). */
  value(row: ViewRow): string;
  /** In the narrow table. */
  narrow: boolean;
  /** In the narrow table also when this says so for the rows shown (e.g. the account column once rows span accounts). */
  narrowWhen?(rows: readonly ViewRow[]): boolean;
  /** Widest the cell gets before it is cut with `…`. */
  maxWidth: number;
  /** Narrowest the column gets when the narrow table must shrink to fit (absent: it does not shrink). */
  minWidth?: number;
  /** Where shrinking stops in the first round, before any column goes below it to its minWidth. */
  softMinWidth?: number;
  align?: 'right';
}

const dash = (v: string | number | null | undefined): string => (v === null || v === undefined || v === '' ? '-' : String(v));

/** The account a row belongs to (`default` until several accounts exist). */
export function accountOf(row: ViewRow): string {
  return row.account ?? 'default';
}

/** Whether the rows belong to more than one account. */
export function spansAccounts(rows: readonly ViewRow[]): boolean {
  if (rows.length === 0) return false;
  const first = accountOf(rows[0]!);
  for (const row of rows) if (accountOf(row) !== first) return true;
  return false;
}

/** The provisioning job a row belongs to (empty for batches from `batches:`). */
export function jobOf(row: ViewRow): string {
  return row.job ?? '';
}

/** Every column, in display order. */
export const STATUS_COLUMNS: readonly StatusColumn[] = [
  { header: 'applyId', value: (r) => r.applyId, narrow: true, maxWidth: 19 },
  { header: 'productKey', value: (r) => r.productKey, narrow: true, maxWidth: 20, minWidth: 11, softMinWidth: 13 },
  // NOTE: in the narrow table once the rows span several accounts: the same ApplyId may exist in two of them.
  { header: 'account', value: (r) => accountOf(r), narrow: false, narrowWhen: spansAccounts, maxWidth: 24, minWidth: 7, softMinWidth: 12 },
  { header: 'job', value: (r) => dash(jobOf(r)), narrow: false, maxWidth: 24 },
  { header: 'name', value: (r) => dash(r.name), narrow: true, maxWidth: 24, minWidth: 8, softMinWidth: 16 },
  { header: 'state', value: (r) => r.state, narrow: false, maxWidth: 8 },
  { header: 'status', value: (r) => dash(r.status), narrow: true, maxWidth: 14 },
  { header: 'outcome', value: (r) => dash(r.outcome), narrow: true, maxWidth: 13 },
  { header: 'polls', value: (r) => String(r.polls), narrow: true, maxWidth: 7, align: 'right' },
  { header: 'devices', value: (r) => dash(r.deviceCount), narrow: false, maxWidth: 8, align: 'right' },
  { header: 'firstSeenAt', value: (r) => dash(r.firstSeenAt), narrow: false, maxWidth: 24 },
  { header: 'settledAt', value: (r) => dash(r.settledAt), narrow: false, maxWidth: 24 },
  { header: 'nextPollAt', value: (r) => dash(r.nextPollAt), narrow: false, maxWidth: 24 },
  { header: 'lastError', value: (r) => dash(r.lastError), narrow: true, maxWidth: 60, minWidth: 10, softMinWidth: 30 },
  { header: 'labels', value: (r) => labelsText(r.labels), narrow: false, maxWidth: 40 },
  { header: 'resultFile', value: (r) => dash(r.resultFile), narrow: false, maxWidth: 80 },
];

function labelsText(labels: Record<string, string>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) parts.push(`${k}=${v}`);
  return parts.length === 0 ? '-' : parts.join(',');
}

/** Options of {@link formatStatusView}. */
export interface StatusViewOptions {
  /** Every column, no width limit. @default false */
  wide?: boolean;
  /** Width the narrow table fits in. @default NARROW_WIDTH */
  width?: number;
  /** Columns to use instead of {@link STATUS_COLUMNS}. */
  columns?: readonly StatusColumn[];
}

const GAP = '  ';

/** Cuts `text` to `width` characters, ending with `…` when cut. */
export function fit(text: string, width: number): string {
  if (text.length <= width) return text;
  return width <= 1 ? text.slice(0, width) : `${text.slice(0, width - 1)}…`;
}

/** The table as text, one line per row after a header line, each line ending with `\n`. */
export function formatStatusView(rows: readonly ViewRow[], options: StatusViewOptions = {}): string {
  const wide = options.wide ?? false;
  const columns = (options.columns ?? STATUS_COLUMNS).filter((c) => wide || c.narrow || (c.narrowWhen?.(rows) ?? false));
  const n = columns.length;
  // NOTE: cells are computed once, column-major, so widths need no second pass over the rows.
  const cells: string[][] = columns.map(() => new Array<string>(rows.length));
  const widths = columns.map((c) => c.header.length);
  for (let ci = 0; ci < n; ci += 1) {
    const col = columns[ci]!;
    const out = cells[ci]!;
    const cap = wide ? Math.max(col.maxWidth, 200) : col.maxWidth;
    let w = widths[ci]!;
    for (let ri = 0; ri < rows.length; ri += 1) {
      const text = fit(escapeControl(col.value(rows[ri]!)), cap);
      out[ri] = text;
      if (text.length > w) w = text.length;
    }
    widths[ci] = w;
  }
  if (!wide) shrinkToFit(columns, widths, options.width ?? NARROW_WIDTH);
  const lines = new Array<string>(rows.length + 1);
  lines[0] = formatLine(columns, widths, (ci) => columns[ci]!.header);
  for (let ri = 0; ri < rows.length; ri += 1) lines[ri + 1] = formatLine(columns, widths, (ci) => cells[ci]![ri]!);
  return `${lines.join('\n')}\n`;
}

function formatLine(columns: readonly StatusColumn[], widths: number[], text: (ci: number) => string): string {
  let line = '';
  const last = columns.length - 1;
  for (let ci = 0; ci <= last; ci += 1) {
    const w = widths[ci]!;
    const t = fit(text(ci), w);
    const cell = columns[ci]!.align === 'right' ? t.padStart(w) : ci === last ? t : t.padEnd(w);
    line += ci === 0 ? cell : GAP + cell;
  }
  return line.trimEnd();
}

/**
 * Narrows the shrinkable columns until the line fits `width`: first each down to its softMinWidth, then to its
 * minWidth, the last column first in each round (the error text gives way before the name, the name before ids).
 */
function shrinkToFit(columns: readonly StatusColumn[], widths: number[], width: number): void {
  let total = widths.reduce((a, b) => a + b, 0) + GAP.length * (widths.length - 1);
  for (const soft of [true, false]) {
    for (let ci = columns.length - 1; ci >= 0 && total > width; ci -= 1) {
      const col = columns[ci]!;
      if (col.minWidth === undefined) continue;
      const floor = Math.max(soft ? (col.softMinWidth ?? col.minWidth) : col.minWidth, col.header.length);
      const cut = Math.min(widths[ci]! - floor, total - width);
      if (cut > 0) {
        widths[ci] = widths[ci]! - cut;
        total -= cut;
      }
    }
  }
}
