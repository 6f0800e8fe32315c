/**
 * The simulator's IoT behaviour and gateway checks, driven by raw signed requests and a manual clock.
 */
import { connect } from 'node:net';

import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import { startSimulator, type SimulatorHandle, type SimulatorOptions } from '../../../src/simulator/index.js';
import { rawCall, send, type Loose, type RawCall, type RawReply } from './helpers.js';

let sim: SimulatorHandle | undefined;
let clock: ManualClock;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function start(extra: SimulatorOptions = {}): Promise<SimulatorHandle> {
  clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
  sim = await startSimulator({ port: 0, clock, ...extra });
  return sim;
}

function call(action: string, params: Record<string, string> = {}, extra: Partial<RawCall> = {}): Promise<RawReply> {
  if (sim === undefined) throw new Error('no simulator');
  return rawCall(sim.port, { action, params, now: clock.now(), ...extra });
}

const status = async (pk: string, applyId: string): Promise<Loose> =>
  (await call('QueryBatchRegisterDeviceStatus', { ProductKey: pk, ApplyId: applyId })).json;

describe('IoT business rules', () => {
  it('answers iot.device.DeviceApplyIsNotFound for an unknown ApplyId and iot.prod.NotExistedProduct for an unknown product', async () => {
    await start();
    for (const [action, params] of [
      ['QueryBatchRegisterDeviceStatus', { ProductKey: 'a1SimProduct1', ApplyId: '99999' }],
      ['QueryPageByApplyId', { ApplyId: '99999' }],
      ['BatchRegisterDeviceWithApplyId', { ProductKey: 'a1SimProduct1', ApplyId: '99999' }],
    ] as const) {
      const r = await call(action, params);
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ Success: false, Code: 'iot.device.DeviceApplyIsNotFound' });
      expect(typeof r.json.ErrorMessage).toBe('string');
    }
    const r = await call('BatchRegisterDevice', { ProductKey: 'a1Nope', Count: '3' });
    expect(r.json).toMatchObject({ Success: false, Code: 'iot.prod.NotExistedProduct' });
    // An ApplyId of another product is not found either.
    const created = await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '1' });
    const applyId = /"ApplyId":(\d+)/.exec(created.text)![1]!;
    expect((await status('a1SimProduct2', applyId)).Code).toBe('iot.device.DeviceApplyIsNotFound');
    const bad = await call('QueryPageByApplyId', { ApplyId: 'abc' });
    expect(bad.json.Code).toBe('iot.device.InvalidFormattedApplyId');
  });

  it('applies the name rules synchronously and in the asynchronous check', async () => {
    const s = await start();
    s.control.addProduct('a1SimProduct1', ['taken-0001']);
    const names = ['abc', 'x'.repeat(33), 'y'.repeat(32), 'ok-_.@:9', 'bad name', 'hash#1', 'taken-0001', 'dup-0001', 'dup-0001', '中文名称'];
    const params: Record<string, string> = { ProductKey: 'a1SimProduct1' };
    names.forEach((n, i) => (params[`DeviceName.${i + 1}`] = n));
    const r = await call('BatchCheckDeviceNames', params);
    expect(r.json.Success).toBe(true);
    expect(r.json.Data.InvalidDeviceNameList.InvalidDeviceName).toEqual(['abc', 'x'.repeat(33), 'bad name', 'hash#1', '中文名称']);
    const applyId = /"ApplyId":(\d+)/.exec(r.text)![1]!;
    expect((await status('a1SimProduct1', applyId)).Data.Status).toBe('CHECK');
    await clock.advance(2999);
    expect((await status('a1SimProduct1', applyId)).Data.Status).toBe('CHECK');
    await clock.advance(1);
    const data = (await status('a1SimProduct1', applyId)).Data;
    expect(data.Status).toBe('CHECK_FAILED');
    expect(data.ValidList.Name).toEqual(['y'.repeat(32), 'ok-_.@:9']);
    expect(data.InvalidList.Name.sort()).toEqual(['abc', 'bad name', 'dup-0001', 'hash#1', 'taken-0001', 'x'.repeat(33), '中文名称'].sort());
    const details = data.InvalidDetailList.invalidDetailList;
    expect(details.find((d: Loose) => d.DeviceName === 'taken-0001').ErrorMsg).toMatch(/already exists/);
    expect(details.find((d: Loose) => d.DeviceName === 'abc').ErrorMsg).toMatch(/format/);
    expect(details.every((d: Loose) => 'NickName' in d)).toBe(true);
    const reg = await call('BatchRegisterDeviceWithApplyId', { ProductKey: 'a1SimProduct1', ApplyId: applyId });
    expect(reg.json).toMatchObject({ Success: false, Code: 'iot.device.IncorrentDeviceApplyInfo' });
  });

  it('prefers DeviceNameList.N.DeviceName over DeviceName.N and reports bad nicknames', async () => {
    await start();
    const r = await call('BatchCheckDeviceNames', {
      ProductKey: 'a1SimProduct1',
      'DeviceName.1': 'ignored-0001',
      'DeviceNameList.1.DeviceName': 'listed-0001',
      'DeviceNameList.1.DeviceNickname': 'x',
      'DeviceNameList.2.DeviceName': 'listed-0002',
      'DeviceNameList.2.DeviceNickname': '客厅灯_01',
    });
    expect(r.json.Data.InvalidDeviceNicknameList.InvalidDeviceNickname).toEqual(['x']);
    const applyId = /"ApplyId":(\d+)/.exec(r.text)![1]!;
    await clock.advance(3000);
    await call('BatchRegisterDeviceWithApplyId', { ProductKey: 'a1SimProduct1', ApplyId: applyId });
    await clock.advance(5000);
    expect(sim!.control.batch(applyId)!.validNames).toEqual(['listed-0001', 'listed-0002']);
    const empty = await call('BatchCheckDeviceNames', { ProductKey: 'a1SimProduct1' });
    expect(empty.json.Success).toBe(false);
  });

  it('rejects a second BatchRegisterDeviceWithApplyId and counts every call', async () => {
    const s = await start();
    const r = await call('BatchCheckDeviceNames', { ProductKey: 'a1SimProduct1', 'DeviceName.1': 'twice-0001' });
    const applyId = /"ApplyId":(\d+)/.exec(r.text)![1]!;
    const register = (): Promise<RawReply> => call('BatchRegisterDeviceWithApplyId', { ProductKey: 'a1SimProduct1', ApplyId: applyId });
    expect((await register()).json.Code).toBe('iot.device.IncorrentDeviceApplyInfo'); // still CHECK
    await clock.advance(3000);
    const first = await register();
    expect(first.json.Success).toBe(true);
    expect(first.text).toContain(`"ApplyId":${applyId}`);
    const second = await register();
    expect(second.status).toBe(200);
    expect(second.json).toMatchObject({ Success: false, Code: 'iot.device.CreateDeviceTaskIsRunning' });
    await clock.advance(10_000);
    expect((await register()).json.Code).toMatch(/^iot\.device\./);
    expect(s.control.registrations(applyId)).toBe(4);
    expect(s.control.batch(applyId)!.status).toBe('CREATE_SUCCESS');
  });

  it('pages QueryPageByApplyId with PageSize at most 50, Total and PageCount', async () => {
    await start();
    const r = await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '120' });
    const applyId = /"ApplyId":(\d+)/.exec(r.text)![1]!;
    const early = await call('QueryPageByApplyId', { ApplyId: applyId, PageSize: '50' });
    expect(early.json.Total).toBe(0);
    await clock.advance(2000 + 20 * 120);
    const tooBig = await call('QueryPageByApplyId', { ApplyId: applyId, PageSize: '51' });
    expect(tooBig.json).toMatchObject({ Success: false, Code: 'iot.common.InvalidPageParams' });
    expect((await call('QueryPageByApplyId', { ApplyId: applyId, PageSize: '0' })).json.Code).toBe('iot.common.InvalidPageParams');
    expect((await call('QueryPageByApplyId', { ApplyId: applyId, CurrentPage: '0' })).json.Code).toBe('iot.common.InvalidPageParams');
    const seen: string[] = [];
    for (let page = 1; page <= 3; page += 1) {
      const p = (await call('QueryPageByApplyId', { ApplyId: applyId, PageSize: '50', CurrentPage: String(page) })).json;
      expect(p).toMatchObject({ Success: true, Page: page, PageSize: 50, PageCount: 3, Total: 120 });
      expect(p.ApplyDeviceList.ApplyDeviceInfo).toHaveLength(page < 3 ? 50 : 20);
      seen.push(...p.ApplyDeviceList.ApplyDeviceInfo.map((d: Loose) => d.DeviceName));
    }
    expect(new Set(seen).size).toBe(120);
    const dflt = (await call('QueryPageByApplyId', { ApplyId: applyId })).json;
    expect(dflt).toMatchObject({ Page: 1, PageSize: 10, PageCount: 12, Total: 120 });
  });

  it('enforces the IotInstanceId rules', async () => {
    await start({ iotInstanceId: 'iot-sim-001' });
    const base = { ProductKey: 'a1SimProduct1', Count: '1' };
    expect((await call('BatchRegisterDevice', base)).json.Code).toBe('iot.system.InstanceNotFound');
    expect((await call('BatchRegisterDevice', { ...base, IotInstanceId: 'iot-other' })).json.Code).toBe('iot.system.InstanceNotFound');
    expect((await call('BatchRegisterDevice', { ...base, IotInstanceId: 'iot-sim-001' })).json.Success).toBe(true);
    await sim!.close();
    await start();
    expect((await call('BatchRegisterDevice', { ...base, IotInstanceId: 'iot-sim-001' })).json.Code).toBe('iot.system.InstanceNotFound');
    expect((await call('BatchRegisterDevice', base)).json.Success).toBe(true);
  });

  it('writes ApplyIds above 2^53 as exact number literals', async () => {
    const s = await start({ bigApplyIds: true });
    const ids: string[] = [];
    for (let i = 0; i < 2; i += 1) {
      const r = await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '1' });
      ids.push(/"ApplyId":(\d+)/.exec(r.text)![1]!);
    }
    const big = ids.find((id) => BigInt(id) > 2n ** 53n);
    expect(big).toBeDefined();
    expect(Number.isSafeInteger(Number(big))).toBe(false);
    const preloaded = s.control.addBatch({ applyId: '9223372036854775807', productKey: 'a1SimProduct2', mode: 'random', count: 2 });
    const r = await call('QueryBatchRegisterDeviceStatus', { ProductKey: 'a1SimProduct2', ApplyId: preloaded });
    expect(r.json.Data.Status).toBe('CREATE');
    const reply = await status('a1SimProduct1', big!);
    expect(reply.Success).toBe(true);
  });

  it('follows scenario outcomes: slow, never, status backwards once, unknown status once', async () => {
    const s = await start();
    const slow = s.control.addBatch({ productKey: 'a1SimProduct1', mode: 'random', count: 10, outcome: 'slow' });
    const never = s.control.addBatch({ productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['nev-0001'], outcome: 'never' });
    const back = s.control.addBatch({ productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['bk-0001'], registered: true, statusBackwardsOnce: true, checkMs: 1000, createMs: 1000 });
    const unknown = s.control.addBatch({ productKey: 'a1SimProduct1', mode: 'random', count: 1, unknownStatusOnce: true, createMs: 1000 });
    const seq: string[] = [];
    const poll = async (id: string): Promise<string> => (await status('a1SimProduct1', id)).Data.Status;
    seq.push(await poll(back)); // CHECK
    await clock.advance(1000);
    seq.push(await poll(back)); // CREATE (auto-registered)
    seq.push(await poll(back)); // CHECK_SUCCESS (backwards once)
    seq.push(await poll(back)); // CREATE
    await clock.advance(1000);
    seq.push(await poll(back)); // CREATE_SUCCESS
    seq.push(await poll(back));
    expect(seq).toEqual(['CHECK', 'CREATE', 'CHECK_SUCCESS', 'CREATE', 'CREATE_SUCCESS', 'CREATE_SUCCESS']);
    expect(await poll(unknown)).toBe('PROCESSING');
    expect(await poll(unknown)).toBe('CREATE_SUCCESS');
    // 2 s have passed; a normal 10-device batch would be done after 2.2 s, a slow one takes 22 s.
    await clock.advance(2200);
    expect(await poll(slow)).toBe('CREATE');
    await clock.advance(22_000 - 4200 - 1);
    expect(await poll(slow)).toBe('CREATE');
    await clock.advance(1);
    expect(await poll(slow)).toBe('CREATE_SUCCESS');
    await clock.advance(60_000);
    expect(await poll(never)).toBe('CHECK');
    await clock.advance(24 * 3600_000);
    expect(await poll(never)).toBe('CHECK');
  });
});

