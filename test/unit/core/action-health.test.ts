import { describe, expect, it } from 'vitest';

import { ActionHealth, MAX_CODES_PER_STREAK, OTHER_CODES, type HealthAttempt } from '../../../src/core/action-health.js';
import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import type { Log } from '../../../src/core/ports.js';

interface Line {
  level: 'info' | 'warn' | 'other';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function captureLog(): { log: Log; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: Line['level']) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  const log: Log = {
    trace: at('other'),
    debug: at('other'),
    info: at('info'),
    warn: at('warn'),
    error: at('other'),
    fatal: at('other'),
    child: () => log,
  };
  return { log, lines };
}

const ENDPOINT = 'http://127.0.0.1:1';
const refused: HealthAttempt = {
  action: 'QueryBatchRegisterDeviceStatus',
  outcome: 'transient',
  code: 'Transport.ConnectionRefused',
  message: 'Error ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1',
  httpStatus: null,
  endpoint: ENDPOINT,
};
const ok: HealthAttempt = { action: 'QueryBatchRegisterDeviceStatus', outcome: 'success', code: null, endpoint: ENDPOINT };

function setup(warnAfterMs = 60_000): { clock: ManualClock; health: ActionHealth; lines: Line[] } {
  const clock = createManualClock(Date.UTC(2026, 11, 1, 10, 0, 0));
  const { log, lines } = captureLog();
  return { clock, health: new ActionHealth({ failureWarnAfterMs: warnAfterMs, clock, log }), lines };
}

/** One failed attempt every `everyMs` for `forMs` (by the manual clock's time, without sleeping). */
async function failFor(clock: ManualClock, health: ActionHealth, forMs: number, everyMs: number, attempt = refused): Promise<void> {
  for (let t = 0; t < forMs; t += everyMs) {
    health.record(attempt);
    await clock.advance(everyMs);
    health.tick();
  }
}

