import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { CredentialsProvider } from '../../../src/alibaba/credentials.js';
import { ApiError } from '../../../src/alibaba/errors.js';
import { createIotApi } from '../../../src/alibaba/iot-api.js';
import { createRpcClient, type RpcClient } from '../../../src/alibaba/rpc-client.js';
import { createSeededRandom, systemClock } from '../../../src/core/clock.js';
import type { IotApi } from '../../../src/core/ports.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';

const keys = (secret = 'SimAccessKeySecret', securityToken: string | null = null): CredentialsProvider => ({
  get: () => Promise.resolve({ accessKeyId: 'SimAccessKeyId', accessKeySecret: secret, securityToken }),
});

describe('our client against the simulator (the scenarios the official SDK runs)', () => {
  let sim: SimulatorHandle;
  const clients: RpcClient[] = [];
  const api = (signatureVersion: 'v1' | 'v3', over: Partial<Parameters<typeof createRpcClient>[0]> = {}): IotApi => {
    const rpc = createRpcClient({ endpoint: sim.url, credentials: keys(), signatureVersion, maxAttempts: 1, ...over });
    clients.push(rpc);
    return createIotApi({ rpc });
  };
  const waitFor = async (client: IotApi, productKey: string, applyId: string, wanted: string[]): Promise<string> => {
    for (let i = 0; i < 200; i += 1) {
      const s = await client.queryBatchRegisterDeviceStatus({ productKey, applyId });
      if (s.status && wanted.includes(s.status)) return s.status;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`never reached ${wanted.join('|')}`);
  };

  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 50, seed: 5, bigApplyIds: true });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await sim.close();
  });

  it.each(['v3', 'v1'] as const)('runs the custom-name workflow (%s)', async (sig) => {
    const client = api(sig);
    const names = [`cust-${sig}-0001`, `cust-${sig}-0002`, `cust-${sig}-0003`];
    const check = await client.batchCheckDeviceNames({ productKey: 'a1SimProduct1', deviceNames: names });
    expect(check.invalidDeviceNames).toEqual([]);
    expect(await waitFor(client, 'a1SimProduct1', check.applyId, ['CHECK_SUCCESS', 'CHECK_FAILED'])).toBe('CHECK_SUCCESS');
    const reg = await client.batchRegisterDeviceWithApplyId({ productKey: 'a1SimProduct1', applyId: check.applyId });
    expect(reg.applyId).toBe(check.applyId);
    expect(await waitFor(client, 'a1SimProduct1', check.applyId, ['CREATE_SUCCESS', 'CREATE_FAILED'])).toBe('CREATE_SUCCESS');
    const all = await client.listAllDevicesByApplyId({ applyId: check.applyId });
    expect(all.total).toBe(3);
    expect(all.devices.map((d) => d.deviceName).sort()).toEqual(names);
    const simDevices = sim.control.devices('a1SimProduct1').filter((d) => d.applyId === check.applyId);
    expect(all.devices.map((d) => d.deviceSecret).sort()).toEqual(simDevices.map((d) => d.deviceSecret).sort());
  });

  it.each(['v3', 'v1'] as const)('runs the random-name workflow with paging (%s)', async (sig) => {
    const client = api(sig);
    const { applyId } = await client.batchRegisterDevice({ productKey: 'a1SimProduct2', count: 120 });
    expect(applyId).toMatch(/^\d+$/);
    expect(await waitFor(client, 'a1SimProduct2', applyId, ['CREATE_SUCCESS', 'CREATE_FAILED'])).toBe('CREATE_SUCCESS');
    const page = await client.queryPageByApplyId({ applyId, currentPage: 3, pageSize: 50 });
    expect(page).toMatchObject({ page: 3, pageSize: 50, pageCount: 3, total: 120 });
    expect(page.devices).toHaveLength(20);
    const all = await client.listAllDevicesByApplyId({ applyId });
    expect(all.devices).toHaveLength(120);
    expect(sim.control.batch(applyId)?.applyId).toBe(applyId); // exact, even above 2^53
  });

  it('gets SignatureDoesNotMatch (process-fatal) for a wrong secret', async () => {
    const rpc = createRpcClient({ endpoint: sim.url, credentials: keys('wrong-secret'), maxAttempts: 1 });
    clients.push(rpc);
    const err = await createIotApi({ rpc })
      .queryBatchRegisterDeviceStatus({ productKey: 'a1SimProduct1', applyId: '1' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: 'SignatureDoesNotMatch', scope: 'process' });
    expect(String((err as Error).message)).not.toContain('wrong-secret');
  });

  it('gets SignatureNonceUsed for a replayed nonce', async () => {
    const fixed = { ...createSeededRandom(1), nonce: () => 'replayed-nonce-0001' };
    const client = api('v3', { random: fixed, clock: systemClock });
    await client.queryBatchRegisterDeviceStatus({ productKey: 'a1SimProduct1', applyId: '1' }).catch(() => undefined);
    const err = await client.queryBatchRegisterDeviceStatus({ productKey: 'a1SimProduct1', applyId: '1' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SignatureNonceUsed' });
  });

  it('surfaces Throttling.User when the QPS is exceeded', async () => {
    sim.control.setQps({ QueryBatchRegisterDeviceStatus: 5 });
    try {
      const outcomes: string[] = [];
      const client = api('v3', { onAttempt: (i) => outcomes.push(i.outcome) });
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, () => client.queryBatchRegisterDeviceStatus({ productKey: 'a1SimProduct1', applyId: '1' })),
      );
      const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as ApiError).code : 'ok'));
      expect(codes.filter((c) => c === 'Throttling.User').length).toBeGreaterThanOrEqual(5);
      expect(outcomes.filter((o) => o === 'throttled').length).toBe(codes.filter((c) => c === 'Throttling.User').length);
      const throttled = results.find((r) => r.status === 'rejected' && (r.reason as ApiError).code === 'Throttling.User');
      expect((throttled as PromiseRejectedResult).reason).toMatchObject({ kind: 'throttled', scope: 'attempt' });
    } finally {
      sim.control.setQps({ QueryBatchRegisterDeviceStatus: 30 });
    }
  });

  it('never resends BatchRegisterDeviceWithApplyId after a lost answer, but retries a status query', async () => {
    const applyId = sim.control.addBatch({ productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['once-0001'], checkMs: 0 });
    sim.control.setFaults({
      script: [
        { action: 'BatchRegisterDeviceWithApplyId', applyId, nth: 1, fault: 'malformed' },
        { action: 'QueryBatchRegisterDeviceStatus', applyId, nth: 1, fault: 'malformed' },
      ],
    });
    try {
      const client = api('v3', { maxAttempts: 4, retryBaseDelayMs: 1, retryMaxDelayMs: 2 });
      await new Promise((r) => setTimeout(r, 20));
      const err = await client.batchRegisterDeviceWithApplyId({ productKey: 'a1SimProduct1', applyId }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'Response.Malformed', scope: 'attempt' });
      expect(sim.control.registrations(applyId)).toBe(1);
      // The status query is safe to resend: the malformed first answer is retried transparently.
      const status = await client.queryBatchRegisterDeviceStatus({ productKey: 'a1SimProduct1', applyId });
      expect(status.status).toMatch(/^CREATE/);
    } finally {
      sim.control.setFaults({});
    }
  });

  it('accepts an STS token the simulator issued', async () => {
    const sts = sim.control.issueStsToken();
    const rpc = createRpcClient({
      endpoint: sim.url,
      credentials: { get: () => Promise.resolve({ accessKeyId: sts.accessKeyId, accessKeySecret: sts.accessKeySecret, securityToken: sts.securityToken }) },
      maxAttempts: 1,
    });
    clients.push(rpc);
    const { applyId } = await createIotApi({ rpc }).batchRegisterDevice({ productKey: 'a1SimProduct1', count: 1 });
    expect(applyId).toMatch(/^\d+$/);
  });
});
