/**
 * Chaos: many batches of mixed kinds against the simulator with faults on, the daemon (a child process with a
 * file ledger, an events file and a webhook) killed with SIGKILL at seeded random moments and restarted each
 * time, then settled and stopped with SIGTERM. Nothing may be lost (docs/reliability.md).
 */
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../src/core/clock.js';
import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import type { ScenarioBatchInput } from '../../src/simulator/scenario.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { acknowledged, FULL, maxPerWindow, parseJsonLines, profile, sleep, startWebhookReceiver, tempDir, waitUntil, type WebhookReceiver, writeReport } from './helpers.js';

const BATCHES = profile(200, 1000);
const KILLS = profile(6, 20);
/** Real ms after "running" before a kill, drawn uniformly. */
const KILL_AFTER_MS = profile([1500, 6000] as const, [3000, 15_000] as const);
const SETTLE_TIMEOUT_MS = profile(300_000, 1_800_000);
const STATUS_QPS = 20;
const SEED = 20_261_128;
const WEBHOOK_SECRET = 'chaos-webhook-secret-5f1e0c';
const PRODUCTS = ['a1SimProduct1', 'a1SimProduct2'] as const;

type Kind = 'custom' | 'register' | 'partial' | 'check_failed' | 'random' | 'random_partial' | 'checked';

interface Plan {
  kind: Kind;
  applyId: string;
  productKey: string;
  expected: 'created' | 'create_failed' | 'check_failed' | 'checked';
  big: boolean;
  sim: ScenarioBatchInput;
  yaml: string;
}

const KIND_WEIGHTS: [Kind, number][] = [
  ['custom', 0.25],
  ['register', 0.2],
  ['partial', 0.15],
  ['check_failed', 0.15],
  ['random', 0.12],
  ['random_partial', 0.05],
  ['checked', 0.08],
];

function makePlans(): Plan[] {
  const random = createSeededRandom(SEED);
  const plans: Plan[] = [];
  const big0 = 2n ** 53n + 1n;
  for (let i = 0; i < BATCHES; i += 1) {
    let roll = random.float();
    let kind: Kind = 'custom';
    for (const [k, w] of KIND_WEIGHTS) {
      if (roll < w) {
        kind = k;
        break;
      }
      roll -= w;
    }
    const big = random.float() < 0.2;
    const applyId = big ? (big0 + BigInt(i) * 3n).toString() : String(6_000_000 + i);
    const productKey = PRODUCTS[i % 2]!;
    // Every 40th batch has more than one page of devices (PageSize 50).
    const size = i % 40 === 7 ? 60 + Math.floor(random.float() * 50) : 1 + Math.floor(random.float() * 6);
    const names = Array.from({ length: size }, (_, j) => `ch${i}-d${j}`);
    // Simulated ms (timeScale 1): some batches are final at their first poll, others move through phases.
    const checkMs = Math.floor(random.float() * 6000);
    const createMs = Math.floor(random.float() * 6000);
    const base = { applyId, productKey, checkMs, createMs };
    let sim: ScenarioBatchInput;
    let expected: Plan['expected'];
    let extra = '';
    switch (kind) {
      case 'custom':
        sim = { ...base, mode: 'custom', deviceNames: names, registered: true };
        expected = 'created';
        break;
      case 'register':
        sim = { ...base, mode: 'custom', deviceNames: names, registered: false };
        expected = 'created';
        extra = ', register: true';
        break;
      case 'partial':
        sim = { ...base, mode: 'custom', deviceNames: [...names, `ch${i}-fail`], registered: true, outcome: 'partial', failNames: [`ch${i}-fail`] };
        expected = 'create_failed';
        break;
      case 'check_failed':
        sim = { ...base, mode: 'custom', deviceNames: [...names, `ch${i}-bad`], outcome: 'check_failed', invalidNames: [`ch${i}-bad`] };
        expected = 'check_failed';
        break;
      case 'random':
        sim = { applyId, productKey, createMs, mode: 'random', count: size };
        expected = 'created';
        break;
      case 'random_partial':
        sim = { applyId, productKey, createMs, mode: 'random', count: size + 1, outcome: 'partial', failCount: 1 };
        expected = 'create_failed';
        break;
      case 'checked':
        sim = { ...base, mode: 'custom', deviceNames: names, registered: false };
        expected = 'checked';
        extra = ', until: checked';
        break;
    }
    plans.push({ kind, applyId, productKey, expected, big, sim, yaml: `  - { applyId: "${applyId}", productKey: ${productKey}, name: chaos-${i}${extra} }` });
  }
  return plans;
}

