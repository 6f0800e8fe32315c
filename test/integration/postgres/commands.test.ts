/**
 * `results` and `migrate --from-file` through the real CLI (child processes, tsx), against the run's
 * PostgreSQL and temporary file ledgers.
 */
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { BatchResult } from '../../../src/core/ports.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { createPostgresResultStore } from '../../../src/ledger/postgres-results.js';
import { createFileJobStore } from '../../../src/provision/file-job-store.js';
import { reconcileJob } from '../../../src/provision/job-state.js';
import { createResultWriter } from '../../../src/sinks/result-writer.js';
import { runCli } from '../../helpers/child.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, eventRec, makeBatch, plain } from '../../unit/ledger/helpers.js';

function result(applyId: string, devices: BatchResult['devices']): BatchResult {
  return {
    applyId,
    productKey: 'a1Prod',
    name: null,
    labels: {},
    outcome: 'created',
    status: 'CREATE_SUCCESS',
    firstSeenAt: '2026-01-01T00:00:00.000Z',
    settledAt: '2026-01-01T00:01:00.000Z',
    polls: 3,
    validNames: devices.map((d) => d.deviceName),
    invalidNames: [],
    invalidDetails: [],
    devices,
    deviceCount: devices.length,
    history: [{ status: 'CREATE_SUCCESS', at: '2026-01-01T00:01:00.000Z' }],
  };
}

const R1 = result('7001', [
  { deviceName: 'dev-1', iotId: 'iot-1', deviceSecret: 'S3cr3t-one' },
  { deviceName: 'dev,2', iotId: 'iot-2', deviceSecret: 'S3cr3t-"two"' },
]);
const R2 = result('7002', [{ deviceName: 'dev-3', iotId: 'iot-3' }]);

/** CSV lines (the CLI writes CRLF; the child helper splits stdout on LF). */
function csvLines(stdout: string): string[] {
  return stdout.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
}

async function exitOf(args: string[], env: Record<string, string>, cwd: string) {
  const child = runCli(args, env, cwd);
  const { code } = await child.exited;
  return { code, stdout: child.stdout.join('\n'), stderr: child.stderr.join('\n') };
}

