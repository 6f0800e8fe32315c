/**
 * Parking by account (src/core/account-parking.ts) and its re-arm in the reconcile plan: an open batch parked by
 * its account's fatal error keeps its position, shows the reason, and goes back to where it was (pending or
 * fetching) when its account runs again; removed from the file meanwhile, it is cancelled (or still settles).
 */
import { describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { isAccountParked, parkForAccount, unparkForAccount } from '../../../src/core/account-parking.js';
import { createSeededRandom } from '../../../src/core/clock.js';
import { planReconcile } from '../../../src/core/reconcile-plan.js';
import type { BatchRecord } from '../../../src/core/record.js';
import { createRecord } from '../../../src/core/transitions.js';
import { DaemonError } from '../../../src/errors.js';

const config = compileConfigObject(
  {
    alibaba: { regionId: 'cn-shanghai' },
    accounts: [{ name: 'fleet-a' }, { name: 'fleet-b' }],
    batches: [
      { account: 'fleet-b', applyId: '1', productKey: 'a1SimProduct1' },
      { account: 'fleet-b', applyId: '2', productKey: 'a1SimProduct1' },
    ],
  },
  { cwd: '/tmp' },
);
const fatal = new DaemonError('QueryBatchRegisterDeviceStatus: SignatureDoesNotMatch (HTTP 400): wrong secret', {
  kind: 'auth',
  scope: 'process',
  code: 'SignatureDoesNotMatch',
});

function pendingRec(i: number, now = 1000): BatchRecord {
  return { ...createRecord(config.batches[i]!, now), polls: 4, attempt: 3, nextDueAt: now + 5000, status: 'CHECK' };
}

describe('parkForAccount / unparkForAccount', () => {
  it('parks an open record with the reason and no outcome, and re-arms it to where it was', () => {
    const rec = pendingRec(0);
    const parked = parkForAccount(rec, fatal, 2000);
    expect(parked.effects).toEqual([]);
    expect(parked.rec).toMatchObject({ state: 'parked', parkedFrom: 'pending', outcome: null, polls: 4, attempt: 3 });
    expect(parked.rec.lastError).toEqual({ code: 'SignatureDoesNotMatch', message: `account "fleet-b" parked: ${fatal.message}`, at: 2000 });
    expect(isAccountParked(parked.rec)).toBe(true);
    const back = unparkForAccount(parked.rec, 3000).rec;
    expect(back).toMatchObject({ state: 'pending', polls: 4, attempt: 3, nextDueAt: 3000, firstSeenAt: rec.firstSeenAt });
    expect('parkedFrom' in back).toBe(false);

    const fetching: BatchRecord = { ...rec, state: 'fetching', outcome: 'created' };
    const parkedFetching = parkForAccount(fetching, fatal, 2000).rec;
    expect(parkedFetching).toMatchObject({ state: 'parked', parkedFrom: 'fetching', outcome: 'created' });
    expect(unparkForAccount(parkedFetching, 3000).rec).toMatchObject({ state: 'fetching', outcome: 'created' });
  });

  it('a batch rejected by the API is not parked by its account', () => {
    const rejected: BatchRecord = { ...pendingRec(0), state: 'parked', outcome: 'rejected' };
    expect(isAccountParked(rejected)).toBe(false);
  });
});

describe('planReconcile with batches parked by their account', () => {
  const plan = (records: BatchRecord[], batches = config.batches) =>
    planReconcile({
      batches: new Map(batches.map((b) => [b.key, b] as const)),
      records: { get: (k) => records.find((r) => r.key === k), values: () => records },
      busy: () => false,
      scheduled: () => false,
      now: 10_000,
      atStart: true,
      statusQps: 10,
      random: createSeededRandom(1),
    });

  it('re-arms them at the start of the account, spread over the window, keeping their position', () => {
    const records = [parkForAccount(pendingRec(0), fatal, 2000).rec, parkForAccount(pendingRec(1), fatal, 2000).rec];
    const { steps } = plan(records);
    expect(steps.map((s) => [s.step.rec.key, s.kind, s.step.rec.state, s.step.rec.polls])).toEqual([
      [records[0]!.key, 'rearmed', 'pending', 4],
      [records[1]!.key, 'rearmed', 'pending', 4],
    ]);
    for (const s of steps) {
      expect(s.step.effects).toEqual([]);
      expect(s.step.rec.nextDueAt).toBeGreaterThanOrEqual(10_000);
      expect(s.step.rec.nextDueAt).toBeLessThanOrEqual(11_000);
    }
  });

  it('cancels a parked-by-account batch that left the file (pending), and lets a fetching one settle', () => {
    const fetching = parkForAccount({ ...pendingRec(1), state: 'fetching', outcome: 'created' }, fatal, 2000).rec;
    const records = [parkForAccount(pendingRec(0), fatal, 2000).rec, fetching];
    const { steps } = plan(records, []);
    expect(steps.map((s) => [s.kind, s.step.rec.state, s.step.rec.outcome])).toEqual([
      ['cancelled', 'fetching', 'cancelled'],
      ['rearmed', 'fetching', 'created'],
    ]);
  });
});
