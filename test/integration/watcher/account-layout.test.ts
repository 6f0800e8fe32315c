/**
 * The file layout of several accounts (DESIGN.md §11): the account named `default` keeps `state.dir` itself, every
 * other account has `<state.dir>/accounts/<name>/`. So a state directory from before accounts (the fixture
 * test/fixtures/ledger-before-accounts, written by main's code before accounts) keeps its state when the file adds
 * `accounts` with a first account `default`, and the ledger of `state.dir` is not confused by the `accounts/`
 * subdirectory beside its files (it opens again, unchanged, with it present).
 */
import { cp, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readStatusRows } from '../../../src/commands/status-rows.js';
import { compileConfigObject } from '../../../src/config/compile.js';
import type { BatchRecord } from '../../../src/core/record.js';
import { Daemon } from '../../../src/daemon.js';
import { accountStateDir } from '../../../src/ledger/open-state.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';

const FIXTURE = fileURLToPath(new URL('../../fixtures/ledger-before-accounts/state', import.meta.url));
const ENV = { D_ID: 'SimAccessKeyId', D_SECRET: 'SimAccessKeySecret', B_ID: 'FleetBKeyId', B_SECRET: 'FleetBSecret' };

/** The entries the fixture was written with (same entries, same hashes: nothing is re-armed). */
const ENTRIES = Array.from({ length: 6 }, (_, i) => ({
  applyId: String(7_100_000 + i),
  productKey: i % 2 === 0 ? 'a1SimProduct1' : 'a1SimProduct2',
  name: `old-${i}`,
  labels: { gen: 'main' },
}));

const snapshotOf = async (dir: string): Promise<BatchRecord[]> =>
  (JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')) as { batches: BatchRecord[] }).batches;

describe('accountStateDir', () => {
  it('puts `default` in state.dir and every other account under accounts/<name>', () => {
    expect(accountStateDir('/var/lib/ibw', 'default')).toBe('/var/lib/ibw');
    expect(accountStateDir('/var/lib/ibw', 'fleet-b')).toBe(join('/var/lib/ibw', 'accounts', 'fleet-b'));
  });
});

describe('an old state directory under a file that adds accounts (first account default)', () => {
  let simD: SimulatorHandle;
  let simB: SimulatorHandle;
  let dir: string;
  let before: BatchRecord[];
  let after: BatchRecord[];
  let config: ReturnType<typeof compileConfigObject>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-account-layout-'));
    await cp(FIXTURE, join(dir, 'state'), { recursive: true });
    before = await snapshotOf(join(dir, 'state'));
    simD = await startSimulator({ port: 0, timeScale: 20, seed: 7 });
    simB = await startSimulator({ port: 0, timeScale: 20, seed: 8, accessKeyId: ENV.B_ID, accessKeySecret: ENV.B_SECRET });
    for (const [i, e] of ENTRIES.entries()) {
      simD.control.addBatch({ applyId: e.applyId, productKey: e.productKey, mode: 'custom', deviceNames: [`old-${i}-a`, `old-${i}-b`], registered: true });
    }
    simB.control.addBatch({ applyId: '7200001', productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['dev-b-1'], registered: true });
    config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' },
        accounts: [
          { name: 'default', endpoint: simD.url, credentials: { accessKeyIdEnv: 'D_ID', accessKeySecretEnv: 'D_SECRET' } },
          { name: 'fleet-b', endpoint: simB.url, credentials: { accessKeyIdEnv: 'B_ID', accessKeySecretEnv: 'B_SECRET' } },
        ],
        polling: { initialDelay: '200ms', maxDelay: '400ms', timeout: '3650d', stalledAfter: '3650d' },
        state: { dir: join(dir, 'state') },
        output: { resultsDir: join(dir, 'results') },
        http: { listen: 'off' },
        // The old entries take the first account (default); one batch of fleet-b.
        batches: [...ENTRIES, { account: 'fleet-b', applyId: '7200001', productKey: 'a1SimProduct1' }],
      },
      { cwd: dir },
    );
    const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env: ENV, housekeeping: false });
    await daemon.start();
    await daemon.whenAllSettled();
    await daemon.stop();
    after = await snapshotOf(join(dir, 'state'));
  }, 60_000);

  afterAll(async () => {
    await simD?.close();
    await simB?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps the old batches in state.dir: settled ones exactly as they were, pending ones settled under their old keys', () => {
    for (const rec of before.filter((r) => r.state === 'settled')) expect(after.find((r) => r.key === rec.key)).toEqual(rec);
    for (const rec of before.filter((r) => r.state === 'pending')) {
      expect(after.find((r) => r.key === rec.key)).toMatchObject({ key: rec.key, firstSeenAt: rec.firstSeenAt, outcome: 'created', state: 'settled' });
    }
    // Only the default account's batches live in state.dir.
    expect(after.map((r) => r.key).sort()).toEqual(before.map((r) => r.key).sort());
  });

  it('keeps the other account in <state.dir>/accounts/fleet-b, and status reads both', async () => {
    const b = await snapshotOf(join(dir, 'state', 'accounts', 'fleet-b'));
    expect(b.map((r) => [r.key, r.account, r.outcome])).toEqual([['fleet-b:a1SimProduct1/7200001', 'fleet-b', 'created']]);
    expect(await readdir(join(dir, 'state', 'accounts'))).toEqual(['fleet-b']);
    const rows = await readStatusRows(join(dir, 'state'));
    expect(rows).toHaveLength(7);
    expect(rows.filter((r) => r.account === 'fleet-b')).toHaveLength(1);
  });

  it('opens state.dir again with the accounts/ subdirectory beside its files, unchanged', async () => {
    const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env: ENV, housekeeping: false });
    await daemon.start();
    expect(daemon.runtimes.map((r) => r.state)).toEqual(['running', 'running']);
    expect(daemon.list()).toHaveLength(7);
    expect(daemon.list().every((r) => r.state === 'settled')).toBe(true);
    await daemon.stop();
    const again = await snapshotOf(join(dir, 'state'));
    expect(again.map((r) => [r.key, r.state, r.polls]).sort()).toEqual(after.map((r) => [r.key, r.state, r.polls]).sort());
  });
});
