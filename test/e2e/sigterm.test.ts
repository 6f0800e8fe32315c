import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

describe('SIGTERM', () => {
  let sim: SimulatorHandle | null = null;
  let dir = '';
  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exits 0 within 5 s, with the ledger flushed and no request abandoned mid-flight', async () => {
    // Every reply is slow, so requests are in flight when the signal arrives.
    sim = await startSimulator({ port: 0, seed: 3, faults: { rates: { slow: 1, slowMs: 700 }, seed: 3 } });
    dir = await mkdtemp(join(tmpdir(), 'ibw-term-'));
    const batches: string[] = [];
    for (let i = 0; i < 12; i += 1) {
      const applyId = String(8_000_000 + i);
      sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
      batches.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
    }
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        'polling: { initialDelay: 100ms, maxDelay: 300ms }',
        'rateLimit: { statusQps: 30, concurrency: 12 }',
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')} }`,
        'http: { listen: "off" }',
        'batches:',
        ...batches,
        '',
      ].join('\n'),
    );
    const child = runCli(['run', '--config', configFile], SIM_ENV);
    await child.waitFor(/iot-batch-watcher running/);
    await new Promise((r) => setTimeout(r, 1500));
    const sentAt = Date.now();
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    const tookMs = Date.now() - sentAt;
    expect(exit.code).toBe(0);
    expect(tookMs).toBeLessThan(5000);
    expect(child.stdout.some((l) => l.includes('stopped cleanly'))).toBe(true);

    // Every status request the simulator received has its answer recorded in the ledger: nothing was abandoned.
    const snapshot = await readLedgerReadOnly(join(dir, 'state'));
    const received = new Map<string, number>();
    for (const e of sim.control.requestLog()) {
      if (e.action === 'QueryBatchRegisterDeviceStatus' && e.applyId) received.set(e.applyId, (received.get(e.applyId) ?? 0) + 1);
    }
    let total = 0;
    for (const rec of snapshot.batches.values()) {
      expect(rec.polls, rec.applyId).toBe(received.get(rec.applyId) ?? 0);
      total += rec.polls;
    }
    expect(total).toBeGreaterThan(12);
  }, 60_000);

  it('a second signal exits at once with 143', async () => {
    sim ??= await startSimulator({ port: 0 });
    sim.control.setFaults({ rates: { slow: 1, slowMs: 20_000 }, seed: 1 });
    dir ||= await mkdtemp(join(tmpdir(), 'ibw-term-'));
    const configFile = join(dir, 'slow.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}", requestTimeout: 30s }`,
        `state: { dir: ${join(dir, 'state2')} }`,
        `output: { resultsDir: ${join(dir, 'results2')} }`,
        'http: { listen: "off" }',
        'batches:',
        '  - { applyId: "8100001", productKey: a1SimProduct1 }',
        '',
      ].join('\n'),
    );
    const child = runCli(['run', '--config', configFile], SIM_ENV);
    await child.waitFor(/iot-batch-watcher running/);
    await new Promise((r) => setTimeout(r, 300));
    child.proc.kill('SIGTERM');
    await child.waitFor(/shutting down/);
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    expect(exit.code).toBe(143);
  }, 30_000);
});
