/**
 * The job rows of `status` (DESIGN.md §13: chunks settled / total, devices created / requested), read from the job
 * state files of a state directory (`<dir>/provision/*.json`) without any lock, like the ledger's rows.
 */

import { createFileJobStore } from './file-job-store.js';
import { type ProvisionStatusRow, provisionStatusRow } from './job-state.js';

/** The row of every job stored in `stateDir`, by name; a file that cannot be read is skipped. */
export async function readJobStatusRows(stateDir: string): Promise<ProvisionStatusRow[]> {
  const store = createFileJobStore(stateDir);
  const rows: ProvisionStatusRow[] = [];
  for (const name of (await store.list()).sort()) {
    // NOTE: a job being written is renamed into place atomically; a file of another version is not this build's.
    const state = await store.load(name).catch(() => null);
    if (state !== null) rows.push(provisionStatusRow(state));
  }
  return rows;
}

/** The plain table of job rows: `job  productKey  chunks  devices  parked`. */
export function formatJobRows(rows: readonly ProvisionStatusRow[]): string {
  if (rows.length === 0) return '';
  const table = [
    ['job', 'productKey', 'chunks', 'devices', 'parked'],
    ...rows.map((r) => [r.job, r.productKey, `${r.chunksSettled}/${r.chunksTotal}`, `${r.devicesCreated}/${r.devicesRequested}`, String(r.parked)]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return `${table.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n`;
}
