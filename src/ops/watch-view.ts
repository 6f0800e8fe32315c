/**
 * The frames of `status --watch` (DESIGN.md §14), as pure functions of two samples (the previous one gives the
 * rates): totals per state and outcome, per account and per provisioning job, devices created, request rates
 * against each budget, the oldest pending batches and what is failing. A frame fits {@link NARROW_WIDTH}
 * columns unless `wide`; every piece of user text is escaped.
 */
import type { StatusRow } from '../core/status-row.js';
import type { Styles } from './color.js';
import { accountOf, fit, jobOf, NARROW_WIDTH, type ViewRow } from './status-view.js';
import { escapeControl } from './terminal-text.js';

/** What a running daemon's `/metrics` said (counters summed over outcomes). */
export interface MetricsSample {
  /** `ibw_api_requests_total` by action. */
  requests: Map<string, number>;
  /** `ibw_rate_limit_qps` by action (the current adaptive rate). */
  rate: Map<string, number>;
  /** `ibw_throttled_total` by action. */
  throttled: Map<string, number>;
}

/** One look at the ledger (and the daemon's metrics when it serves them). */
export interface WatchSample {
  at: number;
  rows: readonly ViewRow[];
  /** Null when the daemon serves no metrics (http.listen off) or they could not be read (see metricsNote). */
  metrics: MetricsSample | null;
  /** Why there are no metrics, or where they came from. */
  metricsNote: string;
  /** A problem reading the ledger (the rows are then the last good ones). */
  ledgerError: string | null;
}

/** A request budget: the action it covers and the configured rate. */
export interface Budget {
  label: string;
  action: string;
  qps: number;
}

/** What the frame shows besides the samples. */
export interface WatchContext {
  stateDir: string;
  intervalMs: number;
  budgets: readonly Budget[];
  /** Filters in effect, for the header (e.g. `state=pending`). */
  filters: string;
  wide: boolean;
  /** Terminal width; the narrow frame never exceeds NARROW_WIDTH. */
  columns?: number;
  /** Terminal height: lists are cut so the frame fits. */
  rows?: number;
  styles: Styles;
}

const OUTCOME_ORDER = ['created', 'checked', 'check_failed', 'create_failed', 'partial', 'timed_out', 'cancelled', 'rejected'];

/** Counts of one group of rows (all, an account, a job). */
export interface GroupTotals {
  batches: number;
  pending: number;
  fetching: number;
  settled: number;
  parked: number;
  /** Open batches whose last attempt failed, plus parked ones. */
  failing: number;
  /** Devices in the result files of created (or partially created) batches. */
  devices: number;
}

function emptyTotals(): GroupTotals {
  return { batches: 0, pending: 0, fetching: 0, settled: 0, parked: 0, failing: 0, devices: 0 };
}

function isFailing(r: StatusRow): boolean {
  return r.state === 'parked' || ((r.state === 'pending' || r.state === 'fetching') && r.lastError !== null);
}

function add(t: GroupTotals, r: StatusRow): void {
  t.batches += 1;
  t[r.state] += 1;
  if (isFailing(r)) t.failing += 1;
  if ((r.outcome === 'created' || r.outcome === 'partial') && r.deviceCount !== null) t.devices += r.deviceCount;
}

/** Everything a frame or a summary line needs, computed in one pass over the rows. */
export interface WatchSummary {
  all: GroupTotals;
  outcomes: Map<string, number>;
  accounts: Map<string, GroupTotals>;
  jobs: Map<string, GroupTotals>;
  oldestPending: ViewRow[];
  failing: ViewRow[];
  /** Requests per second by action from the metrics, null without two metric samples. */
  qps: Map<string, number> | null;
  /** Status polls per second estimated from the ledger's poll counters, null without a previous sample. */
  pollsPerSecond: number | null;
}