describe(`chaos: ${BATCHES} batches, faults on, ${KILLS} × SIGKILL`, () => {
  let sim: SimulatorHandle | null = null;
  let hook: WebhookReceiver | null = null;
  let dir = '';
  let child: Child | null = null;
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await hook?.close();
    await sim?.close();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('loses nothing, delivers every event, registers at most once and keeps to the status QPS', async () => {
    const started = Date.now();
    const plans = makePlans();
    sim = await startSimulator({
      port: 0,
      seed: SEED,
      timeScale: 1,
      faults: { rates: { serverError: 0.1, throttle: 0.1, slow: 0.05, slowMs: 600, reset: 0.02, malformed: 0.02 }, seed: SEED + 1 },
    });
    for (const p of plans) sim.control.addBatch(p.sim);
    hook = await startWebhookReceiver({ secret: WEBHOOK_SECRET, failRate: 0.1, seed: SEED + 2 });
    dir = await tempDir('chaos');
    const stateDir = join(dir, 'state');
    const resultsDir = join(dir, 'results');
    const eventsFile = join(dir, 'events.jsonl');
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}", requestTimeout: 3s }`,
        'polling: { initialDelay: 300ms, maxDelay: 2s, timeout: 1h, awaitingRegistrationDelay: 2s }',
        `rateLimit: { statusQps: ${STATUS_QPS}, pageQps: 20, concurrency: 8 }`,
        `state: { dir: "${stateDir}" }`,
        `output:`,
        `  resultsDir: "${resultsDir}"`,
        `  eventsFile: "${eventsFile}"`,
        `  webhook: { url: "${hook.url}", secretEnv: IBW_WEBHOOK_SECRET, timeout: 2s }`,
        'http: { listen: "off" }',
        'batches:',
        ...plans.map((p) => p.yaml),
        '',
      ].join('\n'),
    );
    const env = { ...SIM_ENV, IBW_WEBHOOK_SECRET: WEBHOOK_SECRET };
    const random = createSeededRandom(SEED + 3);
    const stdout: string[] = [];
    let kills = 0;
    let webhookOutages = 0;
    const settledAtKill: number[] = [];
    const starts: number[] = [];
    const killedAt: number[] = [];
    for (let k = 0; k < KILLS; k += 1) {
      child = runCli(['run', '--config', configFile], env);
      await child.waitFor(/iot-batch-watcher running/, 60_000);
      starts.push(Date.now());
      if (k > 0 && k % 2 === 0) {
        // The receiver went down with the previous crash; it comes back a little after the restart.
        await sleep(500 + Math.floor(random.float() * 1500));
        await hook.setDown(false);
      }
      const [lo, hi] = KILL_AFTER_MS;
      await sleep(lo + Math.floor(random.float() * (hi - lo)));
      // Every other crash takes the webhook receiver down with it.
      if (k % 2 === 1) {
        await hook.setDown(true);
        webhookOutages += 1;
      }
      killedAt.push(Date.now());
      child.proc.kill('SIGKILL');
      const exit = await child.exited;
      expect(exit.signal).toBe('SIGKILL');
      kills += 1;
      stdout.push(...child.stdout);
      // The ledger always loads between runs (no torn file blocks the next start).
      const snap = await readLedgerReadOnly(stateDir);
      settledAtKill.push([...snap.batches.values()].filter((b) => b.state === 'settled').length);
    }
    await hook.setDown(false);

    // The last run: until every batch settled and every event reached every sink.
    child = runCli(['run', '--config', configFile], env);
    await child.waitFor(/iot-batch-watcher running/, 60_000);
    starts.push(Date.now());
    // NOTE: wait on the receiver first (cheap): reading a big ledger blocks this process's event loop, which
    // also runs the simulator and would bunch the arrival times it records.
    await waitUntil(
      () => new Set(hook!.deliveries.filter((d) => d.answered === 200 && d.type === 'batch.settled').map((d) => d.applyId)).size === BATCHES,
      SETTLE_TIMEOUT_MS,
      'a batch.settled event for every batch at the webhook',
      500,
    );
    await waitUntil(
      async () => {
        const snap = await readLedgerReadOnly(stateDir);
        const open = [...snap.batches.values()].filter((b) => b.state !== 'settled');
        return snap.batches.size === BATCHES && open.length === 0 && snap.outbox.size === 0;
      },
      120_000,
      'every batch settled and every event delivered',
      2000,
    );
    child.proc.kill('SIGTERM');
    const last = await child.exited;
    stdout.push(...child.stdout);
    expect(last.code, child.stderr.join('')).toBe(0);
    const elapsedMs = Date.now() - started;

    // ---- zero batches lost; every result file correct ----
    const ledger = await readLedgerReadOnly(stateDir);
    expect(ledger.batches.size).toBe(BATCHES);
    const wrong: string[] = [];
    const devicesByProduct = new Map(PRODUCTS.map((pk) => [pk, sim!.control.devices(pk)] as const));
    let devicesChecked = 0;
    for (const p of plans) {
      const rec = ledger.batches.get(`${p.productKey}/${p.applyId}`);
      if (rec?.state !== 'settled' || rec.outcome !== p.expected) {
        wrong.push(`${p.applyId} (${p.kind}): ledger ${rec?.state}/${rec?.outcome}, expected ${p.expected}`);
        continue;
      }
      const file = join(resultsDir, p.productKey, `${p.applyId}.json`);
      if (!existsSync(file)) {
        wrong.push(`${p.applyId}: no result file`);
        continue;
      }
      const result = JSON.parse(await readFile(file, 'utf8')) as {
        applyId: string;
        outcome: string;
        status: string;
        devices: { deviceName: string; iotId: string; deviceSecret?: string }[];
        deviceCount: number;
        invalidNames: string[];
      };
      const truth = sim.control.batch(p.applyId)!;
      const simDevices = devicesByProduct.get(p.productKey as (typeof PRODUCTS)[number])!.filter((d) => d.applyId === p.applyId);
      const want = simDevices.map((d) => `${d.deviceName}|${d.iotId}|${d.deviceSecret}`).sort();
      const got = result.devices.map((d) => `${d.deviceName}|${d.iotId}|${d.deviceSecret ?? ''}`).sort();
      devicesChecked += got.length;
      if (result.applyId !== p.applyId || result.outcome !== p.expected || result.status !== truth.status) {
        wrong.push(`${p.applyId}: result ${result.applyId}/${result.outcome}/${result.status}, sim ${truth.status}`);
      } else if (JSON.stringify(want) !== JSON.stringify(got) || result.deviceCount !== want.length) {
        wrong.push(`${p.applyId}: devices differ (${got.length} in the file, ${want.length} in the simulator)`);
      } else if (p.expected === 'check_failed' && !result.invalidNames.includes(`ch${plans.indexOf(p)}-bad`)) {
        wrong.push(`${p.applyId}: invalidNames ${JSON.stringify(result.invalidNames)}`);
      }
    }
    expect(wrong, wrong.slice(0, 10).join('\n')).toEqual([]);

    // ---- register: true never registers twice ----
    const registrationProblems: string[] = [];
    for (const p of plans) {
      const n = sim.control.registrations(p.applyId);
      const want = p.kind === 'register' ? 1 : 0;
      if (n !== want) {
        const calls = sim.control
          .requestLog()
          .filter((e) => e.action === 'BatchRegisterDeviceWithApplyId' && e.applyId === p.applyId)
          .map((e) => `${e.outcome}${e.fault ? ` [fault ${e.fault}]` : ''} HTTP ${e.httpStatus}`);
        registrationProblems.push(
          `${p.applyId} (${p.kind}): ${n} BatchRegisterDeviceWithApplyId calls reached the action, expected ${want}; all calls: ${calls.join('; ')}`,
        );
      }
    }

    // ---- events: every event delivered at least once to the events file and to the webhook ----
    const logged = new Set<string>();
    for (const line of stdout) {
      try {
        const ev = (JSON.parse(line) as { event?: { id?: string } }).event;
        if (typeof ev?.id === 'string') logged.add(ev.id);
      } catch {
        // not JSON (cannot happen with LOG_FORMAT json, but a SIGKILL may cut a line)
      }
    }
    const fileParsed = parseJsonLines(await readFile(eventsFile, 'utf8'));
    const fileCounts = new Map<string, number>();
    const settledInFile = new Set<string>();
    for (const e of fileParsed.values) {
      const id = String(e.id);
      fileCounts.set(id, (fileCounts.get(id) ?? 0) + 1);
      if (e.type === 'batch.settled') settledInFile.add(String(e.applyId));
    }
    const hookAcks = acknowledged(hook.deliveries);
    const settledAtHook = new Set(hook.deliveries.filter((d) => d.answered === 200 && d.type === 'batch.settled').map((d) => d.applyId));
    const badSignatures = hook.deliveries.filter((d) => !d.signatureOk).length;
    const headerBodyMismatch = hook.deliveries.filter((d) => d.bodyId !== d.eventId).length;
    const all = new Set([...logged, ...fileCounts.keys(), ...hookAcks.keys()]);
    const missingInFile = [...all].filter((id) => !fileCounts.has(id));
    const missingAtHook = [...all].filter((id) => !hookAcks.has(id));
    const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
    const fileDuplicates = sum(fileCounts) - fileCounts.size;
    const hookDuplicates = sum(hookAcks) - hookAcks.size;

    // ---- the status QPS never above the configured rate in any 1-second window ----
    const log = sim.control.requestLog();
    const statusTimes = log.filter((e) => e.action === 'QueryBatchRegisterDeviceStatus').map((e) => e.at);
    const busiest = maxPerWindow(statusTimes, 1000);
    const busiestWindow = busiest.at === null ? [] : statusTimes.filter((t) => t >= busiest.at! && t < busiest.at! + 1000).map((t) => t - busiest.at!);
    const nearest = (ts: number[]): number | null =>
      busiest.at === null || ts.length === 0 ? null : ts.map((t) => busiest.at! - t).reduce((a, b) => (Math.abs(b) < Math.abs(a) ? b : a));
    const faults: Record<string, number> = {};
    for (const e of log) if (e.fault) faults[e.fault] = (faults[e.fault] ?? 0) + 1;
    const byAction: Record<string, number> = {};
    for (const e of log) byAction[e.action ?? 'none'] = (byAction[e.action ?? 'none'] ?? 0) + 1;
    const outcomes: Record<string, number> = {};
    for (const p of plans) outcomes[p.expected] = (outcomes[p.expected] ?? 0) + 1;
    const kinds: Record<string, number> = {};
    for (const p of plans) kinds[p.kind] = (kinds[p.kind] ?? 0) + 1;

    writeReport('chaos', {
      batches: BATCHES,
      bigApplyIds: plans.filter((p) => p.big).length,
      kinds,
      outcomes,
      kills,
      settledAtKill,
      webhookOutagesAcrossCrash: webhookOutages,
      requests: log.length,
      requestsByAction: byAction,
      faultsInjected: faults,
      statusQpsConfigured: STATUS_QPS,
      statusMaxIn1s: busiest.max,
      busiestPerRestart: starts.map((t0) => maxPerWindow(statusTimes.filter((t) => t >= t0 - 3000 && t < t0 + 3000), 1000).max),
      busiestWindowOffsetsMs: busiest.max > STATUS_QPS ? busiestWindow : undefined,
      busiestWindowFromLastStartMs: busiest.max > STATUS_QPS ? nearest(starts) : undefined,
      busiestWindowFromLastKillMs: busiest.max > STATUS_QPS ? nearest(killedAt) : undefined,
      lostBatches: BATCHES - [...ledger.batches.values()].filter((b) => b.state === 'settled').length,
      wrongResults: wrong.length,
      devicesChecked,
      events: all.size,
      eventsFileLines: sum(fileCounts),
      eventsFileTornLines: fileParsed.torn,
      eventsFileDuplicates: fileDuplicates,
      webhookRequests: hook.deliveries.length,
      webhookFailedOnPurpose: hook.deliveries.filter((d) => d.answered !== 200).length,
      webhookAcked: sum(hookAcks),
      webhookDuplicates: hookDuplicates,
      webhookBadSignatures: badSignatures,
      missingInEventsFile: missingInFile.length,
      missingAtWebhook: missingAtHook.length,
      registerBatches: plans.filter((p) => p.kind === 'register').length,
      registrationProblems: registrationProblems.length,
      registrationProblemSamples: registrationProblems.slice(0, 5),
      elapsedSec: Math.round(elapsedMs / 1000),
      full: FULL,
    });

    expect(missingInFile, `events missing from the events file: ${missingInFile.slice(0, 5).join(', ')}`).toEqual([]);
    expect(missingAtHook, `events never acknowledged by the webhook: ${missingAtHook.slice(0, 5).join(', ')}`).toEqual([]);
    expect(settledInFile.size).toBe(BATCHES);
    expect(settledAtHook.size).toBe(BATCHES);
    expect(badSignatures).toBe(0);
    expect(headerBodyMismatch).toBe(0);
    expect(busiest.max, `status requests in the busiest second (from ${busiest.at})`).toBeLessThanOrEqual(STATUS_QPS);
    expect(registrationProblems, registrationProblems.slice(0, 10).join('\n')).toEqual([]);
  });
});
