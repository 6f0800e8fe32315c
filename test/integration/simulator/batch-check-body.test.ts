/**
 * BatchCheckDeviceNames with its names in the FORM BODY (issue #17 prep, reference §9), V1 and V3:
 * - our client sends them there and the simulator verifies the signature over them (V1: signed with the query
 *   parameters; V3: the body's SHA-256 in x-acs-content-sha256);
 * - the official SDK (@alicloud/openapi-client, explicit keys: its credential chain never runs) sending the same
 *   call with a form body is accepted by the simulator: an independent oracle for both signatures;
 * - a body changed after signing is refused (SignatureDoesNotMatch);
 * - the check reports invalid, existing and repeated names in InvalidDeviceNameList, InvalidDetailList and
 *   RepeatedDeviceNameList, which the typed client parses.
 */
import * as OpenApiNs from '@alicloud/openapi-client';
import * as TeaUtilNs from '@alicloud/tea-util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { CredentialsProvider } from '../../../src/alibaba/credentials.js';
import { createIotApi, type AlibabaIotApi } from '../../../src/alibaba/iot-api.js';
import { buildSignedRequest, createRpcClient, IOT_API_VERSION, type RpcClient } from '../../../src/alibaba/rpc-client.js';
import { formatTimestamp } from '../../../src/alibaba/sign-v1.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';
import { SIM_AK, SIM_SECRET, type Loose } from './helpers.js';

// NOTE: CommonJS packages: the client class is `default` under vitest's interop, `default.default` under Node's.
const openApiDefault: unknown = OpenApiNs.default;
const OpenApiClient = (typeof openApiDefault === 'function' ? openApiDefault : (OpenApiNs.default as Loose).default);
const RuntimeOptions = ((TeaUtilNs as Loose).RuntimeOptions ?? (TeaUtilNs as Loose).default.RuntimeOptions);

const PK = 'a1SimProduct1';
const keys: CredentialsProvider = { get: () => Promise.resolve({ accessKeyId: SIM_AK, accessKeySecret: SIM_SECRET, securityToken: null }) };

let sim: SimulatorHandle;
const clients: RpcClient[] = [];
const api = (signatureVersion: 'v1' | 'v3'): AlibabaIotApi => {
  const rpc = createRpcClient({ endpoint: sim.url, credentials: keys, signatureVersion, maxAttempts: 1 });
  clients.push(rpc);
  return createIotApi({ rpc });
};
const lastLog = (): Loose => sim.control.requestLog().at(-1);

beforeAll(async () => {
  sim = await startSimulator({ port: 0, timeScale: 50, seed: 9 });
  sim.control.addProduct(PK, ['taken-0001']);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await sim.close();
});