describe('ActionHealth', () => {
  it('logs nothing for a streak shorter than the threshold, and nothing when it ends', async () => {
    const { clock, health, lines } = setup();
    await failFor(clock, health, 59_000, 1_000);
    expect(health.states()[0]).toMatchObject({ state: 'failing', failedAttempts: 59 });
    health.record(ok);
    health.tick();
    expect(lines).toEqual([]);
    expect(health.states()[0]).toMatchObject({ state: 'healthy', failingSince: null, failedAttempts: 0 });
  });

  it('logs exactly one warn for a long streak, with the action, endpoint, duration, counts and last error', async () => {
    const { clock, health, lines } = setup();
    const started = clock.now();
    const html: HealthAttempt = { ...refused, code: 'Response.Malformed', message: 'body is not valid JSON (52 chars)', httpStatus: 200 };
    await failFor(clock, health, 30_000, 500);
    await failFor(clock, health, 5 * 60_000, 2_000, html);
    const warns = lines.filter((l) => l.level === 'warn');
    expect(lines).toHaveLength(1);
    expect(warns).toHaveLength(1);
    expect(warns[0]!.msg).toBe('alibaba api action failing');
    expect(warns[0]!.obj).toEqual({
      action: 'QueryBatchRegisterDeviceStatus',
      endpoint: ENDPOINT,
      failingForMs: 60_000,
      failingSince: new Date(started).toISOString(),
      lastFailureAt: new Date(started + 58_000).toISOString(),
      failedAttempts: 60 + 15,
      lastCode: 'Response.Malformed',
      lastHttpStatus: 200,
      lastError: 'body is not valid JSON (52 chars)',
      codes: { 'Transport.ConnectionRefused': 60, 'Response.Malformed': 15 },
      failureWarnAfterMs: 60_000,
    });
    expect(health.states()[0]).toMatchObject({ state: 'warned', failingSince: started });
  });

  it('warns from the tick alone when no attempt arrives after the threshold (backoff gaps)', async () => {
    const { clock, health, lines } = setup(10_000);
    health.record(refused);
    await clock.advance(3_000);
    health.record(refused);
    await clock.advance(6_999);
    health.tick();
    expect(lines).toEqual([]);
    await clock.advance(1);
    health.tick();
    health.tick();
    expect(lines.map((l) => [l.level, l.obj.failingForMs, l.obj.failedAttempts])).toEqual([['warn', 10_000, 2]]);
  });

  it('logs exactly one recovery line, with the outage duration, on the first answer after a warn', async () => {
    const { clock, health, lines } = setup();
    await failFor(clock, health, 90_000, 1_000);
    await clock.advance(5_000);
    health.record(ok);
    health.record(ok);
    health.tick();
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'alibaba api action failing'],
      ['info', 'alibaba api action recovered'],
    ]);
    expect(lines[1]!.obj).toEqual({
      action: 'QueryBatchRegisterDeviceStatus',
      endpoint: ENDPOINT,
      outageMs: 95_000,
      failedAttempts: 90,
      codes: { 'Transport.ConnectionRefused': 90 },
      recoveredWith: 'success',
    });
  });

  it('flapping faster than the threshold logs nothing; flapping slower logs one warn and one recovery per outage', async () => {
    const { clock, health, lines } = setup(10_000);
    for (let i = 0; i < 50; i += 1) {
      await failFor(clock, health, 9_000, 1_000);
      health.record(ok);
    }
    expect(lines).toEqual([]);
    for (let i = 0; i < 3; i += 1) {
      await failFor(clock, health, 20_000, 1_000);
      health.record(ok);
      health.record(ok);
    }
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info', 'warn', 'info', 'warn', 'info']);
    expect(lines.filter((l) => l.level === 'info').map((l) => l.obj.outageMs)).toEqual([20_000, 20_000, 20_000]);
  });

  it('counts business and batch errors as answers: they end a streak and never start one', async () => {
    const { clock, health, lines } = setup(10_000);
    const unknownApplyId: HealthAttempt = { ...ok, outcome: 'business_error', code: 'iot.device.DeviceApplyIsNotFound' };
    const ramDenied: HealthAttempt = { ...ok, action: 'QueryPageByApplyId', outcome: 'batch_error', code: 'Forbidden.RAM', httpStatus: 403 };
    await failFor(clock, health, 5 * 60_000, 1_000, unknownApplyId);
    await failFor(clock, health, 5 * 60_000, 1_000, ramDenied);
    expect(lines).toEqual([]);
    expect(health.states().map((s) => s.state)).toEqual(['healthy', 'healthy']);

    await failFor(clock, health, 15_000, 1_000);
    health.record(unknownApplyId);
    expect(lines.map((l) => [l.level, l.obj.recoveredWith ?? null])).toEqual([
      ['warn', null],
      ['info', 'business_error'],
    ]);
  });

  it('counts throttling and fatal answers as failures', async () => {
    const { clock, health, lines } = setup(10_000);
    await failFor(clock, health, 6_000, 1_000, { ...ok, outcome: 'throttled', code: 'Throttling.User', httpStatus: 400 });
    await failFor(clock, health, 6_000, 1_000, { ...ok, outcome: 'fatal', code: 'SignatureDoesNotMatch', httpStatus: 400 });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.obj).toMatchObject({ codes: { 'Throttling.User': 6, SignatureDoesNotMatch: 4 }, lastCode: 'SignatureDoesNotMatch' });
  });

  it('tracks each action and endpoint (and account) on its own', async () => {
    const { clock, health, lines } = setup(10_000);
    const otherRegion: HealthAttempt = { ...ok, endpoint: 'http://127.0.0.1:2' };
    const page: HealthAttempt = { ...refused, action: 'QueryPageByApplyId' };
    const otherAccount: HealthAttempt = { ...refused, account: 'fleet-eu' };
    for (let t = 0; t < 12_000; t += 1_000) {
      health.record(refused);
      health.record(otherRegion);
      health.record(page);
      health.record({ ...ok, action: 'QueryPageByApplyId' });
      if (t >= 5_000) health.record(otherAccount);
      await clock.advance(1_000);
      health.tick();
    }
    expect(lines.map((l) => [l.obj.action, l.obj.endpoint, l.obj.account ?? null])).toEqual([['QueryBatchRegisterDeviceStatus', ENDPOINT, null]]);
    await clock.advance(10_000);
    health.tick();
    expect(lines.map((l) => l.obj.account ?? null)).toEqual([null, 'fleet-eu']);
    expect(health.states().map((s) => [s.action, s.endpoint, s.account, s.state])).toEqual([
      ['QueryBatchRegisterDeviceStatus', ENDPOINT, null, 'warned'],
      ['QueryBatchRegisterDeviceStatus', 'http://127.0.0.1:2', null, 'healthy'],
      ['QueryPageByApplyId', ENDPOINT, null, 'healthy'],
      ['QueryBatchRegisterDeviceStatus', ENDPOINT, 'fleet-eu', 'warned'],
    ]);
  });

  it('bounds what a hostile server can put in the line: distinct codes, code and message length', async () => {
    const { clock, health, lines } = setup(1_000);
    for (let i = 0; i < 100; i += 1) health.record({ ...refused, code: `Weird.${i}`, message: 'x'.repeat(10_000) });
    health.record({ ...refused, code: 'C'.repeat(5_000), message: 'y'.repeat(10_000) });
    await clock.advance(1_000);
    health.tick();
    const codes = lines[0]!.obj.codes as Record<string, number>;
    expect(Object.keys(codes)).toHaveLength(MAX_CODES_PER_STREAK + 1);
    expect(codes[OTHER_CODES]).toBe(101 - MAX_CODES_PER_STREAK);
    expect((lines[0]!.obj.lastCode as string).length).toBeLessThanOrEqual(100);
    expect(lines[0]!.obj.lastError).toMatch(/^y{299}…$/);
    expect(health.states()[0]!.failedAttempts).toBe(101);
  });

  it('run() sleeps only while a streak is pending, and wakes when it is due', async () => {
    const { clock, health, lines } = setup(2_000);
    const stop = new AbortController();
    const running = health.run(stop.signal);
    await clock.advance(60_000);
    expect(clock.pendingSleeps()).toBe(0); // every action answers: no timer at all

    health.record(refused);
    await clock.advance(0);
    expect(clock.pendingSleeps()).toBe(1);
    await clock.advance(1_999);
    expect(lines).toEqual([]);
    await clock.advance(1);
    expect(lines.map((l) => [l.level, l.obj.failingForMs, l.obj.failedAttempts])).toEqual([['warn', 2_000, 1]]);
    expect(clock.pendingSleeps()).toBe(0); // warned: nothing left to check until it answers

    health.record(ok);
    health.record({ ...refused, action: 'QueryPageByApplyId' });
    await clock.advance(500);
    health.record({ ...ok, action: 'QueryPageByApplyId' });
    await clock.advance(1_500);
    expect(clock.pendingSleeps()).toBe(0); // the streak ended early: one wake-up, no line
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);

    health.record(refused);
    await clock.advance(0);
    stop.abort();
    await running;
    expect(clock.pendingSleeps()).toBe(0);
  });

  it('run() warns a streak that started while it slept for an earlier one, at its own due time', async () => {
    const { clock, health, lines } = setup(2_000);
    const stop = new AbortController();
    const running = health.run(stop.signal);
    health.record(refused);
    await clock.advance(1_000);
    health.record({ ...refused, action: 'QueryPageByApplyId' });
    await clock.advance(500);
    health.record(ok);
    await clock.advance(1_499);
    expect(lines).toEqual([]);
    await clock.advance(1);
    expect(lines.map((l) => [l.obj.action, l.obj.failingForMs])).toEqual([['QueryPageByApplyId', 2_000]]);
    stop.abort();
    await running;
  });

  it('refuses a threshold that is not a positive number', () => {
    const { log } = captureLog();
    const clock = createManualClock();
    expect(() => new ActionHealth({ failureWarnAfterMs: 0, clock, log })).toThrow(/failureWarnAfterMs/);
    expect(() => new ActionHealth({ failureWarnAfterMs: Number.NaN, clock, log })).toThrow(/failureWarnAfterMs/);
  });
});
