import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface EventLine {
  type: string;
  applyId: string;
  outcome?: string;
}

async function events(file: string): Promise<EventLine[]> {
  if (!existsSync(file)) return [];
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as EventLine);
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Rewrites `file` in place the way generators and some editors do: truncate, write half, pause, write the rest. */
async function rewriteInPlace(file: string, text: string, pauseMs: number): Promise<void> {
  // Cut before an entry near the middle: the first half is then a valid file with fewer batches (the worst case).
  const cut = text.lastIndexOf('\n  - ', Math.floor(text.length / 2)) + 1;
  const handle = await open(file, 'r+');
  try {
    await handle.truncate(0);
    await handle.write(text.slice(0, cut), 0);
    await handle.sync();
    await sleep(pauseMs);
    await handle.write(text.slice(cut), Buffer.byteLength(text.slice(0, cut)));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

describe('reload against a writer in progress (issue #13.2)', () => {
  let sim: SimulatorHandle | null = null;
  let dir = '';
  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a non-atomic rewrite with a 1.5 s pause cancels nothing', async () => {
    sim = await startSimulator({ port: 0, timeScale: 10 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-partial-'));
    const ids = Array.from({ length: 30 }, (_, i) => String(7_300_000 + i));
    for (const applyId of ids) sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 1, outcome: 'never' });
    const added = '7399999';
    sim.control.addBatch({ applyId: added, productKey: 'a1SimProduct1', mode: 'random', count: 1, outcome: 'never' });
    const eventsFile = join(dir, 'events.jsonl');
    const resultsDir = join(dir, 'results');
    const head = [
      `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
      'polling: { initialDelay: 200ms, maxDelay: 1s }',
      'rateLimit: { statusQps: 30, concurrency: 8 }',
      `state: { dir: ${join(dir, 'state')} }`,
      `output: { resultsDir: ${resultsDir}, eventsFile: ${eventsFile} }`,
      'http: { listen: "off" }',
      'batches:',
    ];
    const entry = (applyId: string) => [`  - applyId: "${applyId}"`, '    productKey: a1SimProduct1', `    name: partial-${applyId}`];
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(configFile, [...head, ...ids.flatMap(entry), ''].join('\n'));

    const daemon = runCli(['run', '--config', configFile], SIM_ENV);
    try {
      await daemon.waitFor(/iot-batch-watcher running/, 30_000);
      await waitUntil(async () => (await events(eventsFile)).filter((e) => e.type === 'batch.added').length === ids.length, 15_000, 'every batch added');
      await sleep(500);

      // The same batches plus one at the end, written in two parts with a pause: the first part lacks 16 of them.
      const next = [...head, ...[...ids, added].flatMap(entry), ''].join('\n');
      await rewriteInPlace(configFile, next, 1500);

      // The finished file took effect (the added batch is at its very end) ...
      await waitUntil(async () => (await events(eventsFile)).some((e) => e.type === 'batch.added' && e.applyId === added), 20_000, 'the added batch');
      // ... and a later read of the same file (SIGHUP) confirms nothing is missing.
      daemon.proc.kill('SIGHUP');
      await daemon.waitFor(/configuration unchanged/, 15_000);
      await sleep(1000);
    } finally {
      daemon.proc.kill('SIGTERM');
    }
    expect((await daemon.exited).code, daemon.stderr.join('')).toBe(0);

    const all = await events(eventsFile);
    expect(all.filter((e) => e.type === 'batch.settled' && e.outcome === 'cancelled')).toEqual([]);
    expect(all.filter((e) => e.type === 'batch.cancelled')).toEqual([]);
    const resultFiles = existsSync(join(resultsDir, 'a1SimProduct1')) ? await readdir(join(resultsDir, 'a1SimProduct1')) : [];
    expect(resultFiles).toEqual([]); // nothing settled at all: every batch is still pending
    expect(daemon.stdout.some((l) => l.includes('"cancelled":') && !l.includes('"cancelled":0'))).toBe(false);
  }, 90_000);
});
