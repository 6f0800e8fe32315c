/**
 * A state directory written before accounts (test/fixtures/ledger-before-accounts: 3 batches settled, 3 pending),
 * through the CLI as a child process (issue #15, DESIGN.md §11):
 *
 * 1. With a file without `accounts` it loads and resumes every batch unchanged: the settled ones keep their record
 *    (polls, settledAt, result file) and are never polled again, the pending ones keep their first-seen time, go on
 *    counting polls and settle; results land in the old layout `<resultsDir>/<productKey>/<applyId>.json`, rows
 *    have no `account`, and nothing of the accounts layout appears.
 * 2. With a file that adds `accounts` whose first account is `default` beside a second one, the same directory is
 *    account `default`'s (the layout the lead decided: `default` keeps `state.dir`, every other account gets
 *    `<state.dir>/accounts/<name>/`): the old batches resume as above, their new results go to
 *    `<resultsDir>/default/...`, the second account's to `<resultsDir>/<name>/...`.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import type { BatchRecord } from '../../src/core/record.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';

import {
  accountResultPath,
  accountYaml,
  type AccountSpec,
  addBatches,
  batchesYaml,
  exists,
  readResult,
  startAccountSimulator,
  type StatusJsonRow,
  statusJson,
  untilRunning,
  waitUntil,
} from './accounts-helpers.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/ledger-before-accounts/state', import.meta.url));
/** The entries the fixture was written with (test/integration/watcher/old-ledger.test.ts has the same). */
const ENTRIES = Array.from({ length: 6 }, (_, i) => ({
  applyId: String(7_100_000 + i),
  productKey: i % 2 === 0 ? 'a1SimProduct1' : 'a1SimProduct2',
  name: `old-${i}`,
}));
const ENTRY_YAML = ENTRIES.map((e) => `  - { applyId: "${e.applyId}", productKey: ${e.productKey}, name: ${e.name}, labels: { gen: main } }`);
const B: AccountSpec = { name: 'fleet-b', accessKeyId: 'AkFleetB', accessKeySecret: 'SecretOfFleetB-4e0f', idEnv: 'FLEET_B_AK_ID', secretEnv: 'FLEET_B_AK_SECRET' };

async function fixtureRecords(): Promise<BatchRecord[]> {
  return (JSON.parse(await readFile(join(FIXTURE, 'snapshot.json'), 'utf8')) as { batches: BatchRecord[] }).batches;
}

/** A simulator with the default AccessKey pair that knows the fixture's six batches (they settle in well under a second). */
async function fixtureSimulator(): Promise<SimulatorHandle> {
  const sim = await startSimulator({ port: 0, timeScale: 20, seed: 7 });
  for (const [i, e] of ENTRIES.entries()) {
    sim.control.addBatch({ applyId: e.applyId, productKey: e.productKey, mode: 'custom', deviceNames: [`old-${i}-a`, `old-${i}-b`], registered: true });
  }
  return sim;
}

/** Checks the fixture's batches in `rows`: settled ones exactly as before and never polled, pending ones resumed and settled. */
function expectResumed(before: readonly BatchRecord[], rows: readonly StatusJsonRow[], sim: SimulatorHandle, resultPath: (rec: BatchRecord) => string): void {
  const polled = new Set(sim.control.requestLog().map((e) => e.applyId));
  for (const rec of before) {
    const row = rows.find((r) => r.productKey === rec.productKey && r.applyId === rec.applyId);
    expect(row, rec.key).toBeDefined();
    expect(row!.firstSeenAt, rec.key).toBe(new Date(rec.firstSeenAt).toISOString());
    expect('account' in row!, `${rec.key} row has an account`).toBe(false);
    if (rec.state === 'settled') {
      expect(row, rec.key).toMatchObject({ state: 'settled', outcome: rec.outcome, polls: rec.polls, settledAt: new Date(rec.settledAt!).toISOString(), resultFile: rec.resultFile });
      expect(polled.has(rec.applyId), `${rec.key} polled again`).toBe(false);
    } else {
      expect(row, rec.key).toMatchObject({ state: 'settled', outcome: 'created', deviceCount: 2, resultFile: resultPath(rec) });
      expect(row!.polls, rec.key).toBeGreaterThan(rec.polls);
      expect(polled.has(rec.applyId), `${rec.key} resumed`).toBe(true);
    }
  }
}

