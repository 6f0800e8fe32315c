/**
 * The postgres job store (src/ledger/postgres-jobs.ts) on a real server: saves are fenced by the account's lease
 * (an owner that lost it records no intent and changes nothing), jobs are kept per account, a row of another
 * version is refused rather than misread, the readers of the commands read without a lease and find nothing in a
 * schema never migrated, and `provision resolve`'s update changes the row in one transaction.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { Daemon } from '../../../src/daemon.js';
import { createLogger } from '../../../src/ops/logger.js';
import { createFileJobStore } from '../../../src/provision/file-job-store.js';

import { createPostgresJobStore, readPostgresJobStates, updatePostgresJobState } from '../../../src/ledger/postgres-jobs.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { resolveUnknown, startSubmission } from '../../../src/provision/chunk-transitions.js';
import { type JobSpec, type JobState, reconcileJob, withChunk } from '../../../src/provision/job-state.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';

const spec: JobSpec = { name: 'line-4', productKey: 'a1P', account: null, source: { kind: 'count', count: 5 }, chunkSize: 3, until: 'created', labels: {} };
const planned = (): JobState => reconcileJob(null, spec, null, 1000).state;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function open(schema: string, account = 'default') {
  const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 5000, renewEveryMs: 0, account });
  cleanups.push(() => ledger.close());
  return ledger;
}

async function withClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: testDatabaseUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe('postgres job store', () => {
  it('saves and loads per account, lists names, and refuses the save of an owner that lost its lease', async () => {
    const schema = uniqueSchema('ibw_jobs');
    cleanups.push(() => dropSchema(schema));
    const ledger = await open(schema);
    const other = await open(schema, 'fleet-b');
    const store = createPostgresJobStore(ledger.handle);
    const otherStore = createPostgresJobStore(other.handle);
    expect(await store.load('line-4')).toBeNull();
    expect(await store.list()).toEqual([]);

    const state = planned();
    await store.save(state);
    await otherStore.save({ ...planned(), name: 'other-job' });
    expect(await store.load('line-4')).toEqual(state);
    expect(await store.list()).toEqual(['line-4']);
    expect(await otherStore.list()).toEqual(['other-job']);

    // The intent of chunk 0, saved as the runner saves it before sending.
    const intent = withChunk(state, startSubmission(state.chunks[0]!, 2000).rec);
    await store.save(intent);
    expect((await store.load('line-4'))?.chunks[0]?.state).toBe('submitting');

    // Another replica holds the account now (a new epoch): the old owner's next intent is refused, the row keeps
    // what the last owner saved, and every later save is refused without touching the database.
    await sql(`UPDATE "${schema}".leases SET owner = 'someone-else', epoch = epoch + 1 WHERE account = 'default'`);
    const late = withChunk(intent, startSubmission(intent.chunks[1]!, 3000).rec);
    await expect(store.save(late)).rejects.toMatchObject({ kind: 'store', code: 'LeaseLost' });
    await expect(store.save(late)).rejects.toMatchObject({ code: 'LeaseNotHeld' });
    const kept = await withClient((c) => readPostgresJobStates(c, `"${schema}"`, { account: 'default' }));
    expect(kept.map((j) => j.state.chunks.map((c) => c.state))).toEqual([['submitting', 'planned']]);

    // What the next owner makes of the row: the chunk whose intent it finds is parked, never sent blindly.
    const recovered = reconcileJob(kept[0]!.state, spec, null, 4000).state;
    expect(recovered.chunks[0]?.state).toBe('submission_unknown');
    expect(recovered.chunks[1]?.state).toBe('planned');
  });

  it('reads every account without a lease, nothing from an unmigrated schema, and refuses a row of another version', async () => {
    const schema = uniqueSchema('ibw_jobs');
    cleanups.push(() => dropSchema(schema));
    expect(await withClient((c) => readPostgresJobStates(c, `"${schema}"`))).toEqual([]);
    const a = await open(schema);
    const b = await open(schema, 'fleet-b');
    await createPostgresJobStore(a.handle).save(planned());
    await createPostgresJobStore(b.handle).save(planned());
    const all = await withClient((c) => readPostgresJobStates(c, `"${schema}"`));
    expect(all.map((j) => [j.account, j.state.name])).toEqual([
      ['default', 'line-4'],
      ['fleet-b', 'line-4'],
    ]);
    expect((await withClient((c) => readPostgresJobStates(c, `"${schema}"`, { name: 'nope' })))).toEqual([]);

    await sql(`UPDATE "${schema}".provision_jobs SET state = '{"version":99,"name":"line-4"}' WHERE account = 'fleet-b'`);
    await expect(createPostgresJobStore(b.handle).load('line-4')).rejects.toThrow(/provision_jobs\/fleet-b\/line-4: job state version 99, expected 1/);
  });

  it('resolve: updates the row in one transaction, and writes nothing when the change says so', async () => {
    const schema = uniqueSchema('ibw_jobs');
    cleanups.push(() => dropSchema(schema));
    const ledger = await open(schema);
    const store = createPostgresJobStore(ledger.handle);
    const parkedState = reconcileJob(withChunk(planned(), startSubmission(planned().chunks[0]!, 2000).rec), spec, null, 3000).state;
    await store.save(parkedState);
    expect(parkedState.chunks[0]?.state).toBe('submission_unknown');

    const untouched = await withClient((c) => updatePostgresJobState(c, `"${schema}"`, 'default', 'line-4', () => null));
    expect(untouched).toBeNull();
    expect(await store.load('line-4')).toEqual(parkedState);
    const missing = await withClient((c) => updatePostgresJobState(c, `"${schema}"`, 'default', 'absent', (s) => s));
    expect(missing).toBeNull();

    const next = await withClient((c) =>
      updatePostgresJobState(c, `"${schema}"`, 'default', 'line-4', (s) => withChunk(s!, resolveUnknown(s!.chunks[0]!, { applyId: '4242' }, 5000).rec)),
    );
    expect(next?.chunks[0]?.applyId).toBe('4242');
    expect((await store.load('line-4'))?.chunks[0]).toMatchObject({ applyId: '4242', state: next?.chunks[0]?.state });
  });
});

describe('a file deployment switched to PostgreSQL without migrate', () => {
  it('refuses the job whose state is still in state.dir (it would submit its chunks again), naming what to run', async () => {
    const schema = uniqueSchema('ibw_jobs');
    cleanups.push(() => dropSchema(schema));
    const dir = await mkdtemp(join(tmpdir(), 'ibw-jobs-unmigrated-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const stateDir = join(dir, 'state');
    await createFileJobStore(stateDir).save(withChunk(planned(), startSubmission(planned().chunks[0]!, 2000).rec));
    const config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:9' },
        state: { backend: 'postgres', dir: stateDir, postgres: { schema } },
        output: { resultsDir: join(dir, 'results') },
        http: { listen: 'off' },
        provision: [{ name: 'line-4', productKey: 'a1P', count: 5, chunkSize: 3 }],
      },
      { cwd: dir },
    );
    const credentials = { get: () => Promise.resolve({ accessKeyId: 'id', accessKeySecret: 'secret', securityToken: null }) };
    const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env: { IBW_DATABASE_URL: testDatabaseUrl() }, credentials, http: false, housekeeping: false });
    const err = await daemon.start().then(
      () => null,
      (e: unknown) => e,
    );
    await daemon.stop();
    expect(err).toMatchObject({ code: 'JobNotMigrated' });
    expect((err as Error).message).toContain(`provisioning job "line-4" has its state in ${join(stateDir, 'provision', 'line-4.json')} but not in the database`);
    expect((err as Error).message).toContain(`iot-batch-watcher migrate --from-file ${stateDir}`);
    // Nothing was written for the job, and the lease was given back.
    expect(await sql(`SELECT name FROM "${schema}".provision_jobs`)).toEqual([]);
    expect(await sql(`SELECT owner FROM "${schema}".leases`)).toEqual([{ owner: null }]);
  });
});
