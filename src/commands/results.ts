/**
 * `iot-batch-watcher results [--config FILE] [--account A] [--product-key PK] [--apply-id ID | --provision NAME]
 * [--format json|csv]` (DESIGN.md §12): prints stored results from either backend. File backend: the result files
 * `<resultsDir>/<productKey>/<applyId>.json` (account `default`); postgres: the `results` table.
 *
 * JSON: an array of `{account, ...result}`. CSV: `ProductKey,DeviceName,DeviceSecret,IotId`, one row per
 * device (RFC 4180 quoting). The output carries device secrets on purpose (that is what it is for); nothing is
 * logged.
 *
 * `--provision NAME` prints a provisioning job's outcome from its stored state (DESIGN.md §13) instead: the job
 * files of each account's state directory, or the `provision_jobs` rows on postgres. JSON: an array with the job's
 * report (the `provision-<name>.json` shape) for each account that has a job of that name; CSV: the factory CSV
 * (every created device once, with its DeviceSecret).
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

import { resolveConfigPath } from '../config/load.js';
import { PROVISION_NAME_PATTERN } from '../config/schema.js';
import type { CompiledConfig } from '../config/types.js';
import type { BatchResult } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import { DEFAULT_ACCOUNT } from '../ledger/postgres-ledger.js';
import { connectPostgres, databaseError, quoteSchema } from '../ledger/postgres-connection.js';
import type { StoredResult, ResultFilter } from '../ledger/postgres-results.js';
import { readPostgresResults } from '../ledger/postgres-results.js';
import { DEFAULT_STATE_POSTGRES, postgresConnectSettings } from '../ledger/open-state.js';
import { createFileJobStore } from '../provision/file-job-store.js';
import { type JobState, jobView, storedJobSpec } from '../provision/job-state.js';
import { buildProvisionReport, FACTORY_CSV_HEADER, type ProvisionReport, toFactoryCsv } from '../provision/provision-report.js';
import { accountLedgerDirs } from './status-rows.js';

/** What a command needs of the outside world (main.ts passes its Io and its config loader). */
export interface CommandIo {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  loadConfig(path: string): Promise<CompiledConfig>;
}

/** Bad usage: main prints it with the usage text and exits 2. */
export class CommandUsageError extends Error {
  override name = 'CommandUsageError';
}

