/**
 * `iot-batch-watcher provision --product-key PK (--devices FILE | --count N) [--chunk-size N]
 * [--until created|checked] [--name NAME] [--config FILE] [--endpoint URL]` (DESIGN.md §13): runs one
 * provisioning job in the foreground, progress on stderr, and prints its report JSON. Exit codes as `wait`:
 * 0 every chunk created (or checked), 3 some chunk failed, partial or parked (`submission_unknown`),
 * 4 some chunk timed out, 2 bad flags or file, 1 a runtime failure.
 *
 * The job's durable state is `<state.dir>/provision/<name>.json`: running the same command again resumes the
 * job (a names job submits only names no chunk holds yet; a count chunk is never sent twice).
 */

import path from 'node:path';
import { parseArgs } from 'node:util';

import { createChainCredentials, createEnvCredentials } from '../alibaba/credentials.js';
import { createIotApi } from '../alibaba/iot-api.js';
import { createRpcClient } from '../alibaba/rpc-client.js';
import { compileConfigObject } from '../config/compile.js';
import { APPLY_ID_PATTERN, PROVISION_NAME_PATTERN, configSchema, provisionSchema } from '../config/schema.js';
import type { CompiledConfig } from '../config/types.js';
import { type Clock, type Random } from '../core/clock.js';
import { createApiBudget } from '../core/api-budget.js';
import { Daemon } from '../daemon.js';
import { DaemonError } from '../errors.js';
import { createMemoryLedger } from '../ledger/memory-ledger.js';
import { accountStateDir, DEFAULT_STATE_POSTGRES, postgresConnectSettings } from '../ledger/open-state.js';
import { connectPostgres, databaseError, quoteSchema } from '../ledger/postgres-connection.js';
import { jobLocation, updatePostgresJobState } from '../ledger/postgres-jobs.js';
import { createChunkSubmitter } from '../provision/chunk-submitter.js';
import { createDaemonChunkWatcher } from '../provision/daemon-chunk-watcher.js';
import { readDeviceFile } from '../provision/device-file-reader.js';
import { DeviceFileError } from '../provision/device-list.js';
import { createFileJobStore } from '../provision/file-job-store.js';
import { ProvisionFatalError, ProvisionRunner } from '../provision/job-runner.js';
import { type JobSpec, type JobState, deviceCounts, withChunk } from '../provision/job-state.js';
import { resolveUnknown } from '../provision/chunk-transitions.js';
import { writeProvisionOutputs } from '../provision/provision-output-writer.js';
import { createResultWriter } from '../sinks/result-writer.js';
import type { Logger } from 'pino';

/** What the command needs from the CLI (main.ts). */
export interface ProvisionIo {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  onSignal(signal: NodeJS.Signals, handler: () => void): () => void;
  /** Loads the file's configuration; null when there is no file (then the defaults). */
  loadBase(configFlag: string | undefined): Promise<CompiledConfig | null>;
  logger: Logger;
  clock: Clock;
  random: Random;
}

/** Bad flags: one line per problem. Exit 2. */
export class ProvisionFlagsError extends DaemonError {
  override name = 'ProvisionFlagsError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'), { kind: 'config', scope: 'process', code: 'ProvisionFlagsInvalid' });
  }
}

const FLAG_OF: Record<string, string> = {
  name: '--name',
  productKey: '--product-key',
  devices: '--devices',
  count: '--count',
  chunkSize: '--chunk-size',
  until: '--until',
};

