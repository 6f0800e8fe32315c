/**
 * The official SDK (@alicloud/iot20180120 + @alicloud/openapi-client) against the simulator over http on
 * loopback: both workflows with V3 (the SDK default) and V1 (`signatureAlgorithm: 'v2'`), and the documented
 * gateway errors. Explicit keys always, so the SDK's credential chain never runs.
 */
import * as IotNs from '@alicloud/iot20180120';
import * as OpenApiNs from '@alicloud/openapi-client';
import { afterEach, describe, expect, it } from 'vitest';

import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import { startSimulator, type SimulatorHandle, type SimulatorOptions } from '../../../src/simulator/index.js';
import { rawCall, SIM_AK, SIM_SECRET, type Loose } from './helpers.js';

// NOTE: both packages are CommonJS. Under Node's ESM loader `default` is `module.exports`, so the client class is
// `default.default`; vitest's interop unwraps it to `default`. Accept both. Models and Config are named exports.
const iotDefault: unknown = IotNs.default;
const IotClient = (typeof iotDefault === 'function' ? iotDefault : IotNs.default.default) as typeof IotNs.default.default;
type IotClient = InstanceType<typeof IotClient>;
const Iot = IotNs;
const OpenApiConfig = OpenApiNs.Config;

type Algo = 'v3' | 'v1';

let sim: SimulatorHandle | undefined;
let clock: ManualClock;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function start(extra: SimulatorOptions = {}): Promise<SimulatorHandle> {
  clock = createManualClock(Date.now());
  sim = await startSimulator({ port: 0, clock, ...extra });
  return sim;
}

function client(port: number, algo: Algo, keys: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string } = {}): IotClient {
  const config = new OpenApiConfig({
    accessKeyId: keys.accessKeyId ?? SIM_AK,
    accessKeySecret: keys.accessKeySecret ?? SIM_SECRET,
    ...(keys.securityToken === undefined ? {} : { securityToken: keys.securityToken, type: 'sts' }),
    endpoint: `127.0.0.1:${port}`,
    protocol: 'HTTP',
    regionId: 'cn-shanghai',
    readTimeout: 5000,
    connectTimeout: 5000,
    ...(algo === 'v1' ? { signatureAlgorithm: 'v2' } : {}),
  });
  return new IotClient(config);
}

async function sdkError(p: Promise<unknown>): Promise<Loose> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the SDK call to throw');
}

