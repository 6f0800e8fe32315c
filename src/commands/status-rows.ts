/**
 * The rows `status` and `status --watch` show: read from the ledgers without their locks, filtered by state,
 * account and provisioning job. On the file backend every account has its own ledger directory: `state.dir` for
 * `default` (and a file without accounts), `<state.dir>/accounts/<name>/` for the others (src/ledger/open-state.ts);
 * all of them are read, including accounts no longer in the file, whose batches stay visible until pruned.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { toStatusRows } from '../core/status-row.js';
import type { BatchRecord } from '../core/record.js';
import { ACCOUNTS_SUBDIR } from '../ledger/open-state.js';
import { readLedgerReadOnly } from '../ledger/read-ledger.js';
import { accountOf, jobOf, type ViewRow } from '../ops/status-view.js';

/** What `status` touches of the outside world. */
export interface StatusCommandIo {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  onSignal(signal: NodeJS.Signals, handler: () => void): () => void;
}

/** The filters of `status` and `status --watch`. */
export interface StatusFilter {
  states: ReadonlySet<string> | null;
  accounts: ReadonlySet<string> | null;
  jobs: ReadonlySet<string> | null;
}

/** Rows that pass every filter given. */
export function filterRows<R extends ViewRow>(rows: readonly R[], f: StatusFilter): R[] {
  if (f.states === null && f.accounts === null && f.jobs === null) return [...rows];
  return rows.filter(
    (r) =>
      (f.states === null || f.states.has(r.state)) &&
      (f.accounts === null || f.accounts.has(accountOf(r))) &&
      (f.jobs === null || f.jobs.has(jobOf(r))),
  );
}

/** The ledger directories of a file-backend `state.dir`: itself, then every account's under `accounts/`, by name. */
export async function accountLedgerDirs(stateDir: string): Promise<string[]> {
  const base = join(stateDir, ACCOUNTS_SUBDIR);
  let names: string[] = [];
  try {
    names = (await readdir(base, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    // No accounts other than `default` (or none yet).
  }
  return [stateDir, ...names.sort().map((n) => join(base, n))];
}

/** Reads the rows of every ledger in `stateDir` (none when the directory does not exist yet). */
export async function readStatusRows(stateDir: string): Promise<ViewRow[]> {
  if (!existsSync(stateDir)) return [];
  const records: BatchRecord[] = [];
  for (const dir of await accountLedgerDirs(stateDir)) {
    const snapshot = await readLedgerReadOnly(dir);
    for (const rec of snapshot.batches.values()) records.push(rec);
  }
  return toStatusRows(records);
}

