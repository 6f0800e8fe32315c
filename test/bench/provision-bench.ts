/**
 * Provisioning at scale (issue #17): a 25,000-name job at chunk size 10,000 with the default budgets (statusQps 5,
 * pageQps 5, submitQps 5), run by the daemon (`iot-batch-watcher run`, from source through tsx) against the
 * simulator (time scale 50). It reports how long the job took to settle, the devices in the factory CSV, and the
 * most submissions of each submit action the simulator received within any one second (the budget: 5).
 *
 *   npx tsx test/bench/provision-bench.ts [--names=25000] [--chunk-size=10000] [--time-scale=50]
 *
 * Exit code 0 when the job settled complete, every name is in the CSV once and no second held more submissions of
 * one action than the budget; 1 otherwise. Not a vitest test (about two minutes: 500 device pages at 5 QPS).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

import { startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

const { values } = parseArgs({ options: { names: { type: 'string' }, 'chunk-size': { type: 'string' }, 'time-scale': { type: 'string' } } });
const names = Number(values.names ?? 25_000);
const chunkSize = Number(values['chunk-size'] ?? 10_000);
const timeScale = Number(values['time-scale'] ?? 50);
const SUBMIT_QPS = 5; // the default rateLimit.submitQps of an account
const PK = 'a1SimBench';

/** The most entries within any window of `windowMs` (sorted times). */
function mostInWindow(at: readonly number[], windowMs: number): number {
  let most = 0;
  let lo = 0;
  for (let hi = 0; hi < at.length; hi += 1) {
    while (at[hi]! - at[lo]! >= windowMs) lo += 1;
    most = Math.max(most, hi - lo + 1);
  }
  return most;
}

const sim = await startSimulator({ port: 0, timeScale, seed: 3, requestLogLimit: 1_000_000 });
sim.control.addProduct(PK);
const dir = await mkdtemp(join(tmpdir(), 'ibw-provision-bench-'));
let ok: boolean;
try {
  const devices = join(dir, 'fleet.txt');
  await writeFile(devices, `${Array.from({ length: names }, (_, i) => `bench-${String(i).padStart(6, '0')}`).join('\n')}\n`);
  const config = join(dir, 'w.yaml');
  await writeFile(
    config,
    [
      `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
      'polling: { initialDelay: 200ms, maxDelay: 1s }',
      `state: { dir: ${join(dir, 'state')} }`,
      `output: { resultsDir: ${join(dir, 'results')} }`,
      'http: { listen: "off" }',
      'provision:',
      `  - { name: bench, productKey: ${PK}, devices: ${devices}, chunkSize: ${chunkSize} }`,
      '',
    ].join('\n'),
  );
  const started = Date.now();
  const daemon = runCli(['run', '--config', config], { ...SIM_ENV, LOG_LEVEL: 'warn' }, dir);
  const reportFile = join(dir, 'results', PK, 'provision-bench.json');
  let report: { settled: boolean; outcome: string; summary: { devices: { created: number } } } | null = null;
  while (Date.now() - started < 15 * 60_000) {
    report = await readFile(reportFile, 'utf8').then((t) => JSON.parse(t) as typeof report, () => null);
    if (report?.settled === true) break;
    await sleep(250);
  }
  const elapsedMs = Date.now() - started;
  daemon.proc.kill('SIGTERM');
  await daemon.exited;
  const csv = (await readFile(join(dir, 'results', PK, 'provision-bench.csv'), 'utf8')).trimEnd().split('\r\n').slice(1);
  const unique = new Set(csv.map((l) => l.split(',')[1]));
  const log = sim.control.requestLog();
  const perSecond: Record<string, number> = {};
  for (const action of ['BatchCheckDeviceNames', 'BatchRegisterDevice']) {
    perSecond[action] = mostInWindow(log.filter((l) => l.action === action).map((l) => l.at).sort((a, b) => a - b), 1000);
  }
  const pages = log.filter((l) => l.action === 'QueryPageByApplyId').length;
  const figures = {
    names,
    chunkSize,
    timeScale,
    settled: report?.settled === true,
    outcome: report?.outcome ?? null,
    elapsedSeconds: Math.round(elapsedMs / 100) / 10,
    csvRows: csv.length,
    csvUniqueNames: unique.size,
    checks: log.filter((l) => l.action === 'BatchCheckDeviceNames').length,
    registrations: log.filter((l) => l.action === 'BatchRegisterDeviceWithApplyId').length,
    devicePages: pages,
    mostSubmitsInOneSecond: perSecond,
    submitQpsBudget: SUBMIT_QPS,
  };
  console.log(JSON.stringify(figures, null, 2));
  ok = figures.outcome === 'complete' && csv.length === names && unique.size === names && Object.values(perSecond).every((n) => n <= SUBMIT_QPS);
} finally {
  await sim.close();
  await rm(dir, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
