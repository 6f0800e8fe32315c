/** Job state: reconciling with the file, kind/product guards, status rows and device counts. */

import { describe, expect, it } from 'vitest';

import { recoverSubmitting, startSubmission, submissionAccepted, batchSettled } from '../../../src/provision/chunk-transitions.js';
import type { DeviceList } from '../../../src/provision/device-list.js';
import { type JobSpec, deviceCounts, provisionStatusRow, reconcileJob, withChunk } from '../../../src/provision/job-state.js';

const spec = (over: Partial<JobSpec> = {}): JobSpec => ({
  name: 'j',
  productKey: 'a1P',
  account: null,
  source: { kind: 'devices', file: '/f.txt' },
  chunkSize: 2,
  until: 'created',
  labels: {},
  ...over,
});
const list = (names: string[]): DeviceList => ({
  devices: names.map((deviceName, i) => ({ deviceName, nickname: null, line: i + 1 })),
  rejected: [{ deviceName: 'bad', line: 99, code: 'invalid_name', reason: 'r' }],
});

describe('reconcileJob', () => {
  it('plans new names only, keeps the rejections of the file as read now, and refuses another kind or product', () => {
    const first = reconcileJob(null, spec(), list(['aaaa', 'bbbb', 'cccc']), 0);
    expect([first.added, first.state.chunks.length, first.state.rejected.length]).toEqual([2, 2, 1]);
    const second = reconcileJob(first.state, spec(), { devices: list(['cccc', 'dddd']).devices, rejected: [] }, 0);
    expect(second.added).toBe(1);
    expect(second.state.chunks.map((c) => c.names.map((n) => n.deviceName))).toEqual([['aaaa', 'bbbb'], ['cccc'], ['dddd']]);
    expect(second.state.rejected).toEqual([]);
    expect(() => reconcileJob(first.state, spec({ source: { kind: 'count', count: 2 } }), null, 0)).toThrow(/cannot become another kind or product/);
    expect(() => reconcileJob(first.state, spec({ productKey: 'other' }), list([]), 0)).toThrow(/another name/);
  });

  it('does not plan again a name Alibaba refused, even after the check dropped it from its chunk', () => {
    const planned = reconcileJob(null, spec(), list(['aaaa', 'bbbb']), 0).state;
    let rec = submissionAccepted(startSubmission(planned.chunks[0]!, 0).rec, { applyId: '1', refused: [] }, 'created').rec;
    rec = batchSettled(rec, { outcome: 'check_failed', invalid: [{ deviceName: 'bbbb', reason: 'exists' }], devices: [], reason: null }, 0).rec;
    expect(rec.names.map((n) => n.deviceName)).toEqual(['aaaa']);
    const again = reconcileJob(withChunk(planned, rec), spec(), list(['aaaa', 'bbbb']), 0);
    expect(again.added).toBe(0);
  });

  it('recovers chunks found submitting and hands back the parking event', () => {
    const planned = reconcileJob(null, spec({ source: { kind: 'count', count: 3 } }), null, 0).state;
    const crashed = withChunk(planned, startSubmission(planned.chunks[0]!, 5).rec);
    const after = reconcileJob(crashed, spec({ source: { kind: 'count', count: 3 } }), null, 9);
    expect(after.state.chunks.map((c) => c.state)).toEqual(['submission_unknown', 'planned']);
    expect(after.effects.map((e) => [e.chunk, e.effect.kind])).toEqual([
      [0, 'persist'],
      [0, 'emit'],
    ]);
    expect(recoverSubmitting(after.state.chunks[1]!, 9).effects).toEqual([]);
  });
});

describe('status rows and device counts', () => {
  it('count chunks settled and devices created against requested, and parked chunks', () => {
    const planned = reconcileJob(null, spec({ source: { kind: 'count', count: 3 } }), null, 0).state;
    const created = batchSettled(
      submissionAccepted(startSubmission(planned.chunks[0]!, 0).rec, { applyId: '1', refused: [] }, 'created').rec,
      { outcome: 'created', invalid: [], devices: [{ deviceName: 'r1', iotId: 'i1', deviceSecret: 's1' }, { deviceName: 'r2', iotId: 'i2', deviceSecret: 's2' }], reason: null },
      0,
    ).rec;
    const parked = recoverSubmitting(startSubmission(planned.chunks[1]!, 0).rec, 0).rec;
    const state = withChunk(withChunk(planned, created), parked);
    expect(provisionStatusRow(state)).toEqual({ job: 'j', productKey: 'a1P', chunksSettled: 2, chunksTotal: 2, devicesCreated: 2, devicesRequested: 3, parked: 1 });
    expect(deviceCounts(state)).toEqual({ requested: 3, created: 2, rejected: 0, pending: 0 });
  });
});
