import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

describe('wait, status and validate', () => {
  let sim: SimulatorHandle;
  let dir: string;
  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 10 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-cmd-'));
  });
  afterAll(async () => {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('wait prints the result JSON on stdout and exits 0 for created (registering it)', async () => {
    sim.control.addBatch({ applyId: '6100001', productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['wait-0001', 'wait-0002'] });
    const child = runCli(['wait', '--product-key', 'a1SimProduct1', '--apply-id', '6100001', '--register', '--endpoint', sim.url], SIM_ENV, dir);
    const exit = await child.exited;
    expect(exit.code, child.stderr.join('')).toBe(0);
    const result = JSON.parse(child.stdout.join('\n')) as { outcome: string; devices: { deviceName: string; deviceSecret: string }[] };
    expect(result.outcome).toBe('created');
    expect(result.devices.map((d) => d.deviceName).sort()).toEqual(['wait-0001', 'wait-0002']);
    expect(sim.control.registrations('6100001')).toBe(1);
    // Logs went to stderr, and no secret is in them.
    expect(child.stderr.join('')).not.toContain(result.devices[0]!.deviceSecret);
  }, 30_000);

  it('wait exits 3 for a failed batch and 4 on timeout', async () => {
    sim.control.addBatch({ applyId: '6100002', productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['ok-0001', 'x'], outcome: 'check_failed' });
    const failed = runCli(['wait', '--product-key', 'a1SimProduct1', '--apply-id', '6100002', '--endpoint', sim.url], SIM_ENV, dir);
    expect((await failed.exited).code).toBe(3);
    expect(JSON.parse(failed.stdout.join('\n')).outcome).toBe('check_failed');
    sim.control.addBatch({ applyId: '6100003', productKey: 'a1SimProduct1', mode: 'random', count: 1, outcome: 'never' });
    const slow = runCli(['wait', '--product-key', 'a1SimProduct1', '--apply-id', '6100003', '--timeout', '2s', '--endpoint', sim.url], SIM_ENV, dir);
    expect((await slow.exited).code).toBe(4);
    expect(JSON.parse(slow.stdout.join('\n')).outcome).toBe('timed_out');
  }, 30_000);

  it('wait exits 2 on bad usage and names the missing credentials', async () => {
    const usage = runCli(['wait', '--apply-id', '1'], SIM_ENV, dir);
    expect((await usage.exited).code).toBe(2);
    const noCreds = runCli(['wait', '--product-key', 'a1SimProduct1', '--apply-id', '1', '--endpoint', sim.url], {}, dir);
    expect((await noCreds.exited).code).toBe(2);
    expect(noCreds.stderr.join('') + noCreds.stdout.join('')).toContain('ALIBABA_CLOUD_ACCESS_KEY_ID');
  }, 30_000);

  it('simulator prints its URL, answers, and stops cleanly on SIGTERM', async () => {
    const child = runCli(['simulator', '--port', '0'], {}, dir);
    const line = await child.waitFor(/simulator listening on http:\/\/127\.0\.0\.1:\d+/);
    const url = /http:\/\/127\.0\.0\.1:\d+/.exec(line)![0];
    const res = await fetch(`${url}/?Action=QueryBatchRegisterDeviceStatus`, { method: 'POST' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(((await res.json()) as { Code: string }).Code).toMatch(/^Missing|^Incomplete|^InvalidAccessKeyId/);
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  }, 30_000);

  it('status --json lists the ledger while the daemon runs; validate checks files', async () => {
    sim.control.addBatch({ applyId: '6100004', productKey: 'a1SimProduct2', mode: 'random', count: 1, outcome: 'never' });
    const configFile = join(dir, 'w.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')} }`,
        'http: { listen: "off" }',
        'batches:',
        '  - { applyId: "6100004", productKey: a1SimProduct2, name: st }',
        '',
      ].join('\n'),
    );
    // validate checks the environment too (issue #13.6): with the credentials run gets.
    const validate = runCli(['validate', '--config', configFile], SIM_ENV, dir);
    expect((await validate.exited).code).toBe(0);
    const daemon = runCli(['run', '--config', configFile], SIM_ENV, dir);
    await daemon.waitFor(/iot-batch-watcher running/);
    await new Promise((r) => setTimeout(r, 500));
    const status = runCli(['status', '--config', configFile, '--json'], {}, dir);
    expect((await status.exited).code).toBe(0);
    const rows = JSON.parse(status.stdout.join('\n')) as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ applyId: '6100004', productKey: 'a1SimProduct2', name: 'st', status: 'CREATE', outcome: null });
    for (const key of ['polls', 'firstSeenAt', 'settledAt', 'nextPollAt', 'lastError']) expect(rows[0]).toHaveProperty(key);
    const table = runCli(['status', '--config', configFile], {}, dir);
    expect((await table.exited).code).toBe(0);
    expect(table.stdout[0]).toMatch(/^applyId\s+productKey\s+name\s+status\s+outcome\s+polls/);
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
    await writeFile(join(dir, 'bad.yaml'), 'alibaba: { regionId: cn-shanghai }\nbatches:\n  - { applyId: "1", productKey: p, bogus: 1 }\n');
    const bad = runCli(['validate', '--config', join(dir, 'bad.yaml')], {}, dir);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stdout.join('\n')).toMatch(/bad\.yaml:3:\d+: batches\[0\]\.bogus/);
  }, 40_000);
});
