/**
 * `/v1/batches` on a standby (DESIGN.md §12: "`status`, `/v1/batches` and `/metrics` work on every replica"): a
 * replica that does not own an account shows that account's batches (and `/v1/jobs` its provisioning jobs) as the
 * database holds them, read in the background at most every 2 s (CachedStatusRows), without touching the owner's
 * lease.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { systemClock } from '../../../src/core/clock.js';
import { batchKey, type BatchRecord } from '../../../src/core/record.js';
import type { StatusRow } from '../../../src/core/status-row.js';
import { Daemon } from '../../../src/daemon.js';
import { openPostgresLedger, type PostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { createPostgresJobStore } from '../../../src/ledger/postgres-jobs.js';
import { CachedStatusRows } from '../../../src/ledger/postgres-status.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type JobSpec, type ProvisionStatusRow, reconcileJob } from '../../../src/provision/job-state.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, makeBatch } from '../../unit/ledger/helpers.js';

const JOB: JobSpec = { name: 'line-4', productKey: 'a1P', account: 'fleet-x', source: { kind: 'count', count: 5 }, chunkSize: 3, until: 'created', labels: {} };

function batchOf(account: string, n: number, over: Partial<BatchRecord> = {}): BatchRecord {
  const rec = makeBatch(n, over);
  return { ...rec, account, key: batchKey(rec.productKey, rec.applyId, account) };
}

/** Polls `probe` (a loopback request) until `done` says yes; the refresh runs in the background. */
async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('CachedStatusRows', () => {
  it('answers at once with the last rows, reads at most every maxAgeMs, and reports a run of failures once', async () => {
    let now = 1_000;
    const reads: ((rows: StatusRow[] | Error) => void)[] = [];
    const errors: unknown[] = [];
    const cache = new CachedStatusRows({
      read: () => new Promise<StatusRow[]>((resolve, reject) => reads.push((r) => (r instanceof Error ? reject(r) : resolve(r)))),
      clock: { now: () => now },
      maxAgeMs: 2000,
      onError: (err) => errors.push(err),
    });
    const row = (applyId: string) => ({ applyId }) as StatusRow;
    expect(cache.rows()).toBeNull();
    expect(cache.rows()).toBeNull();
    expect(reads).toHaveLength(1); // one read in flight, not one per call
    const first = cache.refresh();
    reads[0]!([row('1')]);
    await first;
    expect(cache.rows()!.map((r) => r.applyId)).toEqual(['1']);
    now += 1999;
    expect(cache.rows()!.map((r) => r.applyId)).toEqual(['1']);
    expect(reads).toHaveLength(1); // still fresh
    now += 1;
    cache.rows();
    expect(reads).toHaveLength(2);
    const second = cache.refresh();
    reads[1]!(new Error('PostgreSQL: cannot connect'));
    await second;
    expect(cache.rows()!.map((r) => r.applyId)).toEqual(['1']); // the last rows read stay
    now += 2000;
    const third = cache.refresh();
    reads[2]!(new Error('PostgreSQL: cannot connect'));
    await third;
    expect(errors).toHaveLength(1);
    now += 2000;
    const fourth = cache.refresh();
    reads[3]!([row('1'), row('2')]);
    await fourth;
    expect(cache.rows()!.map((r) => r.applyId)).toEqual(['1', '2']);
    now += 2000;
    const fifth = cache.refresh();
    reads[4]!(new Error('down again'));
    await fifth;
    expect(errors.map((e) => (e as Error).message)).toEqual(['PostgreSQL: cannot connect', 'down again']);
  });
});

