/**
 * An existing state directory from before accounts (DESIGN.md §11, issue #15) opens unchanged as account
 * `default` and resumes every batch: test/fixtures/ledger-before-accounts/state was written by main's code before
 * accounts (commit 9ce35de: 3 batches settled, 3 pending after two polls each). With today's code and a file without
 * `accounts` the settled batches stay exactly as they were (not polled again), the pending ones settle, keys, event
 * ids and the result layout keep their old form.
 */
import { cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import type { BatchRecord } from '../../../src/core/record.js';
import { Daemon } from '../../../src/daemon.js';
import type { WatcherEvent } from '../../../src/events.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';

const FIXTURE = fileURLToPath(new URL('../../fixtures/ledger-before-accounts/state', import.meta.url));
const credentials = {
  get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }),
};

/** The entries the fixture was written with (same entries, same hashes: nothing is re-armed). */
const ENTRIES = Array.from({ length: 6 }, (_, i) => ({
  applyId: String(7_100_000 + i),
  productKey: i % 2 === 0 ? 'a1SimProduct1' : 'a1SimProduct2',
  name: `old-${i}`,
  labels: { gen: 'main' },
}));

describe('a state directory from before accounts', () => {
  let sim: SimulatorHandle;
  let dir: string;
  let before: BatchRecord[];
  let after: BatchRecord[];
  let events: WatcherEvent[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-old-ledger-'));
    await cp(FIXTURE, join(dir, 'state'), { recursive: true });
    before = (JSON.parse(await readFile(join(dir, 'state', 'snapshot.json'), 'utf8')) as { batches: BatchRecord[] }).batches;
    sim = await startSimulator({ port: 0, timeScale: 20, seed: 7 });
    for (const [i, e] of ENTRIES.entries()) {
      sim.control.addBatch({ applyId: e.applyId, productKey: e.productKey, mode: 'custom', deviceNames: [`old-${i}-a`, `old-${i}-b`], registered: true });
    }
    const config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: sim.url },
        polling: { initialDelay: '200ms', maxDelay: '400ms', timeout: '3650d', stalledAfter: '3650d' },
        state: { dir: join(dir, 'state') },
        output: { resultsDir: join(dir, 'results'), eventsFile: join(dir, 'events.jsonl') },
        http: { listen: 'off' },
        batches: ENTRIES,
      },
      { cwd: dir },
    );
    const daemon = new Daemon({ config, logger: createLogger({ level: 'silent' }), env: {}, credentials, housekeeping: false });
    await daemon.start();
    await daemon.whenAllSettled();
    await daemon.flushSinks(5000);
    await daemon.stop();
    after = (JSON.parse(await readFile(join(dir, 'state', 'snapshot.json'), 'utf8')) as { batches: BatchRecord[] }).batches;
    events = (await readFile(join(dir, 'events.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as WatcherEvent);
  }, 60_000);

  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is the fixture it claims to be: 3 settled and 3 pending batches with old keys and no account field', () => {
    expect(before.map((r) => [r.key, r.state]).sort()).toEqual([
      ['a1SimProduct1/7100000', 'settled'],
      ['a1SimProduct1/7100002', 'settled'],
      ['a1SimProduct1/7100004', 'pending'],
      ['a1SimProduct2/7100001', 'settled'],
      ['a1SimProduct2/7100003', 'pending'],
      ['a1SimProduct2/7100005', 'pending'],
    ]);
    expect(before.every((r) => !('account' in r))).toBe(true);
  });

  it('keeps every settled batch exactly as it was, and never polls it again', () => {
    const settled = before.filter((r) => r.state === 'settled');
    for (const rec of settled) expect(after.find((r) => r.key === rec.key)).toEqual(rec);
    const polled = new Set(sim.control.requestLog().map((e) => e.applyId));
    expect(settled.filter((r) => polled.has(r.applyId)).map((r) => r.applyId)).toEqual([]);
  });

  it('resumes every pending batch under its old key as account default, and settles it', () => {
    for (const rec of before.filter((r) => r.state === 'pending')) {
      const now = after.find((r) => r.key === rec.key)!;
      expect(now).toMatchObject({ key: rec.key, firstSeenAt: rec.firstSeenAt, outcome: 'created', state: 'settled', deviceCount: 2 });
      expect(now.polls).toBeGreaterThan(rec.polls);
      expect('account' in now).toBe(false);
    }
    expect(after.map((r) => r.key).sort()).toEqual(before.map((r) => r.key).sort());
  });

  it('continues the old event ids and writes results in the old layout', async () => {
    for (const rec of before.filter((r) => r.state === 'pending')) {
      const mine = events.filter((e) => e.applyId === rec.applyId);
      expect(mine.length).toBeGreaterThan(0);
      for (const e of mine) {
        expect(e.id).toMatch(new RegExp(`^${rec.applyId}:[^:]+:\\d+$`));
        expect(Number(e.id.split(':')[2])).toBeGreaterThan(rec.eventSeq);
        expect(e.account).toBe('default');
      }
      const file = join(dir, 'results', rec.productKey, `${rec.applyId}.json`);
      expect((await stat(file)).isFile()).toBe(true);
      expect(Object.keys(JSON.parse(await readFile(file, 'utf8')) as object)[0]).toBe('applyId');
    }
  });
});
