/**
 * Drip (issue #13.1): the simulator answers status polls with headers and then one body byte per second, never
 * finishing (`drip` fault). The daemon (a child process) must close every such request at `requestTimeout`
 * (+1 s slack), keep answering /healthz, count the attempts as transient, and once the fault stops settle every
 * batch with nothing lost. Before the total deadline, each dripping poll held its connection forever.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { httpGet, profile, sleep, tempDir, waitUntil, writeReport } from './helpers.js';

const BATCHES = profile(8, 40);
const DRIPS = profile(12, 60);
// Above the 1 s drip interval, so an inactivity timeout alone would never fire.
const REQUEST_TIMEOUT_MS = 2000;
const SLACK_MS = 1000;

describe(`drip: ${DRIPS} status polls answered one byte per second`, () => {
  let sim: SimulatorHandle | null = null;
  let child: Child | null = null;
  let dir = '';
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await sim?.close();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('closes every dripping request at requestTimeout, stays healthy, and every batch settles', async () => {
    sim = await startSimulator({
      port: 0,
      seed: 13,
      faults: { script: [{ action: 'QueryBatchRegisterDeviceStatus', nth: 1, times: DRIPS, fault: 'drip' }] },
    });
    dir = await tempDir('drip');
    const lines: string[] = [];
    for (let i = 0; i < BATCHES; i += 1) {
      const applyId = String(9_300_000 + i);
      sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'custom', deviceNames: [`drip${i}-a`, `drip${i}-b`], registered: true, checkMs: 500, createMs: 500 });
      lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
    }
    const stateDir = join(dir, 'state');
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}", requestTimeout: 2s }`,
        'polling: { initialDelay: 200ms, maxDelay: 1s }',
        'rateLimit: { statusQps: 10, pageQps: 10, concurrency: 4 }',
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

    const healthFailures: string[] = [];
    let healthChecks = 0;
    const settled = waitUntil(
      async () => {
        healthChecks += 1;
        const h = await httpGet(`${base}/healthz`, 2000).catch((err: unknown) => ({ status: 0, body: String(err) }));
        if (h.status !== 200) healthFailures.push(`HTTP ${h.status}`);
        const rows = JSON.parse((await httpGet(`${base}/v1/batches`)).body) as { outcome: string | null }[];
        return rows.length === BATCHES && rows.every((r) => r.outcome !== null);
      },
      120_000,
      'every batch settled after the drips',
      500,
    );
    await settled;
    await sleep(200);
    const drips = sim.control.requestLog().filter((e) => e.fault === 'drip');
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    const heldMs = drips.map((e) => (e.closedAt === undefined ? Infinity : e.closedAt - e.at));
    // `run` logs JSON lines on stdout.
    const deadlineLines = child.stdout.filter((l) => l.includes('alibaba api request exceeded its deadline')).length;
    const warnLines = child.stdout.filter((l) => /"level":(4|5)\d/.test(l) && l.includes('Transport.Timeout')).length;
    const final = await readLedgerReadOnly(stateDir);
    writeReport('drip', {
      batches: BATCHES,
      drips: drips.length,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      maxHeldMs: Math.round(Math.max(...heldMs)),
      deadlineInfoLines: deadlineLines,
      timeoutWarnLines: warnLines,
      healthChecks,
      healthFailures: healthFailures.length,
    });
    expect(exit.code).toBe(0);
    expect(drips.length).toBe(DRIPS);
    for (const ms of heldMs) expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
    expect(deadlineLines).toBe(DRIPS);
    // Visible at info per deadline, never a warn per retry.
    expect(warnLines).toBe(0);
    expect(healthFailures).toEqual([]);
    expect(final.batches.size).toBe(BATCHES);
    expect([...final.batches.values()].every((b) => b.state === 'settled' && b.outcome === 'created')).toBe(true);
  });
});
