/**
 * A wrong AccessKey secret on one of two accounts, through the CLI as a child process (issue #15, DESIGN.md §11,
 * §7): fleet-b's simulator answers every request with `SignatureDoesNotMatch`. That account's batches are parked
 * with the reason (`status --json` shows it, also filtered with `--account`), one fatal-level line names the account
 * and the reason, its simulator gets no more requests, no result file or `batch.settled` is written for it, and no
 * secret reaches a log line; `/metrics` counts its fatal answers and parked batches under its `account` label (what
 * the IotBatchWatcherAccountRefused alert reads). fleet-a's batches all settle; the process keeps running and exits 0 on SIGTERM only.
 * Then the documented recovery (docs/operations.md): fix the secret, start again; fleet-b's batches resume and
 * settle, fleet-a's stay as they were.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
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
  batchesYaml,
  exists,
  freePort,
  logLines,
  metricSum,
  readEvents,
  readResult,
  settledByAccount,
  startAccountSimulator,
  statusJson,
  untilRunning,
  waitUntil,
} from './accounts-helpers.js';

const A: AccountSpec = { name: 'fleet-a', accessKeyId: 'AkFleetA', accessKeySecret: 'SecretOfFleetA-77e1', idEnv: 'FLEET_A_AK_ID', secretEnv: 'FLEET_A_AK_SECRET' };
const B: AccountSpec = { name: 'fleet-b', accessKeyId: 'AkFleetB', accessKeySecret: 'SecretOfFleetB-c0a9', idEnv: 'FLEET_B_AK_ID', secretEnv: 'FLEET_B_AK_SECRET' };
const WRONG_SECRET = 'NotTheSecretOfFleetB-5d11';
const BATCHES = 12;

describe('a wrong secret on one of two accounts', () => {
  let dir = '';
  let simA: SimulatorHandle | null = null;
  let simB: SimulatorHandle | null = null;
  const children: Child[] = [];
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await simA?.close();
    await simB?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('parks that account with the reason, settles the other, runs on until SIGTERM, and resumes once the key is fixed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-acc-fatal-'));
    simA = await startAccountSimulator(A, { seed: 21 });
    simB = await startAccountSimulator(B, { seed: 22 });
    const a = addBatches(simA, 8_300_000, BATCHES);
    const b = addBatches(simB, 8_400_000, BATCHES);
    const configFile = join(dir, 'watcher.yaml');
    const httpPort = await freePort();
    const resultsDir = join(dir, 'results');
    const eventsFile = join(dir, 'events.jsonl');
    await writeFile(
      configFile,
      [
        'alibaba: { regionId: cn-shanghai }',
        'polling: { initialDelay: 200ms, maxDelay: 500ms, timeout: 10m }',
        'accounts:',
        ...accountYaml(A, simA, '{ statusQps: 10, pageQps: 10 }'),
        ...accountYaml(B, simB, '{ statusQps: 10, pageQps: 10 }'),
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${resultsDir}, eventsFile: ${eventsFile} }`,
        `http: { listen: "127.0.0.1:${httpPort}" }`,
        'batches:',
        ...batchesYaml(A.name, a),
        ...batchesYaml(B.name, b),
        '',
      ].join('\n'),
    );
    const goodEnv = { [A.idEnv]: A.accessKeyId, [A.secretEnv]: A.accessKeySecret, [B.idEnv]: B.accessKeyId, [B.secretEnv]: B.accessKeySecret };
    const badEnv = { ...goodEnv, [B.secretEnv]: WRONG_SECRET };

    const first = runCli(['run', '--config', configFile], badEnv);
    children.push(first);
    await untilRunning(first);

    // fleet-a settles every batch.
    await waitUntil(async () => (settledByAccount(await readEvents(eventsFile)).get(A.name)?.length ?? 0) >= BATCHES, 30_000, `${BATCHES} settled batches of ${A.name}`);
    // fleet-b's batches are parked with the reason, durably: the offline `status` reads them from the ledger.
    const parked = await waitUntil(
      async () => {
        const rows = (await statusJson(configFile, badEnv)).filter((r) => r.account === B.name);
        return rows.length === BATCHES && rows.every((r) => r.state === 'parked') ? rows : null;
      },
      15_000,
      `every batch of ${B.name} parked`,
    );
    for (const r of parked) {
      expect(r.lastError, r.applyId).toMatch(/SignatureDoesNotMatch/);
      expect(r.resultFile, r.applyId).toBeNull();
    }
    expect((await statusJson(configFile, badEnv, ['--account', B.name])).map((r) => [r.account, r.applyId, r.state]).sort()).toEqual(
      b.map((x) => [B.name, x.applyId, 'parked']).sort(),
    );
    const rowsA = await statusJson(configFile, badEnv, ['--account', A.name]);
    expect(rowsA.map((r) => [r.applyId, r.state, r.outcome]).sort()).toEqual(a.map((x) => [x.applyId, 'settled', x.outcome]).sort());

    // The parked account calls its endpoint no more; the process keeps running.
    const requestsB = simB.control.requestLog().length;
    expect(simB.control.requestLog().every((e) => e.outcome === 'SignatureDoesNotMatch')).toBe(true);
    await new Promise((r) => setTimeout(r, 2000));
    expect(simB.control.requestLog().length, `requests to ${B.name} after it was parked`).toBe(requestsB);
    expect(first.proc.exitCode).toBeNull();
    expect(first.proc.signalCode).toBeNull();

    // Nothing settled for fleet-b: no event, no result file; fleet-a's results are where accounts put them.
    expect(settledByAccount(await readEvents(eventsFile)).get(B.name) ?? []).toEqual([]);
    expect(await exists(join(resultsDir, B.name))).toBe(false);
    for (const x of a) expect((await readResult(accountResultPath(resultsDir, A.name, x))).outcome).toBe(x.outcome);

    // What IotBatchWatcherAccountRefused and the dashboard read: fleet-b's fatal answers and parked batches, by account.
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(metricSum(metrics, 'ibw_api_requests_total', { account: B.name, outcome: 'fatal' })).toBeGreaterThan(0);
    expect(metricSum(metrics, 'ibw_api_requests_total', { account: A.name, outcome: 'fatal' })).toBe(0);
    expect(metricSum(metrics, 'ibw_batches', { account: B.name, state: 'parked' })).toBe(BATCHES);
    expect(metricSum(metrics, 'ibw_batches', { account: A.name, state: 'settled' })).toBe(BATCHES);

    // One fatal line, naming the account and the reason; no secret anywhere in the output.
    const fatal = logLines(first.stdout).filter((l) => l.level === 60);
    expect(fatal, JSON.stringify(fatal)).toHaveLength(1);
    expect(JSON.stringify(fatal[0])).toContain(B.name);
    expect(JSON.stringify(fatal[0])).toMatch(/SignatureDoesNotMatch/);

    first.proc.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    const output = first.stdout.join('\n') + first.stderr.join('');
    for (const secret of [A.accessKeySecret, B.accessKeySecret, WRONG_SECRET]) expect(output).not.toContain(secret);

    // Recovery: the right secret, a restart. fleet-b's batches resume and settle; fleet-a's are not polled again.
    const settledA = simA.control.requestLog().length;
    const second = runCli(['run', '--config', configFile], goodEnv);
    children.push(second);
    await untilRunning(second);
    await waitUntil(async () => (settledByAccount(await readEvents(eventsFile)).get(B.name)?.length ?? 0) >= BATCHES, 30_000, `${BATCHES} settled batches of ${B.name} after the fix`);
    for (const x of b) {
      const result = await readResult(accountResultPath(resultsDir, B.name, x));
      expect(result, x.applyId).toMatchObject({ account: B.name, outcome: x.outcome, deviceCount: x.devices });
    }
    const rows = await statusJson(configFile, goodEnv);
    expect(rows.filter((r) => r.state !== 'settled')).toEqual([]);
    expect(simA.control.requestLog().length, `requests to ${A.name} after the restart`).toBe(settledA);
    expect(logLines(second.stdout).filter((l) => (l.level as number) >= 50)).toEqual([]);
    second.proc.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    expect((await readdir(resultsDir)).sort()).toEqual([A.name, B.name]);
  }, 120_000);

  it('with one account, the same wrong secret still ends the process with exit 1 (DESIGN.md §3)', async () => {
    dir ||= await mkdtemp(join(tmpdir(), 'ibw-acc-fatal-'));
    simB ??= await startAccountSimulator(B, { seed: 22 });
    const one = addBatches(simB, 8_500_000, 3);
    const configFile = join(dir, 'one.yaml');
    await writeFile(
      configFile,
      [
        'alibaba: { regionId: cn-shanghai }',
        'polling: { initialDelay: 200ms, maxDelay: 500ms }',
        'accounts:',
        ...accountYaml(B, simB, '{ statusQps: 10, pageQps: 10 }'),
        `state: { dir: ${join(dir, 'state-one')} }`,
        `output: { resultsDir: ${join(dir, 'results-one')} }`,
        'http: { listen: "off" }',
        'batches:',
        ...batchesYaml(B.name, one),
        '',
      ].join('\n'),
    );
    const child = runCli(['run', '--config', configFile], { [B.idEnv]: B.accessKeyId, [B.secretEnv]: WRONG_SECRET });
    children.push(child);
    const exit = await Promise.race([child.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    expect(exit?.code, child.stdout.slice(-3).join('\n')).toBe(1);
    const fatal = logLines(child.stdout).filter((l) => l.level === 60);
    expect(fatal).toHaveLength(1);
    expect(JSON.stringify(fatal[0])).toMatch(/SignatureDoesNotMatch/);
    expect(child.stdout.join('\n') + child.stderr.join('')).not.toContain(WRONG_SECRET);
  }, 30_000);
});