describe.each<Algo>(['v3', 'v1'])('official SDK, signature %s', (algo) => {
  it('runs the custom-name workflow: check → poll → register → poll → page', async () => {
    const s = await start();
    const c = client(s.port, algo);
    const names = ['lamp-0001', 'lamp-0002', 'lamp.03:x', 'lamp@0004'];
    const check = await c.batchCheckDeviceNames(new Iot.BatchCheckDeviceNamesRequest({ productKey: 'a1SimProduct1', deviceName: names }));
    expect(check.statusCode).toBe(200);
    expect(check.body.success).toBe(true);
    const applyId = check.body.data!.applyId!;
    expect(typeof applyId).toBe('number');
    expect(check.body.data!.invalidDeviceNameList!.invalidDeviceName).toEqual([]);

    const poll = async (): Promise<Loose> =>
      (await c.queryBatchRegisterDeviceStatus(new Iot.QueryBatchRegisterDeviceStatusRequest({ productKey: 'a1SimProduct1', applyId }))).body;
    expect((await poll()).data.status).toBe('CHECK');
    await clock.advance(3000);
    const checked = await poll();
    expect(checked.data.status).toBe('CHECK_SUCCESS');
    expect(checked.data.validList.name).toEqual([]);

    const reg = await c.batchRegisterDeviceWithApplyId(new Iot.BatchRegisterDeviceWithApplyIdRequest({ productKey: 'a1SimProduct1', applyId }));
    expect(reg.body.success).toBe(true);
    expect(reg.body.data!.applyId).toBe(applyId);
    expect((await poll()).data.status).toBe('CREATE');
    await clock.advance(2000 + 20 * names.length);
    expect((await poll()).data.status).toBe('CREATE_SUCCESS');

    const page = await c.queryPageByApplyId(new Iot.QueryPageByApplyIdRequest({ applyId, pageSize: 50, currentPage: 1 }));
    expect(page.body.success).toBe(true);
    expect(page.body.total).toBe(names.length);
    expect(page.body.pageCount).toBe(1);
    const rows = page.body.applyDeviceList!.applyDeviceInfo!;
    expect(rows.map((r: Loose) => r.deviceName)).toEqual(names);
    for (const r of rows) {
      expect(r.deviceSecret).toMatch(/^[0-9a-f]{32}$/);
      expect(r.iotId).toBeTruthy();
    }
    const log = s.control.requestLog();
    expect(log.map((e) => e.action)).toEqual([
      'BatchCheckDeviceNames',
      ...Array(2).fill('QueryBatchRegisterDeviceStatus'),
      'BatchRegisterDeviceWithApplyId',
      ...Array(2).fill('QueryBatchRegisterDeviceStatus'),
      'QueryPageByApplyId',
    ]);
    expect(new Set(log.map((e) => e.signatureVersion))).toEqual(new Set([algo]));
    expect(log.every((e) => e.outcome === 'ok')).toBe(true);
    expect(s.control.registrations(String(applyId))).toBe(1);
  });

  it('runs the random-name workflow: register → poll → page', async () => {
    const s = await start();
    const c = client(s.port, algo);
    const reg = await c.batchRegisterDevice(new Iot.BatchRegisterDeviceRequest({ productKey: 'a1SimProduct2', count: 7 }));
    expect(reg.body.success).toBe(true);
    const applyId = reg.body.data!.applyId!;
    const poll = async (): Promise<Loose> =>
      (await c.queryBatchRegisterDeviceStatus(new Iot.QueryBatchRegisterDeviceStatusRequest({ productKey: 'a1SimProduct2', applyId }))).body;
    expect((await poll()).data.status).toBe('CREATE');
    await clock.advance(2000 + 20 * 7);
    expect((await poll()).data.status).toBe('CREATE_SUCCESS');
    const page = await c.queryPageByApplyId(new Iot.QueryPageByApplyIdRequest({ applyId, pageSize: 5, currentPage: 2 }));
    expect(page.body.total).toBe(7);
    expect(page.body.pageCount).toBe(2);
    expect(page.body.page).toBe(2);
    expect(page.body.applyDeviceList!.applyDeviceInfo).toHaveLength(2);
    expect(s.control.devices('a1SimProduct2')).toHaveLength(7);
  });

  it('gets SignatureDoesNotMatch for a wrong secret and InvalidAccessKeyId.NotFound for an unknown key', async () => {
    const s = await start();
    const bad = await sdkError(
      client(s.port, algo, { accessKeySecret: 'wrong-secret' }).queryBatchRegisterDeviceStatus(
        new Iot.QueryBatchRegisterDeviceStatusRequest({ productKey: 'a1SimProduct1', applyId: 1 }),
      ),
    );
    expect(bad.code).toBe('SignatureDoesNotMatch');
    expect(bad.statusCode).toBe(400);
    expect(bad.data.HostId).toBe(`127.0.0.1:${s.port}`);
    expect(bad.data.Recommend).toContain('SignatureDoesNotMatch');
    const unknown = await sdkError(
      client(s.port, algo, { accessKeyId: 'NoSuchKey' }).batchRegisterDevice(new Iot.BatchRegisterDeviceRequest({ productKey: 'a1SimProduct1', count: 1 })),
    );
    expect(unknown.code).toBe('InvalidAccessKeyId.NotFound');
    expect(unknown.statusCode).toBe(404);
  });

  it('gets Throttling.User when the per-action QPS is exceeded', async () => {
    const s = await start({ qps: { BatchRegisterDevice: 2 } });
    const c = client(s.port, algo);
    const req = new Iot.BatchRegisterDeviceRequest({ productKey: 'a1SimProduct1', count: 1 });
    expect((await c.batchRegisterDevice(req)).body.success).toBe(true);
    expect((await c.batchRegisterDevice(req)).body.success).toBe(true);
    const err = await sdkError(c.batchRegisterDevice(req));
    expect(err.code).toBe('Throttling.User');
    expect(err.statusCode).toBe(400);
    await clock.advance(1000);
    expect((await c.batchRegisterDevice(req)).body.success).toBe(true);
  });

  it('accepts an STS token the simulator issued and rejects a forged one', async () => {
    const s = await start();
    const sts = s.control.issueStsToken();
    const ok = await client(s.port, algo, sts).batchRegisterDevice(new Iot.BatchRegisterDeviceRequest({ productKey: 'a1SimProduct1', count: 2 }));
    expect(ok.body.success).toBe(true);
    const forged = await sdkError(
      client(s.port, algo, { ...sts, securityToken: 'CAISforged' }).batchRegisterDevice(
        new Iot.BatchRegisterDeviceRequest({ productKey: 'a1SimProduct1', count: 2 }),
      ),
    );
    expect(forged.code).toBe('InvalidSecurityToken.MismatchWithAccessKey');
  });

  it('passes business errors through as Success:false with HTTP 200', async () => {
    const s = await start();
    const c = client(s.port, algo);
    const r = await c.queryBatchRegisterDeviceStatus(new Iot.QueryBatchRegisterDeviceStatusRequest({ productKey: 'a1NoSuchProduct', applyId: 5 }));
    expect(r.statusCode).toBe(200);
    expect(r.body.success).toBe(false);
    expect(r.body.code).toBe('iot.prod.NotExistedProduct');
  });
});

describe('replayed nonce', () => {
  it.each<Algo>(['v3', 'v1'])('answers SignatureNonceUsed to a %s request that reuses a nonce', async (version) => {
    const s = await start();
    const call = { action: 'QueryPageByApplyId', params: { ApplyId: '42' }, version, nonce: 'replayed-nonce-1', now: clock.now() };
    const first = await rawCall(s.port, call);
    expect(first.status).toBe(200);
    expect(first.json.Code).toBe('iot.device.DeviceApplyIsNotFound');
    const second = await rawCall(s.port, call);
    expect(second.status).toBe(400);
    expect(second.json.Code).toBe('SignatureNonceUsed');
    // 15 minutes later the gateway has forgotten the nonce (a fresh timestamp is needed too).
    await clock.advance(15 * 60 * 1000 + 1);
    const later = await rawCall(s.port, { ...call, now: clock.now() });
    expect(later.status).toBe(200);
  });
});
