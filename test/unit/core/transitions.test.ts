import { describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../../src/core/clock.js';
import type { BatchStatusResult } from '../../../src/core/ports.js';
import type { BatchRecord } from '../../../src/core/record.js';
import {
  applyError,
  applyRegistration,
  applyStatus,
  buildEvent,
  cancel,
  checkDeadlines,
  createRecord,
  type Effect,
} from '../../../src/core/transitions.js';
import { markSettled, settledEffect } from '../../../src/core/settle-transitions.js';
import { DaemonError } from '../../../src/errors.js';
import { testBatch } from '../../helpers/config.js';

const random = createSeededRandom(7);
const T0 = 1_700_000_000_000;

function status(s: string | null, extra: Partial<BatchStatusResult> = {}): BatchStatusResult {
  return { status: s, validNames: [], invalidNames: [], invalidDetails: [], requestId: 'r', ...extra };
}

function kinds(effects: Effect[]): string[] {
  return effects.map((e) => (e.kind === 'emit' ? e.type : e.kind));
}

type Mode = 'checked' | 'created' | 'register';
const modes: Record<Mode, ReturnType<typeof testBatch>> = {
  checked: testBatch({ until: 'checked' }),
  created: testBatch({ until: 'created', register: false }),
  register: testBatch({ until: 'created', register: true }),
};

/** DESIGN.md §3, row by row: [status, mode, expected outcome or 'poll', expected effect kinds]. */
const table: [string, Mode, string, string[]][] = [
  ['CHECK', 'checked', 'poll', ['batch.status_changed']],
  ['CHECK', 'created', 'poll', ['batch.status_changed']],
  ['CHECK', 'register', 'poll', ['batch.status_changed']],
  ['CHECK_SUCCESS', 'checked', 'checked', ['batch.status_changed', 'settle']],
  ['CHECK_SUCCESS', 'created', 'poll', ['batch.status_changed', 'batch.awaiting_registration']],
  ['CHECK_SUCCESS', 'register', 'register', ['batch.status_changed', 'register']],
  ['CHECK_FAILED', 'checked', 'check_failed', ['batch.status_changed', 'settle']],
  ['CHECK_FAILED', 'created', 'check_failed', ['batch.status_changed', 'settle']],
  ['CHECK_FAILED', 'register', 'check_failed', ['batch.status_changed', 'settle']],
  ['CREATE', 'checked', 'poll', ['batch.status_changed']],
  ['CREATE', 'created', 'poll', ['batch.status_changed']],
  ['CREATE', 'register', 'poll', ['batch.status_changed']],
  ['CREATE_SUCCESS', 'checked', 'created', ['batch.status_changed', 'settle']],
  ['CREATE_SUCCESS', 'created', 'created', ['batch.status_changed', 'settle']],
  ['CREATE_SUCCESS', 'register', 'created', ['batch.status_changed', 'settle']],
  ['CREATE_FAILED', 'checked', 'create_failed', ['batch.status_changed', 'settle']],
  ['CREATE_FAILED', 'created', 'create_failed', ['batch.status_changed', 'settle']],
  ['CREATE_FAILED', 'register', 'create_failed', ['batch.status_changed', 'settle']],
  ['WEIRD_NEW', 'checked', 'poll', ['batch.unexpected_status']],
  ['WEIRD_NEW', 'created', 'poll', ['batch.unexpected_status']],
  ['WEIRD_NEW', 'register', 'poll', ['batch.unexpected_status']],
];

describe('the §3 outcome table', () => {
  it.each(table)('%s with until/register=%s → %s', (seen, mode, expected, effects) => {
    const batch = modes[mode];
    const rec = createRecord(batch, T0);
    const step = applyStatus(rec, batch, status(seen), T0 + 10, random);
    expect(kinds(step.effects)).toEqual(effects);
    expect(step.rec.polls).toBe(1);
    if (expected === 'poll') {
      expect(step.rec.state).toBe('pending');
      expect(step.rec.outcome).toBeNull();
      expect(step.rec.nextDueAt).toBeGreaterThan(T0 + 10);
    } else if (expected === 'register') {
      expect(step.rec.state).toBe('pending');
      expect(step.rec.registration?.state).toBe('intent');
    } else {
      expect(step.rec.state).toBe('fetching');
      expect(step.rec.outcome).toBe(expected);
      expect(step.rec.settledAt).toBe(T0 + 10);
    }
  });

  it('a missing Data.Status is unexpected and keeps polling', () => {
    const batch = modes.created;
    const step = applyStatus(createRecord(batch, T0), batch, status(null), T0, random);
    expect(kinds(step.effects)).toEqual(['batch.unexpected_status']);
    expect(step.rec.state).toBe('pending');
  });

  it('the same unexpected status is reported once, not on every poll', () => {
    const batch = modes.created;
    const first = applyStatus(createRecord(batch, T0), batch, status('ODD'), T0, random);
    const second = applyStatus(first.rec, batch, status('ODD'), T0 + 1000, random);
    expect(kinds(second.effects)).toEqual([]);
  });
});

describe('backoff and phases', () => {
  it('first poll is immediate, then delays grow within [initialDelay, cap] and reset on a phase change', () => {
    const batch = modes.created;
    let rec: BatchRecord = createRecord(batch, T0);
    expect(rec.nextDueAt).toBe(T0);
    let now = T0;
    const delays: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      rec = applyStatus(rec, batch, status('CHECK'), now, random).rec;
      delays.push(rec.nextDueAt - now);
      now = rec.nextDueAt;
    }
    for (const [i, d] of delays.entries()) {
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(Math.min(8000, 1000 * 2 ** i));
    }
    const changed = applyStatus({ ...rec, status: 'CHECK_SUCCESS', registration: { state: 'done', at: now, error: null } }, modes.register, status('CREATE'), now, random);
    expect(changed.rec.attempt).toBe(1);
    expect(changed.rec.phaseStartedAt).toBe(now);
    expect(changed.rec.nextDueAt - now).toBe(1000);
  });

  it('awaiting registration polls slowly, capped by awaitingRegistrationDelay', () => {
    const batch = modes.created;
    let rec = applyStatus(createRecord(batch, T0), batch, status('CHECK_SUCCESS'), T0, random).rec;
    let now = T0;
    let max = 0;
    for (let i = 0; i < 30; i += 1) {
      const step = applyStatus(rec, batch, status('CHECK_SUCCESS'), now, random);
      expect(step.effects).toEqual([]); // awaiting_registration is emitted once
      max = Math.max(max, step.rec.nextDueAt - now);
      rec = step.rec;
      now = rec.nextDueAt;
    }
    expect(max).toBeGreaterThan(8000);
    expect(max).toBeLessThanOrEqual(30_000);
  });

  it('a status regression is reported and polling continues', () => {
    const batch = modes.created;
    const rec = applyStatus(createRecord(batch, T0), batch, status('CREATE'), T0, random).rec;
    const step = applyStatus(rec, batch, status('CHECK'), T0 + 1000, random);
    expect(kinds(step.effects)).toEqual(['batch.status_changed', 'batch.unexpected_status']);
    expect(step.rec.state).toBe('pending');
  });

  it('never schedules past the timeout deadline', () => {
    const batch = testBatch({ polling: { ...modes.created.polling, timeoutMs: 1500, initialDelayMs: 1000, maxDelayMs: 8000 } });
    let rec = applyStatus(createRecord(batch, T0), batch, status('CHECK'), T0 + 1000, random).rec;
    rec = applyStatus(rec, batch, status('CHECK'), T0 + 1400, random).rec;
    expect(rec.nextDueAt).toBeLessThanOrEqual(T0 + 1500);
  });
});

