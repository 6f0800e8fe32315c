/**
 * Provisioning on the PostgreSQL backend (DESIGN.md §12/§13), through the CLI: two replicas share one schema and the
 * simulator; the owner runs a names job and a count job, and is SIGKILLed while the count chunk's
 * BatchRegisterDevice is on the wire (its answer held back). The standby takes the account over and resumes both
 * jobs from their `provision_jobs` rows: the names job completes with every device once, the count chunk is parked
 * `submission_unknown` and never sent again. `status --jobs`, `results --provision` and `provision resolve` work from
 * a third process on the database alone; after the resolution and a SIGHUP the new owner watches the adopted ApplyId.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createFileJobStore } from '../../src/provision/file-job-store.js';
import { reconcileJob } from '../../src/provision/job-state.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { type Child, runCli, SIM_ENV } from '../helpers/child.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../helpers/postgres.js';
import { waitUntil } from '../helpers/wait.js';

const PK = 'a1SimPgFleet';
const LEASE_MS = 3000;

interface StoredChunk {
  index: number;
  state: string;
  applyId: string | null;
  reason: string | null;
}

/** {@link waitUntil} polling every 50 ms, `what` first. */
const until = <T,>(what: string, probe: () => Promise<T>, timeoutMs = 60_000): Promise<NonNullable<T>> => waitUntil(probe, timeoutMs, what, 50);

async function run(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = runCli(args, env, cwd);
  const { code } = await c.exited;
  return { code, stdout: c.stdout.join('\n'), stderr: c.stderr.join('') };
}

