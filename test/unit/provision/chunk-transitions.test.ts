/** The chunk state machine (DESIGN.md §13): intent before the call, retries, exactly-once for count chunks. */

import { describe, expect, it } from 'vitest';

import { planCountChunks, planNameChunks } from '../../../src/provision/chunk-plan.js';
import {
  MAX_CHECK_ROUNDS,
  TASK_RUNNING_CODE,
  type ChunkRecord,
  type SubmitFailure,
  batchSettled,
  isDue,
  newChunkRecord,
  recoverSubmitting,
  resolveUnknown,
  startSubmission,
  submissionAccepted,
  submissionFailed,
} from '../../../src/provision/chunk-transitions.js';

const namesChunk = (): ChunkRecord =>
  newChunkRecord(planNameChunks([], ['dev-0001', 'dev-0002', 'dev-0003'].map((deviceName) => ({ deviceName, nickname: null })), 10).chunks[0]!);
const countChunk = (): ChunkRecord => newChunkRecord(planCountChunks([], 500, 1000).chunks[0]!);

const failure = (over: Partial<SubmitFailure>): SubmitFailure => ({
  code: 'Transport.Timeout',
  message: 'no answer',
  notProcessed: false,
  answered: false,
  scope: 'attempt',
  ...over,
});

const submitting = (rec: ChunkRecord) => startSubmission(rec, 1000).rec;

describe('submission', () => {
  it('records the intent first: persist, then submit', () => {
    const step = startSubmission(namesChunk(), 1000);
    expect(step.rec).toMatchObject({ state: 'submitting', intentAt: 1000 });
    expect(step.effects.map((e) => e.kind)).toEqual(['persist', 'submit']);
    expect(() => startSubmission(step.rec, 1001)).toThrow(/submitting, not planned/);
  });

  it('makes the ApplyId durable, announces it, and watches names chunks with register for until: created', () => {
    const step = submissionAccepted(submitting(namesChunk()), { applyId: '77', refused: [{ deviceName: 'dev-0003', reason: 'exists' }] }, 'created');
    expect(step.rec).toMatchObject({ state: 'watching', applyId: '77', applyIds: ['77'], submissions: 1, intentAt: null });
    expect(step.rec.rejected).toEqual([{ deviceName: 'dev-0003', reason: 'exists' }]);
    expect(step.effects).toEqual([
      { kind: 'persist' },
      { kind: 'emit', type: 'provision.chunk_submitted', fields: { chunk: 0, applyId: '77', requested: 3, submission: 1 } },
      { kind: 'watch', applyId: '77', register: true, until: 'created' },
    ]);
    expect(submissionAccepted(submitting(namesChunk()), { applyId: '78', refused: [] }, 'checked').effects.at(-1)).toEqual({
      kind: 'watch',
      applyId: '78',
      register: false,
      until: 'checked',
    });
    expect(submissionAccepted(submitting(countChunk()), { applyId: '79', refused: [] }, 'checked').effects.at(-1)).toEqual({
      kind: 'watch',
      applyId: '79',
      register: false,
      until: 'created',
    });
  });

  it('waits and retries on CreateDeviceTaskIsRunning, for count chunks too, with a growing delay', () => {
    const busy = failure({ code: TASK_RUNNING_CODE, answered: true, scope: 'batch' });
    const first = submissionFailed(submitting(countChunk()), busy, 1000, { initialDelayMs: 100, maxDelayMs: 250 });
    expect(first.rec).toMatchObject({ state: 'planned', notBefore: 1100, retries: 1 });
    expect(isDue(first.rec, 1099)).toBe(false);
    expect(isDue(first.rec, 1100)).toBe(true);
    const second = submissionFailed(startSubmission(first.rec, 1100).rec, busy, 1100, { initialDelayMs: 100, maxDelayMs: 250 });
    expect(second.rec.notBefore).toBe(1300);
    const third = submissionFailed(startSubmission(second.rec, 1300).rec, busy, 1300, { initialDelayMs: 100, maxDelayMs: 250 });
    expect(third.rec.notBefore).toBe(1550);
  });

  it('retries a count chunk only when the error proves nothing was processed', () => {
    expect(submissionFailed(submitting(countChunk()), failure({ code: 'Throttling', notProcessed: true }), 0).rec.state).toBe('planned');
    expect(submissionFailed(submitting(countChunk()), failure({ code: 'ServiceUnavailable', answered: true }), 0).rec.state).toBe('planned');
    const lost = submissionFailed(submitting(countChunk()), failure({}), 0);
    expect(lost.rec.state).toBe('submission_unknown');
    expect(lost.rec.reason).toMatch(/BatchRegisterDevice for 500 devices may or may not have reached Alibaba \(Transport\.Timeout: no answer\).*provision resolve/);
    expect(lost.effects.map((e) => e.kind)).toEqual(['persist', 'emit']);
  });

  it('checks a names chunk again after a lost answer (a check creates nothing)', () => {
    const step = submissionFailed(submitting(namesChunk()), failure({}), 5000);
    expect(step.rec).toMatchObject({ state: 'planned', intentAt: null });
    expect(step.rec.reason).toMatch(/checking again/);
  });

  it('fails a chunk on an answered batch error and stops on a process error', () => {
    const bad = submissionFailed(submitting(countChunk()), failure({ code: 'iot.prod.NotExistedProduct', answered: true, scope: 'batch', message: 'no product' }), 0);
    expect(bad.rec).toMatchObject({ state: 'failed', reason: 'iot.prod.NotExistedProduct: no product' });
    const fatal = submissionFailed(submitting(countChunk()), failure({ code: 'InvalidAccessKeyId.NotFound', answered: true, scope: 'process' }), 0);
    expect(fatal.effects.map((e) => e.kind)).toEqual(['fatal']);
  });
});

