/**
 * Withdrawing a result from the postgres result store (a re-armed batch's stale result, DESIGN.md §4/§12):
 * the row goes (and the file, when result files are written too), fenced by the lease like every write.
 */
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import type { BatchResult } from '../../../src/core/ports.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { createPostgresResultStore } from '../../../src/ledger/postgres-results.js';
import { createResultWriter } from '../../../src/sinks/result-writer.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';

function result(applyId: string): BatchResult {
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
    validNames: ['dev-1'],
    invalidNames: [],
    invalidDetails: [],
    devices: [{ deviceName: 'dev-1', iotId: 'iot-1', deviceSecret: 'S3cr3t' }],
    deviceCount: 1,
    history: [{ status: 'CREATE_SUCCESS', at: '2026-01-01T00:01:00.000Z' }],
  };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rows(schema: string): Promise<string[]> {
  return (await sql<{ apply_id: string }>(`SELECT apply_id FROM "${schema}".results ORDER BY apply_id`)).map((r) => r.apply_id);
}

describe('postgres result store: remove', () => {
  it('withdraws the row and the file; removing what is not there is fine; refused without the lease', async () => {
    const schema = uniqueSchema('ibw_rrm');
    cleanups.push(() => dropSchema(schema));
    const dir = await mkdtemp(join(tmpdir(), 'ibw-rrm-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 5000, renewEveryMs: 0 });
    cleanups.push(() => ledger.close());
    const files = createResultWriter({ resultsDir: dir, includeSecrets: true, layout: 'product' });
    const store = createPostgresResultStore(ledger.handle, { includeSecrets: true, files });
    const path = await store.write(result('8001'));
    await store.write(result('8002'));
    expect(await rows(schema)).toEqual(['8001', '8002']);

    await store.remove!('a1Prod', '8001');
    expect(await rows(schema)).toEqual(['8002']);
    await expect(access(path)).rejects.toMatchObject({ code: 'ENOENT' });
    await store.remove!('a1Prod', '8001'); // already gone: no error
    await store.remove!('a1Other', '8002'); // another product's key: nothing removed
    expect(await rows(schema)).toEqual(['8002']);

    // Another replica holds the account now (epoch 2): the old owner's withdrawal is refused and removes nothing.
    await sql(`UPDATE "${schema}".leases SET owner = 'someone-else', epoch = epoch + 1`);
    await expect(store.remove!('a1Prod', '8002')).rejects.toMatchObject({ kind: 'store', code: 'LeaseLost' });
    expect(await rows(schema)).toEqual(['8002']);
    await expect(store.remove!('a1Prod', '8002')).rejects.toMatchObject({ code: 'LeaseNotHeld' });
  });
});