describe('provisioning with replicas on PostgreSQL', () => {
  let sim: SimulatorHandle;
  let dir: string;
  const schema = uniqueSchema('ibw_prov');
  const children: Child[] = [];

  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 20, seed: 11 });
    sim.control.addProduct(PK);
    dir = await mkdtemp(join(tmpdir(), 'ibw-provision-pg-'));
  });
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await sim.close();
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  it('fails over inside a count submission: resumes both jobs from the database, sends nothing twice, resolves from any machine', async () => {
    const env = { ...SIM_ENV, IBW_DATABASE_URL: testDatabaseUrl() };
    const names = Array.from({ length: 30 }, (_, i) => `pg-dev-${String(i).padStart(3, '0')}`);
    const devicesFile = join(dir, 'line.txt');
    await writeFile(devicesFile, `${names.join('\n')}\nno\n`);
    const configFor = async (slot: string): Promise<string> => {
      const file = join(dir, `watcher-${slot}.yaml`);
      await writeFile(
        file,
        [
          `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
          'polling: { initialDelay: 100ms, maxDelay: 500ms }',
          'rateLimit: { statusQps: 20, pageQps: 20, concurrency: 8 }',
          `state: { dir: ${join(dir, `state-${slot}`)}, backend: postgres, postgres: { schema: ${schema}, lease: ${LEASE_MS}ms } }`,
          `output: { resultsDir: ${join(dir, `results-${slot}`)}, eventsFile: ${join(dir, `events-${slot}.jsonl`)} }`,
          'http: { listen: "off" }',
          'provision:',
          `  - { name: line, productKey: ${PK}, devices: ${devicesFile}, chunkSize: 10 }`,
          `  - { name: spare, productKey: ${PK}, count: 4 }`,
          '',
        ].join('\n'),
      );
      return file;
    };
    const configA = await configFor('a');
    const configB = await configFor('b');
    const chunks = async (job: string): Promise<StoredChunk[] | null> => {
      const rows = await sql<{ state: { chunks: StoredChunk[] } }>(`SELECT state FROM "${schema}".provision_jobs WHERE account = 'default' AND name = $1`, [job]).catch(() => []);
      return rows[0]?.state.chunks ?? null;
    };
    const ownerPid = async (): Promise<number | null> => {
      const rows = await sql<{ owner: string | null }>(`SELECT owner FROM "${schema}".leases WHERE account = 'default' AND expires_at > now()`).catch(() => []);
      const owner = rows[0]?.owner;
      return owner ? Number(owner.split(':').at(-2)) : null;
    };
    const registers = () => sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDevice' && l.productKey === PK);

    // 1. Replica A owns the account; the count chunk's answer is held 3 s (60 s simulated). B stands by.
    sim.control.setFaults({ script: [{ action: 'BatchRegisterDevice', fault: 'slow' }], rates: { slowMs: 60_000 } });
    const a = runCli(['run', '--config', configA], env, dir);
    children.push(a);
    await a.waitFor(/iot-batch-watcher running/, 30_000);
    expect(await until('A owning the account', async () => (await ownerPid()) === a.proc.pid)).toBe(true);
    const b = runCli(['run', '--config', configB], env, dir);
    children.push(b);
    await b.waitFor(/standing by: another replica owns the account/, 30_000);
    await until('the count chunk on the wire', async () => ((await chunks('spare'))?.[0]?.state === 'submitting' ? true : null), 30_000);
    await sleep(1000); // the request reaches the simulator at once; its answer is held 3 s
    a.proc.kill('SIGKILL');
    const killedAt = Date.now();
    expect((await a.exited).signal).toBe('SIGKILL');

    // 2. B takes over within lease + 5 s and resumes both jobs from the database.
    await b.waitFor(/took over the account: this replica owns it now/, LEASE_MS + 5000 + 2000);
    expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 5000);
    const parked = await until('spare parked', async () => {
      const c = await chunks('spare');
      return c?.[0]?.state === 'submission_unknown' ? c : null;
    });
    expect(parked[0]!.reason).toMatch(/may or may not have reached Alibaba .*provision resolve/);
    const line = await until('the names job created', async () => {
      const c = await chunks('line');
      return c !== null && c.length === 3 && c.every((x) => x.state === 'created') ? c : null;
    });
    const created = sim.control.devices(PK);
    for (const n of names) expect(created.filter((d) => d.deviceName === n), n).toHaveLength(1);
    const withApplyId = sim.control.requestLog().filter((l) => l.action === 'BatchRegisterDeviceWithApplyId' && l.outcome === 'ok');
    expect(new Set(withApplyId.map((l) => l.applyId)).size).toBe(withApplyId.length);
    expect(withApplyId.map((l) => l.applyId).sort()).toEqual(line.map((c) => c.applyId).sort());

    // 3. From a third process, on the database alone: status --jobs and the factory CSV with every secret.
    const status = await run(['status', '--config', configA, '--jobs', '--json'], env, dir);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual([
      { job: 'line', productKey: PK, chunksSettled: 3, chunksTotal: 3, devicesCreated: 30, devicesRequested: 30, parked: 0 },
      { job: 'spare', productKey: PK, chunksSettled: 1, chunksTotal: 1, devicesCreated: 0, devicesRequested: 4, parked: 1 },
    ]);
    const csv = await run(['results', '--config', configA, '--provision', 'line', '--format', 'csv'], env, dir);
    expect(csv.code, csv.stderr).toBe(0);
    const rows = csv.stdout.trimEnd().split('\r\n');
    expect(rows[0]).toBe('ProductKey,DeviceName,DeviceSecret,IotId');
    expect(rows.slice(1).sort()).toEqual(
      created
        .filter((d) => names.includes(d.deviceName))
        .map((d) => `${PK},${d.deviceName},${d.deviceSecret},${d.iotId}`)
        .sort(),
    );
    const report = await run(['results', '--config', configA, '--provision', 'line'], env, dir);
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject([
      { job: 'line', productKey: PK, outcome: 'complete', summary: { devices: { requested: 30, created: 30, rejected: 1 } }, rejected: [{ deviceName: 'no' }] },
    ]);

    // 4. The held answer has run (the simulator made that batch); the chunk was sent once. Resolve it from a third
    // process, then SIGHUP the owner: it watches the adopted ApplyId and sends nothing.
    await sleep(3500);
    expect(registers()).toHaveLength(1);
    const applyId = registers()[0]!.applyId;
    expect(applyId).toMatch(/^[0-9]+$/);
    const resolve = await run(['provision', 'resolve', '--config', configA, '--name', 'spare', '--chunk', '0', '--apply-id', applyId!], env, dir);
    expect(resolve.code, resolve.stderr).toBe(0);
    expect(resolve.stdout).toContain(`ApplyId ${applyId} adopted`);
    const again = await run(['provision', 'resolve', '--config', configA, '--name', 'spare', '--chunk', '0', '--not-submitted'], env, dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/is (watching|planned|created), not submission_unknown.*postgres:/);
    b.proc.kill('SIGHUP');
    const spare = await until('spare created', async () => {
      const c = await chunks('spare');
      return c?.[0]?.state === 'created' ? c : null;
    });
    expect(spare[0]!.applyId).toBe(applyId);
    const spareCsv = await run(['results', '--config', configB, '--provision', 'spare', '--format', 'csv'], env, dir);
    expect(spareCsv.stdout.trimEnd().split('\r\n')).toHaveLength(5);
    expect(registers()).toHaveLength(1);
    b.proc.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);

    // A job of the foreground command has no row: results --provision finds its file in state.dir.
    const foreground = reconcileJob(null, { name: 'by-hand', productKey: PK, account: null, source: { kind: 'count', count: 2 }, chunkSize: 2, until: 'created', labels: {} }, null, 0).state;
    await createFileJobStore(join(dir, 'state-a')).save(foreground);
    const byHand = await run(['results', '--config', configA, '--provision', 'by-hand'], env, dir);
    expect(byHand.code, byHand.stderr).toBe(0);
    expect(JSON.parse(byHand.stdout)).toMatchObject([{ job: 'by-hand', outcome: 'running', summary: { devices: { requested: 2, created: 0 } } }]);
    // status --jobs lists it beside the database's jobs, and resolve finds it there too.
    const withFile = await run(['status', '--config', configA, '--jobs', '--json'], env, dir);
    expect((JSON.parse(withFile.stdout) as { job: string }[]).map((r) => r.job)).toEqual(['line', 'spare', 'by-hand']);
    const notParked = await run(['provision', 'resolve', '--config', configA, '--name', 'by-hand', '--chunk', '0', '--not-submitted'], env, dir);
    expect(notParked.code).toBe(2);
    expect(notParked.stderr).toContain(`chunk 0 of "by-hand" is planned, not submission_unknown: nothing to resolve (${join(dir, 'state-a', 'provision')})`);
  }, 180_000);
});
