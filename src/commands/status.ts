/**
 * `iot-batch-watcher status` (DESIGN.md §7, §14): the batches of the ledger, read without the lock, as a narrow
 * table (fits 100 columns), every column with `--wide`, or the §7 JSON with `--json`; `--state`, `--account` and
 * `--job` filter; `--watch` is the live view (status-watch.ts). On `state.backend: postgres` the rows come from the
 * database (src/ledger/postgres-status.ts), read-only and without touching any lease.
 */
import { existsSync } from 'node:fs';

import type { CompiledConfig } from '../config/types.js';
import { tryParseDuration } from '../config/duration.js';
import { resolveConfigPath } from '../config/env.js';
import type { BatchState } from '../core/record.js';
import { formatStatusView } from '../ops/status-view.js';
import { parseOptions, UsageError } from './args.js';
import { accountLedgerDirs, filterRows, readStatusRows, type StatusCommandIo, type StatusFilter } from './status-rows.js';
import { formatJobRows, readJobStatusRows } from '../provision/job-status.js';
import { type ProvisionStatusRow, provisionStatusRow } from '../provision/job-state.js';

export type { StatusCommandIo, StatusFilter };

/** What `status` needs from the composition root. */
export interface StatusCommandDeps {
  /** Loads the configuration with the environment overrides (main.ts' loadConfig). */
  loadConfig(path: string): Promise<CompiledConfig>;
}

const STATES: readonly BatchState[] = ['pending', 'fetching', 'settled', 'parked'];

/** Runs `status`; resolves with the exit code. Throws UsageError for bad arguments. */
export async function statusCommand(args: string[], io: StatusCommandIo, deps: StatusCommandDeps): Promise<number> {
  const opts = parseOptions(args, {
    config: { type: 'string', short: 'c' },
    json: { type: 'boolean' },
    wide: { type: 'boolean' },
    state: { type: 'string', multiple: true },
    account: { type: 'string', multiple: true },
    job: { type: 'string', multiple: true },
    jobs: { type: 'boolean' },
    watch: { type: 'boolean' },
    interval: { type: 'string' },
  });
  for (const s of opts.state ?? []) {
    if (!(STATES as readonly string[]).includes(s)) {
      throw new UsageError(`--state: expected one of ${STATES.join(', ')}, got ${JSON.stringify(s)}`);
    }
  }
  const filter: StatusFilter = {
    states: opts.state ? new Set(opts.state) : null,
    accounts: opts.account ? new Set(opts.account) : null,
    jobs: opts.job ? new Set(opts.job) : null,
  };
  let intervalMs = 2000;
  if (opts.interval !== undefined) {
    if (!opts.watch) throw new UsageError('--interval: only with --watch');
    const d = tryParseDuration(opts.interval);
    if (!d.ok || d.ms < 100) throw new UsageError(`--interval: expected a duration of at least 100ms like "2s", got ${JSON.stringify(opts.interval)}`);
    intervalMs = d.ms;
  }
  if (opts.watch && opts.json) throw new UsageError('--watch and --json: choose one');
  const path = resolveConfigPath(opts.config, io.env);
  const config = await deps.loadConfig(path);
  if (opts.watch) {
    const { runStatusWatch } = await import('./status-watch.js');
    return runStatusWatch({ config, filter, intervalMs, wide: opts.wide ?? false }, io);
  }
  const onPostgres = config.state.backend === 'postgres';
  if (!onPostgres && !existsSync(config.state.dir)) {
    io.stderr.write(`no ledger yet in ${config.state.dir} (the daemon has not run with this configuration)\n`);
  }
  // Provisioning jobs (DESIGN.md §13): `--jobs` prints one row per job instead; the plain table ends with them.
  // On PostgreSQL they are the `provision_jobs` rows (read-only, like the batches), else the job files of each
  // account's state directory.
  // (On PostgreSQL, also the jobs of the foreground `provision` command, which keeps its state in state.dir.)
  const storedJobs: ProvisionStatusRow[] = [];
  if (onPostgres) {
    const stored = await (await import('../ledger/postgres-status.js')).readPostgresJobs(config, io.env, { accounts: filter.accounts, skipUnreadable: opts.jobs !== true });
    storedJobs.push(...stored.map((j) => provisionStatusRow(j.state)));
  }
  const inDatabase = new Set(storedJobs.map((r) => r.job));
  for (const dir of onPostgres ? [config.state.dir] : await accountLedgerDirs(config.state.dir)) {
    storedJobs.push(...(await readJobStatusRows(dir)).filter((r) => !inDatabase.has(r.job)));
  }
  const jobRows = storedJobs.filter((r) => filter.jobs === null || filter.jobs.has(r.job));
  if (opts.jobs) {
    io.stdout.write(opts.json ? `${JSON.stringify(jobRows, null, 2)}\n` : formatJobRows(jobRows));
    return 0;
  }
  // NOTE: the postgres reader (and `pg`) is loaded only on that backend; it reads the database, read-only, no lease.
  const read = onPostgres
    ? (await import('../ledger/postgres-status.js')).readPostgresStatusRows(config, io.env, { accounts: filter.accounts })
    : readStatusRows(config.state.dir);
  const rows = filterRows(await read, filter);
  io.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : formatStatusView(rows, { wide: opts.wide ?? false }));
  if (!opts.json && jobRows.length > 0) io.stdout.write(`\n${formatJobRows(jobRows)}`);
  return 0;
}
