import { describe, expect, it } from 'vitest';

import { EVENT_TYPES } from '../../../src/events.js';
import { conciseReason, createLogSink, logLevelFor } from '../../../src/sinks/log-sink.js';

import { captureLogger, makeEvent } from './helpers.js';

describe('createLogSink', () => {
  it('logs one info line with the whole event under `event` and the type in msg', async () => {
    const { logger, entries } = captureLogger();
    const sink = createLogSink(logger);
    expect(sink.name).toBe('log');
    const event = makeEvent();
    await sink.deliver(event);
    const lines = entries();
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe(30);
    expect(lines[0]!.event).toEqual(event);
    expect(lines[0]!.msg).toBe('batch.settled a1BwAGVxxxx/1295006 created');
  });

  it.each(['batch.stalled', 'batch.unexpected_status', 'batch.rejected'] as const)('logs %s at warn', async (type) => {
    const { logger, entries } = captureLogger();
    await createLogSink(logger).deliver(makeEvent({ type, outcome: undefined, status: 'WEIRD' }));
    expect(entries()[0]!.level).toBe(40);
    expect(entries()[0]!.msg).toBe(`${type} a1BwAGVxxxx/1295006 WEIRD`);
  });

  it('uses info for every other type', () => {
    const info = EVENT_TYPES.filter((t) => logLevelFor(t) === 'info');
    expect(info).toEqual([
      'batch.added',
      'batch.status_changed',
      'batch.awaiting_registration',
      'batch.registration_requested',
      'batch.settled',
      'batch.cancelled',
    ]);
  });

  it('always resolves, even when the logger throws', async () => {
    const { logger } = captureLogger();
    logger.info = () => {
      throw new Error('broken destination');
    };
    await expect(createLogSink(logger).deliver(makeEvent())).resolves.toBeUndefined();
  });
});

/** A clock whose sleeps resolve only when the test says so. */
function manualClock() {
  const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
  return {
    clock: {
      now: () => 0,
      sleep: (_ms: number, signal?: AbortSignal) =>
        new Promise<void>((resolve, reject) => {
          waiting.push({ resolve, reject });
          signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
        }),
    },
    /** Ends every pending sleep, then lets the sink's loop run. */
    async tick() {
      for (const w of waiting.splice(0)) w.resolve();
      await new Promise((r) => setImmediate(r));
    },
  };
}

const added = (i: number, productKey = 'a1ProdA') =>
  makeEvent({ id: `${i}:added:0`, type: 'batch.added', applyId: String(1_000_000 + i), productKey, status: undefined, outcome: undefined });

describe('createLogSink: bursts of batch.added', () => {
  it('logs the first 20 of a burst one by one and the rest as one summary line once the burst is quiet', async () => {
    const { logger, entries } = captureLogger();
    const m = manualClock();
    const sink = createLogSink(logger, { clock: m.clock });
    for (let i = 0; i < 25_000; i += 1) await sink.deliver(added(i, i % 3 === 0 ? 'a1ProdB' : 'a1ProdA'));
    expect(entries()).toHaveLength(20);
    expect(entries().every((e) => (e.msg as string).startsWith('batch.added '))).toBe(true);
    await m.tick(); // the window in which the burst came: not quiet, it waits another
    expect(entries()).toHaveLength(20);
    await m.tick(); // a quiet window
    const lines = entries();
    expect(lines).toHaveLength(21);
    expect(lines[20]!.msg).toBe('batch.added 25000 batches: 20 listed above, 24980 more (a1ProdA 16653, a1ProdB 8327); `status` lists them all');
    expect(lines[20]).toMatchObject({ added: 25_000, listed: 20, notListed: 24_980, byProduct: { a1ProdA: 16_653, a1ProdB: 8327 } });
    // A later burst starts counting afresh.
    await sink.deliver(added(99_999));
    expect(entries()).toHaveLength(22);
    expect(entries()[21]!.msg).toBe('batch.added a1ProdA/1099999');
  });

  it('keeps waiting while batch.added keeps coming, and no summary when the burst stayed under the threshold', async () => {
    const { logger, entries } = captureLogger();
    const m = manualClock();
    const sink = createLogSink(logger, { clock: m.clock, addedThreshold: 2 });
    await sink.deliver(added(1));
    await sink.deliver(added(2));
    await sink.deliver(added(3));
    await m.tick();
    await sink.deliver(added(4)); // still the same burst: it came within the window
    await m.tick();
    expect(entries()).toHaveLength(2);
    await m.tick();
    expect(entries().map((e) => e.msg)).toEqual([
      'batch.added a1ProdA/1000001',
      'batch.added a1ProdA/1000002',
      'batch.added 4 batches: 2 listed above, 2 more (a1ProdA 2); `status` lists them all',
    ]);
    const quiet = captureLogger();
    const sink2 = createLogSink(quiet.logger, { clock: m.clock });
    await sink2.deliver(added(1));
    await m.tick();
    await m.tick();
    expect(quiet.entries()).toHaveLength(1);
  });

  it('another event or close() ends the burst: the summary comes first', async () => {
    const { logger, entries } = captureLogger();
    const m = manualClock();
    const sink = createLogSink(logger, { clock: m.clock, addedThreshold: 1 });
    await sink.deliver(added(1));
    await sink.deliver(added(2));
    await sink.deliver(makeEvent());
    expect(entries().map((e) => e.msg)).toEqual([
      'batch.added a1ProdA/1000001',
      'batch.added 2 batches: 1 listed above, 1 more (a1ProdA 1); `status` lists them all',
      'batch.settled a1BwAGVxxxx/1295006 created',
    ]);
    await sink.deliver(added(3));
    await sink.deliver(added(4));
    await sink.close();
    expect(entries()).toHaveLength(5);
    expect(entries()[4]!.msg).toMatch(/^batch\.added 2 batches: 1 listed above, 1 more/);
  });
});

describe('createLogSink: reasons', () => {
  it('says the error code of a rejected batch once', async () => {
    const { logger, entries } = captureLogger();
    await createLogSink(logger).deliver(
      makeEvent({
        type: 'batch.rejected',
        outcome: 'rejected',
        reason: 'iot.prod.NotExistedProduct: QueryBatchRegisterDeviceStatus: iot.prod.NotExistedProduct (HTTP 200): product does not exist',
      }),
    );
    expect(entries()[0]!.msg).toBe(
      'batch.rejected a1BwAGVxxxx/1295006 rejected (QueryBatchRegisterDeviceStatus: iot.prod.NotExistedProduct (HTTP 200): product does not exist)',
    );
    expect(conciseReason('ECONNRESET: socket hang up')).toBe('ECONNRESET: socket hang up');
    expect(conciseReason('names checked; waiting for BatchRegisterDeviceWithApplyId (register: false)')).toBe(
      'names checked; waiting for BatchRegisterDeviceWithApplyId (register: false)',
    );
  });
});
