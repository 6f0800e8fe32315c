/**
 * Partial writes of the config file while the daemon runs (issue #13.2): rewrites in place cut at random points
 * (mid-entry and between entries), with pauses shorter and longer than the settle window. Nothing may be
 * cancelled by them; a real removal still takes effect once two stable reads confirm it.
 */
import { existsSync } from 'node:fs';
import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../src/core/clock.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';
import { parseJsonLines, profile, sleep, tempDir, waitUntil, writeReport } from './helpers.js';

const ROUNDS = profile(6, 20);
const BATCHES = profile(40, 200);
/** Pauses between the two parts of a write: below, around and above the 2 s settle window. */
const PAUSES_MS = [200, 800, 1500, 3000];

interface EventLine {
  type: string;
  applyId: string;
  outcome?: string;
}

describe('chaos: partial writes of the config file', () => {
  let sim: SimulatorHandle | null = null;
  let dir = '';
  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rewrites cut anywhere, paused up to 3 s, cancel nothing; a confirmed removal still cancels', async () => {
    const random = createSeededRandom(1302);
    sim = await startSimulator({ port: 0, timeScale: 10 });
    dir = await tempDir('partial');
    const ids = Array.from({ length: BATCHES }, (_, i) => String(7_500_000 + i));
    for (const applyId of ids) sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 1, outcome: 'never' });
    const eventsFile = join(dir, 'events.jsonl');
    const head = [
      `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
      'polling: { initialDelay: 500ms, maxDelay: 2s }',
      'rateLimit: { statusQps: 30, concurrency: 8 }',
      `state: { dir: ${join(dir, 'state')} }`,
      `output: { resultsDir: ${join(dir, 'results')}, eventsFile: ${eventsFile} }`,
      'http: { listen: "off" }',
      'batches:',
    ];
    // Flow entries: a cut inside one leaves an unclosed mapping (invalid YAML), a cut between two a valid shorter file.
    const render = (list: readonly string[]) =>
      [...head, ...list.map((id) => `  - { applyId: "${id}", productKey: a1SimProduct1, name: chaos-${id} }`), ''].join('\n');
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(configFile, render(ids));
    const readEvents = async (): Promise<EventLine[]> =>
      existsSync(eventsFile) ? (parseJsonLines(await readFile(eventsFile, 'utf8')).values as unknown as EventLine[]) : [];

    const daemon = runCli(['run', '--config', configFile], SIM_ENV);
    const cuts: { at: number; pauseMs: number }[] = [];
    try {
      await daemon.waitFor(/iot-batch-watcher running/, 30_000);
      await waitUntil(async () => (await readEvents()).filter((e) => e.type === 'batch.added').length === ids.length, 20_000, 'every batch added');

      const full = render(ids);
      for (let round = 0; round < ROUNDS; round += 1) {
        const at = 1 + Math.floor(random.float() * (full.length - 2));
        const pauseMs = PAUSES_MS[round % PAUSES_MS.length]!;
        cuts.push({ at, pauseMs });
        const handle = await open(configFile, 'r+');
        try {
          await handle.truncate(0);
          await handle.write(full.slice(0, at), 0);
          await sleep(pauseMs);
          await handle.write(full.slice(at), at);
        } finally {
          await handle.close();
        }
        await sleep(500 + Math.floor(random.float() * 1500));
      }
      // Let the last write settle, then two reads of the finished file.
      await sleep(3000);
      daemon.proc.kill('SIGHUP');
      await sleep(2500);
      daemon.proc.kill('SIGHUP');
      await sleep(1000);
      const afterRewrites = await readEvents();
      expect(afterRewrites.filter((e) => e.type === 'batch.settled')).toEqual([]);

      // A real removal, written atomically: kept at the first read, removed at the second.
      const removed = ids.slice(0, 3);
      await writeFile(`${configFile}.tmp`, render(ids.slice(3)));
      const from = daemon.stdout.length;
      await rename(`${configFile}.tmp`, configFile);
      await waitUntil(() => daemon.stdout.slice(from).some((l) => l.includes('kept until a second stable read')), 15_000, 'the kept line');
      expect((await readEvents()).filter((e) => e.type === 'batch.settled')).toEqual([]);
      await sleep(2500);
      daemon.proc.kill('SIGHUP');
      await waitUntil(
        async () => (await readEvents()).filter((e) => e.type === 'batch.settled' && e.outcome === 'cancelled').length === removed.length,
        15_000,
        'the confirmed removals',
      );
      const settled = (await readEvents()).filter((e) => e.type === 'batch.settled');
      expect(settled.map((e) => e.applyId).sort()).toEqual(removed);
      const falseCancellations = afterRewrites.filter((e) => e.outcome === 'cancelled').length;
      writeReport('partial-write', { rounds: ROUNDS, batches: BATCHES, cuts, falseCancellations, confirmedRemovals: settled.length });
    } finally {
      daemon.proc.kill('SIGTERM');
    }
    expect((await daemon.exited).code, daemon.stderr.join('')).toBe(0);
  });
});
