/**
 * BatchCheckDeviceNames with nicknames (issue #17: the console CSV's DeviceName,Nickname): the client sends
 * `DeviceNameList.N.DeviceName` / `.DeviceNickname` in the form body, the simulator keeps the nicknames on the
 * created devices, and refused nicknames come back in `invalidDeviceNicknames`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { CredentialsProvider } from '../../../src/alibaba/credentials.js';
import { createIotApi } from '../../../src/alibaba/iot-api.js';
import { createRpcClient, type RpcClient } from '../../../src/alibaba/rpc-client.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';
import { SIM_AK, SIM_SECRET } from './helpers.js';

const PK = 'a1SimNick';
const keys: CredentialsProvider = { get: () => Promise.resolve({ accessKeyId: SIM_AK, accessKeySecret: SIM_SECRET, securityToken: null }) };

let sim: SimulatorHandle;
let rpc: RpcClient;

beforeAll(async () => {
  sim = await startSimulator({ port: 0, timeScale: 100, seed: 3 });
  sim.control.addProduct(PK);
  rpc = createRpcClient({ endpoint: sim.url, credentials: keys, signatureVersion: 'v3', maxAttempts: 1 });
});
afterAll(async () => {
  await rpc.close();
  await sim.close();
});

describe('BatchCheckDeviceNames with nicknames', () => {
  it('sends the list form in the body and the created devices carry their nicknames', async () => {
    const api = createIotApi({ rpc });
    const res = await api.batchCheckDeviceNames({ productKey: PK, deviceNames: ['nick-0001', 'nick-0002'], nicknames: { 'nick-0001': 'Kitchen' } });
    expect(res.invalidDeviceNicknames).toBeUndefined();
    expect(sim.control.requestLog().at(-1)).toMatchObject({ action: 'BatchCheckDeviceNames', deviceNamesIn: 'body' });
    for (let i = 0; i < 200 && sim.control.batch(res.applyId)?.status === 'CHECK'; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(sim.control.batch(res.applyId)?.status).toBe('CHECK_SUCCESS');
    await api.batchRegisterDeviceWithApplyId({ productKey: PK, applyId: res.applyId });
    for (let i = 0; i < 400 && sim.control.batch(res.applyId)?.status !== 'CREATE_SUCCESS'; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(sim.control.devices(PK).map((d) => [d.deviceName, d.nickname])).toEqual([
      ['nick-0001', 'Kitchen'],
      ['nick-0002', null],
    ]);
  });

  it('reports a refused nickname', async () => {
    const res = await createIotApi({ rpc }).batchCheckDeviceNames({ productKey: PK, deviceNames: ['nick-0003'], nicknames: { 'nick-0003': 'no spaces allowed' } });
    expect(res.invalidDeviceNicknames).toEqual(['no spaces allowed']);
  });
});