describe('/v1/batches on a standby (postgres)', () => {
  const schema = uniqueSchema('ibw_standby_rows');
  let dir: string;
  let owner: PostgresLedger;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-pg-standby-rows-'));
    // The owner of fleet-x: holds its lease (not renewed in the test: the lease row must not change under us).
    owner = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, account: 'fleet-x', leaseMs: 60_000, renewEveryMs: 0 });
    await owner.append([1, 2].map((n) => batchRec(batchOf('fleet-x', n))));
  });
  afterAll(async () => {
    await owner.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  it('a standby shows the owner\'s batches, refreshed at most every 2 s, and leaves the lease alone', async () => {
    const config = {
      ...compileConfigObject(
        { alibaba: { regionId: 'cn-shanghai' }, accounts: [{ name: 'fleet-x' }], state: { backend: 'postgres', postgres: { schema, lease: '60s' } }, output: { resultsDir: 'results' } },
        { cwd: dir },
      ),
      http: { listen: { host: '127.0.0.1', port: 0 } },
    };
    // Real sleeps (the standby's wait), but time as the cache sees it moves only when the test says so.
    let now = systemClock.now();
    const clock = { now: () => now, sleep: (ms: number, signal?: AbortSignal) => systemClock.sleep(ms, signal) };
    const credentials = { get: () => Promise.resolve({ accessKeyId: 'id', accessKeySecret: 'secret', securityToken: null }) };
    const env = { IBW_DATABASE_URL: testDatabaseUrl() };
    const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env, credentials, clock, housekeeping: false });
    const started = daemon.start();
    const leaseBefore = await sql(`SELECT owner, epoch, expires_at, renewed_at FROM "${schema}".leases WHERE account = 'fleet-x'`);
    try {
      await until(async () => daemon.runtimes.map((r) => r.state), (s) => s.length === 1 && s[0] === 'standby' && daemon.isReady());
      expect(daemon.runtimes.map((r) => r.state)).toEqual(['standby']);
      const url = `${daemon.httpUrl!}/v1/batches`;
      const get = async (): Promise<StatusRow[]> => (await (await fetch(url)).json()) as StatusRow[];

      const shown = await until(get, (rows) => rows.length === 2);
      expect(shown.map((r) => [r.account, r.applyId, r.state])).toEqual([
        ['fleet-x', '1000001', 'pending'],
        ['fleet-x', '1000002', 'pending'],
      ]);

      // A new batch of the owner: not read again before 2 s have passed (one read per interval, not per request)...
      await owner.append([batchRec(batchOf('fleet-x', 3, { state: 'settled', outcome: 'created', settledAt: 1_700_000_100_000 }))]);
      for (let i = 0; i < 3; i += 1) expect((await get()).map((r) => r.applyId)).toEqual(['1000001', '1000002']);
      // ...then it is.
      now += 2000;
      const fresh = await until(get, (rows) => rows.length === 3);
      expect(fresh.map((r) => [r.applyId, r.state])).toEqual([
        ['1000001', 'pending'],
        ['1000002', 'pending'],
        ['1000003', 'settled'],
      ]);

      // Its provisioning jobs too (`/v1/jobs`), read from the database the same way (the owner saved one).
      await createPostgresJobStore(owner.handle).save(reconcileJob(null, JOB, null, 0).state);
      const jobs = await until(
        async () => (await (await fetch(`${daemon.httpUrl!}/v1/jobs`)).json()) as ProvisionStatusRow[],
        (rows) => rows.length === 1,
      );
      expect(jobs).toEqual([{ job: 'line-4', productKey: 'a1P', chunksSettled: 0, chunksTotal: 2, devicesCreated: 0, devicesRequested: 5, parked: 0 }]);

      // The owner is undisturbed: same lease row, its fenced appends go on.
      expect(await sql(`SELECT owner, epoch, expires_at, renewed_at FROM "${schema}".leases WHERE account = 'fleet-x'`)).toEqual(leaseBefore);
      expect(owner.leaseTrusted()).toBe(true);
      await owner.append([batchRec(batchOf('fleet-x', 4))]);
      expect(daemon.runtimes.map((r) => r.state)).toEqual(['standby']);
    } finally {
      await daemon.stop();
      await started.catch(() => undefined);
    }
  }, 30_000);
});
