/**
 * The daemon runs the `provision` entries of its file (issue #17), against the simulator through the CLI:
 * - 2,500 valid names plus invalid and duplicate rows at chunk size 1,000, the daemon SIGKILLed at seeded random
 *   moments and inside submission windows (the simulator holds the check's answer): the CSV holds each valid name
 *   once with the simulator's secret and IotId, every rejected name is in the report with its reason, no ApplyId
 *   registered twice, no device twice, every check carried its names in the body; then hot reload: appended names
 *   alone are submitted, a removed entry submits nothing more, an added one runs at once (the file watch).
 * - A count job killed while its BatchRegisterDevice was on the wire: parked `submission_unknown`, never sent again.
 *   One killed while nothing was on the wire (a throttled submission waiting for its retry): submitted once.
 */
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../src/core/clock.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';

const PK = 'a1SimFleet';

interface Report {
  settled: boolean;
  outcome: string;
  summary: { chunks: { total: number; settled: number }; devices: { requested: number; created: number; rejected: number } };
  chunks: { index: number; requested: number; applyId: string | null; state: string; reason: string | null }[];
  rejected: { deviceName: string | null; code: string; reason: string }[];
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('the daemon runs provision entries', () => {
  let sim: SimulatorHandle;
  let dir: string;
  const children: Child[] = [];
  const start = (config: string): Child => {
    const c = runCli(['run', '--config', config], SIM_ENV, dir);
    children.push(c);
    return c;
  };
  const kill = async (c: Child): Promise<void> => {
    c.proc.kill('SIGKILL');
    expect((await c.exited).signal).toBe('SIGKILL');
  };

  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 20, seed: 7 });
    sim.control.addProduct(PK);
    dir = await mkdtemp(join(tmpdir(), 'ibw-provision-daemon-'));
  });
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });

  const yaml = (stateDir: string, jobs: string[]): string =>
    [
      `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
      'polling: { initialDelay: 100ms, maxDelay: 500ms }',
      'rateLimit: { statusQps: 20, pageQps: 20, concurrency: 8 }',
      `state: { dir: ${join(dir, stateDir)} }`,
      `output: { resultsDir: ${join(dir, 'results')}, eventsFile: ${join(dir, `${stateDir}-events.jsonl`)} }`,
      'http: { listen: "off" }',
      ...(jobs.length > 0 ? ['provision:', ...jobs] : []),
      '',
    ].join('\n');

  it('provisions 2,500 names exactly once through SIGKILLs inside and outside submission windows, then follows the file', async () => {
    const valid = Array.from({ length: 2500 }, (_, i) => `fleet-${String(i).padStart(5, '0')}`);
    const invalid = ['bad', 'has space', 'x'.repeat(33), 'semi;colon'];
    const duplicates = [valid[10]!, valid[1500]!, valid[2499]!];
    const rows = ['DeviceName,Nickname', ...valid.slice(0, 1200), ...invalid.slice(0, 2), ...duplicates, ...valid.slice(1200), ...invalid.slice(2)];
    const devicesFile = join(dir, 'fleet.csv');
    await writeFile(devicesFile, `${rows.join('\n')}\n`);
    const config = join(dir, 'fleet.yaml');
    await writeFile(config, yaml('state', [`  - { name: fleet, productKey: ${PK}, devices: ${devicesFile}, chunkSize: 1000 }`]));
    const stateFile = join(dir, 'state', 'provision', 'fleet.json');
    const reportFile = join(dir, 'results', PK, 'provision-fleet.json');

    const random = createSeededRandom(1717);
    let kills = 0;
    let windowKills = 0;
    for (let round = 0; round < 4; round += 1) {
      // Rounds 0 and 1 inside a submission window: the check of chunk `round` (the round's first or second check:
      // chunk 0 is checked again after the first kill) has its answer held 3 s (60 s simulated), then runs anyway.
      const inWindow = round < 2;
      sim.control.setFaults(inWindow ? { script: [{ action: 'BatchCheckDeviceNames', fault: 'slow', nth: round + 1 }], rates: { slowMs: 60_000 } } : {});
      const child = start(config);
      await child.waitFor(/iot-batch-watcher running/);
      if (inWindow) {
        await until(`chunk ${round} in flight`, async () => {
          const state = await readJson<{ chunks: { index: number; state: string }[] }>(stateFile);
          return state?.chunks.find((c) => c.index === round)?.state === 'submitting' ? true : null;
        }, 30_000);
        await sleep(100 + Math.floor(random.float() * 800)); // the request is on the wire, its answer held back
        windowKills += 1;
      } else {
        await sleep(200 + Math.floor(random.float() * 2500));
      }
      await kill(child);
      kills += 1;
    }
    sim.control.setFaults({});
    const last = start(config);
    await last.waitFor(/iot-batch-watcher running/);
    const report = await until('the job to settle', async () => {
      const r = await readJson<Report>(reportFile);
      return r?.settled === true ? r : null;
    }, 90_000);
    expect(kills).toBe(4);
    expect(windowKills).toBe(2);

    expect(report.outcome).toBe('complete');
    expect(report.chunks.map((c) => [c.requested, c.state])).toEqual([
      [1000, 'created'],
      [1000, 'created'],
      [500, 'created'],
    ]);
    expect(report.summary.devices).toEqual({ requested: 2500, created: 2500, rejected: invalid.length + duplicates.length });
    const rejected = new Map(report.rejected.map((r) => [r.deviceName, r]));
    for (const name of invalid) expect(rejected.get(name)?.code, name).toBe('invalid_name');
    for (const name of duplicates) expect(rejected.get(name)?.code, name).toBe('duplicate_name');
    for (const r of report.rejected) expect(r.reason.length).toBeGreaterThan(0);

    // The factory CSV: each valid name once, with the simulator's secret and IotId.
    const csv = (await readFile(join(dir, 'results', PK, 'provision-fleet.csv'), 'utf8')).trimEnd().split('\r\n');
    expect(csv[0]).toBe('ProductKey,DeviceName,DeviceSecret,IotId');
    const simDevices = new Map(sim.control.devices(PK).map((d) => [d.deviceName, d]));
    const csvRows = csv.slice(1).map((l) => l.split(','));
    expect(csvRows.map((r) => r[1]).sort()).toEqual([...valid].sort());
    for (const [pk, name, secret, iotId] of csvRows) expect([pk, secret, iotId], name).toEqual([PK, simDevices.get(name!)?.deviceSecret, simDevices.get(name!)?.iotId]);
    // No device created twice, no ApplyId registered twice, every check with its names in the body.
    expect(sim.control.devices(PK)).toHaveLength(valid.length);
    const log = sim.control.requestLog();
    const checks = log.filter((l) => l.action === 'BatchCheckDeviceNames');
    expect(checks.length).toBeGreaterThanOrEqual(3 + windowKills);
    expect(checks.every((l) => l.deviceNamesIn === 'body')).toBe(true);
    const registered = new Set(log.filter((l) => l.action === 'BatchRegisterDeviceWithApplyId').map((l) => l.applyId));
    for (const applyId of registered) expect(sim.control.registrations(applyId!), applyId!).toBe(1);
    expect([...registered].sort()).toEqual(report.chunks.map((c) => c.applyId).sort());

    // Events: each chunk's ApplyId announced, the job settled, through the events file (the outbox).
    const events = async () =>
      (await readFile(join(dir, 'state-events.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; type: string; applyId: string; job?: string });
    await until('provision.settled in the events file', async () => ((await events()).some((e) => e.type === 'provision.settled') ? true : null));
    const submitted = new Set((await events()).filter((e) => e.type === 'provision.chunk_submitted').map((e) => e.applyId));
    for (const c of report.chunks) expect(submitted.has(c.applyId!), `chunk ${c.index}`).toBe(true);

    // Hot reload: names appended to the file are submitted, alone.
    const checksBefore = checks.length;
    const more = ['fleet-late-1', 'fleet-late-2', 'fleet-late-3'];
    await appendFile(devicesFile, `${more.join('\n')}\n`);
    last.proc.kill('SIGHUP');
    const extended = await until('the appended names', async () => {
      const r = await readJson<Report>(reportFile);
      return r?.settled === true && r.summary.chunks.total === 4 ? r : null;
    });
    expect(extended.chunks.at(-1)).toMatchObject({ index: 3, requested: 3, state: 'created' });
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchCheckDeviceNames')).toHaveLength(checksBefore + 1);
    expect(sim.control.devices(PK)).toHaveLength(valid.length + more.length);

    // The entry removed from the file and another added (the file watch reloads): appending more names to the old
    // one's device file submits nothing; the new one runs at once.
    await appendFile(devicesFile, 'fleet-never-1\n');
    await writeFile(config, yaml('state', [`  - { name: extra, productKey: ${PK}, count: 2 }`]));
    await last.waitFor(/provisioning job removed from the file/);
    await until('the added job', async () => (await readJson<Report>(join(dir, 'results', PK, 'provision-extra.json')))?.outcome === 'complete');
    last.proc.kill('SIGHUP');
    await sleep(1000);
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchCheckDeviceNames')).toHaveLength(checksBefore + 1);
    expect(sim.control.devices(PK)).toHaveLength(valid.length + more.length + 2);
    last.proc.kill('SIGTERM');
    expect((await last.exited).code).toBe(0);

    // status: a row per job, and --job keeps the job's chunk batches.
    const jobs = runCli(['status', '--config', config, '--jobs', '--json'], SIM_ENV, dir);
    expect((await jobs.exited).code, jobs.stderr.join('')).toBe(0);
    expect(JSON.parse(jobs.stdout.join('\n'))).toEqual([
      { job: 'extra', productKey: PK, chunksSettled: 1, chunksTotal: 1, devicesCreated: 2, devicesRequested: 2, parked: 0 },
      { job: 'fleet', productKey: PK, chunksSettled: 4, chunksTotal: 4, devicesCreated: 2503, devicesRequested: 2503, parked: 0 },
    ]);
    const byJob = runCli(['status', '--config', config, '--job', 'fleet', '--json'], SIM_ENV, dir);
    expect((await byJob.exited).code, byJob.stderr.join('')).toBe(0);
    const chunkRows = JSON.parse(byJob.stdout.join('\n')) as { applyId: string; job: string; outcome: string }[];
    expect(chunkRows.filter((r) => r.outcome === 'created').map((r) => r.applyId).sort()).toEqual(extended.chunks.map((c) => c.applyId).sort());
    expect(chunkRows.every((r) => r.job === 'fleet')).toBe(true);
    const table = runCli(['status', '--config', config], SIM_ENV, dir);
    expect((await table.exited).code).toBe(0);
    expect(table.stdout.join('\n')).toMatch(/fleet +a1SimFleet +4\/4 +2503\/2503 +0/);

    // results --provision: the job's factory CSV and report from its stored state, as the files have them.
    const csvOut = runCli(['results', '--config', config, '--provision', 'fleet', '--format', 'csv'], SIM_ENV, dir);
    expect((await csvOut.exited).code, csvOut.stderr.join('')).toBe(0);
    expect(`${csvOut.stdout.join('\n')}\n`).toBe(await readFile(join(dir, 'results', PK, 'provision-fleet.csv'), 'utf8'));
    const jsonOut = runCli(['results', '--config', config, '--provision', 'fleet'], SIM_ENV, dir);
    expect((await jsonOut.exited).code, jsonOut.stderr.join('')).toBe(0);
    expect(JSON.parse(jsonOut.stdout.join('\n'))).toEqual([await readJson<Report>(reportFile)]);
    const none = runCli(['results', '--config', config, '--provision', 'nope'], SIM_ENV, dir);
    expect((await none.exited).code).toBe(0);
    expect(none.stdout.join('\n').trim()).toBe('[]');
    expect(none.stderr.join('')).toContain('no provisioning job named "nope"');
  }, 240_000);

  it('parks a count chunk killed on the wire and never sends it again; one killed before sending is sent once', async () => {
    const config = join(dir, 'count.yaml');
    const spareJob = `  - { name: spare, productKey: ${PK}, count: 4 }`;
    const laterJob = '  - { name: later, productKey: a1SimProduct2, count: 3 }';
    const registers = () => sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice');
    const registersBefore = registers().length;
    const spareState = join(dir, 'count-state', 'provision', 'spare.json');
    const laterState = join(dir, 'count-state', 'provision', 'later.json');

    // 1. `spare`: its BatchRegisterDevice answer is held 3 s (60 s simulated); killed while it is on the wire.
    await writeFile(config, yaml('count-state', [spareJob]));
    sim.control.setFaults({ script: [{ action: 'BatchRegisterDevice', fault: 'slow' }], rates: { slowMs: 60_000 } });
    const first = start(config);
    await first.waitFor(/iot-batch-watcher running/);
    await until('spare on the wire', async () => ((await readFile(spareState, 'utf8').catch(() => '')).includes('"submitting"') ? true : null), 30_000);
    await sleep(300);
    await kill(first);

    // 2. `later` added: its first submission is throttled (not processed), so it waits 2 s for its retry with
    // nothing on the wire; killed then. `spare` is parked at this start and sends nothing.
    await writeFile(config, yaml('count-state', [spareJob, laterJob]));
    sim.control.setFaults({ script: [{ action: 'BatchRegisterDevice', fault: 'throttle' }] });
    const second = start(config);
    await second.waitFor(/iot-batch-watcher running/);
    await until('later waiting for its retry', async () => {
      const later = await readJson<{ chunks: { state: string; reason: string | null }[] }>(laterState);
      return later?.chunks[0]?.state === 'planned' && later.chunks[0].reason?.startsWith('retrying') === true ? true : null;
    }, 30_000);
    await kill(second);
    sim.control.setFaults({});

    // 3. Both settle: later created once, spare parked and never sent again.
    const third = start(config);
    await third.waitFor(/iot-batch-watcher running/);
    const later = await until('later settled', async () => {
      const r = await readJson<Report>(join(dir, 'results', 'a1SimProduct2', 'provision-later.json'));
      return r?.settled === true ? r : null;
    });
    expect(later).toMatchObject({ outcome: 'complete', summary: { devices: { created: 3 } } });
    const spare = await until('spare parked', async () => {
      const r = await readJson<Report>(join(dir, 'results', PK, 'provision-spare.json'));
      return r?.settled === true ? r : null;
    });
    expect(spare.outcome).toBe('incomplete');
    expect(spare.chunks.map((c) => c.state)).toEqual(['submission_unknown']);
    expect(spare.chunks[0]?.reason).toMatch(/may or may not have reached Alibaba .*provision resolve/);
    await sleep(3500); // past the held answer: the simulator made that batch
    third.proc.kill('SIGHUP');
    await sleep(500);
    const sent = registers().slice(registersBefore);
    expect(sent.filter((l) => l.productKey === PK)).toHaveLength(1);
    expect(sent.filter((l) => l.productKey === 'a1SimProduct2').map((l) => l.outcome)).toEqual(['Throttling.User', 'ok']);
    expect(sim.control.devices('a1SimProduct2')).toHaveLength(3);
    const events = (await readFile(join(dir, 'count-state-events.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; job?: string });
    expect(events.some((e) => e.type === 'provision.chunk_parked' && e.job === 'spare')).toBe(true);
    expect(events.some((e) => e.type === 'provision.settled' && e.job === 'later')).toBe(true);

    // The documented resolution while the daemon runs: adopt the ApplyId, SIGHUP; the daemon watches it, sends nothing.
    const applyId = sent.find((l) => l.productKey === PK)?.applyId;
    expect(applyId).toMatch(/^[0-9]+$/);
    const resolve = runCli(['provision', 'resolve', '--config', config, '--name', 'spare', '--chunk', '0', '--apply-id', applyId!], SIM_ENV, dir);
    expect((await resolve.exited).code, resolve.stderr.join('')).toBe(0);
    third.proc.kill('SIGHUP');
    const resolved = await until('spare complete', async () => {
      const r = await readJson<Report>(join(dir, 'results', PK, 'provision-spare.json'));
      return r?.outcome === 'complete' ? r : null;
    });
    expect(resolved.summary.devices.created).toBe(4);
    expect((await readFile(join(dir, 'results', PK, 'provision-spare.csv'), 'utf8')).trimEnd().split('\r\n')).toHaveLength(5);
    expect(registers().slice(registersBefore).filter((l) => l.productKey === PK)).toHaveLength(1);
    third.proc.kill('SIGTERM');
    expect((await third.exited).code).toBe(0);
  }, 120_000);
});