/** One CSV field (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** The CSV of the contract: a header and one row per device. */
export function resultsCsv(results: readonly StoredResult[]): string {
  const lines = ['ProductKey,DeviceName,DeviceSecret,IotId'];
  for (const { result } of results) {
    for (const d of result.devices) {
      lines.push([result.productKey, d.deviceName, d.deviceSecret ?? '', d.iotId].map(csvField).join(','));
    }
  }
  return `${lines.join('\r\n')}\r\n`;
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path, { withFileTypes: true })).map((e) => e.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Reads result files, ordered by productKey and applyId. They all belong to account `default`. */
export async function readFileResults(resultsDir: string, filter: ResultFilter): Promise<StoredResult[]> {
  if (filter.account !== undefined && filter.account !== DEFAULT_ACCOUNT) return [];
  const out: StoredResult[] = [];
  const products = filter.productKey === undefined ? await listDir(resultsDir) : [filter.productKey];
  for (const productKey of products) {
    if (productKey.startsWith('.') || productKey.includes('/')) continue;
    const files = (await listDir(join(resultsDir, productKey))).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
    for (const file of files) {
      const applyId = file.slice(0, -'.json'.length);
      if (filter.applyId !== undefined && applyId !== filter.applyId) continue;
      const path = join(resultsDir, productKey, file);
      let result: BatchResult;
      try {
        result = JSON.parse(await readFile(path, 'utf8')) as BatchResult;
      } catch (err) {
        throw new DaemonError(`cannot read result file ${path}: ${err instanceof Error ? err.message : String(err)}`, {
          kind: 'store',
          scope: 'process',
          code: 'ResultRead',
        });
      }
      out.push({ account: DEFAULT_ACCOUNT, result });
    }
  }
  return out;
}

/** Results of the configured backend. */
export async function readResults(config: CompiledConfig, env: CommandIo['env'], filter: ResultFilter): Promise<StoredResult[]> {
  if ((config.state.backend ?? 'file') === 'file') return readFileResults(config.output.resultsDir, filter);
  const pgConfig = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  const quoted = quoteSchema(pgConfig.schema);
  const settings = await postgresConnectSettings(config, env);
  const { client, redact } = await connectPostgres(settings.connectionString, env, settings.ssl);
  try {
    return await readPostgresResults(client, quoted, filter);
  } catch (err) {
    throw databaseError('read results', err, redact);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The stored state of job `name` of every account that has one (all accounts, or `account`): the database's rows on
 * PostgreSQL, else (and there when it has none) the job files of each account's state directory.
 */
export async function readJobStates(config: CompiledConfig, env: CommandIo['env'], name: string, account?: string): Promise<{ account: string; state: JobState }[]> {
  if ((config.state.backend ?? 'file') === 'postgres') {
    const { readPostgresJobs } = await import('../ledger/postgres-status.js');
    const stored = await readPostgresJobs(config, env, { name, ...(account === undefined ? {} : { accounts: new Set([account]) }) });
    // NOTE: none in the database: a job of the foreground `provision` command, whose state is a file of state.dir.
    if (stored.length > 0) return stored;
  }
  const out: { account: string; state: JobState }[] = [];
  for (const dir of await accountLedgerDirs(config.state.dir)) {
    const owner = dir === config.state.dir ? DEFAULT_ACCOUNT : basename(dir);
    if (account !== undefined && owner !== account) continue;
    const state = await createFileJobStore(dir).load(name);
    if (state !== null) out.push({ account: owner, state });
  }
  return out;
}

/** The report of a stored job (its `account` is the account it is stored under; null for `default`). */
function storedReport(account: string, state: JobState): ProvisionReport {
  const owner = account === DEFAULT_ACCOUNT ? null : account;
  return { ...buildProvisionReport(jobView(state, storedJobSpec(state, owner))), account: owner };
}

/** `results --provision NAME`: the job's report(s) or its factory CSV. */
async function printJob(config: CompiledConfig, io: CommandIo, name: string, filter: ResultFilter, format: 'json' | 'csv'): Promise<number> {
  const stored = (await readJobStates(config, io.env, name, filter.account)).filter((j) => filter.productKey === undefined || j.state.productKey === filter.productKey);
  const reports = stored.map((j) => storedReport(j.account, j.state));
  if (format === 'csv') {
    // One header, then each report's rows (toFactoryCsv starts each with the header line).
    const rows = reports.map((r) => toFactoryCsv(r).slice(`${FACTORY_CSV_HEADER}\r\n`.length)).join('');
    io.stdout.write(`${FACTORY_CSV_HEADER}\r\n${rows}`);
  } else {
    io.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
  }
  if (reports.length === 0) io.stderr.write(`no provisioning job named ${JSON.stringify(name)}\n`);
  return 0;
}

/** Runs `results`; resolves with the exit code. */
export async function resultsCommand(args: string[], io: CommandIo): Promise<number> {
  let opts;
  try {
    opts = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        account: { type: 'string' },
        'product-key': { type: 'string' },
        'apply-id': { type: 'string' },
        provision: { type: 'string' },
        format: { type: 'string', default: 'json' },
      },
    }).values;
  } catch (err) {
    throw new CommandUsageError(err instanceof Error ? err.message : String(err));
  }
  const format = opts.format;
  if (format !== 'json' && format !== 'csv') throw new CommandUsageError(`--format must be json or csv, got "${format}"`);
  const config = await io.loadConfig(resolveConfigPath(opts.config, io.env));
  const filter: ResultFilter = {
    ...(opts.account === undefined ? {} : { account: opts.account }),
    ...(opts['product-key'] === undefined ? {} : { productKey: opts['product-key'] }),
    ...(opts['apply-id'] === undefined ? {} : { applyId: opts['apply-id'] }),
  };
  if (opts.provision !== undefined) {
    if (opts['apply-id'] !== undefined) throw new CommandUsageError('--apply-id and --provision: give one of them');
    if (!PROVISION_NAME_PATTERN.test(opts.provision)) throw new CommandUsageError(`--provision: expected a job name (${PROVISION_NAME_PATTERN.source}), got ${JSON.stringify(opts.provision)}`);
    return printJob(config, io, opts.provision, filter, format);
  }
  const results = await readResults(config, io.env, filter);
  if (format === 'csv') io.stdout.write(resultsCsv(results));
  else io.stdout.write(`${JSON.stringify(results.map((r) => ({ account: r.account, ...r.result })), null, 2)}\n`);
  if (results.length === 0) io.stderr.write('no results match\n');
  return 0;
}
