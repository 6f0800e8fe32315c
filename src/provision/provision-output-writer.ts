/**
 * Writes a job's outputs to `<resultsDir>/<productKey>/provision-<name>.{json,csv}`: mode 0600 (they hold
 * DeviceSecrets), atomic, never through a symlink (src/safe-fs.ts). The content is built by
 * provision-report.ts; this file only places it.
 */

import path from 'node:path';

import { assertSafePathSegment, ensureDirectory, openSafeDir, writeFileAtomic } from '../safe-fs.js';
import { type ProvisionReport, provisionFileNames, toFactoryCsv, toProvisionReportJson } from './provision-report.js';

const SECRET_FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** Where a job's outputs went. */
export interface ProvisionOutputPaths {
  json: string;
  csv: string;
}

/** Options of {@link writeProvisionOutputs}. */
export interface WriteProvisionOutputsOptions {
  /** fsync files and the directory. @default true */
  fsync?: boolean;
}

/**
 * Writes the report and the factory CSV of a job. The CSV is written first, then the report: a reader that
 * sees a settled report also finds the CSV of the same state.
 *
 * @throws DaemonError{code:'UnsafePath'} when the product directory is a symlink or not a directory, or the
 *   job name or ProductKey is not a safe path segment; DaemonError{kind:'store'} on I/O errors.
 */
export async function writeProvisionOutputs(
  resultsDir: string,
  report: ProvisionReport,
  options: WriteProvisionOutputsOptions = {},
): Promise<ProvisionOutputPaths> {
  assertSafePathSegment(report.productKey, 'productKey');
  assertSafePathSegment(report.job, 'provisioning job name');
  const fsync = options.fsync ?? true;
  const root = await ensureDirectory(path.resolve(resultsDir), { mode: DIR_MODE, label: 'output.resultsDir' });
  const dir = await openSafeDir(root, [report.productKey], { mode: DIR_MODE, tighten: true });
  const names = provisionFileNames(report.job);
  try {
    const csv = await writeFileAtomic(dir, names.csv, toFactoryCsv(report), { mode: SECRET_FILE_MODE, fsync });
    const json = await writeFileAtomic(dir, names.json, toProvisionReportJson(report), { mode: SECRET_FILE_MODE, fsync });
    return { json, csv };
  } finally {
    await dir.close();
  }
}
