/**
 * Shared pieces of the black-box account tests (test/e2e/accounts-*.test.ts, issue #15, DESIGN.md §11): one
 * simulator per account, each with its own AccessKey pair and QPS limits, preloaded with batches whose outcomes
 * are known; the daemon's YAML with an `accounts` section; reading `status --json`, the events file and the
 * result files the CLI child writes; per-window request counts from a simulator's request log.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { FaultOptions } from '../../src/simulator/options.js';
import { type RequestLogEntry, type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli } from '../helpers/child.js';

export const PRODUCT = 'a1SimProduct1';
export const STATUS = 'QueryBatchRegisterDeviceStatus';
export const PAGE = 'QueryPageByApplyId';

/** One account of a test: its name, its simulator's AccessKey pair, and the environment variable names. */
export interface AccountSpec {
  name: string;
  accessKeyId: string;
  accessKeySecret: string;
  /** Variable names the daemon's YAML gives (`credentials.accessKeyIdEnv` / `accessKeySecretEnv`). */
  idEnv: string;
  secretEnv: string;
}

/** A batch preloaded into a simulator, with the outcome the daemon must settle it with. */
export interface ExpectedBatch {
  applyId: string;
  productKey: string;
  outcome: 'created' | 'create_failed' | 'check_failed';
  /** Devices the result file must list (created ones; a partial batch lists those that were created). */
  devices: number;
}

/** Starts a simulator that accepts only `spec`'s AccessKey pair, with the given per-action QPS limits (0 = off). */
export function startAccountSimulator(
  spec: AccountSpec,
  options: { statusQps?: number; pageQps?: number; seed?: number; timeScale?: number; faults?: FaultOptions } = {},
): Promise<SimulatorHandle> {
  return startSimulator({
    ...(options.faults ? { faults: options.faults } : {}),
    port: 0,
    accessKeyId: spec.accessKeyId,
    accessKeySecret: spec.accessKeySecret,
    qps: { QueryBatchRegisterDeviceStatus: options.statusQps ?? 30, QueryPageByApplyId: options.pageQps ?? 50 },
    seed: options.seed ?? 7,
    timeScale: options.timeScale ?? 1,
  });
}

/**
 * Preloads `count` batches with ApplyIds from `firstApplyId`, cycling through three kinds: a random-name batch that
 * is created (2 devices), a custom-name batch that partly fails at create (3 names, 1 fails: create_failed with 2
 * devices), and a custom-name batch whose check fails (check_failed, no devices). `stretch` multiplies every
 * duration (1: each settles within 2 s of simulated time).
 */
export function addBatches(sim: SimulatorHandle, firstApplyId: number, count: number, stretch = 1): ExpectedBatch[] {
  const out: ExpectedBatch[] = [];
  for (let i = 0; i < count; i += 1) {
    const applyId = String(firstApplyId + i);
    const kind = i % 3;
    if (kind === 0) {
      sim.control.addBatch({ applyId, productKey: PRODUCT, mode: 'random', count: 2, createMs: 1500 * stretch });
      out.push({ applyId, productKey: PRODUCT, outcome: 'created', devices: 2 });
    } else if (kind === 1) {
      const names = [`d${applyId}-a`, `d${applyId}-b`, `d${applyId}-c`];
      sim.control.addBatch({ applyId, productKey: PRODUCT, mode: 'custom', deviceNames: names, registered: true, outcome: 'partial', failNames: [names[1]!], checkMs: 800 * stretch, createMs: 1200 * stretch });
      out.push({ applyId, productKey: PRODUCT, outcome: 'create_failed', devices: 2 });
    } else {
      sim.control.addBatch({ applyId, productKey: PRODUCT, mode: 'custom', deviceNames: [`d${applyId}-a`, `d${applyId}-b`], outcome: 'check_failed', checkMs: 1200 * stretch });
      out.push({ applyId, productKey: PRODUCT, outcome: 'check_failed', devices: 0 });
    }
  }
  return out;
}

/** The YAML of one `accounts` entry pointing at `sim`. */
export function accountYaml(spec: AccountSpec, sim: SimulatorHandle, rateLimit: string, extra: string[] = []): string[] {
  return [
    `  - name: ${spec.name}`,
    `    endpoint: "${sim.url}"`,
    `    credentials: { accessKeyIdEnv: ${spec.idEnv}, accessKeySecretEnv: ${spec.secretEnv} }`,
    `    rateLimit: ${rateLimit}`,
    ...extra.map((l) => `    ${l}`),
  ];
}

