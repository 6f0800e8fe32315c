/** openStateBackend: the configuration picks the ledger and the result store (what the daemon will call). */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import type { BatchResult } from '../../../src/core/ports.js';
import { openStateBackend } from '../../../src/ledger/open-state.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, makeBatch } from '../../unit/ledger/helpers.js';

const RESULT: BatchResult = {
  applyId: '8001',
  productKey: 'a1Prod',
  name: null,
  labels: {},
  outcome: 'created',
  status: 'CREATE_SUCCESS',
  firstSeenAt: '2026-01-01T00:00:00.000Z',
  settledAt: '2026-01-01T00:01:00.000Z',
  polls: 1,
  validNames: ['d1'],
  invalidNames: [],
  invalidDetails: [],
  devices: [{ deviceName: 'd1', iotId: 'i1', deviceSecret: 'sekrit' }],
  deviceCount: 1,
  history: [],
};

describe('openStateBackend', () => {
  let dir: string;
  const schema = uniqueSchema('ibw_open');
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-open-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  it('file: the file ledger in state.dir and result files', async () => {
    const config = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, state: { dir: 'state' }, output: { resultsDir: 'results' } }, { cwd: dir });
    const state = await openStateBackend(config, { env: {} });
    expect(state.backend).toBe('file');
    expect(state.postgres).toBeNull();
    await state.ledger.append([batchRec(makeBatch(1))]);
    expect(await state.results.write(RESULT)).toBe(join(dir, 'results', 'a1Prod', '8001.json'));
    await state.ledger.close();
    await expect(stat(join(dir, 'state', 'LOCK'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('postgres: the lease-holding postgres ledger; results go to the table and to output.resultsDir', async () => {
    const config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai' },
        state: { backend: 'postgres', postgres: { schema, lease: '5s' } },
        output: { resultsDir: 'pg-results' },
      },
      { cwd: dir },
    );
    const state = await openStateBackend(config, { env: { IBW_DATABASE_URL: testDatabaseUrl() } });
    try {
      expect(state.backend).toBe('postgres');
      expect(state.postgres?.leaseTrusted()).toBe(true);
      expect(state.postgres?.lease.leaseMs).toBe(5000);
      await state.ledger.append([batchRec(makeBatch(1))]);
      const path = await state.results.write(RESULT);
      expect(path).toBe(join(dir, 'pg-results', 'a1Prod', '8001.json'));
      expect(JSON.parse(await readFile(path, 'utf8')).devices[0].deviceSecret).toBe('sekrit');
      const rows = await sql<{ result: BatchResult }>(`SELECT result FROM "${schema}".results`);
      expect(rows[0]!.result.devices[0]!.deviceSecret).toBe('sekrit');
    } finally {
      await state.ledger.close();
    }
  });
});
