/**
 * `iot-batch-watcher status --watch [--interval 2s]` (DESIGN.md §14).
 *
 * Where the numbers come from: the batches always from the ledger (on postgres, the database), read without the
 * lock like `status` (so the view works whether or not the daemon serves HTTP, and shows exactly what `status`
 * would). Request rates come
 * from the daemon's `/metrics` when the configuration has `http.listen` (counter deltas between two reads,
 * against the configured budgets, with the current adaptive rate); without it, or when `/metrics` does not
 * answer, the view says so and shows the status polls per second estimated from the ledger's poll counters.
 *
 * On a terminal the frame is redrawn in place (cursor home, lines cleared to their end); otherwise one summary
 * line per interval. SIGINT/SIGTERM end it with exit 0.
 */
import type { CompiledConfig } from '../config/types.js';
import { type Clock, systemClock } from '../core/clock.js';
import { colorEnabled, styles } from '../ops/color.js';
import type { ViewRow } from '../ops/status-view.js';
import { type Budget, parseMetrics, renderFrame, renderSummaryLine, type WatchSample } from '../ops/watch-view.js';
import { filterRows, readStatusRows, type StatusCommandIo, type StatusFilter } from './status-rows.js';

/** What `status --watch` shows. */
export interface StatusWatchOptions {
  config: CompiledConfig;
  filter: StatusFilter;
  intervalMs: number;
  wide: boolean;
}

/** Injected for tests. */
export interface StatusWatchDeps {
  clock?: Clock;
  /** Reads the metrics text; rejects when it cannot. @default fetch of http://<listen>/metrics, 1 s timeout */
  fetchMetrics?: (url: string) => Promise<string>;
}

const CSI = '\u001b[';

async function defaultFetchMetrics(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status}${res.status === 401 || res.status === 403 ? ' (http.auth)' : ''}`);
  }
  return res.text();
}

/** The metrics URL of the daemon of `config`, or null when it serves none. */
export function metricsUrl(config: CompiledConfig): string | null {
  const listen = config.http.listen;
  if (!listen) return null;
  // NOTE: a daemon listening on every address is reached on loopback from here.
  const host = listen.host === '0.0.0.0' || listen.host === '::' || listen.host === '' ? '127.0.0.1' : listen.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}/metrics`;
}

function filterText(f: StatusFilter): string {
  const parts: string[] = [];
  if (f.states) parts.push(`state=${[...f.states].join(',')}`);
  if (f.accounts) parts.push(`account=${[...f.accounts].join(',')}`);
  if (f.jobs) parts.push(`job=${[...f.jobs].join(',')}`);
  return parts.join(' ');
}

/** Runs the live view until SIGINT/SIGTERM; resolves with the exit code (0). */
export async function runStatusWatch(options: StatusWatchOptions, io: StatusCommandIo, deps: StatusWatchDeps = {}): Promise<number> {
  const clock = deps.clock ?? systemClock;
  const fetchMetrics = deps.fetchMetrics ?? defaultFetchMetrics;
  const { config, filter } = options;
  const out = io.stdout as NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number };
  const tty = out.isTTY === true;
  const budgets: Budget[] = [
    { label: 'status', action: 'QueryBatchRegisterDeviceStatus', qps: config.rateLimit.statusQps },
    { label: 'pages', action: 'QueryPageByApplyId', qps: config.rateLimit.pageQps },
  ];
  const url = metricsUrl(config);
  // NOTE: on postgres every interval reads the database through a short-lived connection of its own (read-only,
  // no lease), so a database that restarts is simply read again at the next interval.
  const pgStatus = config.state.backend === 'postgres' ? await import('../ledger/postgres-status.js') : null;
  const readRows = (): Promise<readonly ViewRow[]> =>
    pgStatus ? pgStatus.readPostgresStatusRows(config, io.env, { accounts: filter.accounts }) : readStatusRows(config.state.dir);
  const stop = new AbortController();
  const unsubs = (['SIGINT', 'SIGTERM'] as const).map((s) => io.onSignal(s, () => stop.abort()));
  const st = styles(colorEnabled(io.env, out));
  let previous: WatchSample | null = null;
  let lastRows: readonly ViewRow[] = [];
  if (tty) out.write(`${CSI}?25l${CSI}H${CSI}2J`);
  try {
    while (!stop.signal.aborted) {
      let ledgerError: string | null = null;
      try {
        lastRows = filterRows(await readRows(), filter);
      } catch (err) {
        ledgerError = err instanceof Error ? err.message : String(err);
      }
      let metrics: WatchSample['metrics'] = null;
      let metricsNote = 'none (http.listen is off): rates estimated from the ledger';
      if (url) {
        try {
          metrics = parseMetrics(await fetchMetrics(url));
          metricsNote = url;
        } catch (err) {
          metricsNote = `${url} unavailable (${err instanceof Error ? err.message : String(err)}): rates estimated from the ledger`;
        }
      }
      const sample: WatchSample = { at: clock.now(), rows: lastRows, metrics, metricsNote, ledgerError };
      if (tty) {
        const lines = renderFrame(sample, previous, {
          stateDir: pgStatus ? pgStatus.postgresStatusLocation(config) : config.state.dir,
          intervalMs: options.intervalMs,
          budgets,
          filters: filterText(filter),
          wide: options.wide,
          ...(out.columns ? { columns: out.columns } : {}),
          ...(out.rows ? { rows: out.rows - 1 } : {}),
          styles: st,
        });
        out.write(`${CSI}H${lines.map((l) => `${l}${CSI}K`).join('\n')}\n${CSI}J`);
      } else {
        out.write(`${renderSummaryLine(sample, previous, { budgets })}\n`);
      }
      previous = sample;
      try {
        await clock.sleep(options.intervalMs, stop.signal);
      } catch {
        break;
      }
    }
  } finally {
    for (const u of unsubs) u();
    if (tty) out.write(`${CSI}?25h`);
  }
  return 0;
}