describe('BatchCheckDeviceNames names in the form body', () => {
  it.each(['v3', 'v1'] as const)('our client (%s): names in the body, accepted and checked', async (sig) => {
    const names = Array.from({ length: 1000 }, (_, i) => `body-${sig}-${String(i).padStart(4, '0')}`);
    const res = await api(sig).batchCheckDeviceNames({ productKey: PK, deviceNames: names });
    expect(res.invalidDeviceNames).toEqual([]);
    expect(res.invalidDetails).toEqual([]);
    expect(res.repeatedDeviceNames).toEqual([]);
    const log = lastLog();
    expect(log).toMatchObject({ action: 'BatchCheckDeviceNames', outcome: 'ok', signatureVersion: sig, deviceNamesIn: 'body' });
    expect(sim.control.batch(res.applyId)?.deviceCount).toBe(names.length);
  });

  it.each(['v3', 'v1'] as const)('our client (%s): invalid, existing and repeated names are reported in the three lists', async (sig) => {
    const names = ['ab', `ok-${sig}-0001`, 'taken-0001', `dup-${sig}-0001`, `dup-${sig}-0001`, 'bad name'];
    const res = await api(sig).batchCheckDeviceNames({ productKey: PK, deviceNames: names });
    expect(res.invalidDeviceNames).toEqual(['ab', 'bad name']);
    expect(res.invalidDetails).toEqual([
      { deviceName: 'ab', errors: ['The device name format is invalid.'], nickName: '' },
      { deviceName: 'taken-0001', errors: ['The device name already exists.'], nickName: '' },
      { deviceName: 'bad name', errors: ['The device name format is invalid.'], nickName: '' },
    ]);
    expect(res.repeatedDeviceNames).toEqual([`dup-${sig}-0001`]);
    // The existing name is refused by the check too: it is never created a second time.
    const status = await waitForCheck(api(sig), res.applyId);
    expect(status.status).toBe('CHECK_FAILED');
    expect(status.invalidNames).toContain('taken-0001');
    expect(status.validNames).toEqual([`ok-${sig}-0001`]);
  });

  it.each(['v3', 'v1'] as const)('a body changed after signing is refused (%s)', async (sig) => {
    const req = buildSignedRequest({
      signatureVersion: sig,
      action: 'BatchCheckDeviceNames',
      version: IOT_API_VERSION,
      params: { ProductKey: PK },
      bodyParams: { 'DeviceName.1': `tamper-${sig}-01` },
      host: new URL(sim.url).host,
      credentials: { accessKeyId: SIM_AK, accessKeySecret: SIM_SECRET, securityToken: null },
      timestamp: formatTimestamp(Date.now()),
      nonce: `tamper-nonce-${sig}-${Date.now()}`,
      userAgent: 'test',
    });
    const send = (body: string) => fetch(`${sim.url}${req.path}`, { method: 'POST', headers: req.headers, body }).then(async (r) => ({ status: r.status, json: (await r.json()) as Loose }));
    const tampered = await send(req.body!.replace(`tamper-${sig}-01`, `tamper-${sig}-02`));
    expect(tampered.status).toBe(400);
    expect(tampered.json.Code).toBe('SignatureDoesNotMatch');
    // The untouched body passes (same nonce: the refused one was not remembered).
    const ok = await send(req.body!);
    expect(ok.status).toBe(200);
    expect(ok.json.Success).toBe(true);
  });
});

describe('the official SDK sends BatchCheckDeviceNames with a form body to the simulator', () => {
  const sdk = (algo: 'v3' | 'v1'): Loose =>
    new OpenApiClient(
      new OpenApiNs.Config({
        accessKeyId: SIM_AK,
        accessKeySecret: SIM_SECRET,
        endpoint: `127.0.0.1:${new URL(sim.url).port}`,
        protocol: 'HTTP',
        regionId: 'cn-shanghai',
        readTimeout: 5000,
        connectTimeout: 5000,
        ...(algo === 'v1' ? { signatureAlgorithm: 'v2' } : {}),
      }),
    );
  const params = (): Loose =>
    new OpenApiNs.Params({
      action: 'BatchCheckDeviceNames',
      version: '2018-01-20',
      protocol: 'HTTP',
      pathname: '/',
      method: 'POST',
      authType: 'AK',
      style: 'RPC',
      reqBodyType: 'formData',
      bodyType: 'json',
    });

  it.each(['v3', 'v1'] as const)('%s: signed by the SDK, verified by the simulator, names read from the body', async (algo) => {
    const names = [`sdk-${algo}-0001`, `sdk-${algo}-0002`, `sdk-${algo}-0002`, 'taken-0001'];
    const request = new OpenApiNs.OpenApiRequest({ query: { ProductKey: PK }, body: { DeviceName: names } });
    const res = (await sdk(algo).callApi(params(), request, new RuntimeOptions({})));
    expect(res.statusCode).toBe(200);
    expect(res.body.Success).toBe(true);
    expect(lastLog()).toMatchObject({ action: 'BatchCheckDeviceNames', outcome: 'ok', signatureVersion: algo, deviceNamesIn: 'body' });
    const data = res.body.Data;
    expect(data.RepeatedDeviceNameList.RepeatDevieNameList).toEqual([`sdk-${algo}-0002`]);
    expect(data.InvalidDetailList.InvalidDetailList.map((d: Loose) => d.DeviceName)).toEqual(['taken-0001']);
    const applyId = String(data.ApplyId);
    expect(sim.control.batch(applyId)?.deviceCount).toBe(names.length);
  });
});

async function waitForCheck(client: AlibabaIotApi, applyId: string): Promise<Awaited<ReturnType<AlibabaIotApi['queryBatchRegisterDeviceStatus']>>> {
  for (let i = 0; i < 200; i += 1) {
    const s = await client.queryBatchRegisterDeviceStatus({ productKey: PK, applyId });
    if (s.status === 'CHECK_SUCCESS' || s.status === 'CHECK_FAILED') return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the check never finished');
}