/** The job given by flags, validated by the schema of a `provision` entry. */
export function jobSpecFromFlags(
  flags: { productKey?: string; devices?: string; count?: string; chunkSize?: string; until?: string; name?: string },
  cwd: string,
): JobSpec {
  const problems: string[] = [];
  if (flags.devices !== undefined && flags.count !== undefined) problems.push('--devices, --count: give one of them, not both');
  if (flags.devices === undefined && flags.count === undefined) problems.push('--devices or --count: required (a device file, or a number of devices)');
  const integer = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    if (!/^[0-9]+$/.test(value)) {
      problems.push(`${flag}: expected an integer, got ${JSON.stringify(value)}`);
      return undefined;
    }
    return Number(value);
  };
  const fromFile = flags.devices === undefined ? null : path.basename(flags.devices).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '-');
  const derived = fromFile !== null ? fromFile : `count-${flags.count ?? ''}`;
  const name = flags.name ?? (PROVISION_NAME_PATTERN.test(derived) ? derived : undefined);
  const entry: Record<string, unknown> = { name, productKey: flags.productKey };
  if (flags.devices !== undefined) entry.devices = flags.devices;
  const count = integer('--count', flags.count);
  if (count !== undefined) entry.count = count;
  const chunkSize = integer('--chunk-size', flags.chunkSize);
  if (chunkSize !== undefined) entry.chunkSize = chunkSize;
  if (flags.until !== undefined) entry.until = flags.until;
  const parsed = provisionSchema.safeParse(entry);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '');
      if (key === 'name' && flags.name === undefined) problems.push('--name: required (no job name could be made from the flags)');
      else if (key === 'productKey' && flags.productKey === undefined) problems.push('--product-key: required');
      else problems.push(`${FLAG_OF[key] ?? key}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ProvisionFlagsError(problems);
  const p = parsed.data;
  return {
    name: p.name,
    productKey: p.productKey,
    account: p.account ?? null,
    source: p.devices !== undefined ? { kind: 'devices', file: path.resolve(cwd, p.devices) } : { kind: 'count', count: p.count ?? 0 },
    chunkSize: p.chunkSize,
    until: p.until,
    labels: p.labels ?? {},
  };
}

function progressLine(state: JobState): string {
  const settled = state.chunks.filter((c) => ['checked', 'created', 'partial', 'failed', 'submission_unknown'].includes(c.state)).length;
  const d = deviceCounts(state);
  return `provision ${state.name}: chunks ${settled}/${state.chunks.length} settled, devices ${d.created}/${d.requested} created, ${d.rejected} rejected`;
}

/**
 * `provision resolve --name JOB --chunk N (--apply-id ID | --not-submitted) [--config FILE]`: the operator's
 * answer for a chunk parked `submission_unknown` (docs/provisioning.md). With the ApplyId found in the console
 * the next `provision` run watches it; with --not-submitted it submits the chunk.
 */
async function resolveCommand(args: string[], io: ProvisionIo): Promise<number> {
  const { values: opts } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string', short: 'c' },
      name: { type: 'string' },
      chunk: { type: 'string' },
      'apply-id': { type: 'string' },
      'not-submitted': { type: 'boolean' },
    },
  });
  const problems: string[] = [];
  if (opts.name === undefined || !PROVISION_NAME_PATTERN.test(opts.name)) problems.push('--name: required (the job name)');
  if (opts.chunk === undefined || !/^[0-9]+$/.test(opts.chunk)) problems.push('--chunk: required (the chunk index of the report)');
  if ((opts['apply-id'] === undefined) === (opts['not-submitted'] !== true)) problems.push('--apply-id or --not-submitted: give exactly one');
  if (opts['apply-id'] !== undefined && !APPLY_ID_PATTERN.test(opts['apply-id'])) problems.push('--apply-id: expected a string of digits without leading zeros');
  if (problems.length > 0) throw new ProvisionFlagsError(problems);
  const base = (await io.loadBase(opts.config)) ?? compileConfigObject({ alibaba: { regionId: 'cn-shanghai' } }, { cwd: io.cwd });
  const name = opts.name ?? '';
  const index = Number(opts.chunk);
  const resolution = opts['apply-id'] !== undefined ? { applyId: opts['apply-id'] } : ({ notSubmitted: true } as const);
  // The account whose job it is: the file's entry of that name says, else the first account (`default`).
  const account = base.provision?.find((j) => j.name === name)?.account ?? base.accounts[0]?.name ?? 'default';
  // What the change found; set by `resolve`, which the database's update may run inside its transaction.
  const found: { problem: string | null } = { problem: null };
  const resolve = (state: JobState | null): JobState | null => {
    const rec = state?.chunks.find((c) => c.index === index);
    if (state === null || rec === undefined) {
      found.problem = `no chunk ${index} of job "${name}"`;
      return null;
    }
    if (rec.state !== 'submission_unknown') {
      found.problem = `chunk ${index} of "${name}" is ${rec.state}, not submission_unknown: nothing to resolve`;
      return null;
    }
    return withChunk(state, resolveUnknown(rec, resolution, io.clock.now()).rec);
  };
  // PostgreSQL: the daemon's jobs are rows of provision_jobs (changed in one transaction holding the row); a job
  // that is not there is one of the foreground command, whose state is a file of state.dir.
  const searched: string[] = [];
  let where: string | null = null;
  if (base.state.backend === 'postgres') {
    const row = await updateJobInDatabase(base, io.env, account, name, (state) => (state === null ? null : resolve(state)));
    if (row.exists) where = row.location;
    else searched.push(row.location);
  }
  if (where === null) {
    // The daemon keeps a job in its account's directory, the foreground command in state.dir itself.
    const dirs = [...new Set([accountStateDir(base.state.dir, account), base.state.dir])];
    let hit: { dir: string; state: JobState } | null = null;
    for (const dir of dirs) {
      const state = await createFileJobStore(dir).load(name);
      if (state !== null) {
        hit = { dir, state };
        break;
      }
    }
    searched.push(...dirs.map((d) => path.join(d, 'provision')));
    where = hit === null ? searched.join(', ') : path.join(hit.dir, 'provision');
    const next = resolve(hit?.state ?? null);
    if (hit !== null && next !== null) await createFileJobStore(hit.dir).save(next);
  }
  if (found.problem !== null) {
    io.stderr.write(`provision resolve: ${found.problem} (${where})\n`);
    return 2;
  }
  io.stdout.write(
    `chunk ${index} of "${name}": ${'applyId' in resolution ? `ApplyId ${resolution.applyId} adopted; the next provision run watches it` : 'marked not submitted; the next provision run submits it'}\n`,
  );
  return 0;
}

/**
 * `provision resolve` on PostgreSQL: applies `change` to the stored state of job `name` of `account` in one
 * transaction holding its row (not fenced: it is the operator's answer, and the owner reads it at its next reload).
 * `exists`: the job has a row; `location`: where, for messages.
 */
async function updateJobInDatabase(
  config: CompiledConfig,
  env: ProvisionIo['env'],
  account: string,
  name: string,
  change: (state: JobState | null) => JobState | null,
): Promise<{ exists: boolean; location: string }> {
  const quoted = quoteSchema((config.state.postgres ?? DEFAULT_STATE_POSTGRES).schema);
  const settings = await postgresConnectSettings(config, env);
  const { client, redact } = await connectPostgres(settings.connectionString, env, settings.ssl);
  try {
    let exists = false;
    await updatePostgresJobState(client, quoted, account, name, (state) => {
      exists = state !== null;
      return change(state);
    });
    return { exists, location: jobLocation(quoted, account, name) };
  } catch (err) {
    if (err instanceof DaemonError) throw err;
    throw databaseError(`update provisioning job ${name}`, err, redact);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs the command (or `provision resolve`); resolves with the exit code. */
export async function provisionCommand(args: string[], io: ProvisionIo): Promise<number> {
  if (args[0] === 'resolve') return resolveCommand(args.slice(1), io);
  const { values: opts } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string', short: 'c' },
      'product-key': { type: 'string' },
      devices: { type: 'string' },
      count: { type: 'string' },
      'chunk-size': { type: 'string' },
      until: { type: 'string' },
      name: { type: 'string' },
      endpoint: { type: 'string' },
    },
  });
  const specFromFlags = (): JobSpec =>
    jobSpecFromFlags(
      {
        ...(opts['product-key'] === undefined ? {} : { productKey: opts['product-key'] }),
        ...(opts.devices === undefined ? {} : { devices: opts.devices }),
        ...(opts.count === undefined ? {} : { count: opts.count }),
        ...(opts['chunk-size'] === undefined ? {} : { chunkSize: opts['chunk-size'] }),
        ...(opts.until === undefined ? {} : { until: opts.until }),
        ...(opts.name === undefined ? {} : { name: opts.name }),
      },
      io.cwd,
    );
  let base = (await io.loadBase(opts.config)) ?? compileConfigObject({ alibaba: { regionId: 'cn-shanghai' } }, { cwd: io.cwd });
  // `--name JOB` alone runs the file's `provision` entry of that name (its devices or count, chunkSize, labels).
  const configured = base.provision?.find((j) => j.name === opts.name);
  const onlyName = opts.devices === undefined && opts.count === undefined && opts['product-key'] === undefined;
  const spec: JobSpec =
    configured !== undefined && onlyName
      ? { name: configured.name, productKey: configured.productKey, account: configured.account, source: configured.source, chunkSize: configured.chunkSize, until: configured.until, labels: configured.labels }
      : specFromFlags();
  if (opts.endpoint !== undefined) {
    const checked = configSchema.shape.alibaba.unwrap().shape.endpoint.safeParse(opts.endpoint);
    if (!checked.success || checked.data === undefined) throw new ProvisionFlagsError([`--endpoint: ${checked.success ? 'invalid' : (checked.error.issues[0]?.message ?? 'invalid')}`]);
    base = { ...base, alibaba: { ...base.alibaba, endpoint: new URL(checked.data).origin } };
  }
  // The daemon inside watches only this job's chunks: no HTTP server, no sinks of the file.
  // Nor the file's `provision` entries: this command runs the one job it was given.
  const { provision: _entries, ...withoutJobs } = base;
  base = { ...withoutJobs, batches: [], http: { listen: null }, output: { ...base.output, webhook: null } };

  let devices = null;
  if (spec.source.kind === 'devices') {
    try {
      devices = await readDeviceFile(spec.source.file);
    } catch (err) {
      if (err instanceof DeviceFileError) {
        io.stderr.write(`${err.message}\n`);
        return 2;
      }
      throw err;
    }
  }

  const log = io.logger;
  const credentials = base.alibaba.credentials === 'chain' ? createChainCredentials() : createEnvCredentials(io.env);
  // The account's submit budget (rateLimit.submitQps of the account; Alibaba: 10 QPS per submit action).
  const submitQps = base.accounts.find((a) => a.name === (spec.account ?? base.accounts[0]?.name))?.rateLimit.submitQps;
  const budget = createApiBudget({ ...base.rateLimit, ...(submitQps === undefined ? {} : { submitQps }) }, { clock: io.clock, log: log.child({ component: 'budget' }) });
  const rpc = createRpcClient({
    endpoint: base.alibaba.endpoint,
    credentials,
    signatureVersion: base.alibaba.signatureVersion,
    requestTimeoutMs: base.alibaba.requestTimeoutMs,
    clock: io.clock,
    random: io.random,
    logger: log.child({ component: 'provision-api' }),
    // One attempt per submission: the runner retries under the budget, taking a token before each intent.
    maxAttempts: 1,
    onAttempt: (info) => {
      budget.feedback(info.action, info.outcome);
    },
  });
  const api = createIotApi({ rpc, defaultIotInstanceId: base.alibaba.iotInstanceId });
  const inner = createResultWriter({ resultsDir: base.output.resultsDir, includeSecrets: true });
  const chunkWatcher = createDaemonChunkWatcher(base, inner);
  const daemon = new Daemon({
    config: chunkWatcher.config(),
    logger: log,
    env: io.env,
    credentials,
    ledger: createMemoryLedger(),
    provision: false,
    results: chunkWatcher.results,
    loadConfig: () => chunkWatcher.loadConfig(),
    http: false,
    housekeeping: false,
    clock: io.clock,
    random: io.random,
  });
  let reloads: Promise<unknown> = Promise.resolve();
  chunkWatcher.attach((reason) => {
    // NOTE: one reload after another, so each reads the batches added before it (the daemon shares a reload in flight).
    const next = reloads.then(() => daemon.reload(reason));
    reloads = next.catch(() => undefined);
    return next;
  });

  const stop = new AbortController();
  const unsubs = (['SIGTERM', 'SIGINT'] as const).map((s) => io.onSignal(s, () => stop.abort(new Error(`stopped by ${s}`))));
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  let lastLine = '';
  const runner = new ProvisionRunner({
    spec,
    devices,
    store: createFileJobStore(base.state.dir),
    submitter: createChunkSubmitter(api),
    watcher: chunkWatcher.watcher,
    budget,
    clock: io.clock,
    writeOutputs: async (report) => {
      await writeProvisionOutputs(base.output.resultsDir, report);
    },
    emit: (type, fields) => log.info({ event: { type, ...fields } }, type),
    onSaveRetry: ({ chunk, applyId, delayMs, error }) =>
      log.warn({ job: spec.name, chunk, applyId, retryInMs: delayMs, err: error }, 'cannot save the answer of a submission; retrying (the ApplyId is in this line)'),
    onProgress: (state) => {
      const line = progressLine(state);
      if (line === lastLine) return;
      lastLine = line;
      io.stderr.write(tty ? `\r${line}` : `${line}\n`);
    },
  });
  try {
    await daemon.start();
    const report = await runner.run(stop.signal);
    if (tty) io.stderr.write('\n');
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (report.outcome === 'complete') return 0;
    return report.chunks.some((c) => c.reason === 'timed_out') ? 4 : 3;
  } catch (err) {
    if (err instanceof ProvisionFatalError) {
      io.stderr.write(`provision ${spec.name}: ${err.message}\n`);
      return 1;
    }
    if (stop.signal.aborted) {
      io.stderr.write(`provision ${spec.name}: stopped; run the same command again to resume\n`);
      return 130;
    }
    throw err;
  } finally {
    for (const u of unsubs) u();
    await daemon.stop();
    budget.close();
    await rpc.close();
  }
}
