/**
 * The simulator's HTTP control API (README "Driving the simulator by hand"): batches of both kinds, scheduled
 * batches, products, QPS and faults, with plain JSON over HTTP.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import { runSimulatorCli, startSimulator, type SimulatorHandle } from '../../../src/simulator/index.js';
import { type Loose, rawCall } from './helpers.js';

let sim: SimulatorHandle | undefined;
let clock: ManualClock;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function post(path: string, body: unknown): Promise<{ status: number; json: Loose }> {
  const res = await fetch(`${sim!.url}${path}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function get(path: string): Promise<{ status: number; json: Loose }> {
  const res = await fetch(`${sim!.url}${path}`);
  return { status: res.status, json: await res.json() };
}

const status = async (pk: string, applyId: string) =>
  (await rawCall(sim!.port, { action: 'QueryBatchRegisterDeviceStatus', params: { ProductKey: pk, ApplyId: applyId }, now: clock.now() })).json;

describe('control API', () => {
  it('creates a check batch and a register batch that the real status action then reports', async () => {
    clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
    sim = await startSimulator({ port: 0, clock, controlApi: true });
    const check = await post('/_sim/batches', { kind: 'check', applyId: '5100001', productKey: 'a1SimProduct1', deviceNames: ['hand-01', 'hand-02'], registered: true, checkMs: 1000, createMs: 2000 });
    expect(check.status).toBe(201);
    expect(check.json.batches[0]).toMatchObject({ applyId: '5100001', mode: 'custom', status: 'CHECK', deviceCount: 2 });
    const register = await post('/_sim/batches', { kind: 'register', productKey: 'a1SimProduct2', count: 3, createMs: 1500 });
    expect(register.status).toBe(201);
    const registerId = register.json.batches[0].applyId as string;
    expect(register.json.batches[0]).toMatchObject({ mode: 'random', status: 'CREATE' });

    expect((await status('a1SimProduct1', '5100001')).Data.Status).toBe('CHECK');
    await clock.advance(1000);
    expect((await status('a1SimProduct1', '5100001')).Data.Status).toBe('CREATE');
    await clock.advance(2000);
    expect((await status('a1SimProduct1', '5100001')).Data.Status).toBe('CREATE_SUCCESS');
    expect((await status('a1SimProduct2', registerId)).Data.Status).toBe('CREATE_SUCCESS');

    const list = await get('/_sim/batches');
    expect(list.json.map((b: { applyId: string }) => b.applyId)).toEqual(['5100001', registerId]);
    expect((await get('/_sim/batches/5100001')).json).toMatchObject({ status: 'CREATE_SUCCESS', validNames: ['hand-01', 'hand-02'] });
    expect((await get('/_sim/batches/5199999')).status).toBe(404);
  });

  it('schedules batches (afterMs, simulated) and accepts an array as a script', async () => {
    clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
    sim = await startSimulator({ port: 0, clock, controlApi: true, timeScale: 2 });
    const script = await post('/_sim/batches', [
      { kind: 'register', applyId: '5200001', productKey: 'a1SimProduct1', count: 1 },
      { kind: 'register', applyId: '5200002', productKey: 'a1SimProduct1', count: 1, afterMs: 10_000 },
    ]);
    expect(script.status).toBe(201);
    expect(script.json.batches[1]).toEqual({ scheduled: true, afterMs: 10_000, applyId: '5200002' });
    expect((await get('/_sim/batches/5200002')).status).toBe(404);
    await clock.advance(4_999); // time scale 2: 10 000 simulated ms are 5 000 ms
    expect((await get('/_sim/batches/5200002')).status).toBe(404);
    await clock.advance(1);
    expect((await get('/_sim/batches/5200002')).json).toMatchObject({ applyId: '5200002', status: 'CREATE' });
  });

  it('refuses bad input with the reason, and drives products, QPS and faults', async () => {
    clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
    sim = await startSimulator({ port: 0, clock, controlApi: true });
    const invalid = await post('/_sim/batches', { kind: 'check', productKey: 'a1SimProduct1' });
    expect(invalid.status).toBe(400);
    expect(invalid.json.issues).toContainEqual({ path: 'deviceNames', message: 'required when mode is custom' });
    expect((await post('/_sim/batches', { kind: 'both', productKey: 'p' })).json.error).toMatch(/kind: expected "check" or "register"/);
    expect((await post('/_sim/batches', '{not json')).status).toBe(400);
    await post('/_sim/batches', { kind: 'register', applyId: '5300001', productKey: 'a1SimProduct1', count: 1 });
    expect((await post('/_sim/batches', { kind: 'register', applyId: '5300001', productKey: 'a1SimProduct1', count: 1 })).status).toBe(409);
    expect((await get('/_sim/nothing')).status).toBe(404);
    expect((await get('/_sim/')).json.routes.length).toBeGreaterThan(3);

    expect((await post('/_sim/products', { productKey: 'a1HandMade', devices: ['old-1'] })).status).toBe(201);
    const ok = await rawCall(sim.port, { action: 'QueryBatchRegisterDeviceStatus', params: { ProductKey: 'a1HandMade', ApplyId: '1' }, now: clock.now() });
    expect(ok.json.Code).not.toBe('iot.prod.NotExistedProduct');

    expect((await post('/_sim/qps', { QueryBatchRegisterDeviceStatus: 1 })).status).toBe(200);
    await clock.advance(2000); // a fresh one-second window
    const first = await status('a1SimProduct1', '5300001');
    const second = await status('a1SimProduct1', '5300001');
    expect(first.Success).toBe(true);
    expect(second.Code).toBe('Throttling.User');
    expect((await post('/_sim/qps', { NoSuchAction: 1 })).status).toBe(400);
    await post('/_sim/qps', { QueryBatchRegisterDeviceStatus: 0 });

    expect((await post('/_sim/faults', { script: [{ action: 'QueryBatchRegisterDeviceStatus', fault: 'systemException' }] })).status).toBe(200);
    expect((await status('a1SimProduct1', '5300001')).Code).toBe('iot.system.SystemException');
    expect((await status('a1SimProduct1', '5300001')).Success).toBe(true);
  });

  it('is off unless asked for (the library default), and on in the simulator command', async () => {
    sim = await startSimulator({ port: 0 });
    const res = await fetch(`${sim.url}/_sim/batches`);
    expect(((await res.json()) as { Code?: string }).Code).toBeDefined(); // the gateway's error shape, not the control API
    await sim.close();
    sim = undefined;

    const stop = new AbortController();
    let out = '';
    const running = runSimulatorCli(['--port', '0'], { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true }, env: { LOG_LEVEL: 'silent' }, signal: stop.signal });
    while (!/listening on (\S+)/.test(out)) await new Promise((r) => setTimeout(r, 20));
    const url = /listening on (\S+)/.exec(out)![1]!;
    const created = await fetch(`${url}/_sim/batches`, { method: 'POST', body: JSON.stringify({ kind: 'check', productKey: 'a1SimProduct1', deviceNames: ['x-01'] }) });
    expect(created.status).toBe(201);
    expect(((await (await fetch(`${url}/_sim/batches`)).json()) as unknown[]).length).toBe(1);
    stop.abort();
    expect(await running).toBe(0);
  });
});