describe('recovery at start-up', () => {
  it('puts a names chunk back to planned and parks a count chunk', () => {
    expect(recoverSubmitting(submitting(namesChunk()), 9).rec).toMatchObject({ state: 'planned', notBefore: 9 });
    const parked = recoverSubmitting(submitting(countChunk()), 9);
    expect(parked.rec.state).toBe('submission_unknown');
    expect(parked.rec.reason).toMatch(/the daemon stopped while the call was in flight/);
    const watching = submissionAccepted(submitting(countChunk()), { applyId: '5', refused: [] }, 'created').rec;
    expect(recoverSubmitting(watching, 9)).toEqual({ rec: watching, effects: [] });
  });

  it('resolves a parked chunk with the ApplyId found, or as not submitted', () => {
    const parked = recoverSubmitting(submitting(countChunk()), 9).rec;
    expect(resolveUnknown(parked, { applyId: '123' }, 10).rec).toMatchObject({ state: 'watching', applyId: '123' });
    expect(resolveUnknown(parked, { notSubmitted: true }, 10).rec).toMatchObject({ state: 'planned', notBefore: 10 });
    expect(() => resolveUnknown(countChunk(), { notSubmitted: true }, 10)).toThrow(/not submission_unknown/);
  });
});

describe('settling', () => {
  const watching = () => submissionAccepted(submitting(namesChunk()), { applyId: '77', refused: [] }, 'created').rec;
  const device = (n: number) => ({ deviceName: `dev-000${n}`, iotId: `i${n}`, deviceSecret: `s${n}` });

  it('created keeps the devices; create_failed with some devices is partial, with none failed', () => {
    const created = batchSettled(watching(), { outcome: 'created', invalid: [], devices: [device(1), device(2), device(3)], reason: null }, 0).rec;
    expect([created.state, created.devices.length]).toEqual(['created', 3]);
    const partial = batchSettled(watching(), { outcome: 'create_failed', invalid: [{ deviceName: 'dev-0003', reason: 'quota' }], devices: [device(1)], reason: null }, 0).rec;
    expect([partial.state, partial.rejected]).toEqual(['partial', [{ deviceName: 'dev-0003', reason: 'quota' }]]);
    expect(batchSettled(watching(), { outcome: 'create_failed', invalid: [], devices: [], reason: 'x' }, 0).rec.state).toBe('failed');
    expect(batchSettled(watching(), { outcome: 'timed_out', invalid: [], devices: [], reason: null }, 0).rec).toMatchObject({ state: 'failed', reason: 'timed_out' });
  });

  it('after CHECK_FAILED, checks the names that passed again and reports the refused ones', () => {
    const step = batchSettled(watching(), { outcome: 'check_failed', invalid: [{ deviceName: 'dev-0002', reason: 'The device name already exists.' }], devices: [], reason: null }, 50);
    expect(step.rec).toMatchObject({ state: 'planned', notBefore: 50 });
    expect(step.rec.names.map((n) => n.deviceName)).toEqual(['dev-0001', 'dev-0003']);
    expect(step.rec.rejected).toEqual([{ deviceName: 'dev-0002', reason: 'The device name already exists.' }]);
    const again = submissionAccepted(startSubmission(step.rec, 60).rec, { applyId: '88', refused: [] }, 'created').rec;
    expect([again.applyIds, again.submissions]).toEqual([['77', '88'], 2]);
  });

  it('fails when every name was refused, when none was named, or after the last round', () => {
    const all = ['dev-0001', 'dev-0002', 'dev-0003'].map((deviceName) => ({ deviceName, reason: 'r' }));
    expect(batchSettled(watching(), { outcome: 'check_failed', invalid: all, devices: [], reason: null }, 0).rec.state).toBe('failed');
    expect(batchSettled(watching(), { outcome: 'check_failed', invalid: [], devices: [], reason: null }, 0).rec.state).toBe('failed');
    const worn = { ...watching(), submissions: MAX_CHECK_ROUNDS };
    expect(batchSettled(worn, { outcome: 'check_failed', invalid: [all[0]!], devices: [], reason: null }, 0).rec.state).toBe('failed');
  });
});
