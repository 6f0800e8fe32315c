/**
 * The rows `status` and `status --watch` show: read from the ledger without its lock, filtered by state, account
 * and provisioning job.
 */
import { existsSync } from 'node:fs';

import { toStatusRows } from '../core/status-row.js';
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

/** Reads the rows of the ledger in `stateDir` (none when the directory does not exist yet). */
export async function readStatusRows(stateDir: string): Promise<ViewRow[]> {
  if (!existsSync(stateDir)) return [];
  const snapshot = await readLedgerReadOnly(stateDir);
  // The chunk batches of provisioning jobs carry their job (the `provisionJob` label): `--job` filters on it.
  return toStatusRows(snapshot.batches.values()).map((r) => (r.labels.provisionJob === undefined ? r : { ...r, job: r.labels.provisionJob }));
}

