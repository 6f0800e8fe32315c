/**
 * The outbox with real sinks (log, events file, loopback webhook): at-least-once delivery across a crash
 * while the webhook receiver is down, de-duplication by event id, and dead letters through the outbox.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { createManualClock, createSeededRandom } from '../../../src/core/clock.js';
import type { EventSink } from '../../../src/core/ports.js';
import type { WatcherEvent } from '../../../src/events.js';
import { createEventsFileSink } from '../../../src/sinks/events-file.js';
import { createLogSink } from '../../../src/sinks/log-sink.js';
import { Outbox } from '../../../src/sinks/outbox.js';
import type { DeliveryInfo } from '../../../src/sinks/outbox.js';
import { createWebhookSink } from '../../../src/sinks/webhook.js';
import { captureLogger, createInstantClock, createMemoryLedger, makeEvents } from '../../unit/sinks/helpers.js';
import type { CapturedLogger, MemoryLedger } from '../../unit/sinks/helpers.js';

import { closedPort, startReceiver } from './receiver.js';
import type { Receiver } from './receiver.js';

const SECRET = 'whsec-outbox-test-secret';

let dir: string;
let log: CapturedLogger;
const cleanups: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-outbox-'));
  log = captureLogger();
});
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  await rm(dir, { recursive: true, force: true });
});

function makeProcess(ledger: MemoryLedger, webhookUrl: string, infos: DeliveryInfo[]) {
  const sinks: EventSink[] = [
    createLogSink(log.logger),
    createEventsFileSink({ file: path.join(dir, 'events.jsonl'), groupCommitMs: 0 }),
    createWebhookSink({
      url: webhookUrl,
      secret: SECRET,
      timeoutMs: 2000,
      deadLetterFile: path.join(dir, 'state', 'dead-letter.jsonl'),
      clock: createInstantClock(),
      random: createSeededRandom(3),
      logger: log.logger,
      maxAttempts: 3,
    }),
  ];
  const clock = createManualClock(0);
  const outbox = new Outbox({
    sinks,
    ledger,
    clock,
    random: createSeededRandom(5),
    logger: log.logger,
    onDelivery: (i) => infos.push(i),
    retryInitialMs: 1000,
    retryMaxMs: 60_000,
  });
  cleanups.push(() => outbox.close());
  return { outbox, clock, sinks };
}

async function emit(ledger: MemoryLedger, outbox: Outbox, event: WatcherEvent): Promise<void> {
  await ledger.append([{ t: 'event', entry: { event, acked: [] } }]);
  outbox.enqueue({ event, acked: [] });
}

const eventLines = async (): Promise<string[]> =>
  (await readFile(path.join(dir, 'events.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as WatcherEvent).id);

describe('outbox + webhook, at least once', () => {
  it('delivers every event after a crash while the receiver was down; other sinks were not blocked', async () => {
    const ledger = createMemoryLedger();
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/iot`;
    const events = makeEvents(3);

    // Process A: the receiver is down.
    const infosA: DeliveryInfo[] = [];
    const a = makeProcess(ledger, url, infosA);
    a.outbox.start();
    for (const e of events) await emit(ledger, a.outbox, e);
    await vi.waitFor(async () => expect(await eventLines()).toEqual(events.map((e) => e.id)));
    await vi.waitFor(() => expect(infosA.filter((i) => i.sink === 'webhook' && i.outcome === 'retry').length).toBe(1));
    await a.clock.advance(1000); // one outbox-level retry, still down
    await vi.waitFor(() => expect(infosA.filter((i) => i.sink === 'webhook' && i.outcome === 'retry').length).toBe(2));
    expect(a.outbox.pending()).toBe(3);
    await a.outbox.close(); // crash: only the ledger survives

    const survivors = ledger.replay();
    expect(survivors.map((s) => s.event.id)).toEqual(events.map((e) => e.id));
    for (const s of survivors) expect([...s.acked].sort()).toEqual(['events_file', 'log']);

    // Process B: the receiver is back on the same address, and fails twice before accepting.
    const receiver: Receiver = await startReceiver(SECRET, port);
    cleanups.push(() => receiver.close());
    receiver.script.push({ status: 500 }, { status: 503 });
    const infosB: DeliveryInfo[] = [];
    const b = makeProcess(ledger, url, infosB);
    b.outbox.restore(survivors);
    b.outbox.start();
    expect(await b.outbox.flush(60_000)).toBe(true);

    expect(receiver.accepted).toEqual(events.map((e) => e.id));
    expect(receiver.requests.every((r) => r.signatureValid)).toBe(true);
    expect(ledger.replay()).toEqual([]);
    // the events file was acknowledged before the crash: no duplicate lines
    expect(await eventLines()).toEqual(events.map((e) => e.id));
    expect(infosB.map((i) => `${i.sink}:${i.outcome}`)).toEqual(['webhook:ok', 'webhook:ok', 'webhook:ok']);
    expect(log.lines.join('\n')).not.toContain(SECRET);
  });

  it('redelivers an event whose ack was lost in a crash; the consumer de-duplicates by X-IBW-Event-Id', async () => {
    const receiver = await startReceiver(SECRET);
    cleanups.push(() => receiver.close());
    const ledger = createMemoryLedger();
    const [event] = makeEvents(1) as [WatcherEvent];
    const a = makeProcess(ledger, receiver.url, []);
    await ledger.append([{ t: 'event', entry: { event, acked: [] } }]);
    ledger.failAppends(true); // acks never reach the disk
    a.outbox.enqueue({ event, acked: [] });
    a.outbox.start();
    await vi.waitFor(() => expect(receiver.requests).toHaveLength(1));
    await vi.waitFor(async () => expect(await eventLines()).toHaveLength(1));
    await a.outbox.close();
    ledger.failAppends(false);

    const b = makeProcess(ledger, receiver.url, []);
    b.outbox.restore(ledger.replay());
    b.outbox.start();
    expect(await b.outbox.flush(60_000)).toBe(true);
    expect(receiver.requests.map((r) => r.headers['x-ibw-event-id'])).toEqual([event.id, event.id]);
    expect(receiver.accepted).toEqual([event.id]);
    expect(ledger.replay()).toEqual([]);
  });

  it('a 400 is dead-lettered, acknowledged and counted; later events flow', async () => {
    const receiver = await startReceiver(SECRET);
    cleanups.push(() => receiver.close());
    receiver.script.push({ status: 400, body: 'no such product' });
    const ledger = createMemoryLedger();
    const infos: DeliveryInfo[] = [];
    const p = makeProcess(ledger, receiver.url, infos);
    p.outbox.start();
    const events = makeEvents(2);
    for (const e of events) await emit(ledger, p.outbox, e);
    expect(await p.outbox.flush(60_000)).toBe(true);
    expect(infos.filter((i) => i.sink === 'webhook').map((i) => i.outcome)).toEqual(['dead_letter', 'ok']);
    expect(receiver.accepted).toEqual([events[1]!.id]);
    const dead = (await readFile(path.join(dir, 'state', 'dead-letter.jsonl'), 'utf8')).trim().split('\n');
    expect(dead.map((l) => (JSON.parse(l) as { event: WatcherEvent }).event.id)).toEqual([events[0]!.id]);
    expect(ledger.replay()).toEqual([]);
  });
});
