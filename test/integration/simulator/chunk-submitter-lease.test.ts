/**
 * The chunk submitter's `beforeSend` (the daemon's lease check on PostgreSQL, DESIGN.md §12): a submission the check
 * refuses never reaches the simulator and counts as provably unsent, so the chunk is retried rather than parked
 * `submission_unknown`; one the check lets through is sent once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { CredentialsProvider } from '../../../src/alibaba/credentials.js';
import { createIotApi } from '../../../src/alibaba/iot-api.js';
import { createRpcClient, type RpcClient } from '../../../src/alibaba/rpc-client.js';
import { DaemonError } from '../../../src/errors.js';
import { createChunkSubmitter, LEASE_UNCONFIRMED } from '../../../src/provision/chunk-submitter.js';
import { DEFAULT_SUBMIT_RETRY, startSubmission, submissionFailed } from '../../../src/provision/chunk-transitions.js';
import { type JobSpec, reconcileJob } from '../../../src/provision/job-state.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';
import { SIM_AK, SIM_SECRET } from './helpers.js';

const PK = 'a1SimLease';
const keys: CredentialsProvider = { get: () => Promise.resolve({ accessKeyId: SIM_AK, accessKeySecret: SIM_SECRET, securityToken: null }) };
const spec: JobSpec = { name: 'lease', productKey: PK, account: null, source: { kind: 'count', count: 2 }, chunkSize: 2, until: 'created', labels: {} };

let sim: SimulatorHandle;
let rpc: RpcClient;

beforeAll(async () => {
  sim = await startSimulator({ port: 0, timeScale: 100, seed: 5 });
  sim.control.addProduct(PK);
  rpc = createRpcClient({ endpoint: sim.url, credentials: keys, signatureVersion: 'v3', maxAttempts: 1 });
});
afterAll(async () => {
  await rpc.close();
  await sim.close();
});

describe('a submission stopped by the lease check right before sending', () => {
  it('never reaches Alibaba and is retried, not parked; with the lease trusted again it is sent once', async () => {
    let trusted = false;
    const submitter = createChunkSubmitter(createIotApi({ rpc }), {
      beforeSend: () =>
        trusted ? Promise.resolve() : Promise.reject(new DaemonError('the lease could not be confirmed', { kind: 'store', scope: 'attempt', code: LEASE_UNCONFIRMED })),
    });
    const intent = startSubmission(reconcileJob(null, spec, null, 0).state.chunks[0]!, 1000).rec;
    const refused = await submitter.submit(intent, spec);
    expect(refused).toMatchObject({ ok: false, failure: { code: LEASE_UNCONFIRMED, notProcessed: true } });
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice')).toEqual([]);
    if (refused.ok) throw new Error('unreachable');
    const step = submissionFailed(intent, refused.failure, 2000, DEFAULT_SUBMIT_RETRY);
    expect(step.rec.state).toBe('planned');

    trusted = true;
    const sent = await submitter.submit(startSubmission(step.rec, 5000).rec, spec);
    expect(sent).toMatchObject({ ok: true });
    expect(sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice')).toHaveLength(1);
  });
});
