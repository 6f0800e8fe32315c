/**
 * Two accounts in one daemon, through the CLI as a child process (issue #15, DESIGN.md §11): each account has its
 * own simulator with its own AccessKey pair, 30 batches of three kinds each. Account `fleet-b`'s simulator
 * throttles hard (its status limit, 4 QPS, is half of fleet-b's budget, and its first 6 status requests are
 * throttled whatever the rate), fleet-a's does not.
 *
 * - Every batch of both accounts settles with the outcome its simulator scripted, its result file in
 *   `<resultsDir>/<account>/<productKey>/<applyId>.json`, one `batch.settled` event each.
 * - Per simulator and action, no 1-second window (sliding, by arrival) holds more requests than that account's
 *   budget: fleet-a 10/10, fleet-b 10 × (1 − 20 % reserve) = 8/8.
 * - fleet-a's throughput is unchanged by its throttled neighbour: the same 30 batches are run once without fleet-b
 *   (the file declares fleet-a alone) and once beside the throttled fleet-b; fleet-a is budget-bound in both runs
 *   (30 batches polled every 200–500 ms want far more than 10 QPS), so its status request rate is its budget in
 *   both. The bounds are generous (rate within 70 %, settle span within 1.5× + 3 s, no pause over 2.5 s): a shared budget
 *   halved by fleet-b's throttles would break the first, a shared scheduler or concurrency held by fleet-b's slow
 *   retries the others.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { SimulatorHandle } from '../../src/simulator/server.js';
import { type Child, runCli } from '../helpers/child.js';

import {
  accountResultPath,
  accountYaml,
  type AccountSpec,
  addBatches,
  arrivals,
  batchesYaml,
  type ExpectedBatch,
  maxGap,
  maxPerWindow,
  PAGE,
  readEvents,
  readResult,
  settledByAccount,
  startAccountSimulator,
  STATUS,
  statusJson,
  untilRunning,
  waitUntil,
} from './accounts-helpers.js';

const A: AccountSpec = { name: 'fleet-a', accessKeyId: 'AkFleetA', accessKeySecret: 'SecretOfFleetA-1f6c', idEnv: 'FLEET_A_AK_ID', secretEnv: 'FLEET_A_AK_SECRET' };
const B: AccountSpec = { name: 'fleet-b', accessKeyId: 'AkFleetB', accessKeySecret: 'SecretOfFleetB-93d2', idEnv: 'FLEET_B_AK_ID', secretEnv: 'FLEET_B_AK_SECRET' };
const BATCHES = 30;
/** fleet-a's budget per action; fleet-b's figure is the same, less its 20 % reserve. */
const A_QPS = 10;
const B_QPS = 8;
/** fleet-b's simulator answers more than this many status requests per second with Throttling.User. */
const B_SIM_STATUS_LIMIT = 4;
/** fleet-b's first status requests that its simulator answers Throttling.User, whatever the rate. */
const B_SCRIPTED_THROTTLES = 6;

interface Run {
  dir: string;
  configFile: string;
  env: Record<string, string>;
  child: Child;
  simA: SimulatorHandle;
  simB: SimulatorHandle;
  a: ExpectedBatch[];
  b: ExpectedBatch[];
}

const cleanups: (() => Promise<void>)[] = [];

async function startRun(label: string, withNeighbour: boolean): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), `ibw-acc-throttle-${label}-`));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const simA = await startAccountSimulator(A, { seed: 11 });
  // fleet-b's quota is half its budget (someone else uses the rest), and its first status requests are throttled
  // whatever the rate (a scripted wave of Throttling.User), so fleet-b's rate is halved again and again.
  const simB = await startAccountSimulator(B, {
    seed: 12,
    statusQps: B_SIM_STATUS_LIMIT,
    faults: { script: [{ action: 'QueryBatchRegisterDeviceStatus', nth: 1, times: B_SCRIPTED_THROTTLES, fault: 'throttle' }] },
  });
  cleanups.push(() => simA.close(), () => simB.close());
  // fleet-a's batches take 6–9 s (most of it after the daemon's start), so fleet-a polls at its budget for a while;
  // fleet-b's settle within 2 s: its run is a burst of first polls and page requests into a simulator at half its rate.
  const a = addBatches(simA, 8_100_000, BATCHES, 6);
  const b = withNeighbour ? addBatches(simB, 8_200_000, BATCHES) : [];
  // fleet-b's secret comes from a file (<NAME>_FILE), fleet-a's from the variable itself.
  const secretFile = join(dir, 'fleet-b-secret');
  await writeFile(secretFile, `${B.accessKeySecret}\n`);
  await chmod(secretFile, 0o600);
  const env = {
    [A.idEnv]: A.accessKeyId,
    [A.secretEnv]: A.accessKeySecret,
    [B.idEnv]: B.accessKeyId,
    [`${B.secretEnv}_FILE`]: secretFile,
  };
  const configFile = join(dir, 'watcher.yaml');
  await writeFile(
    configFile,
    [
      'alibaba: { regionId: cn-shanghai }',
      'polling: { initialDelay: 200ms, maxDelay: 500ms, timeout: 10m }',
      'accounts:',
      ...accountYaml(A, simA, `{ statusQps: ${A_QPS}, pageQps: ${A_QPS}, concurrency: 8 }`),
      ...(withNeighbour ? accountYaml(B, simB, '{ statusQps: 10, pageQps: 10, concurrency: 8 }', ['reserve: 20%']) : []),
      `state: { dir: ${join(dir, 'state')} }`,
      `output: { resultsDir: ${join(dir, 'results')}, eventsFile: ${join(dir, 'events.jsonl')} }`,
      'http: { listen: "off" }',
      'batches:',
      ...batchesYaml(A.name, a),
      ...batchesYaml(B.name, b),
      '',
    ].join('\n'),
  );
  const child = runCli(['run', '--config', configFile], env);
  cleanups.push(async () => {
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  });
  await untilRunning(child);
  return { dir, configFile, env, child, simA, simB, a, b };
}

