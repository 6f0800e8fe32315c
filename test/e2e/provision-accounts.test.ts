/**
 * Provisioning with several accounts in one process (DESIGN.md §11, §13): each account's runtime runs its own jobs
 * against its own simulator, under its own budget, with its job state in its own state directory; `/v1/jobs`,
 * `status --jobs` and `ibw_provision_devices` show both; events of the non-default account carry its prefix.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../src/config/compile.js';
import { Daemon } from '../../src/daemon.js';
import { createLogger } from '../../src/ops/logger.js';
import { readJobStatusRows } from '../../src/provision/job-status.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';

const ENV = { A_ID: 'ProvAKeyId', A_SECRET: 'ProvASecret', B_ID: 'ProvBKeyId', B_SECRET: 'ProvBSecret' };

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('provisioning jobs of two accounts in one process', () => {
  let simA: SimulatorHandle;
  let simB: SimulatorHandle;
  let dir: string;
  beforeAll(async () => {
    simA = await startSimulator({ port: 0, timeScale: 20, seed: 21, accessKeyId: ENV.A_ID, accessKeySecret: ENV.A_SECRET });
    simB = await startSimulator({ port: 0, timeScale: 20, seed: 22, accessKeyId: ENV.B_ID, accessKeySecret: ENV.B_SECRET });
    dir = await mkdtemp(join(tmpdir(), 'ibw-provision-accounts-'));
  });
  afterAll(async () => {
    await simA.close();
    await simB.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs each job through its own account, state and budget', async () => {
    const devices = join(dir, 'a.txt');
    await writeFile(devices, `${Array.from({ length: 5 }, (_, i) => `acct-a-${i}`).join('\n')}\n`);
    const config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' },
        accounts: [
          { name: 'fleet-a', endpoint: simA.url, credentials: { accessKeyIdEnv: 'A_ID', accessKeySecretEnv: 'A_SECRET' }, rateLimit: { statusQps: 10, pageQps: 10, submitQps: 3 } },
          { name: 'fleet-b', endpoint: simB.url, credentials: { accessKeyIdEnv: 'B_ID', accessKeySecretEnv: 'B_SECRET' }, rateLimit: { statusQps: 10, pageQps: 10 } },
        ],
        polling: { initialDelay: '100ms', maxDelay: '400ms' },
        state: { dir: join(dir, 'state') },
        output: { resultsDir: join(dir, 'results'), eventsFile: join(dir, 'events.jsonl') },
        http: { listen: '127.0.0.1:0' },
        provision: [
          { name: 'job-a', account: 'fleet-a', productKey: 'a1SimProduct1', devices, chunkSize: 2 },
          { name: 'job-b', account: 'fleet-b', productKey: 'a1SimProduct2', count: 4, chunkSize: 3 },
        ],
      },
      { cwd: dir },
    );
    const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env: ENV, housekeeping: false });
    await daemon.start();
    try {
      const settled = async (pk: string, job: string) => {
        const text = await readFile(join(dir, 'results', pk, `provision-${job}.json`), 'utf8').catch(() => '');
        return text.includes('"settled": true');
      };
      await until('both jobs settled', async () => (await settled('a1SimProduct1', 'job-a')) && (await settled('a1SimProduct2', 'job-b')));

      // Each account's submissions reached its own simulator only.
      const actions = (sim: SimulatorHandle, action: string) => sim.control.requestLog().filter((l) => l.action === action);
      expect(actions(simA, 'BatchCheckDeviceNames')).toHaveLength(3);
      expect(actions(simA, 'BatchRegisterDevice')).toHaveLength(0);
      expect(actions(simB, 'BatchRegisterDevice')).toHaveLength(2);
      expect(actions(simB, 'BatchCheckDeviceNames')).toHaveLength(0);
      expect(simA.control.devices('a1SimProduct1').map((d) => d.deviceName).sort()).toEqual(['acct-a-0', 'acct-a-1', 'acct-a-2', 'acct-a-3', 'acct-a-4']);
      expect(simB.control.devices('a1SimProduct2')).toHaveLength(4);

      // Job state in each account's state directory.
      expect(existsSync(join(dir, 'state', 'provision', 'job-a.json'))).toBe(false);
      expect(existsSync(join(dir, 'state', 'accounts', 'fleet-a', 'provision', 'job-a.json'))).toBe(true);
      const rowsB = await readJobStatusRows(join(dir, 'state', 'accounts', 'fleet-b'));
      expect(rowsB).toEqual([{ job: 'job-b', productKey: 'a1SimProduct2', chunksSettled: 2, chunksTotal: 2, devicesCreated: 4, devicesRequested: 4, parked: 0 }]);

      // /v1/jobs and the metric show both accounts' jobs.
      const jobs = (await (await fetch(`${daemon.httpUrl!}/v1/jobs`)).json()) as { job: string; devicesCreated: number }[];
      expect(jobs.map((j) => [j.job, j.devicesCreated]).sort()).toEqual([
        ['job-a', 5],
        ['job-b', 4],
      ]);
      const metrics = await (await fetch(`${daemon.httpUrl!}/metrics`)).text();
      expect(metrics).toMatch(/ibw_provision_devices\{job="job-a",state="created",account="fleet-a"\} 5/);
      expect(metrics).toMatch(/ibw_provision_devices\{job="job-b",state="created",account="fleet-b"\} 4/);
      expect(metrics).toMatch(/ibw_rate_limit_qps\{action="BatchCheckDeviceNames",account="fleet-a"\} 3/);

      // Events: ids unique across accounts (fleet-b's prefixed), each with its account.
      const events = async () =>
        (await readFile(join(dir, 'events.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; type: string; account: string; job?: string });
      await until('both provision.settled events', async () => (await events()).filter((e) => e.type === 'provision.settled').length === 2);
      const settledEvents = (await events()).filter((e) => e.type === 'provision.settled');
      expect(settledEvents.map((e) => [e.job, e.account, e.id.split(':provision:')[0]]).sort()).toEqual([
        ['job-a', 'fleet-a', 'fleet-a'],
        ['job-b', 'fleet-b', 'fleet-b'],
      ]);
    } finally {
      await daemon.stop();
    }
  }, 120_000);
});
