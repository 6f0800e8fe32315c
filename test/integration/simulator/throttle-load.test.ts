/**
 * Per-action QPS under three times the limit: the accepted requests in every 1-second window stay within
 * ±5 % of the limit. One run in real time (60 QPS offered for ~3 s against 20 QPS), one on a manual clock
 * (exact).
 */
import { Agent } from 'node:http';

import { afterEach, describe, expect, it } from 'vitest';

import { createManualClock } from '../../../src/core/clock.js';
import { startSimulator, type RequestLogEntry, type SimulatorHandle } from '../../../src/simulator/index.js';
import { rawCall, type RawReply } from './helpers.js';

const LIMIT = 20;
const OFFERED_QPS = 60;
const ACTION = 'QueryBatchRegisterDeviceStatus';

let sim: SimulatorHandle | undefined;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

/** Accepted requests in every window [t, t + 1000) that starts at a request and ends before the last one. */
function histogram(xs: number[]): Record<number, number> {
  const h: Record<number, number> = {};
  for (const x of xs) h[x] = (h[x] ?? 0) + 1;
  return h;
}

function windowCounts(log: readonly RequestLogEntry[]): number[] {
  const arrivals = log.map((e) => e.at);
  const accepted = log.filter((e) => e.outcome === 'ok').map((e) => e.at);
  const last = Math.max(...arrivals);
  return arrivals.filter((t) => t + 1000 <= last).map((t) => accepted.filter((a) => a >= t && a < t + 1000).length);
}

describe('Throttling.User under 3x load', () => {
  it(`holds ${LIMIT} QPS within ±5 % over sliding 1-second windows (real time, ~3 s)`, async () => {
    sim = await startSimulator({ port: 0, qps: { [ACTION]: LIMIT } });
    const applyId = sim.control.addBatch({ productKey: 'a1SimProduct1', mode: 'random', count: 1 });
    const port = sim.port;
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const total = OFFERED_QPS * 3;
    const start = performance.now();
    const inflight: Promise<RawReply>[] = [];
    for (let i = 0; i < total; i += 1) {
      const due = start + (i * 1000) / OFFERED_QPS;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inflight.push(rawCall(port, { action: ACTION, params: { ProductKey: 'a1SimProduct1', ApplyId: applyId }, agent }));
    }
    const replies = await Promise.all(inflight);
    agent.destroy();
    const codes = new Set(replies.map((r) => r.json?.Code ?? (r.json?.Success === true ? 'ok' : `status ${r.status}`)));
    expect(codes).toEqual(new Set(['ok', 'Throttling.User']));
    expect(replies.filter((r) => r.json?.Code === 'Throttling.User').every((r) => r.status === 400)).toBe(true);

    const log = sim.control.requestLog();
    expect(log).toHaveLength(total);
    const lo = Math.ceil(LIMIT * 0.95);
    const hi = Math.floor(LIMIT * 1.05);

    // 1. Consecutive 1-second windows from the first accepted request: each within ±5 %.
    const accepted = log.filter((e) => e.outcome === 'ok').map((e) => e.at);
    const t0 = Math.min(...accepted);
    const lastArrival = Math.max(...log.map((e) => e.at));
    const perSecond: number[] = [];
    for (let w = t0; w + 1000 <= lastArrival; w += 1000) perSecond.push(accepted.filter((a) => a >= w && a < w + 1000).length);
    expect(perSecond.length).toBeGreaterThanOrEqual(2);
    for (const n of perSecond) expect(n, `per-second counts ${JSON.stringify(perSecond)}`).toBeGreaterThanOrEqual(lo);
    for (const n of perSecond) expect(n).toBeLessThanOrEqual(hi);

    // 2. Sliding windows from the log: no window starting at any request holds more than the limit, and every
    //    rejection is justified: the window (r - 1000, r] before each throttled request r holds the limit (±5 %).
    //    (Windows that merely start inside a burst of acceptances are not a fair measure on a loaded machine: when
    //    the offered load itself stalls, the limiter cannot accept requests that never arrived.)
    const counts = windowCounts(log);
    expect(counts.length).toBeGreaterThan(OFFERED_QPS);
    expect(Math.max(...counts), JSON.stringify(histogram(counts))).toBeLessThanOrEqual(LIMIT);
    const throttledAt = log.filter((e) => e.outcome === 'Throttling.User').map((e) => e.at);
    expect(throttledAt.length).toBeGreaterThan(total / 2);
    const before = throttledAt.map((r) => accepted.filter((a) => a > r - 1000 && a <= r).length);
    expect(Math.min(...before), JSON.stringify(histogram(before))).toBeGreaterThanOrEqual(lo);
    expect(Math.max(...before)).toBeLessThanOrEqual(hi);
  });

  it('accepts exactly the limit in every window on a manual clock', async () => {
    const clock = createManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
    sim = await startSimulator({ port: 0, clock, qps: { [ACTION]: LIMIT, QueryPageByApplyId: 0 } });
    const applyId = sim.control.addBatch({ productKey: 'a1SimProduct1', mode: 'random', count: 1 });
    for (let i = 0; i < OFFERED_QPS * 3; i += 1) {
      await rawCall(sim.port, { action: ACTION, params: { ProductKey: 'a1SimProduct1', ApplyId: applyId }, now: clock.now() });
      // Other actions have their own budget (and 0 turns a limit off).
      if (i % 10 === 0) await rawCall(sim.port, { action: 'QueryPageByApplyId', params: { ApplyId: applyId }, now: clock.now() });
      await clock.advance(1000 / OFFERED_QPS);
    }
    const log = sim.control.requestLog();
    expect(log.filter((e) => e.action === 'QueryPageByApplyId').every((e) => e.outcome === 'ok')).toBe(true);
    const counts = windowCounts(log.filter((e) => e.action === ACTION));
    expect(new Set(counts)).toEqual(new Set([LIMIT]));
  });
});
