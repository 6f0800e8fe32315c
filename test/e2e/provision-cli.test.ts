/**
 * `iot-batch-watcher provision` against the simulator through the CLI (issue #17): a names job with invalid,
 * duplicate and already existing names at a small chunk size; the factory CSV holds each valid name exactly
 * once with the simulator's secret and IotId, every rejected name is in the report with its reason, and a
 * second run submits nothing again.
 */
import { lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

const PK = 'a1SimProv';

describe('provision through the CLI', () => {
  let sim: SimulatorHandle;
  let dir: string;
  let config: string;
  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 20, seed: 4 });
    sim.control.addProduct(PK, ['taken-0001']);
    dir = await mkdtemp(join(tmpdir(), 'ibw-provision-cli-'));
    config = join(dir, 'w.yaml');
    await writeFile(
      config,
      [
        'alibaba:',
        '  regionId: cn-shanghai',
        `  endpoint: ${sim.url}`,
        'polling: { initialDelay: 50ms, maxDelay: 300ms }',
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')} }`,
        'http: { listen: "off" }',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates each valid name once, reports every rejected name, and resumes without submitting again', async () => {
    const valid = Array.from({ length: 7 }, (_, i) => `line4-${String(i).padStart(4, '0')}`);
    const rows = ['DeviceName,Nickname', valid[0], 'bad', valid[1], valid[2], `${valid[0]},Again`, 'taken-0001', ...valid.slice(3), 'has space'];
    await writeFile(join(dir, 'line-4.csv'), `${rows.join('\n')}\n`);
    const args = ['provision', '--config', config, '--product-key', PK, '--devices', join(dir, 'line-4.csv'), '--chunk-size', '3', '--name', 'line-4'];
    const run = runCli(args, SIM_ENV, dir);
    const { code } = await run.exited;
    expect(code, run.stderr.join('')).toBe(0);
    const report = JSON.parse(run.stdout.join('\n')) as {
      outcome: string;
      chunks: { applyId: string; state: string }[];
      rejected: { deviceName: string; code: string; reason: string }[];
      devices: { deviceName: string }[];
    };
    expect(report.outcome).toBe('complete');
    expect(report.chunks.map((c) => c.state)).toEqual(['created', 'created', 'created']);
    expect(report.rejected.map((r) => [r.deviceName, r.code])).toEqual([
      ['bad', 'invalid_name'],
      [valid[0], 'duplicate_name'],
      ['has space', 'invalid_name'],
      ['taken-0001', 'alibaba_refused'],
    ]);
    expect(report.rejected.find((r) => r.deviceName === 'taken-0001')?.reason).toContain('already exists');

    // Names went in the body, every time.
    const checks = sim.control.requestLog().filter((l) => l.action === 'BatchCheckDeviceNames');
    expect(checks.length).toBeGreaterThanOrEqual(3);
    expect(checks.every((l) => (l as { deviceNamesIn?: string }).deviceNamesIn === 'body')).toBe(true);

    const csvFile = join(dir, 'results', PK, 'provision-line-4.csv');
    expect((await lstat(csvFile)).mode & 0o777).toBe(0o600);
    const lines = (await readFile(csvFile, 'utf8')).trimEnd().split('\r\n');
    expect(lines[0]).toBe('ProductKey,DeviceName,DeviceSecret,IotId');
    const simDevices = new Map(sim.control.devices(PK).map((d) => [d.deviceName, d]));
    const csvRows = lines.slice(1).map((l) => l.split(','));
    expect(csvRows.map((r) => r[1]).sort()).toEqual([...valid].sort());
    for (const [pk, name, secret, iotId] of csvRows) {
      expect([pk, secret, iotId]).toEqual([PK, simDevices.get(name!)?.deviceSecret, simDevices.get(name!)?.iotId]);
    }
    // No device created twice in the product.
    expect(sim.control.devices(PK).filter((d) => d.deviceName.startsWith('line4-'))).toHaveLength(valid.length);

    // Running again submits nothing: every name already has its chunk.
    const before = sim.control.requestLog().filter((l) => l.action === 'BatchCheckDeviceNames').length;
    const again = runCli(args, SIM_ENV, dir);
    expect((await again.exited).code, again.stderr.join('')).toBe(0);
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchCheckDeviceNames').length).toBe(before);
  }, 120_000);

  it('parks a count chunk whose BatchRegisterDevice was sent when the process died, and never sends it again', async () => {
    // The answer is held for 3 s (simulated 60 s at timeScale 20), then the simulator creates the devices anyway.
    sim.control.setFaults({ script: [{ action: 'BatchRegisterDevice', fault: 'slow' }], rates: { slowMs: 60_000 } });
    const args = ['provision', '--config', config, '--product-key', PK, '--count', '4', '--name', 'spare'];
    const first = runCli(args, SIM_ENV, dir);
    const stateFile = join(dir, 'state', 'provision', 'spare.json');
    for (let i = 0; i < 200; i += 1) {
      const text = await readFile(stateFile, 'utf8').catch(() => '');
      if (text.includes('"submitting"')) break;
      await sleep(25);
    }
    expect(await readFile(stateFile, 'utf8')).toContain('"submitting"');
    await sleep(500); // the request is on the wire, its answer held back
    first.proc.kill('SIGKILL');
    await first.exited;
    sim.control.setFaults({});

    const second = runCli(args, SIM_ENV, dir);
    expect((await second.exited).code, second.stderr.join('')).toBe(3);
    const report = JSON.parse(second.stdout.join('\n')) as { outcome: string; chunks: { state: string; reason: string }[] };
    expect(report.outcome).toBe('incomplete');
    expect(report.chunks).toHaveLength(1);
    expect(report.chunks[0]?.state).toBe('submission_unknown');
    expect(report.chunks[0]?.reason).toMatch(/may or may not have reached Alibaba .*provision resolve/);
    await sleep(3500); // past the held answer: the simulator made the batch
    const registers = sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice');
    expect(registers).toHaveLength(1);
    // A third run does not send it either.
    const third = runCli(args, SIM_ENV, dir);
    expect((await third.exited).code).toBe(3);
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice')).toHaveLength(1);

    // The documented resolution: adopt the ApplyId the console shows; the next run watches it, sends nothing.
    const applyId = (registers[0] as { applyId?: string | null }).applyId;
    expect(applyId).toMatch(/^[0-9]+$/);
    const resolve = runCli(['provision', 'resolve', '--config', config, '--name', 'spare', '--chunk', '0', '--apply-id', applyId!], SIM_ENV, dir);
    expect((await resolve.exited).code, resolve.stderr.join('')).toBe(0);
    const fourth = runCli(args, SIM_ENV, dir);
    expect((await fourth.exited).code, fourth.stderr.join('')).toBe(0);
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice')).toHaveLength(1);
    const csv = (await readFile(join(dir, 'results', PK, 'provision-spare.csv'), 'utf8')).trimEnd().split('\r\n');
    expect(csv).toHaveLength(5);
  }, 120_000);

  it('runs the file\'s provision entry by --name: a count job submitted once, its CSV of the random names', async () => {
    const withJob = join(dir, 'with-job.yaml');
    await writeFile(withJob, `${await readFile(config, 'utf8')}provision:\n  - { name: rnd, productKey: ${PK}, count: 5, chunkSize: 2 }\n`);
    const run = runCli(['provision', '--config', withJob, '--name', 'rnd'], SIM_ENV, dir);
    expect((await run.exited).code, run.stderr.join('')).toBe(0);
    const lines = (await readFile(join(dir, 'results', PK, 'provision-rnd.csv'), 'utf8')).trimEnd().split('\r\n');
    expect(lines).toHaveLength(6);
    expect((JSON.parse(run.stdout.join('\n')) as { chunks: unknown[] }).chunks).toHaveLength(3);
    const simDevices = new Map(sim.control.devices(PK).map((d) => [d.deviceName, d]));
    for (const [, name, secret] of lines.slice(1).map((l) => l.split(','))) expect(simDevices.get(name!)?.deviceSecret).toBe(secret);
  }, 120_000);
});