describe('deadlines', () => {
  it('times out from first sight', () => {
    const batch = modes.created;
    const rec = createRecord(batch, T0);
    expect(checkDeadlines(rec, batch, T0 + batch.polling.timeoutMs - 1).rec.state).toBe('pending');
    const step = checkDeadlines(rec, batch, T0 + batch.polling.timeoutMs);
    expect(step.rec.outcome).toBe('timed_out');
    expect(kinds(step.effects)).toEqual(['settle']);
  });

  it('warns stalled once per phase', () => {
    const batch = modes.created;
    const rec = applyStatus(createRecord(batch, T0), batch, status('CHECK'), T0, random).rec;
    const s1 = checkDeadlines(rec, batch, T0 + batch.polling.stalledAfterMs);
    expect(kinds(s1.effects)).toEqual(['batch.stalled']);
    expect(kinds(checkDeadlines(s1.rec, batch, T0 + batch.polling.stalledAfterMs + 5000).effects)).toEqual([]);
    const create = applyStatus(s1.rec, batch, status('CREATE'), T0 + 70_000, random).rec;
    expect(create.stalledWarned).toBe(false);
  });
});

describe('errors', () => {
  const batch = modes.created;
  const err = (scope: 'attempt' | 'batch' | 'process', code: string): DaemonError =>
    new DaemonError(code, { kind: scope === 'attempt' ? 'transient' : 'not-found', scope, code });

  it('transient errors back off and keep the batch pending', () => {
    const step = applyError(createRecord(batch, T0), batch, err('attempt', 'ServiceUnavailable'), T0, random);
    expect(step.rec.state).toBe('pending');
    expect(step.rec.lastError?.code).toBe('ServiceUnavailable');
    expect(step.rec.nextDueAt).toBeGreaterThanOrEqual(T0 + 1000);
    expect(step.effects).toEqual([]);
  });

  it('batch-fatal errors reject (park) the batch with the reason', () => {
    const step = applyError(createRecord(batch, T0), batch, err('batch', 'iot.device.DeviceApplyIsNotFound'), T0, random);
    expect(step.rec.outcome).toBe('rejected');
    expect(kinds(step.effects)).toEqual(['batch.rejected', 'settle']);
    expect(markSettled(step.rec, '/x.json', 0).state).toBe('parked');
  });

  it('process-fatal errors stop everything', () => {
    const step = applyError(createRecord(batch, T0), batch, err('process', 'SignatureDoesNotMatch'), T0, random);
    expect(kinds(step.effects)).toEqual(['fatal']);
  });
});