describe('results and migrate commands', () => {
  let dir: string;
  let schema: string;
  let env: Record<string, string>;
  const configFile = (): string => join(dir, 'watcher.yaml');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-pgcmd-'));
    schema = uniqueSchema('ibw_cmd');
    env = { IBW_DATABASE_URL: testDatabaseUrl() };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  async function writeConfig(backend: 'file' | 'postgres', s = schema): Promise<void> {
    await writeFile(
      configFile(),
      `alibaba:\n  regionId: cn-shanghai\nstate:\n  backend: ${backend}\n  dir: ./state\n  postgres:\n    schema: ${s}\n    lease: 5s\noutput:\n  resultsDir: ./results\n`,
    );
  }

  it('results: file backend, json and csv (one row per device, quoted where needed)', async () => {
    await writeConfig('file');
    const files = createResultWriter({ resultsDir: join(dir, 'results'), includeSecrets: true, fsyncDir: false });
    await files.write(R1);
    await files.write(R2);
    const json = await exitOf(['results', '--config', configFile()], env, dir);
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as (BatchResult & { account: string })[];
    expect(parsed.map((r) => [r.account, r.applyId])).toEqual([
      ['default', '7001'],
      ['default', '7002'],
    ]);
    expect(parsed[0]!.devices[1]!.deviceSecret).toBe('S3cr3t-"two"');
    const csv = await exitOf(['results', '--config', configFile(), '--format', 'csv', '--apply-id', '7001'], env, dir);
    expect(csv.code).toBe(0);
    expect(csvLines(csv.stdout)).toEqual([
      'ProductKey,DeviceName,DeviceSecret,IotId',
      'a1Prod,dev-1,S3cr3t-one,iot-1',
      'a1Prod,"dev,2","S3cr3t-""two""",iot-2',
    ]);
    const other = await exitOf(['results', '--config', configFile(), '--account', 'other'], env, dir);
    expect(JSON.parse(other.stdout)).toEqual([]);
    const bad = await exitOf(['results', '--config', configFile(), '--format', 'xml'], env, dir);
    expect(bad.code).toBe(2);
  }, 60_000);

  it('results: postgres backend, from the results table (full JSON with secrets, fenced upsert)', async () => {
    const s = uniqueSchema('ibw_res');
    try {
      await writeConfig('postgres', s);
      const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema: s, leaseMs: 5000 });
      const store = createPostgresResultStore(ledger.handle, { includeSecrets: true });
      expect(await store.write(R1)).toBe(`postgres:${s}.results/default/a1Prod/7001`);
      await store.write(R2);
      await store.write(R1); // idempotent
      await ledger.close();
      await expect(store.write(R1)).rejects.toMatchObject({ code: 'LeaseNotHeld' });
      const rows = await sql<{ n: string }>(`SELECT count(*) AS n FROM "${s}".results`);
      expect(rows[0]!.n).toBe('2');
      const csv = await exitOf(['results', '--config', configFile(), '--format', 'csv', '--product-key', 'a1Prod'], env, dir);
      expect(csv.code, csv.stderr).toBe(0);
      expect(csvLines(csv.stdout)).toEqual([
        'ProductKey,DeviceName,DeviceSecret,IotId',
        'a1Prod,dev-1,S3cr3t-one,iot-1',
        'a1Prod,"dev,2","S3cr3t-""two""",iot-2',
        'a1Prod,dev-3,,iot-3',
      ]);
      const json = await exitOf(['results', '--config', configFile(), '--apply-id', '7002'], env, dir);
      const parsed = JSON.parse(json.stdout) as BatchResult[];
      expect(parsed).toHaveLength(1);
      expect(parsed[0]).toMatchObject({ account: 'default', ...R2 });
      // A wrong password: exit 1, a clear message, and the password is not in it.
      const password = decodeURIComponent(new URL(testDatabaseUrl()).password);
      const wrong = new URL(testDatabaseUrl());
      wrong.password = `${password}x`;
      const denied = await exitOf(['results', '--config', configFile()], { IBW_DATABASE_URL: wrong.href }, dir);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toContain('password authentication failed');
      expect(denied.stderr + denied.stdout).not.toContain(password);
    } finally {
      await dropSchema(s);
    }
  }, 60_000);

  it('migrate --from-file: moves the ledger, is idempotent, refuses a different ledger and a held directory', async () => {
    await writeConfig('postgres');
    const stateDir = join(dir, 'state');
    const file = await openFileLedger({ dir: stateDir, fsync: false });
    const batches = Array.from({ length: 30 }, (_, i) => makeBatch(i, { polls: i }));
    await file.append(batches.map(batchRec));
    await file.compact(await file.load());
    await file.append([{ t: 'forget', key: batches[3]!.key }, batchRec(makeBatch(5, { polls: 500 })), eventRec('e1'), eventRec('e2')]);
    await file.append([{ t: 'ack', id: 'e1', sink: 'log' }]);
    const expected = plain(await file.load());
    // A provisioning job of that state directory: its state moves too (else it would start over and submit again).
    const job = reconcileJob(null, { name: 'line-4', productKey: 'a1P', account: null, source: { kind: 'count', count: 5 }, chunkSize: 3, until: 'created', labels: {} }, null, 0).state;
    await createFileJobStore(stateDir).save(job);

    // While the file ledger is open, its LOCK names this (live) process: refused, nothing written.
    const held = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(/refusing: a daemon holds/);
    expect(await sql('SELECT to_regclass($1) AS t', [`${schema}.journal`])).toEqual([{ t: null }]);
    await file.close();

    const first = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('migrated 29 batches and 2 undelivered events and 1 provisioning job');
    const jobRows = await sql<{ account: string; name: string; state: unknown }>(`SELECT account, name, state FROM "${schema}".provision_jobs`);
    expect(jobRows).toEqual([{ account: 'default', name: 'line-4', state: job }]);
    const second = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('already migrated');
    expect(second.stdout).toContain('nothing changed');
    // A run cut off after the ledger came over left its jobs behind: the next run moves them.
    await sql(`DELETE FROM "${schema}".provision_jobs`);
    const third = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stdout).toMatch(/already migrated: .* moved 1 provisioning job/);
    expect(await sql(`SELECT name FROM "${schema}".provision_jobs`)).toEqual([{ name: 'line-4' }]);
    // The same ledger but the job held with another state: refused before anything is written.
    const otherState = { ...job, rejected: [{ deviceName: 'y', line: 2, code: 'invalid_name', reason: 'r' }] };
    await sql(`UPDATE "${schema}".provision_jobs SET state = $1::json`, [JSON.stringify(otherState)]);
    const sameLedgerOtherJob = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(sameLedgerOtherJob.code).toBe(1);
    expect(sameLedgerOtherJob.stderr).toContain('already holds provisioning jobs "line-4" with another state');
    expect((await sql<{ state: unknown }>(`SELECT state FROM "${schema}".provision_jobs`)).map((r) => r.state)).toEqual([otherState]);
    await sql(`UPDATE "${schema}".provision_jobs SET state = $1::json`, [JSON.stringify(job)]);

    const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 5000 });
    expect(plain(await ledger.load())).toEqual(expected);
    await ledger.append([batchRec(makeBatch(100))]);
    expect((await ledger.load()).batches.size).toBe(30);
    // While the postgres ledger owns the account, migrate cannot take the lease.
    const owned = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(owned.code).toBe(1);
    expect(owned.stderr).toContain('is owned by');
    await ledger.close();
    // The database moved on: a different ledger is refused, and nothing changes.
    const different = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(different.code).toBe(1);
    expect(different.stderr).toContain('already holds a different ledger');
    // A job the database holds with another state is refused too, before anything is written.
    await sql(`UPDATE "${schema}".provision_jobs SET state = $1::json`, [JSON.stringify({ ...job, rejected: [{ deviceName: 'x', line: 1, code: 'invalid_name', reason: 'r' }] })]);
    const otherJob = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
    expect(otherJob.code).toBe(1);
    expect(otherJob.stderr).toContain('already holds provisioning jobs "line-4" with another state');
    const again = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 5000 });
    expect((await again.load()).batches.size).toBe(30);
    await again.close();
  }, 90_000);

  it('migrate: a LOCK renewed within the last minute refuses; an old one with a dead pid does not', async () => {
    const s = uniqueSchema('ibw_mig');
    try {
      await writeConfig('postgres', s);
      const stateDir = join(dir, 'state2');
      await mkdir(stateDir, { recursive: true });
      const file = await openFileLedger({ dir: stateDir, fsync: false });
      await file.append([batchRec(makeBatch(1))]);
      await file.close();
      // A lease-style LOCK: no live pid in it, but touched just now.
      await writeFile(join(stateDir, 'LOCK'), '2147480000\n');
      const fresh = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
      expect(fresh.code).toBe(1);
      expect(fresh.stderr).toMatch(/was renewed \d+s ago/);
      const old = new Date(Date.now() - 10 * 60_000);
      await utimes(join(stateDir, 'LOCK'), old, old);
      const stale = await exitOf(['migrate', '--from-file', stateDir, '--config', configFile()], env, dir);
      expect(stale.code, stale.stderr).toBe(0);
      expect(stale.stdout).toContain('migrated 1 batches');
      const reopened = await openFileLedger({ dir: stateDir, fsync: false }); // the file ledger is untouched and usable
      expect((await reopened.load()).batches.size).toBe(1);
      await reopened.close();
    } finally {
      await dropSchema(s);
    }
  }, 60_000);
});