/** Waits for every batch's `batch.settled`, then checks outcomes and result files; returns fleet-a's figures. */
/** fleet-a's status requests in one run: rate over the span from the first to the last, the span, the longest pause. */
interface Figures {
  rate: number;
  spanMs: number;
  gapMs: number;
  statusRequests: number;
}

async function finishRun(run: Run): Promise<Figures> {
  const eventsFile = join(run.dir, 'events.jsonl');
  const settled = await waitUntil(
    async () => {
      const by = settledByAccount(await readEvents(eventsFile));
      return (by.get(A.name)?.length ?? 0) >= run.a.length && (by.get(B.name)?.length ?? 0) >= run.b.length ? by : null;
    },
    40_000,
    `${run.a.length} settled batches of ${A.name} and ${run.b.length} of ${B.name}`,
  );
  // One batch.settled per batch, with the scripted outcome and the account's result file.
  for (const [spec, expected] of [
    [A, run.a],
    [B, run.b],
  ] as const) {
    const events = settled.get(spec.name) ?? [];
    expect(events.map((e) => e.applyId).sort()).toEqual(expected.map((x) => x.applyId).sort());
    for (const x of expected) {
      expect(events.find((e) => e.applyId === x.applyId)?.outcome, `${spec.name} ${x.applyId}`).toBe(x.outcome);
      const result = await readResult(accountResultPath(join(run.dir, 'results'), spec.name, x));
      expect(result, `${spec.name} ${x.applyId}`).toMatchObject({ account: spec.name, applyId: x.applyId, productKey: x.productKey, outcome: x.outcome, deviceCount: x.devices });
    }
  }
  // status --json agrees: every row settled, under its account.
  const rows = await statusJson(run.configFile, run.env);
  expect(rows).toHaveLength(run.a.length + run.b.length);
  expect(rows.filter((r) => r.state !== 'settled')).toEqual([]);
  expect(rows.filter((r) => r.account === A.name)).toHaveLength(run.a.length);
  expect(rows.filter((r) => r.account === B.name)).toHaveLength(run.b.length);

  run.child.proc.kill('SIGTERM');
  expect((await run.child.exited).code).toBe(0);

  // Per simulator and action: never more than that account's budget in one second, and only the expected answers.
  const logA = run.simA.control.requestLog();
  const logB = run.simB.control.requestLog();
  for (const [log, qps, who] of [
    [logA, A_QPS, A.name],
    [logB, B_QPS, B.name],
  ] as const) {
    expect(maxPerWindow(arrivals(log, STATUS)), `${who} status requests in the busiest second`).toBeLessThanOrEqual(qps);
    expect(maxPerWindow(arrivals(log, PAGE)), `${who} page requests in the busiest second`).toBeLessThanOrEqual(qps);
    // Each simulator saw only its own account's key (a wrong one would be InvalidAccessKeyId.NotFound).
    expect(log.filter((e) => e.outcome !== 'ok' && e.outcome !== 'Throttling.User').map((e) => `${e.action} ${e.outcome}`), who).toEqual([]);
  }
  expect(logA.filter((e) => e.outcome === 'Throttling.User'), `${A.name} is never throttled`).toEqual([]);

  const statusA = arrivals(logA, STATUS).sort((x, y) => x - y);
  const spanMs = statusA[statusA.length - 1]! - statusA[0]!;
  return { rate: ((statusA.length - 1) * 1000) / spanMs, spanMs, gapMs: maxGap(statusA), statusRequests: statusA.length };
}

describe('two accounts, one throttled hard', () => {
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  let alone: Figures | null = null;

  it('without the neighbour: fleet-a settles every batch within its budget (the baseline)', async () => {
    alone = await finishRun(await startRun('alone', false));
    console.log(`[accounts-throttle] ${A.name} alone: ${JSON.stringify(alone)}`);
    // Budget-bound: 30 batches want far more than 10 QPS, so fleet-a polls near its budget.
    expect(alone.rate).toBeGreaterThan(A_QPS * 0.5);
  }, 60_000);

  it('beside the throttled fleet-b: both settle every batch within their budgets, fleet-a’s throughput unchanged', async () => {
    expect(alone, 'the baseline ran').not.toBeNull();
    const mixedRun = await startRun('mixed', true);
    const mixed = await finishRun(mixedRun);
    // The neighbour really was throttled, and still within its budget (checked in finishRun).
    const throttledB = mixedRun.simB.control.requestLog().filter((e) => e.outcome === 'Throttling.User').length;
    expect(throttledB, `${B.name} throttled answers`).toBeGreaterThan(B_SCRIPTED_THROTTLES);

    const figures = JSON.stringify({ alone, mixed, throttledB });
    console.log(`[accounts-throttle] ${figures}`);
    // fleet-a polls at its budget in both runs: its rate, span and longest pause barely move.
    expect(mixed.rate, figures).toBeGreaterThanOrEqual(alone!.rate * 0.7);
    expect(mixed.spanMs, figures).toBeLessThanOrEqual(alone!.spanMs * 1.5 + 3000);
    expect(mixed.gapMs, figures).toBeLessThanOrEqual(2500);
  }, 60_000);
});