/** The YAML of the batches of one account. */
export function batchesYaml(account: string | null, batches: readonly ExpectedBatch[]): string[] {
  return batches.map((b) => `  - { ${account === null ? '' : `account: ${account}, `}applyId: "${b.applyId}", productKey: ${b.productKey} }`);
}

export { waitUntil } from '../helpers/wait.js';
/** One line of the events file. */
export interface EventLine {
  id: string;
  type: string;
  account?: string;
  applyId: string;
  productKey: string;
  outcome?: string | null;
}

/** The events file's lines so far (none when it does not exist yet). */
export async function readEvents(file: string): Promise<EventLine[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as EventLine];
      } catch {
        return []; // a line still being written
      }
    });
}

/** `batch.settled` events per account. */
export function settledByAccount(events: readonly EventLine[]): Map<string, EventLine[]> {
  const out = new Map<string, EventLine[]>();
  for (const e of events) {
    if (e.type !== 'batch.settled') continue;
    const account = e.account ?? 'default';
    out.set(account, [...(out.get(account) ?? []), e]);
  }
  return out;
}

/** One row of `status --json` (DESIGN.md §7, §11). */
export interface StatusJsonRow {
  account?: string | null;
  applyId: string;
  productKey: string;
  state: string;
  status: string | null;
  outcome: string | null;
  polls: number;
  firstSeenAt: string;
  settledAt: string | null;
  lastError: string | null;
  resultFile: string | null;
  deviceCount: number | null;
}

/** Runs `status --json` through the CLI (it works while the daemon runs) and parses its stdout. */
export async function statusJson(configFile: string, env: Record<string, string>, extraArgs: string[] = []): Promise<StatusJsonRow[]> {
  const child = runCli(['status', '--config', configFile, '--json', ...extraArgs], env);
  const exit = await child.exited;
  if (exit.code !== 0) throw new Error(`status exited ${String(exit.code)}: ${child.stderr.join('')}`);
  return JSON.parse(child.stdout.join('\n')) as StatusJsonRow[];
}

/** A result file, as far as these tests read it. */
export interface ResultFile {
  account?: string;
  applyId: string;
  productKey: string;
  outcome: string;
  deviceCount: number;
  devices: unknown[];
}

export async function readResult(path: string): Promise<ResultFile> {
  return JSON.parse(await readFile(path, 'utf8')) as ResultFile;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The result file of a batch in the layout with accounts (`<resultsDir>/<account>/<productKey>/<applyId>.json`). */
export function accountResultPath(resultsDir: string, account: string, b: { productKey: string; applyId: string }): string {
  return join(resultsDir, account, b.productKey, `${b.applyId}.json`);
}

/** Arrival times of one action's requests in a simulator's request log. */
export function arrivals(log: readonly RequestLogEntry[], action: string): number[] {
  return log.filter((e) => e.action === action).map((e) => e.at);
}

/** The largest number of `times` (ms) in any half-open window [t, t + windowMs). */
export function maxPerWindow(times: readonly number[], windowMs = 1000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i += 1) {
    if (j < i) j = i;
    while (j < sorted.length && sorted[j]! < sorted[i]! + windowMs) j += 1;
    max = Math.max(max, j - i);
  }
  return max;
}

/** The longest pause between consecutive `times` (ms). */
export function maxGap(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < sorted.length; i += 1) gap = Math.max(gap, sorted[i]! - sorted[i - 1]!);
  return gap;
}

/** Parsed JSON log lines of a child's stdout (non-JSON lines skipped). */
export function logLines(stdout: readonly string[]): Record<string, unknown>[] {
  return stdout.flatMap((l): Record<string, unknown>[] => {
    try {
      const v = JSON.parse(l) as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? [v as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** Resolves once the daemon logs that it runs; rejects at once when it exits first (with its last lines). */
export async function untilRunning(child: Child, timeoutMs = 20_000): Promise<void> {
  await Promise.race([
    child.waitFor(/iot-batch-watcher running/, timeoutMs),
    child.exited.then((e) => {
      throw new Error(`the daemon exited (${String(e.code ?? e.signal)}) before running: ${child.stdout.slice(-3).join('\n')} ${child.stderr.join('')}`);
    }),
  ]);
}

export { freePort } from '../helpers/wait.js';
/** The sum of the samples of metric `name` whose labels include every pair of `labels`, from a /metrics text. */
export function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}
