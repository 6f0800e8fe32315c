/**
 * Loud, not noisy (issue #13 item 3), through the CLI as a separate process: a daemon whose endpoint refuses
 * connections logs exactly one warn line once `alibaba.failureWarnAfter` has passed, none per retry, and exactly one
 * recovery line once the endpoint answers (the simulator started on the same port).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';

/** A loopback port nothing listens on (taken from the kernel, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const FAILING = 'alibaba api action failing';
const RECOVERED = 'alibaba api action recovered';

function parsed(child: Child): Record<string, unknown>[] {
  return child.stdout.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

describe('failing and recovered API actions', () => {
  let sim: SimulatorHandle | null = null;
  let child: Child | null = null;
  let dir = '';
  afterAll(async () => {
    child?.proc.kill('SIGKILL');
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('one warn line while the endpoint refuses connections, none per retry, one info line when it answers', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-health-'));
    const port = await closedPort();
    const endpoint = `http://127.0.0.1:${port}`;
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${endpoint}", failureWarnAfter: 2s }`,
        'polling: { initialDelay: 100ms, maxDelay: 300ms }',
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')} }`,
        'http: { listen: "off" }',
        'batches:',
        '  - { applyId: "8100001", productKey: a1SimProduct1 }',
        '  - { applyId: "8100002", productKey: a1SimProduct1 }',
        '',
      ].join('\n'),
    );
    child = runCli(['run', '--config', configFile], SIM_ENV);
    await child.waitFor(/iot-batch-watcher running/);
    const runningAt = Date.now();
    const warnLine = JSON.parse(await child.waitFor(new RegExp(FAILING), 10_000)) as Record<string, unknown>;
    const warnAfterMs = Date.now() - runningAt;
    expect(warnAfterMs).toBeLessThan(8_000);
    expect(warnLine).toMatchObject({
      level: 40,
      component: 'api',
      action: 'QueryBatchRegisterDeviceStatus',
      endpoint,
      lastCode: 'Transport.ConnectionRefused',
      lastHttpStatus: null,
      failureWarnAfterMs: 2_000,
    });
    expect(warnLine.failingForMs as number).toBeGreaterThanOrEqual(2_000);
    expect(warnLine.failedAttempts as number).toBeGreaterThan(2);
    expect(warnLine.codes).toEqual({ 'Transport.ConnectionRefused': warnLine.failedAttempts });
    expect(String(warnLine.lastError)).toMatch(/ECONNREFUSED/);

    // Retries go on (several per second) without another line at warn or above.
    await new Promise((r) => setTimeout(r, 2_500));
    const during = parsed(child);
    expect(during.filter((l) => (l.level as number) >= 40).map((l) => l.msg)).toEqual([FAILING]);

    // The endpoint comes back: the simulator on the same port, knowing both batches.
    sim = await startSimulator({ port, seed: 5 });
    for (const applyId of ['8100001', '8100002']) {
      sim.control.addBatch({ applyId, productKey: 'a1SimProduct1', mode: 'random', count: 2, outcome: 'never' });
    }
    const recoveredLine = JSON.parse(await child.waitFor(new RegExp(RECOVERED), 10_000)) as Record<string, unknown>;
    expect(recoveredLine).toMatchObject({ level: 30, component: 'api', action: 'QueryBatchRegisterDeviceStatus', endpoint, recoveredWith: 'success' });
    expect(recoveredLine.failedAttempts as number).toBeGreaterThan(warnLine.failedAttempts as number);
    expect(recoveredLine.outageMs as number).toBeGreaterThanOrEqual((warnLine.failingForMs as number) + 2_500);

    // Polling goes on against the simulator: still one line of each, and nothing else at warn or above.
    const answeredBefore = sim.control.requestLog().length;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(sim.control.requestLog().length).toBeGreaterThan(answeredBefore);
    const all = parsed(child);
    expect(all.filter((l) => l.msg === FAILING)).toHaveLength(1);
    expect(all.filter((l) => l.msg === RECOVERED)).toHaveLength(1);
    expect(all.filter((l) => (l.level as number) >= 40).map((l) => l.msg)).toEqual([FAILING]);

    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  }, 60_000);
});