/** Summarises `current` (rates against `previous`, when given). */
export function summarise(current: WatchSample, previous: WatchSample | null, listSize: number): WatchSummary {
  const all = emptyTotals();
  const outcomes = new Map<string, number>();
  const accounts = new Map<string, GroupTotals>();
  const jobs = new Map<string, GroupTotals>();
  const pending: ViewRow[] = [];
  const failing: ViewRow[] = [];
  let polls = 0;
  for (const r of current.rows) {
    add(all, r);
    polls += r.polls;
    if (r.outcome !== null) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
    const account = accountOf(r);
    let a = accounts.get(account);
    if (!a) accounts.set(account, (a = emptyTotals()));
    add(a, r);
    const job = jobOf(r);
    if (job !== '') {
      let j = jobs.get(job);
      if (!j) jobs.set(job, (j = emptyTotals()));
      add(j, r);
    }
    if (r.state === 'pending' || r.state === 'fetching') pending.push(r);
    if (isFailing(r)) failing.push(r);
  }
  pending.sort((a, b) => (a.firstSeenAt < b.firstSeenAt ? -1 : a.firstSeenAt > b.firstSeenAt ? 1 : 0));
  // Retrying with an error first (they may still recover), then parked.
  failing.sort((a, b) => Number(a.state === 'parked') - Number(b.state === 'parked'));
  let qps: Map<string, number> | null = null;
  const dtS = previous ? (current.at - previous.at) / 1000 : 0;
  if (current.metrics && previous?.metrics && dtS > 0) {
    qps = new Map();
    for (const [action, n] of current.metrics.requests) {
      qps.set(action, Math.max(0, n - (previous.metrics.requests.get(action) ?? 0)) / dtS);
    }
  }
  let pollsPerSecond: number | null = null;
  if (previous && dtS > 0) {
    let before = 0;
    for (const r of previous.rows) before += r.polls;
    pollsPerSecond = Math.max(0, polls - before) / dtS;
  }
  return {
    all,
    outcomes,
    accounts,
    jobs,
    oldestPending: pending.slice(0, listSize),
    failing: failing.slice(0, listSize),
    qps,
    pollsPerSecond,
  };
}

/** `3h12m`, `4m05s`, `12s`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

const rate = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

function budgetText(b: Budget, s: WatchSummary, sample: WatchSample): string {
  const adaptive = sample.metrics?.rate.get(b.action);
  const now = s.qps?.get(b.action);
  const used = now === undefined ? '-' : rate(now);
  const throttled = sample.metrics?.throttled.get(b.action);
  const extra = [
    adaptive !== undefined && adaptive < b.qps ? `adaptive ${rate(adaptive)}` : null,
    throttled ? `throttled ${throttled}` : null,
  ].filter((x) => x !== null);
  return `${b.label} ${used}/s of ${b.qps}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}`;
}

/** A table of lines: each column as wide as its widest cell (cells already escaped). */
function table(header: string[], body: string[][], rightAligned: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...body.map(line)];
}

function groupTable(title: string, groups: Map<string, GroupTotals>, limit: number): string[] {
  const entries = [...groups].sort((a, b) => b[1].batches - a[1].batches);
  const shown = entries.slice(0, limit);
  const body = shown.map(([name, t]) => [
    fit(escapeControl(name), 24),
    String(t.batches),
    String(t.pending + t.fetching),
    String(t.settled),
    String(t.parked),
    String(t.failing),
    String(t.devices),
  ]);
  const lines = table([title, 'batches', 'open', 'settled', 'parked', 'failing', 'devices'], body, new Set([1, 2, 3, 4, 5, 6]));
  if (entries.length > shown.length) lines.push(`… ${entries.length - shown.length} more`);
  return lines;
}

