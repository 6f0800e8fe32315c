/**
 * Fault injection: every scripted fault kind, and rated faults that repeat with the same seed.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import { startSimulator, type FaultOptions, type SimulatorHandle, type SimulatorOptions } from '../../../src/simulator/index.js';
import { rawCall, type RawReply } from './helpers.js';

let sim: SimulatorHandle | undefined;
let clock: ManualClock;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function start(extra: SimulatorOptions = {}): Promise<SimulatorHandle> {
  clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
  sim = await startSimulator({ port: 0, clock, qps: { QueryBatchRegisterDeviceStatus: 0, BatchRegisterDevice: 0 }, ...extra });
  return sim;
}

const poll = (applyId: string): Promise<RawReply> =>
  rawCall(sim!.port, { action: 'QueryBatchRegisterDeviceStatus', params: { ProductKey: 'a1SimProduct1', ApplyId: applyId }, now: clock.now() });

describe('scripted faults', () => {
  it('injects each fault kind on the scripted request only', async () => {
    const s = await start();
    const applyId = s.control.addBatch({ applyId: '777001', productKey: 'a1SimProduct1', mode: 'random', count: 1, createMs: 0 });
    s.control.setFaults({
      script: [
        { action: 'QueryBatchRegisterDeviceStatus', applyId, nth: 2, times: 2, fault: 'serviceUnavailable' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 4, fault: 'internalError' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 5, fault: 'systemException' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 6, fault: 'throttle' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 7, fault: 'reset' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 8, fault: 'malformed' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 9, fault: 'truncated' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 10, fault: 'statusBackwards' },
        { action: 'QueryBatchRegisterDeviceStatus', nth: 11, fault: 'unknownStatus' },
        { action: 'BatchRegisterDevice', fault: 'reset' },
      ],
    });
    const replies: RawReply[] = [];
    for (let i = 0; i < 12; i += 1) replies.push(await poll(applyId));
    const [ok1, su1, su2, ie, se, th, reset, malformed, truncated, backwards, unknown, ok2] = replies;
    expect(ok1!.json.Data.Status).toBe('CREATE_SUCCESS');
    expect([su1!.status, su1!.json.Code, su2!.status]).toEqual([503, 'ServiceUnavailable', 503]);
    expect([ie!.status, ie!.json.Code]).toEqual([500, 'InternalError']);
    expect([se!.status, se!.json.Success, se!.json.Code]).toEqual([200, false, 'iot.system.SystemException']);
    expect([th!.status, th!.json.Code]).toEqual([400, 'Throttling.User']);
    expect(reset!.status).toBe(0);
    expect(malformed!.status).toBe(200);
    expect(malformed!.json).toBeUndefined();
    expect(malformed!.text).not.toBe('');
    expect(truncated!.status).toBe(0);
    expect(backwards!.json.Data.Status).toBe('CREATE');
    expect(unknown!.json.Data.Status).toBe('PROCESSING');
    expect(ok2!.json.Data.Status).toBe('CREATE_SUCCESS');
    // A different action has its own counter: its first request is reset, the second is not.
    const reg = (): Promise<RawReply> => rawCall(s.port, { action: 'BatchRegisterDevice', params: { ProductKey: 'a1SimProduct1', Count: '1' }, now: clock.now() });
    expect((await reg()).status).toBe(0);
    expect((await reg()).json.Success).toBe(true);
    const outcomes = s.control.requestLog().map((e) => e.outcome);
    expect(outcomes).toEqual([
      'ok', 'ServiceUnavailable', 'ServiceUnavailable', 'InternalError', 'iot.system.SystemException', 'Throttling.User',
      'reset', 'malformed', 'truncated', 'ok', 'ok', 'ok', 'reset', 'ok',
    ]);
  });

  it('delays slow replies by slowMs of (scaled) clock time', async () => {
    const s = await start({ timeScale: 2, faults: { rates: { slowMs: 8000 }, script: [{ fault: 'slow' }] } });
    const applyId = s.control.addBatch({ productKey: 'a1SimProduct1', mode: 'random', count: 1 });
    let done = false;
    const pending = poll(applyId).then((r) => {
      done = true;
      return r;
    });
    while (clock.pendingSleeps() === 0) await new Promise((r) => setTimeout(r, 5));
    expect(done).toBe(false);
    await clock.advance(3999);
    expect(done).toBe(false);
    await clock.advance(1);
    const r = await pending;
    expect(r.json.Success).toBe(true);
    expect(s.control.requestLog()[0]!.fault).toBe('slow');
  });
});

describe('rated faults', () => {
  const faults: FaultOptions = {
    seed: 42,
    rates: { serverError: 0.15, systemException: 0.1, throttle: 0.05, reset: 0.1, malformed: 0.05, truncated: 0.05 },
  };

  async function runOnce(f: FaultOptions): Promise<string[]> {
    const s = await start({ faults: f });
    const applyId = s.control.addBatch({ applyId: '888001', productKey: 'a1SimProduct1', mode: 'random', count: 1 });
    for (let i = 0; i < 60; i += 1) await poll(applyId);
    const outcomes = s.control.requestLog().map((e) => e.outcome);
    await s.close();
    sim = undefined;
    return outcomes;
  }

  it('repeats exactly with the same seed and differs with another', async () => {
    const a = await runOnce(faults);
    const b = await runOnce(faults);
    const c = await runOnce({ ...faults, seed: 43 });
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    const kinds = new Set(a);
    for (const k of ['ok', 'ServiceUnavailable', 'InternalError', 'iot.system.SystemException', 'reset']) expect(kinds).toContain(k);
    const faulty = a.filter((o) => o !== 'ok').length;
    expect(faulty).toBeGreaterThan(60 * 0.25);
    expect(faulty).toBeLessThan(60 * 0.8);
  });

  it('rejects rates that sum to more than 1', async () => {
    await expect(startSimulator({ port: 0, faults: { rates: { serverError: 0.7, reset: 0.5 } } })).rejects.toThrow(/at most 1/);
  });
});