describe('a state directory from before accounts, through the CLI', () => {
  const dirs: string[] = [];
  const sims: SimulatorHandle[] = [];
  const children: Child[] = [];
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    for (const s of sims) await s.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('resumes every batch unchanged with a file without accounts, results in the old layout', async () => {
    const before = await fixtureRecords();
    expect(before.filter((r) => r.state === 'pending')).toHaveLength(3);
    const dir = await mkdtemp(join(tmpdir(), 'ibw-acc-old-'));
    dirs.push(dir);
    const stateDir = join(dir, 'state');
    const resultsDir = join(dir, 'results');
    await cp(FIXTURE, stateDir, { recursive: true });
    const sim = await fixtureSimulator();
    sims.push(sim);
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        'polling: { initialDelay: 200ms, maxDelay: 400ms, timeout: 3650d, stalledAfter: 3650d }',
        `state: { dir: ${stateDir} }`,
        `output: { resultsDir: ${resultsDir} }`,
        'http: { listen: "off" }',
        'batches:',
        ...ENTRY_YAML,
        '',
      ].join('\n'),
    );
    const child = runCli(['run', '--config', configFile], SIM_ENV);
    children.push(child);
    await untilRunning(child);
    const rows = await waitUntil(
      async () => {
        const r = await statusJson(configFile, SIM_ENV);
        return r.length === ENTRIES.length && r.every((x) => x.state === 'settled') ? r : null;
      },
      20_000,
      'every batch of the old directory settled',
    );
    expectResumed(before, rows, sim, (rec) => join(resultsDir, rec.productKey, `${rec.applyId}.json`));
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);

    for (const rec of before.filter((r) => r.state === 'pending')) {
      const result = await readResult(join(resultsDir, rec.productKey, `${rec.applyId}.json`));
      expect(result).toMatchObject({ applyId: rec.applyId, productKey: rec.productKey, outcome: 'created', deviceCount: 2 });
    }
    expect(await exists(join(resultsDir, 'default')), 'a results/default directory').toBe(false);
    expect(await exists(join(stateDir, 'accounts')), 'a state/accounts directory').toBe(false);
  }, 60_000);

  it('stays account default’s when the file adds accounts with default first and a second account', async () => {
    const before = await fixtureRecords();
    const dir = await mkdtemp(join(tmpdir(), 'ibw-acc-old2-'));
    dirs.push(dir);
    const stateDir = join(dir, 'state');
    const resultsDir = join(dir, 'results');
    await cp(FIXTURE, stateDir, { recursive: true });
    const sim = await fixtureSimulator();
    const simB = await startAccountSimulator(B, { seed: 31 });
    sims.push(sim, simB);
    const b = addBatches(simB, 8_600_000, 6);
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        'alibaba: { regionId: cn-shanghai }',
        'polling: { initialDelay: 200ms, maxDelay: 400ms, timeout: 3650d, stalledAfter: 3650d }',
        'accounts:',
        '  - name: default',
        `    endpoint: "${sim.url}"`,
        ...accountYaml(B, simB, '{ statusQps: 10, pageQps: 10 }'),
        `state: { dir: ${stateDir} }`,
        `output: { resultsDir: ${resultsDir} }`,
        'http: { listen: "off" }',
        'batches:',
        ...ENTRY_YAML,
        ...batchesYaml(B.name, b),
        '',
      ].join('\n'),
    );
    const env = { ...SIM_ENV, [B.idEnv]: B.accessKeyId, [B.secretEnv]: B.accessKeySecret };
    const child = runCli(['run', '--config', configFile], env);
    children.push(child);
    await untilRunning(child);
    const rows = await waitUntil(
      async () => {
        const r = await statusJson(configFile, env);
        return r.length === ENTRIES.length + b.length && r.every((x) => x.state === 'settled') ? r : null;
      },
      25_000,
      'every batch of both accounts settled',
    );
    expectResumed(
      before,
      rows.filter((r) => r.account === undefined || r.account === null),
      sim,
      (rec) => accountResultPath(resultsDir, 'default', rec),
    );
    const rowsB = rows.filter((r) => r.account === B.name);
    expect(rowsB.map((r) => [r.applyId, r.outcome]).sort()).toEqual(b.map((x) => [x.applyId, x.outcome]).sort());
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);

    for (const x of b) expect(await readResult(accountResultPath(resultsDir, B.name, x))).toMatchObject({ account: B.name, outcome: x.outcome, deviceCount: x.devices });
    // default kept state.dir itself; the second account has its own directory under it.
    expect(await exists(join(stateDir, 'snapshot.json'))).toBe(true);
    expect(await exists(join(stateDir, 'accounts', B.name)), `${stateDir}/accounts/${B.name}`).toBe(true);
    expect(await exists(join(stateDir, 'accounts', 'default')), 'an accounts/default directory').toBe(false);
  }, 60_000);
});
