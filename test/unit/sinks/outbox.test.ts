import { describe, expect, it, vi } from 'vitest';

import { createManualClock, createSeededRandom } from '../../../src/core/clock.js';
import type { Clock } from '../../../src/core/clock.js';
import type { EventSink, JournalRecord } from '../../../src/core/ports.js';
import type { OutboxEntry } from '../../../src/core/record.js';
import { DaemonError } from '../../../src/errors.js';
import type { WatcherEvent } from '../../../src/events.js';
import { createEmitterSink } from '../../../src/sinks/emitter.js';
import { createLogSink } from '../../../src/sinks/log-sink.js';
import { Outbox, YIELD_EVERY } from '../../../src/sinks/outbox.js';
import type { DeliveryInfo } from '../../../src/sinks/outbox.js';
import type { ReportingSink } from '../../../src/sinks/reporting.js';

import { captureLogger, createMemoryLedger, makeEvent, makeEvents } from './helpers.js';
import type { MemoryLedger } from './helpers.js';

interface FakeSink extends EventSink {
  delivered: WatcherEvent[];
  calls: number;
  /** Throw on the next `n` calls. */
  failNext(n: number): void;
  /** Throw on every call from now on (or stop with false). */
  failAlways(on: boolean): void;
}

function fakeSink(name: string): FakeSink {
  let failCount = 0;
  let always = false;
  const sink: FakeSink = {
    name,
    delivered: [],
    calls: 0,
    failNext(n) {
      failCount = n;
    },
    failAlways(on) {
      always = on;
    },
    deliver(event) {
      sink.calls += 1;
      if (always || failCount > 0) {
        failCount = Math.max(0, failCount - 1);
        return Promise.reject(new Error(`${name} is down`));
      }
      sink.delivered.push(event);
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  };
  return sink;
}

/** A sink whose deliveries hang until the signal aborts. */
function hangingSink(name: string): EventSink & { started: number } {
  const sink = {
    name,
    started: 0,
    deliver(_event: WatcherEvent, signal?: AbortSignal): Promise<void> {
      sink.started += 1;
      return new Promise<void>((_resolve, reject) => {
        signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    },
    close: () => Promise.resolve(),
  };
  return sink;
}

/** What the watcher does: make the event durable, then hand it to the outbox. */
async function emit(ledger: MemoryLedger, outbox: Outbox, event: WatcherEvent): Promise<void> {
  const entry: OutboxEntry = { event, acked: [] };
  await ledger.append([{ t: 'event', entry }]);
  outbox.enqueue(entry);
}

function makeOutbox(
  sinks: EventSink[],
  ledger: MemoryLedger,
  clock: Clock = createManualClock(0),
  extra: { onDelivery?: (info: DeliveryInfo) => void; logger?: ReturnType<typeof captureLogger>['logger'] } = {},
): Outbox {
  return new Outbox({
    sinks,
    ledger,
    clock,
    random: createSeededRandom(1),
    logger: extra.logger ?? captureLogger().logger,
    onDelivery: extra.onDelivery,
    retryInitialMs: 100,
    retryMaxMs: 1000,
  });
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i += 1) await new Promise((r) => setImmediate(r));
};

const acksOf = (records: JournalRecord[]): string[] =>
  records.flatMap((r) => (r.t === 'ack' ? [`${r.sink}:${r.id}`] : r.t === 'done' ? [`done:${r.id}`] : []));

describe('Outbox', () => {
  it('delivers to every sink in enqueue order, records one ack per sink and one done per event', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const b = fakeSink('b');
    const outbox = makeOutbox([a, b], ledger);
    const events = makeEvents(3);
    for (const e of events) await emit(ledger, outbox, e);
    expect(outbox.pending()).toBe(3);
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    expect(outbox.pending()).toBe(0);
    expect(a.delivered).toEqual(events);
    expect(b.delivered).toEqual(events);
    const acks = acksOf(ledger.records);
    for (const e of events) {
      expect(acks.filter((x) => x.endsWith(`:${e.id}`)).sort()).toEqual([`a:${e.id}`, `b:${e.id}`, `done:${e.id}`]);
      // done comes after both acks
      expect(acks.indexOf(`done:${e.id}`)).toBeGreaterThan(acks.indexOf(`a:${e.id}`));
      expect(acks.indexOf(`done:${e.id}`)).toBeGreaterThan(acks.indexOf(`b:${e.id}`));
    }
    expect(ledger.replay()).toEqual([]);
    await outbox.stop();
  });

  it('delivers a burst of thousands in order per sink, letting the event loop turn every YIELD_EVERY deliveries', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const b = fakeSink('b');
    let yields = 0;
    const outbox = new Outbox({
      sinks: [a, b],
      ledger,
      clock: createManualClock(0),
      random: createSeededRandom(1),
      logger: captureLogger().logger,
      yieldToLoop: () => {
        yields += 1;
        return new Promise((r) => setImmediate(r));
      },
    });
    // More than the 1024 ids after which a lane cuts the delivered part of its queue, several times over.
    const events = Array.from({ length: 3000 }, (_, i) => makeEvent({ id: `1295006:seq:${i}`, type: 'batch.status_changed', status: 'CREATE', outcome: undefined }));
    for (const e of events) {
      const entry: OutboxEntry = { event: e, acked: [] };
      await ledger.append([{ t: 'event', entry }]);
      outbox.enqueue(entry);
    }
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    expect(a.delivered.map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(b.delivered.map((e) => e.id)).toEqual(events.map((e) => e.id));
    // Two lanes, each yielding after every 256 deliveries in a row.
    expect(yields).toBeGreaterThanOrEqual(2 * Math.floor(3000 / YIELD_EVERY));
    expect(outbox.stats().map((s) => s.queued)).toEqual([0, 0]);
    expect(ledger.replay()).toEqual([]);
    // Later events still flow once the queue was cut.
    const late = makeEvent({ id: '1295006:late:1', type: 'batch.status_changed', status: 'CREATE', outcome: undefined });
    await emit(ledger, outbox, late);
    expect(await outbox.flush(1000)).toBe(true);
    expect(a.delivered.at(-1)?.id).toBe('1295006:late:1');
    await outbox.stop();
  });

  it('groups the acks of a burst into few appends, in delivery order, each done after both acks (issue #14)', async () => {
    const ledger = createMemoryLedger();
    let appends = 0;
    const counted: MemoryLedger = {
      ...ledger,
      append(batch) {
        if (batch.some((r) => r.t === 'ack' || r.t === 'done')) appends += 1;
        return ledger.append(batch);
      },
    };
    const a = fakeSink('a');
    const b = fakeSink('b');
    const outbox = makeOutbox([a, b], counted);
    const events = Array.from({ length: 3000 }, (_, i) => makeEvent({ id: `1295006:seq:${i}`, type: 'batch.status_changed', status: 'CREATE', outcome: undefined }));
    for (const e of events) await emit(ledger, outbox, e);
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    // 6,000 acks and 3,000 dones: one append per delivery before; now about one per turn of the lanes.
    expect(appends).toBeLessThanOrEqual(Math.ceil(9000 / YIELD_EVERY) + 4);
    const acks = acksOf(ledger.records);
    expect(acks).toHaveLength(9000);
    for (const e of events) {
      const done = acks.indexOf(`done:${e.id}`);
      expect(done).toBeGreaterThan(acks.indexOf(`a:${e.id}`));
      expect(done).toBeGreaterThan(acks.indexOf(`b:${e.id}`));
    }
    expect(acks.filter((x) => x.startsWith('a:'))).toEqual(events.map((e) => `a:${e.id}`));
    expect(ledger.replay()).toEqual([]);
    await outbox.stop();
  });

  it('appends the ack of a slow sink in the turn after its delivery, not after a group fills', async () => {
    const ledger = createMemoryLedger();
    let release: (() => void) | null = null;
    const slow: EventSink = {
      name: 'slow',
      deliver: (event) =>
        event.id.endsWith(':0')
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              release = resolve;
            }),
      close: () => Promise.resolve(),
    };
    const outbox = makeOutbox([slow], ledger);
    const events = makeEvents(2);
    for (const e of events) await emit(ledger, outbox, e);
    outbox.start();
    await settle();
    // The second delivery still hangs; the first one's ack and done are durable already.
    expect(acksOf(ledger.records)).toEqual([`slow:${events[0]!.id}`, `done:${events[0]!.id}`]);
    expect(outbox.pending()).toBe(1);
    (release as (() => void) | null)?.();
    expect(await outbox.flush(1000)).toBe(true);
    expect(acksOf(ledger.records)).toEqual([`slow:${events[0]!.id}`, `done:${events[0]!.id}`, `slow:${events[1]!.id}`, `done:${events[1]!.id}`]);
    await outbox.stop();
  });

  it('stop() appends the acks of deliveries made just before it', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const outbox = makeOutbox([a], ledger);
    outbox.start();
    const event = makeEvents(1)[0]!;
    await emit(ledger, outbox, event);
    // Delivered within the microtasks of this turn; the ack's turn has not come yet.
    for (let i = 0; i < 10; i += 1) await Promise.resolve();
    expect(a.delivered).toEqual([event]);
    await outbox.stop();
    expect(acksOf(ledger.records)).toEqual([`a:${event.id}`, `done:${event.id}`]);
    expect(ledger.replay()).toEqual([]);
  });

  it('delivers the same event object to every sink (log line, emitter)', async () => {
    const ledger = createMemoryLedger();
    const { logger, entries } = captureLogger();
    const emitter = createEmitterSink();
    const got: WatcherEvent[] = [];
    emitter.on('*', (e) => got.push(e));
    const outbox = makeOutbox([createLogSink(logger), emitter], ledger);
    outbox.start();
    const event = makeEvent();
    await emit(ledger, outbox, event);
    expect(await outbox.flush(1000)).toBe(true);
    expect(got).toEqual([event]);
    expect(entries().find((l) => l.msg === 'batch.settled a1BwAGVxxxx/1295006 created')?.event).toEqual(event);
    await outbox.stop();
  });

  it('is at least once across a crash: unacked deliveries are re-queued from the ledger and acked later', async () => {
    const ledger = createMemoryLedger();
    const good = fakeSink('log');
    const down = fakeSink('webhook');
    down.failAlways(true);
    const clockA = createManualClock(0);
    const a = makeOutbox([good, down], ledger, clockA);
    a.start();
    const events = makeEvents(2);
    for (const e of events) await emit(ledger, a, e);
    await vi.waitFor(() => expect(good.delivered).toHaveLength(2));
    await vi.waitFor(() => expect(down.calls).toBeGreaterThan(0));
    await clockA.advance(5000);
    const callsBeforeCrash = down.calls;
    expect(callsBeforeCrash).toBeGreaterThan(1);
    // "crash": the process stops; only the ledger survives.
    await a.stop();
    expect(a.pending()).toBe(2);
    const survivors = ledger.replay();
    expect(survivors.map((e) => e.event.id)).toEqual(events.map((e) => e.id));
    expect(survivors.every((e) => e.acked.join() === 'log')).toBe(true);

    // Next process: same ledger, the webhook is back.
    const good2 = fakeSink('log');
    const up = fakeSink('webhook');
    const b = makeOutbox([good2, up], ledger, createManualClock(0));
    b.restore(survivors);
    b.start();
    expect(await b.flush(1000)).toBe(true);
    expect(up.delivered.map((e) => e.id)).toEqual(events.map((e) => e.id));
    // the sink that had acknowledged is not bothered again
    expect(good2.delivered).toEqual([]);
    expect(ledger.replay()).toEqual([]);
    const acks = acksOf(ledger.records);
    for (const e of events) {
      expect(acks).toContain(`webhook:${e.id}`);
      expect(acks).toContain(`done:${e.id}`);
    }
    await b.stop();
  });

  it('redelivers after a crash between delivery and the ack record (consumers de-duplicate by id)', async () => {
    const ledger = createMemoryLedger();
    const sinkA = fakeSink('webhook');
    const a = makeOutbox([sinkA], ledger);
    ledger.failAppends(false);
    const event = makeEvent();
    await ledger.append([{ t: 'event', entry: { event, acked: [] } }]);
    ledger.failAppends(true); // the ack never becomes durable
    a.enqueue({ event, acked: [] });
    a.start();
    await vi.waitFor(() => expect(sinkA.delivered).toHaveLength(1));
    await a.stop();
    ledger.failAppends(false);
    const sinkB = fakeSink('webhook');
    const b = makeOutbox([sinkB], ledger);
    b.restore(ledger.replay());
    b.start();
    expect(await b.flush(1000)).toBe(true);
    const seen = [...sinkA.delivered, ...sinkB.delivered].map((e) => e.id);
    expect(seen).toEqual([event.id, event.id]);
    expect(new Set(seen).size).toBe(1);
    await b.stop();
  });

  it('a failing sink blocks neither the other sinks nor the caller', async () => {
    const ledger = createMemoryLedger();
    const good = fakeSink('good');
    const bad = fakeSink('bad');
    bad.failAlways(true);
    const hung = hangingSink('hung');
    const clock = createManualClock(0);
    const outbox = makeOutbox([bad, hung, good], ledger, clock);
    outbox.start();
    const events = makeEvents(5);
    for (const e of events) await emit(ledger, outbox, e); // never waits for delivery
    await vi.waitFor(() => expect(good.delivered).toEqual(events));
    expect(hung.started).toBe(1); // FIFO: its lane is stuck on the first event, alone
    expect(outbox.pending()).toBe(5);
    expect(outbox.stats()).toEqual([
      { sink: 'bad', queued: 5, failures: expect.any(Number) },
      { sink: 'hung', queued: 5, failures: 0 },
      { sink: 'good', queued: 0, failures: 0 },
    ]);
    const flushed = outbox.flush(2000);
    await clock.advance(2000);
    expect(await flushed).toBe(false);
    await outbox.stop(); // aborts the hanging delivery
    expect(acksOf(ledger.records).filter((x) => x.startsWith('good:'))).toHaveLength(5);
    expect(acksOf(ledger.records).some((x) => x.startsWith('done:'))).toBe(false);
  });

  it('retries a failing head with exponential backoff and jitter, then resumes in order', async () => {
    const ledger = createMemoryLedger();
    const flaky = fakeSink('flaky');
    flaky.failNext(4);
    const clock = createManualClock(0);
    const sleeps: number[] = [];
    const recording: Clock = {
      now: () => clock.now(),
      sleep: (ms, signal) => {
        sleeps.push(ms);
        return clock.sleep(ms, signal);
      },
    };
    const outcomes: string[] = [];
    const outbox = makeOutbox([flaky], ledger, recording, { onDelivery: (i) => outcomes.push(`${i.sink}:${i.outcome}`) });
    outbox.start();
    const events = makeEvents(2);
    for (const e of events) await emit(ledger, outbox, e);
    for (let i = 0; i < 4; i += 1) {
      await vi.waitFor(() => expect(clock.pendingSleeps()).toBe(1));
      expect(sleeps).toHaveLength(i + 1);
      expect(flaky.delivered).toEqual([]);
      await clock.advance(sleeps[i]!);
    }
    await vi.waitFor(() => expect(flaky.delivered).toEqual(events));
    expect(outcomes).toEqual(['flaky:retry', 'flaky:retry', 'flaky:retry', 'flaky:retry', 'flaky:ok', 'flaky:ok']);
    // cap 100, 200, 400, 800 (capped at 1000); the one jitter formula (core/backoff.ts) keeps each in [initial, cap]
    expect(sleeps).toHaveLength(4);
    [100, 200, 400, 800].forEach((base, i) => {
      expect(sleeps[i]).toBeGreaterThanOrEqual(100);
      expect(sleeps[i]).toBeLessThanOrEqual(base);
    });
    await outbox.stop();
  });

  it('counts dead-lettered acknowledgements from a reporting sink', async () => {
    const ledger = createMemoryLedger();
    const reporting: ReportingSink = {
      name: 'webhook',
      deliver: () => Promise.resolve(),
      deliverReport: () => Promise.resolve('dead_letter'),
      close: () => Promise.resolve(),
    };
    const infos: DeliveryInfo[] = [];
    const outbox = makeOutbox([reporting], ledger, undefined, { onDelivery: (i) => infos.push(i) });
    outbox.start();
    await emit(ledger, outbox, makeEvent());
    expect(await outbox.flush(1000)).toBe(true);
    expect(infos).toEqual([{ sink: 'webhook', outcome: 'dead_letter', eventType: 'batch.settled' }]);
    expect(acksOf(ledger.records)).toEqual(['webhook:1295006:CREATE_SUCCESS:7', 'done:1295006:CREATE_SUCCESS:7']);
    await outbox.stop();
  });

  it('flush resolves true at once when empty, and false when the outbox is stopped', async () => {
    const ledger = createMemoryLedger();
    const bad = fakeSink('bad');
    bad.failAlways(true);
    const outbox = makeOutbox([bad], ledger);
    expect(await outbox.flush(0)).toBe(true);
    await emit(ledger, outbox, makeEvent());
    outbox.start();
    const flushed = outbox.flush(60_000);
    await settle();
    await outbox.stop();
    expect(await flushed).toBe(false);
    expect(await outbox.flush(10)).toBe(false);
  });

  it('queues without delivering until start(), and stop() before start() is fine', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const outbox = makeOutbox([a], ledger);
    await emit(ledger, outbox, makeEvent());
    await settle();
    expect(a.calls).toBe(0);
    expect(outbox.state).toBe('idle');
    await outbox.stop();
    expect(outbox.state).toBe('stopped');
    outbox.start();
    await settle();
    expect(a.calls).toBe(0);
    expect(ledger.replay()).toHaveLength(1);
  });

  it('restore: skips sinks that already acked, completes entries every sink acked, ignores unknown sinks', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const b = fakeSink('b');
    const outbox = makeOutbox([a, b], ledger);
    const [e1, e2] = makeEvents(2) as [WatcherEvent, WatcherEvent];
    outbox.restore([
      { event: e1, acked: ['a', 'removed-sink'] },
      { event: e2, acked: ['a', 'b'] },
    ]);
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    expect(a.delivered).toEqual([]);
    expect(b.delivered).toEqual([e1]);
    expect(acksOf(ledger.records)).toEqual([`done:${e2.id}`, `b:${e1.id}`, `done:${e1.id}`]);
    await outbox.stop();
  });

  it('with no sinks, marks events done at once', async () => {
    const ledger = createMemoryLedger();
    const outbox = makeOutbox([], ledger);
    outbox.start();
    await emit(ledger, outbox, makeEvent());
    expect(await outbox.flush(1000)).toBe(true);
    expect(ledger.replay()).toEqual([]);
    await outbox.stop();
  });

  it('ignores a duplicate enqueue of a pending id', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const outbox = makeOutbox([a], ledger);
    const event = makeEvent();
    outbox.enqueue({ event, acked: [] });
    outbox.enqueue({ event, acked: [] });
    expect(outbox.pending()).toBe(1);
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    expect(a.delivered).toHaveLength(1);
    await outbox.stop();
  });

  it('refuses events that carry a device secret, and drops such stored entries on restore', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const { logger, lines } = captureLogger();
    const outbox = makeOutbox([a], ledger, undefined, { logger });
    const leaky = { ...makeEvent(), devices: [{ deviceName: 'd', deviceSecret: 'TopSecret123' }] } as unknown as WatcherEvent;
    expect(() => outbox.enqueue({ event: leaky, acked: [] })).toThrow(DaemonError);
    outbox.restore([{ event: leaky, acked: [] }]);
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    await outbox.stop();
    expect(a.delivered).toEqual([]);
    expect(acksOf(ledger.records)).toEqual([`done:${leaky.id}`]);
    expect(lines.join('\n')).toContain('devices[0].deviceSecret');
    expect(lines.join('\n')).not.toContain('TopSecret123');
  });

  it('keeps going when the ledger cannot record an ack (logged; redelivered after restart)', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const { logger, entries } = captureLogger();
    const outbox = makeOutbox([a], ledger, undefined, { logger });
    await emit(ledger, outbox, makeEvent({ id: 'e1' }));
    ledger.failAppends(true);
    outbox.start();
    expect(await outbox.flush(1000)).toBe(true);
    ledger.failAppends(false);
    await emit(ledger, outbox, makeEvent({ id: 'e2' }));
    expect(await outbox.flush(1000)).toBe(true);
    expect(a.delivered.map((e) => e.id)).toEqual(['e1', 'e2']);
    expect(entries().some((l) => l.level === 50 && String(l.msg).includes('could not record'))).toBe(true);
    expect(ledger.replay().map((e) => e.event.id)).toEqual(['e1']);
    await outbox.stop();
  });

  it('a throwing onDelivery does not break delivery', async () => {
    const ledger = createMemoryLedger();
    const a = fakeSink('a');
    const outbox = makeOutbox([a], ledger, undefined, {
      onDelivery: () => {
        throw new Error('metrics bug');
      },
    });
    outbox.start();
    await emit(ledger, outbox, makeEvent());
    expect(await outbox.flush(1000)).toBe(true);
    await outbox.stop();
  });

  it('rejects duplicate sink names and bad retry options', () => {
    const ledger = createMemoryLedger();
    expect(() => makeOutbox([fakeSink('a'), fakeSink('a')], ledger)).toThrow(/unique sink names/);
    expect(
      () =>
        new Outbox({
          sinks: [],
          ledger,
          clock: createManualClock(0),
          random: createSeededRandom(1),
          logger: captureLogger().logger,
          retryInitialMs: -5,
        }),
    ).toThrow('Expected `retryInitialMs` to be a finite number >= 0, got `-5` (number)');
  });

  it('close() stops and closes every sink even if one fails to close', async () => {
    const ledger = createMemoryLedger();
    const closed: string[] = [];
    const mk = (name: string, fail: boolean): EventSink => ({
      name,
      deliver: () => Promise.resolve(),
      close: () => {
        closed.push(name);
        return fail ? Promise.reject(new Error('nope')) : Promise.resolve();
      },
    });
    const outbox = makeOutbox([mk('a', true), mk('b', false)], ledger);
    outbox.start();
    await outbox.close();
    expect(closed).toEqual(['a', 'b']);
    expect(outbox.state).toBe('stopped');
  });
});