describe('gateway checks', () => {
  it('rejects more than 15 minutes of clock skew with InvalidTimeStamp.Expired', async () => {
    const s = await start();
    const params = { ProductKey: 'a1SimProduct1', Count: '1' };
    s.control.setClockSkewMs(14 * 60_000);
    expect((await call('BatchRegisterDevice', params)).status).toBe(200);
    s.control.setClockSkewMs(-16 * 60_000);
    for (const version of ['v1', 'v3'] as const) {
      const r = await call('BatchRegisterDevice', params, { version });
      expect(r.status).toBe(400);
      expect(r.json).toMatchObject({ Code: 'InvalidTimeStamp.Expired' });
      expect(Object.keys(r.json).sort()).toEqual(['Code', 'HostId', 'Message', 'Recommend', 'RequestId']);
    }
    s.control.setClockSkewMs(0);
    expect((await call('BatchRegisterDevice', params, { now: clock.now() - 16 * 60_000 })).json.Code).toBe('InvalidTimeStamp.Expired');
  });

  it('answers MissingParameter-style errors with HTTP 400', async () => {
    await start();
    const r = await call('QueryBatchRegisterDeviceStatus', { ProductKey: 'a1SimProduct1' });
    expect(r.status).toBe(400);
    expect(r.json.Code).toBe('MissingApplyId');
    expect((await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1' })).json.Code).toBe('MissingCount');
    const noNonce = await send(sim!.port, 'GET', '/?Action=QueryPageByApplyId&Version=2018-01-20&AccessKeyId=SimAccessKeyId&Signature=x&Timestamp=2026-01-05T10%3A00%3A00Z', {}, Buffer.alloc(0));
    expect(noNonce.status).toBe(400);
    expect(noNonce.json.Code).toBe('MissingSignatureNonce');
  });

  it('accepts V1 over GET and with a form-urlencoded body, and rejects an unknown action', async () => {
    await start();
    const params = { ProductKey: 'a1SimProduct1', Count: '2' };
    expect((await call('BatchRegisterDevice', params, { version: 'v1', method: 'GET' })).json.Success).toBe(true);
    expect((await call('BatchRegisterDevice', params, { version: 'v1', method: 'POST', form: true })).json.Success).toBe(true);
    expect((await call('BatchRegisterDevice', params, { version: 'v3', method: 'GET' })).json.Success).toBe(true);
    const unknown = await call('DeleteEverything', {});
    expect(unknown.status).toBe(404);
    expect(unknown.json.Code).toBe('InvalidApi.NotFound');
    expect((await call('BatchRegisterDevice', params, { apiVersion: '2017-04-20' })).json.Code).toBe('InvalidApi.NotFound');
  });

  it('accepts issued STS tokens (V1 SecurityToken, V3 x-acs-security-token) until they expire', async () => {
    const s = await start();
    const sts = s.control.issueStsToken(60_000);
    const params = { ProductKey: 'a1SimProduct1', Count: '1' };
    const keys = { accessKeyId: sts.accessKeyId, accessKeySecret: sts.accessKeySecret, securityToken: sts.securityToken };
    expect((await call('BatchRegisterDevice', params, { ...keys, version: 'v1' })).json.Success).toBe(true);
    expect((await call('BatchRegisterDevice', params, { ...keys, version: 'v3' })).json.Success).toBe(true);
    const { securityToken: _omit, ...noToken } = keys;
    expect((await call('BatchRegisterDevice', params, noToken)).json.Code).toBe('MissingSecurityToken');
    await clock.advance(60_001);
    expect((await call('BatchRegisterDevice', params, keys)).json.Code).toBe('InvalidSecurityToken.Expired');
  });

  it('refuses connections while down and comes back on the same port', async () => {
    const s = await start();
    const port = s.port;
    await s.control.setDown(true);
    const r = await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '1' });
    expect(r.status).toBe(0);
    expect(r.text).toMatch(/ECONNREFUSED/);
    await s.control.setDown(false);
    const again = await rawCall(port, { action: 'BatchRegisterDevice', params: { ProductKey: 'a1SimProduct1', Count: '1' }, now: clock.now() });
    expect(again.json.Success).toBe(true);
  });

  it('survives malformed requests and keeps serving', async () => {
    const s = await start();
    const port = s.port;
    const replies = [
      await send(port, 'POST', '/', {}, Buffer.alloc(0)),
      await send(port, 'POST', '/?%ZZ=%E0%A4%A&Action', {}, Buffer.from('\x00\x01garbage')),
      await send(port, 'POST', '/', { authorization: 'ACS3-HMAC-SHA256 nonsense' }, Buffer.alloc(0)),
      await send(port, 'POST', '/', { authorization: 'ACS3-HMAC-SHA256 Credential=SimAccessKeyId,SignedHeaders=host,Signature=00' }, Buffer.alloc(0)),
      await send(port, 'PUT', '/', {}, Buffer.alloc(0)),
      await send(port, 'POST', '/', { 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from('%%%&&&==')),
    ];
    for (const r of replies) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(typeof r.json.Code).toBe('string');
    }
    await new Promise<void>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => sock.end('THIS IS NOT HTTP\r\n\r\n'));
      sock.on('close', () => resolve());
      sock.on('error', () => resolve());
      sock.resume();
    });
    const ok = await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '1' });
    expect(ok.json.Success).toBe(true);
    expect(s.control.requestLog().filter((e) => e.outcome === 'ok')).toHaveLength(1);
  });

  it('logs every request through pino without secrets, tokens or device secrets', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (l: string) => void lines.push(l) });
    const s = await start({ logger });
    const sts = s.control.issueStsToken();
    await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '3' }, { ...sts, version: 'v1' });
    await call('BatchRegisterDevice', { ProductKey: 'a1SimProduct1', Count: '3' }, { accessKeySecret: 'wrong' });
    await clock.advance(10_000);
    const applyId = s.control.requestLog()[0]!.applyId!;
    const page = await call('QueryPageByApplyId', { ApplyId: applyId });
    const deviceSecret: string = page.json.ApplyDeviceList.ApplyDeviceInfo[0].DeviceSecret;
    const text = lines.join('');
    expect(text).toContain('simulator request');
    expect(text).toContain('SignatureDoesNotMatch');
    for (const secret of ['SimAccessKeySecret', sts.accessKeySecret, sts.securityToken, deviceSecret]) expect(text).not.toContain(secret);
  });
});
