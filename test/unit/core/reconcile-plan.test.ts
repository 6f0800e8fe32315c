import { describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../../src/core/clock.js';
import { type ReconcileInput, planReconcile, policyFor } from '../../../src/core/reconcile-plan.js';
import type { BatchRecord } from '../../../src/core/record.js';
import { markSettled } from '../../../src/core/settle-transitions.js';
import { cancel, createRecord } from '../../../src/core/transitions.js';
import { testBatch, testConfig } from '../../helpers/config.js';

const T0 = 1_800_000_000_000;

function input(batches: ReturnType<typeof testBatch>[], recs: BatchRecord[], over: Partial<ReconcileInput> = {}): ReconcileInput {
  const records = new Map(recs.map((r) => [r.key, r]));
  return {
    batches: new Map(batches.map((b) => [b.key, b])),
    records,
    busy: () => false,
    scheduled: () => false,
    now: T0,
    atStart: false,
    statusQps: 5,
    random: createSeededRandom(3),
    ...over,
  };
}

describe('planReconcile', () => {
  it('adds new batches, re-arms a cancelled one (withdrawing its result), renames open ones and cancels removed ones', () => {
    const fresh = testBatch({ applyId: '1' });
    const back = testBatch({ applyId: '2' });
    const renamed = testBatch({ applyId: '3', name: 'new-name' });
    const gone = testBatch({ applyId: '4' });
    const cancelled = markSettled(cancel(createRecord(back, T0 - 10_000), T0 - 9000).rec, '/r/2.json', 0);
    const open = { ...createRecord({ ...renamed, name: 'old' }, T0 - 5000), nextDueAt: T0 + 700 };
    const plan = planReconcile(input([fresh, back, renamed], [cancelled, open, createRecord(gone, T0 - 1000)]));
    expect(plan.steps.map((s) => [s.step.rec.applyId, s.kind, s.withdrawResult])).toEqual([
      ['1', 'added', false],
      ['2', 'rearmed', true],
      ['3', 'renamed', false],
      ['4', 'cancelled', false],
    ]);
    expect(plan.steps[1]!.step.rec.eventSeq).toBe(cancelled.eventSeq);
    expect(plan.steps[2]!.step.rec).toMatchObject({ name: 'new-name', nextDueAt: T0 + 700 });
    expect(plan.schedule).toEqual([{ key: open.key, dueAt: T0 + 700 }]);
  });

  it('leaves batches in flight alone and does not reschedule scheduled ones', () => {
    const a = testBatch({ applyId: '5' });
    const gone = createRecord(testBatch({ applyId: '6' }), T0);
    const plan = planReconcile(input([a], [createRecord(a, T0), gone], { busy: (k) => k === gone.key, scheduled: () => true }));
    expect(plan).toEqual({ steps: [], schedule: [] });
  });

  it('at start spreads overdue polls over a window sized by the budget; future ones keep their time', () => {
    const batches = Array.from({ length: 10 }, (_, i) => testBatch({ applyId: String(100 + i) }));
    const recs = batches.map((b, i) => ({ ...createRecord(b, T0 - 60_000), nextDueAt: i < 8 ? T0 - 1000 : T0 + 5000 }));
    const plan = planReconcile(input(batches, recs, { atStart: true, statusQps: 4 }));
    const due = plan.schedule.map((s) => s.dueAt);
    // 8 overdue at 4 QPS: a 2 s window.
    for (const d of due.slice(0, 8)) expect(d >= T0 && d < T0 + 2000).toBe(true);
    expect(new Set(due.slice(0, 8)).size).toBeGreaterThan(1);
    expect(due.slice(8)).toEqual([T0 + 5000, T0 + 5000]);
  });

  it('one fallback policy for a batch that left the file: the file defaults, not another batch', () => {
    const slow = testBatch({ applyId: '7', polling: { ...testBatch().polling, initialDelayMs: 600_000 } });
    const config = testConfig({ batches: [slow] });
    const rec = createRecord(testBatch({ applyId: '8', labels: { a: 'b' } }), T0);
    const policy = policyFor(config, undefined, rec);
    expect(policy.polling).toBe(config.polling);
    expect(policy).toMatchObject({ applyId: '8', endpoint: config.alibaba.endpoint, labels: { a: 'b' } });
    expect(policyFor(config, slow, rec)).toBe(slow);
  });
});
