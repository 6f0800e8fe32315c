/**
 * Outage: the simulator goes away (connection refused) for a while, then comes back. The daemon (a child
 * process with its ops endpoints on a loopback port) keeps running and answering /healthz, backs each batch off,
 * and when the simulator returns it recovers without a burst (status requests in any 1-second window stay at or
 * under statusQps) and every batch settles.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../src/core/clock.js';
import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { httpGet, maxPerWindow, profile, sleep, tempDir, waitUntil, writeReport } from './helpers.js';

const OUTAGE_MS = profile(8000, 30_000);
const BATCHES = 20;
const STATUS_QPS = 10;
const INITIAL_DELAY_MS = 200;

describe(`outage: the simulator refuses connections for ${OUTAGE_MS / 1000} s`, () => {
  let sim: SimulatorHandle | null = null;
  let child: Child | null = null;
  let dir = '';
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await sim?.close();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('keeps running, backs off, recovers without a burst, and every batch settles', async () => {
    sim = await startSimulator({ port: 0, seed: 11 });
    dir = await tempDir('outage');
    const random = createSeededRandom(11);
    const lines: string[] = [];
    const outageSec = OUTAGE_MS / 1000;
    for (let i = 0; i < BATCHES; i += 1) {
      const applyId = String(9_200_000 + i);
      // Final somewhere between "before the outage" and "a little after it".
      const checkMs = 1000 + Math.floor(random.float() * (OUTAGE_MS + 3000));
      sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'custom', deviceNames: [`out${i}-a`, `out${i}-b`], registered: true, checkMs, createMs: 1000 });
      lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
    }
    const stateDir = join(dir, 'state');
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}", requestTimeout: 2s }`,
        `polling: { initialDelay: ${INITIAL_DELAY_MS}ms, maxDelay: 3s }`,
        `rateLimit: { statusQps: ${STATUS_QPS}, pageQps: 10, concurrency: 8 }`,
        `state: { dir: "${stateDir}" }`,
        `output: { resultsDir: "${join(dir, 'results')}" }`,
        'http: { listen: "127.0.0.1:0" }',
        'batches:',
        ...lines,
        '',
      ].join('\n'),
    );
    child = runCli(['run', '--config', configFile], SIM_ENV);
    const listening = await child.waitFor(/ops endpoints listening/, 60_000);
    const base = (JSON.parse(listening) as { url: string }).url;
    await child.waitFor(/iot-batch-watcher running/, 10_000);
    await sleep(1500);

    const pollsOf = async (): Promise<number> => {
      const rows = JSON.parse((await httpGet(`${base}/v1/batches`)).body) as { polls: number }[];
      return rows.reduce((a, r) => a + r.polls, 0);
    };
    const pollsBefore = await pollsOf();
    const downAt = Date.now();
    await sim.control.setDown(true);
    let healthChecks = 0;
    const healthFailures: string[] = [];
    const readyCodes = new Set<number>();
    while (Date.now() - downAt < OUTAGE_MS) {
      await sleep(500);
      healthChecks += 1;
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) throw new Error(`the daemon exited during the outage: ${child.stderr.join('')}`);
      try {
        const h = await httpGet(`${base}/healthz`, 2000);
        if (h.status !== 200) healthFailures.push(`HTTP ${h.status}`);
        readyCodes.add((await httpGet(`${base}/readyz`, 2000)).status);
      } catch (err) {
        healthFailures.push(String(err));
      }
    }
    const pollsDuringOutage = (await pollsOf()) - pollsBefore;
    // Where each open batch stands in its backoff at the end of the outage.
    const snap = await readLedgerReadOnly(stateDir);
    const open = [...snap.batches.values()].filter((b) => b.state === 'pending');
    const attempts = open.map((b) => b.attempt).sort((a, b) => a - b);
    const medianAttempt = attempts.length === 0 ? 0 : attempts[Math.floor(attempts.length / 2)]!;
    const refused = open.filter((b) => b.lastError !== null && /Connection|Transport/i.test(JSON.stringify(b.lastError))).length;

    const upAt = Date.now();
    await sim.control.setDown(false);
    await waitUntil(
      async () => {
        const rows = JSON.parse((await httpGet(`${base}/v1/batches`)).body) as { outcome: string | null }[];
        return rows.length === BATCHES && rows.every((r) => r.outcome !== null);
      },
      60_000,
      'every batch settled after the outage',
      500,
    );
    const settledAfterMs = Date.now() - upAt;
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    expect(exit.code).toBe(0);

    const after = sim.control
      .requestLog()
      .filter((e) => e.at >= upAt && e.action === 'QueryBatchRegisterDeviceStatus')
      .map((e) => e.at);
    const burst = maxPerWindow(after, 1000);
    const firstSecond = after.filter((t) => t < upAt + 1000).length;
    const final = await readLedgerReadOnly(stateDir);
    const outcomes: Record<string, number> = {};
    for (const b of final.batches.values()) outcomes[b.outcome ?? 'none'] = (outcomes[b.outcome ?? 'none'] ?? 0) + 1;
    writeReport('outage', {
      outageSec,
      batches: BATCHES,
      statusQps: STATUS_QPS,
      openAtOutageEnd: open.length,
      pollsDuringOutage,
      pollsPerOpenBatchDuringOutage: open.length === 0 ? 0 : Math.round((pollsDuringOutage / open.length) * 10) / 10,
      pollsWithoutBackoffWouldBe: `${Math.round((outageSec * 1000) / INITIAL_DELAY_MS)} per batch`,
      medianBackoffAttemptAtOutageEnd: medianAttempt,
      openBatchesWithConnectionError: refused,
      healthChecks,
      healthFailures: healthFailures.length,
      readyzDuringOutage: [...readyCodes],
      statusRequestsInFirstSecondAfterRecovery: firstSecond,
      statusMaxIn1sAfterRecovery: burst.max,
      secondsToSettleAfterRecovery: Math.round(settledAfterMs / 100) / 10,
      outcomes,
    });
    expect(healthFailures).toEqual([]);
    expect(healthChecks).toBeGreaterThan(outageSec);
    expect(open.length).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    // Backed off: each open batch climbed its backoff ladder instead of retrying at the initial delay.
    expect(medianAttempt).toBeGreaterThanOrEqual(3);
    expect(pollsDuringOutage).toBeLessThanOrEqual(Math.ceil(STATUS_QPS * outageSec * 1.05) + 8);
    expect(burst.max, `status requests in the busiest second after recovery (${after.length} in total)`).toBeLessThanOrEqual(STATUS_QPS);
    expect(final.batches.size).toBe(BATCHES);
    expect([...final.batches.values()].every((b) => b.state === 'settled' && b.outcome === 'created')).toBe(true);
  });
});
