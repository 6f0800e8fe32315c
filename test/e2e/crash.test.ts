import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../src/core/clock.js';
import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

describe('kill -9 at random moments', () => {
  let sim: SimulatorHandle | null = null;
  let dir = '';
  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('loses no batch, never registers twice, and the ledger always loads', async () => {
    sim = await startSimulator({ port: 0, timeScale: 4, seed: 9 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-crash-'));
    const expected = new Map<string, string>();
    const lines: string[] = [];
    for (let i = 0; i < 40; i += 1) {
      const applyId = String(7_000_000 + i);
      const names = [`crash-${i}-a`, `crash-${i}-b`, `crash-${i}-c`];
      switch (i % 4) {
        case 0:
          sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'custom', deviceNames: names, registered: false });
          lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1, register: true }`);
          expected.set(applyId, 'created');
          break;
        case 1:
          sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'custom', deviceNames: names, registered: true, outcome: 'partial', failNames: [names[1]!] });
          lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
          expected.set(applyId, 'create_failed');
          break;
        case 2:
          sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 5 });
          lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
          expected.set(applyId, 'created');
          break;
        default:
          sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'custom', deviceNames: [...names, 'no'], outcome: 'check_failed' });
          lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
          expected.set(applyId, 'check_failed');
      }
    }
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        'alibaba: { regionId: cn-shanghai, endpoint: "' + sim.url + '" }',
        'polling: { initialDelay: 200ms, maxDelay: 1s }',
        'rateLimit: { statusQps: 20, pageQps: 20, concurrency: 8 }',
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')}, eventsFile: ${join(dir, 'events.jsonl')} }`,
        'http: { listen: "off" }',
        'batches:',
        ...lines,
        '',
      ].join('\n'),
    );
    const random = createSeededRandom(2024);
    let kills = 0;
    for (let round = 0; round < 6; round += 1) {
      const child = runCli(['run', '--config', configFile], SIM_ENV);
      await child.waitFor(/iot-batch-watcher running/);
      // The ledger loads while the daemon runs (status reads it without a lock).
      await readLedgerReadOnly(join(dir, 'state'));
      await new Promise((r) => setTimeout(r, 100 + Math.floor(random.float() * 1500)));
      child.proc.kill('SIGKILL');
      const exit = await child.exited;
      expect(exit.signal).toBe('SIGKILL');
      kills += 1;
    }
    // Last run: until every batch settled.
    const child = runCli(['run', '--config', configFile], SIM_ENV);
    await child.waitFor(/iot-batch-watcher running/);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const snapshot = await readLedgerReadOnly(join(dir, 'state'));
      const open = [...snapshot.batches.values()].filter((b) => b.state === 'pending' || b.state === 'fetching');
      if (snapshot.batches.size === 40 && open.length === 0 && snapshot.outbox.size === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    expect(kills).toBe(6);

    const final = await readLedgerReadOnly(join(dir, 'state'));
    for (const [applyId, outcome] of expected) {
      const rec = final.batches.get(`a1SimProduct1/${applyId}`);
      expect(rec?.outcome, applyId).toBe(outcome);
      expect(existsSync(join(dir, 'results', 'a1SimProduct1', `${applyId}.json`)), applyId).toBe(true);
      expect(sim.control.registrations(applyId), applyId).toBe(outcome === 'created' && Number(applyId) % 4 === 0 ? 1 : 0);
    }
    // Every batch's settled event reached the events file at least once.
    const events = (await readFile(join(dir, 'events.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; applyId: string });
    const settled = new Set(events.filter((e) => e.type === 'batch.settled').map((e) => e.applyId));
    expect(settled.size).toBe(40);
  }, 180_000);
});