describe('registration (register: true)', () => {
  const batch = modes.register;

  it('records the intent before asking to call, and calls once', () => {
    const step = applyStatus(createRecord(batch, T0), batch, status('CHECK_SUCCESS'), T0, random);
    expect(step.rec.registration).toEqual({ state: 'intent', at: T0, error: null });
    const done = applyRegistration(step.rec, batch, { ok: true, requestId: 'x' }, T0 + 5, random);
    expect(done.rec.registration?.state).toBe('done');
    expect(kinds(done.effects)).toEqual(['batch.registration_requested']);
    // CHECK_SUCCESS lingering after the call: no second call.
    const again = applyStatus(done.rec, batch, status('CHECK_SUCCESS'), T0 + 2000, random);
    expect(kinds(again.effects)).toEqual([]);
  });

  it('after a transient failure with the intent on record, calls again only when a fresh poll still shows CHECK_SUCCESS', () => {
    const step = applyStatus(createRecord(batch, T0), batch, status('CHECK_SUCCESS'), T0, random);
    const failed = applyRegistration(
      step.rec,
      batch,
      { ok: false, error: new DaemonError('timeout', { kind: 'transient', scope: 'attempt', code: 'Transport.Timeout' }) },
      T0 + 5,
      random,
    );
    expect(failed.rec.registration?.state).toBe('intent');
    expect(kinds(failed.effects)).toEqual([]);
    expect(kinds(applyStatus(failed.rec, batch, status('CREATE'), T0 + 2000, random).effects)).toEqual(['batch.status_changed']);
    expect(kinds(applyStatus(failed.rec, batch, status('CHECK_SUCCESS'), T0 + 2000, random).effects)).toEqual(['register']);
  });

  it('"already registered" business errors count as done', () => {
    const step = applyStatus(createRecord(batch, T0), batch, status('CHECK_SUCCESS'), T0, random);
    const res = applyRegistration(
      step.rec,
      batch,
      { ok: false, error: new DaemonError('running', { kind: 'invalid-request', scope: 'batch', code: 'iot.device.CreateDeviceTaskIsRunning', alreadyRegistered: true }) },
      T0 + 5,
      random,
    );
    expect(res.rec.registration?.state).toBe('done');
    expect(res.rec.outcome).toBeNull();
  });
});

describe('cancel and events', () => {
  it('cancel settles with outcome cancelled', () => {
    const step = cancel(createRecord(modes.created, T0), T0 + 1);
    expect(step.rec.outcome).toBe('cancelled');
    expect(kinds(step.effects)).toEqual(['batch.cancelled', 'settle']);
  });

  it('event ids are stable, unique per batch and carry no secrets', () => {
    const batch = modes.created;
    const s = applyStatus(createRecord(batch, T0), batch, status('CREATE_SUCCESS'), T0, random);
    let rec = s.rec;
    const ids: string[] = [];
    for (const e of s.effects) {
      if (e.kind !== 'emit') continue;
      const built = buildEvent(rec, e, T0);
      rec = built.rec;
      ids.push(built.event.id);
    }
    const settled = buildEvent(markSettled(rec, '/r.json', 3), settledEffect(markSettled(rec, '/r.json', 3)), T0);
    expect(ids).toEqual(['1295006:CREATE_SUCCESS:1']);
    expect(settled.event.id).toBe('1295006:CREATE_SUCCESS:2');
    expect(settled.event.type).toBe('batch.settled');
    expect(settled.event.outcome).toBe('created');
    expect(JSON.stringify(settled.event)).not.toMatch(/secret/i);
  });
});

describe('registration after a lost answer', () => {
  it('a batch-level refusal of a repeated call counts as registered, not as rejected', () => {
    const batch = testBatch({ until: 'created', register: true });
    const first = applyStatus(createRecord(batch, T0), batch, status('CHECK_SUCCESS'), T0, random);
    const lost = applyRegistration(
      first.rec,
      batch,
      { ok: false, error: new DaemonError('malformed', { kind: 'transient', scope: 'attempt', code: 'Response.Malformed' }) },
      T0 + 1,
      random,
    );
    const again = applyStatus(lost.rec, batch, status('CHECK_SUCCESS'), T0 + 1000, random);
    expect(again.effects.map((e) => e.kind)).toEqual(['register']);
    const refused = applyRegistration(
      again.rec,
      batch,
      { ok: false, error: new DaemonError('mismatch', { kind: 'invalid-request', scope: 'batch', code: 'iot.device.IncorrentDeviceApplyInfo' }) },
      T0 + 1001,
      random,
    );
    expect(refused.rec.registration?.state).toBe('done');
    expect(refused.rec.outcome).toBeNull();
    // A first call refused for a batch-level reason still rejects the batch.
    const direct = applyRegistration(
      first.rec,
      batch,
      { ok: false, error: new DaemonError('mismatch', { kind: 'invalid-request', scope: 'batch', code: 'iot.device.IncorrentDeviceApplyInfo' }) },
      T0 + 1,
      random,
    );
    expect(direct.rec.outcome).toBe('rejected');
  });
});
