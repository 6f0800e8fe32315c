/**
 * Clock: the simulator's clock moves 20 minutes away from the daemon's mid-run. Every signed request is now
 * refused with InvalidTimeStamp.Expired; that is process-fatal: the daemon (a child process) must exit 1 with
 * one clear fatal line about the clock, after a handful of requests — not a retry storm.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { sleep, tempDir, waitUntil, writeReport } from './helpers.js';

const CONCURRENCY = 8;

describe('clock skew of 20 minutes', () => {
  let sim: SimulatorHandle | null = null;
  let child: Child | null = null;
  let dir = '';
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await sim?.close();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('is process-fatal with one clear line, after a handful of requests', async () => {
    sim = await startSimulator({ port: 0, seed: 5 });
    dir = await tempDir('clock');
    const lines: string[] = [];
    for (let i = 0; i < 30; i += 1) {
      const applyId = String(9_100_000 + i);
      sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
      lines.push(`  - { applyId: "${applyId}", productKey: a1SimProduct1 }`);
    }
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        'polling: { initialDelay: 200ms, maxDelay: 1s }',
        `rateLimit: { statusQps: 20, concurrency: ${CONCURRENCY} }`,
        `state: { dir: "${join(dir, 'state')}" }`,
        `output: { resultsDir: "${join(dir, 'results')}" }`,
        'http: { listen: "off" }',
        'batches:',
        ...lines,
        '',
      ].join('\n'),
    );
    child = runCli(['run', '--config', configFile], SIM_ENV);
    await child.waitFor(/iot-batch-watcher running/, 60_000);
    await waitUntil(() => sim!.control.requestLog().filter((e) => e.outcome === 'ok').length >= 30, 20_000, 'some successful polls');
    await sleep(300);
    const skewAt = Date.now();
    sim.control.setClockSkewMs(20 * 60_000);
    const exit = await Promise.race([child.exited, sleep(30_000).then(() => null)]);
    const tookMs = Date.now() - skewAt;
    expect(exit, 'the daemon did not exit within 30 s of the skew').not.toBeNull();
    expect(exit!.code).toBe(1);

    const after = sim.control.requestLog().filter((e) => e.at >= skewAt);
    const expired = after.filter((e) => e.outcome.startsWith('InvalidTimeStamp'));
    const parsed = child.stdout.flatMap((l) => {
      try {
        return [JSON.parse(l) as { level: number; msg: string }];
      } catch {
        return [];
      }
    });
    const fatal = parsed.filter((l) => l.level >= 60);
    writeReport('clock', {
      skewMinutes: 20,
      exitCode: exit!.code,
      secondsToExit: Math.round(tookMs / 100) / 10,
      requestsAfterSkew: after.length,
      invalidTimeStampAnswers: expired.length,
      concurrency: CONCURRENCY,
      fatalLines: fatal.map((l) => l.msg),
    });
    expect(fatal.length, child.stdout.slice(-10).join('\n')).toBe(1);
    expect(fatal[0]!.msg).toMatch(/clock/i);
    expect(fatal[0]!.msg).toMatch(/InvalidTimeStamp|skew/);
    // A handful: at most the requests that were already in flight or admitted in the same instant.
    expect(after.length).toBeGreaterThan(0);
    expect(after.length).toBeLessThanOrEqual(CONCURRENCY + 2);
    expect(tookMs).toBeLessThan(10_000);
  });
});