/** The lines of one full-screen frame. */
export function renderFrame(current: WatchSample, previous: WatchSample | null, ctx: WatchContext): string[] {
  const width = ctx.wide ? Math.max(ctx.columns ?? 160, NARROW_WIDTH) : Math.min(ctx.columns ?? NARROW_WIDTH, NARROW_WIDTH);
  const listSize = ctx.wide ? 10 : 5;
  const s = summarise(current, previous, listSize);
  const st = ctx.styles;
  const out: { text: string; style?: (t: string) => string }[] = [];
  const push = (text: string, style?: (t: string) => string): void => void out.push(style ? { text, style } : { text });

  const when = new Date(current.at).toISOString().replace('T', ' ').slice(0, 19);
  push(`iot-batch-watcher status --watch  ${when}Z  every ${formatAge(ctx.intervalMs).replace(/^0s$/, `${ctx.intervalMs}ms`)}${ctx.filters ? `  ${ctx.filters}` : ''}`, st.bold);
  push(`ledger ${escapeControl(ctx.stateDir)}  metrics: ${current.metricsNote}`, st.dim);
  if (current.ledgerError) push(`ledger read failed: ${escapeControl(current.ledgerError)} (showing the last good read)`, st.red);
  push('');
  const a = s.all;
  push(`Batches ${a.batches}   pending ${a.pending}   fetching ${a.fetching}   settled ${a.settled}   parked ${a.parked}   failing ${a.failing}`, st.bold);
  const outcomes = OUTCOME_ORDER.filter((o) => s.outcomes.has(o)).map((o) => `${o} ${s.outcomes.get(o) ?? 0}`);
  push(`Outcomes ${outcomes.length > 0 ? outcomes.join('  ') : '-'}`);
  push(`Devices created ${a.devices}`);
  const budgets = ctx.budgets.map((b) => budgetText(b, s, current));
  const ledgerRate = s.pollsPerSecond === null ? '' : `   ledger polls ${rate(s.pollsPerSecond)}/s`;
  push(`Budget  ${budgets.join('   ')}${ledgerRate}`);
  push('');
  for (const l of groupTable('account', s.accounts, listSize)) push(l);
  if (s.jobs.size > 0) {
    push('');
    for (const l of groupTable('job', s.jobs, listSize)) push(l);
  } else {
    push('jobs: none (no provisioning job in this ledger)', st.dim);
  }
  push('');
  push(`Oldest pending${s.oldestPending.length === 0 ? ': none' : ''}`, st.bold);
  if (s.oldestPending.length > 0) {
    const body = s.oldestPending.map((r) => [
      r.applyId,
      escapeControl(r.productKey),
      fit(escapeControl(r.name ?? '-'), 24),
      r.status ?? '-',
      formatAge(current.at - Date.parse(r.firstSeenAt)),
      String(r.polls),
    ]);
    for (const l of table(['applyId', 'productKey', 'name', 'status', 'age', 'polls'], body, new Set([4, 5]))) push(`  ${l}`);
  }
  push('');
  push(`Failing${a.failing === 0 ? ': nothing' : ` (${a.failing})`}`, a.failing === 0 ? st.green : st.bold);
  for (const r of s.failing) {
    const what = r.state === 'parked' ? 'parked' : 'retrying';
    const head = `  ${r.applyId}  ${escapeControl(r.productKey)}  ${what}  `;
    const err = escapeControl(r.lastError ?? r.outcome ?? '-');
    push(`${head}${err}`, r.state === 'parked' ? st.red : st.yellow);
  }
  if (a.failing > s.failing.length) push(`  … ${a.failing - s.failing.length} more (status --state parked, or --wide)`, st.dim);

  let lines = out;
  if (ctx.rows !== undefined && lines.length > ctx.rows) lines = lines.slice(0, Math.max(1, ctx.rows));
  return lines.map((l) => {
    const text = fit(l.text, width);
    return l.style && text !== '' ? l.style(text) : text;
  });
}

/** The one line per interval written when stdout is not a terminal. */
export function renderSummaryLine(current: WatchSample, previous: WatchSample | null, ctx: Pick<WatchContext, 'budgets'>): string {
  const s = summarise(current, previous, 0);
  const a = s.all;
  const parts = [
    new Date(current.at).toISOString(),
    `batches=${a.batches}`,
    `pending=${a.pending}`,
    `fetching=${a.fetching}`,
    `settled=${a.settled}`,
    `parked=${a.parked}`,
    `failing=${a.failing}`,
    `devices=${a.devices}`,
  ];
  for (const b of ctx.budgets) {
    const q = s.qps?.get(b.action);
    parts.push(`${b.label.replace(/\s+/g, '_')}_qps=${q === undefined ? '-' : rate(q)}/${b.qps}`);
  }
  if (s.pollsPerSecond !== null) parts.push(`ledger_polls_per_s=${rate(s.pollsPerSecond)}`);
  if (current.ledgerError) parts.push(`ledger_error=${JSON.stringify(escapeControl(current.ledgerError))}`);
  return parts.join(' ');
}

/** Reads the counters of interest from Prometheus text. */
export function parseMetrics(text: string): MetricsSample {
  const sample: MetricsSample = { requests: new Map(), rate: new Map(), throttled: new Map() };
  const re = /^(ibw_api_requests_total|ibw_rate_limit_qps|ibw_throttled_total)\{([^}]*)\}\s+(\S+)/gm;
  for (const m of text.matchAll(re)) {
    const action = /action="([^"]*)"/.exec(m[2] ?? '')?.[1];
    const value = Number(m[3]);
    if (action === undefined || !Number.isFinite(value)) continue;
    const map = m[1] === 'ibw_api_requests_total' ? sample.requests : m[1] === 'ibw_rate_limit_qps' ? sample.rate : sample.throttled;
    map.set(action, (map.get(action) ?? 0) + value);
  }
  return sample;
}

