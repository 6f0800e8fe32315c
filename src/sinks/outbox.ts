/**
 * The delivery outbox: at-least-once delivery of events to every sink (DESIGN.md §4, style guide rule 10).
 *
 * Protocol with the ledger (JournalRecord):
 *   caller:  append {t:'event', entry}  (durable)  ─► outbox.enqueue(entry)
 *   outbox:  sink X acknowledges                   ─► append {t:'ack', id, sink: X}
 *            the last configured sink acknowledges ─► append {t:'ack', ...} and {t:'done', id} together
 * After a crash the ledger still holds every event without a `done`, with the sinks that acked it;
 * `restore()` re-queues each one for the sinks that have not acknowledged it. A sink may therefore see an
 * event twice (crash between delivery and ack); consumers de-duplicate on `event.id`.
 *
 * Lanes: one independent delivery loop per sink. A lane delivers its queue in enqueue order (FIFO), one
 * event at a time. When a delivery rejects, the lane retries the same event with exponential backoff and
 * jitter (the one formula of core/backoff.ts: drawn in [retryInitialMs, cap], the cap doubling up to `retryMaxMs`;
 * via the injected clock), forever, until it is
 * acknowledged or the outbox stops. NOTE: a failing head event blocks only its own sink's lane: the other
 * sinks and the caller (enqueue never waits for delivery) are unaffected. Keeping per-sink order is worth it:
 * a receiver sees `batch.status_changed` before the `batch.settled` of the same batch.
 *
 * Lifecycle: `idle` ─start()─► `running` ─stop()─► `stopped`; also `idle` ─stop()─► `stopped`.
 * enqueue/restore work in every state; in `idle` and `stopped` they only queue (the ledger keeps the entries,
 * so nothing is lost across a stop).
 *
 * Guard: an event carrying a `deviceSecret` key at any depth is a programmer error. `enqueue` throws; on
 * `restore` the entry is dropped (marked done) with an error log naming only the key path.
 */
import type { Logger } from 'pino';

import { nextDelayMs } from '../core/backoff.js';
import type { Clock, Random } from '../core/clock.js';
import type { EventSink, JournalRecord, LedgerStore } from '../core/ports.js';
import type { OutboxEntry } from '../core/record.js';
import { AbortedError, DaemonError } from '../errors.js';
import type { WatcherEvent } from '../events.js';

import { isReportingSink } from './reporting.js';
import type { DeliveryReport } from './reporting.js';
import { findSecretPath } from './secret-guard.js';

/** Outcome label of `sink_deliveries_total{sink,outcome}`. */
export type DeliveryOutcome = 'ok' | 'retry' | 'dead_letter' | 'error';

/** One delivery attempt's result, for metrics. */
export interface DeliveryInfo {
  sink: string;
  /** `ok` acknowledged; `dead_letter` acknowledged into the sink's dead-letter store; `retry` failed, will be retried; `error` dropped (poison event). */
  outcome: DeliveryOutcome;
  eventType: string;
}

/** Options of {@link Outbox}. */
export interface OutboxOptions {
  /** The sinks; their `name`s must be unique (they are the `sink` of ack records). */
  sinks: EventSink[];
  /** Where ack/done records go. */
  ledger: Pick<LedgerStore, 'append'>;
  clock: Clock;
  random: Random;
  logger: Logger;
  /**
   * Called after every delivery attempt (for `sink_deliveries_total`). Exceptions are swallowed.
   * @default none
   */
  onDelivery?: (info: DeliveryInfo) => void;
  /**
   * First retry delay of a lane after a failed delivery; doubles per consecutive failure, with jitter.
   * @default 1000
   */
  retryInitialMs?: number;
  /**
   * Cap of a lane's retry delay.
   * @default 60000
   */
  retryMaxMs?: number;
  /**
   * Lets I/O in (HTTP probes, ledger writes) between runs of deliveries: a lane whose sink answers at once (the
   * log, the emitter) would otherwise deliver a burst of 100,000 `batch.added` without leaving the microtask
   * queue. Awaited after every {@link YIELD_EVERY} deliveries in a row.
   * @default a macrotask turn (`setImmediate`)
   */
  yieldToLoop?: () => Promise<void>;
}

/** Deliveries a lane makes in a row before it lets the event loop turn. */
export const YIELD_EVERY = 256;

/** Most ack/done records gathered into one append (more start another append at once). */
export const ACK_GROUP_MAX = 1024;

const setImmediateTurn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** Lifecycle of the outbox (see the header comment). */
export type OutboxState = 'idle' | 'running' | 'stopped';

/** Per-sink numbers, for status and readiness. */
export interface OutboxLaneStats {
  sink: string;
  /** Events waiting for this sink (including the one in flight). */
  queued: number;
  /** Consecutive failed deliveries of the head event (0 when healthy). */
  failures: number;
}

interface Item {
  event: WatcherEvent;
  acked: Set<string>;
  /** `done` has been appended (or is being appended). */
  completing: boolean;
}

interface Lane {
  sink: EventSink;
  /** Event ids; the live part starts at `head` (NOTE: no `shift()`, which is O(n) on a long array). */
  queue: string[];
  head: number;
  failures: number;
  wake: (() => void) | null;
  loop: Promise<void> | null;
}

/** At-least-once delivery of events to every sink, with per-sink lanes. See the module comment. */
export class Outbox {
  private readonly sinks: EventSink[];
  private readonly ledger: Pick<LedgerStore, 'append'>;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly logger: Logger;
  private readonly onDelivery: ((info: DeliveryInfo) => void) | undefined;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly yieldToLoop: () => Promise<void>;
  private readonly items = new Map<string, Item>();
  private readonly lanes: Lane[];
  private readonly abort = new AbortController();
  private readonly drainWaiters = new Set<(drained: boolean) => void>();
  private readonly background = new Set<Promise<void>>();
  private lifecycle: OutboxState = 'idle';
  /**
   * Ack/done records of deliveries not appended yet, in delivery order, and the items they complete. Appended as one
   * group at the next macrotask turn (see {@link Outbox.queueAck}).
   */
  private ackRecords: JournalRecord[] = [];
  private ackCompletes: Item[] = [];
  private ackTurnSet = false;

  constructor(options: OutboxOptions) {
    this.sinks = [...options.sinks];
    this.ledger = options.ledger;
    this.clock = options.clock;
    this.random = options.random;
    this.logger = options.logger.child({ component: 'outbox' });
    this.onDelivery = options.onDelivery;
    this.retryInitialMs = options.retryInitialMs ?? 1000;
    this.retryMaxMs = options.retryMaxMs ?? 60_000;
    this.yieldToLoop = options.yieldToLoop ?? setImmediateTurn;
    for (const [name, value] of [
      ['retryInitialMs', this.retryInitialMs],
      ['retryMaxMs', this.retryMaxMs],
    ] as const) {
      if (!Number.isFinite(value) || value < 0) {
        throw new TypeError(`Expected \`${name}\` to be a finite number >= 0, got \`${String(value)}\` (${typeof value})`);
      }
    }
    const names = new Set<string>();
    for (const sink of this.sinks) {
      if (names.has(sink.name)) throw new TypeError(`Expected unique sink names, got \`${sink.name}\` twice`);
      names.add(sink.name);
    }
    this.lanes = this.sinks.map((sink) => ({ sink, queue: [], head: 0, failures: 0, wake: null, loop: null }));
  }

  /** Current lifecycle state. */
  get state(): OutboxState {
    return this.lifecycle;
  }

  /**
   * Re-queues the undelivered entries found in the ledger (call after load, before or after `start`). Each
   * entry goes to the sinks not in its `acked` list; an entry every configured sink already acked is
   * completed with a `done` record.
   */
  restore(entries: Iterable<OutboxEntry>): void {
    for (const entry of entries) {
      const secretPath = findSecretPath(entry.event);
      if (secretPath !== null) {
        this.logger.error(
          { eventId: entry.event.id, eventType: entry.event.type, key: secretPath },
          'dropping a stored event that carries a device secret (a bug); it is never delivered',
        );
        for (const lane of this.lanes) this.report(lane.sink.name, 'error', entry.event.type);
        this.track(this.appendQuietly([{ t: 'done', id: entry.event.id }]));
        continue;
      }
      this.add(entry);
    }
  }

  /**
   * Queues an event whose `{t:'event'}` record the caller has ALREADY made durable in the ledger. Never
   * waits for delivery. Throws if the event carries a device secret. A second entry with the same id while
   * the first is pending is ignored.
   */
  enqueue(entry: OutboxEntry): void {
    const secretPath = findSecretPath(entry.event);
    if (secretPath !== null) {
      throw new DaemonError(`event ${entry.event.id} carries a device secret at \`${secretPath}\``, {
        kind: 'internal',
        scope: 'process',
        code: 'EventCarriesSecret',
      });
    }
    this.add(entry);
  }

  /** Starts one delivery loop per sink, in the background. Idempotent; no effect after `stop`. */
  start(): void {
    if (this.lifecycle !== 'idle') return;
    this.lifecycle = 'running';
    for (const lane of this.lanes) {
      lane.loop = this.runLane(lane).catch((err: unknown) => {
        this.logger.error({ sink: lane.sink.name, err }, 'outbox lane crashed (a bug); its events stay in the ledger');
      });
    }
  }

  /** Entries not yet acknowledged by every sink (including ones whose `done` record is being written). */
  pending(): number {
    return this.items.size;
  }

  /** Per-sink queue lengths and failure streaks. */
  stats(): OutboxLaneStats[] {
    return this.lanes.map((lane) => ({ sink: lane.sink.name, queued: lane.queue.length - lane.head, failures: lane.failures }));
  }

  /**
   * Waits until every entry is acknowledged by every sink and its records are durable, or `timeoutMs`
   * passes (on the injected clock), or the outbox stops. Resolves true when drained.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.items.size === 0) return true;
    if (this.lifecycle === 'stopped') return false;
    const timer = new AbortController();
    let waiter: ((drained: boolean) => void) | undefined;
    const drained = new Promise<boolean>((resolve) => {
      waiter = resolve;
      this.drainWaiters.add(resolve);
    });
    const timedOut = this.clock.sleep(timeoutMs, timer.signal).then(
      () => false,
      () => false,
    );
    try {
      return await Promise.race([drained, timedOut]);
    } finally {
      timer.abort();
      if (waiter !== undefined) this.drainWaiters.delete(waiter);
    }
  }

  /**
   * Stops the lanes: aborts in-flight deliveries and backoff sleeps through the signal, and waits for the
   * loops (and any ack/done records being written) to finish. Unacknowledged entries stay in the ledger and
   * are delivered after `restore` in the next process. Does not close the sinks (see {@link Outbox.close}).
   */
  async stop(): Promise<void> {
    if (this.lifecycle !== 'stopped') {
      this.lifecycle = 'stopped';
      this.abort.abort(new AbortedError('outbox stopped'));
      for (const lane of this.lanes) lane.wake?.();
      for (const resolve of this.drainWaiters) resolve(this.items.size === 0);
      this.drainWaiters.clear();
    }
    await Promise.all(this.lanes.flatMap((lane) => (lane.loop === null ? [] : [lane.loop])));
    this.flushAcks();
    await Promise.all([...this.background]);
  }

  /** `stop()`, then `close()` every sink; a sink that fails to close is logged, the others still close. */
  async close(): Promise<void> {
    await this.stop();
    const results = await Promise.allSettled(this.sinks.map((sink) => sink.close()));
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        this.logger.error({ sink: this.sinks[i]?.name, err: result.reason }, 'sink failed to close');
      }
    });
  }

  private add(entry: OutboxEntry): void {
    const { event } = entry;
    if (this.items.has(event.id)) {
      this.logger.debug({ eventId: event.id }, 'event already queued; ignoring the duplicate');
      return;
    }
    const item: Item = { event, acked: new Set(entry.acked), completing: false };
    this.items.set(event.id, item);
    let needed = 0;
    for (const lane of this.lanes) {
      if (item.acked.has(lane.sink.name)) continue;
      needed += 1;
      lane.queue.push(event.id);
      this.wakeLane(lane);
    }
    if (needed === 0) this.track(this.complete(item, []));
  }

  private wakeLane(lane: Lane): void {
    const wake = lane.wake;
    lane.wake = null;
    wake?.();
  }

  private async runLane(lane: Lane): Promise<void> {
    const { signal } = this.abort;
    const { sink } = lane;
    let inARow = 0;
    while (!signal.aborted) {
      if (inARow >= YIELD_EVERY) {
        inARow = 0;
        await this.yieldToLoop();
        continue;
      }
      const id = lane.queue[lane.head];
      if (id === undefined) {
        inARow = 0;
        await new Promise<void>((resolve) => {
          lane.wake = resolve;
        });
        continue;
      }
      const item = this.items.get(id);
      if (item === undefined || item.acked.has(sink.name)) {
        shiftLane(lane);
        continue;
      }
      inARow += 1;
      let report: DeliveryReport;
      try {
        if (isReportingSink(sink)) {
          report = await sink.deliverReport(item.event, signal);
        } else {
          await sink.deliver(item.event, signal);
          report = 'ok';
        }
      } catch (err) {
        if (signal.aborted) break;
        lane.failures += 1;
        const delayMs = this.backoffMs(lane.failures);
        this.report(sink.name, 'retry', item.event.type);
        this.logger.warn(
          { sink: sink.name, eventId: id, eventType: item.event.type, attempt: lane.failures, delayMs, err },
          'sink delivery failed; will retry',
        );
        try {
          await this.clock.sleep(delayMs, signal);
        } catch {
          break;
        }
        continue;
      }
      if (lane.failures > 0) {
        this.logger.info({ sink: sink.name, eventId: id, failures: lane.failures }, 'sink delivery recovered');
      }
      lane.failures = 0;
      shiftLane(lane);
      this.report(sink.name, report, item.event.type);
      item.acked.add(sink.name);
      // NOTE: not awaited, so the lane moves on while the ledger groups many acks into one write; stop() still
      // waits for it (track), since a delivered event's ack must reach the ledger.
      this.queueAck(item, sink.name);
    }
  }

  /**
   * Queues the ack of `sinkName` (and the event's `done` when every sink has now acknowledged it) for the next
   * group. NOTE: one append per macrotask turn, not one per delivery: at 100,000 events one append each (its
   * promise, async frame and record array, all alive until the ledger's group write) was the largest share of
   * what survived young-generation collections after start-up (allocation sampling, issue #14). A sink that
   * answers slowly still gets each ack appended in the turn after its delivery; the order of records is the order
   * of deliveries, as before.
   */
  private queueAck(item: Item, sinkName: string): void {
    this.ackRecords.push({ t: 'ack', id: item.event.id, sink: sinkName });
    if (!item.completing && this.lanes.every((lane) => item.acked.has(lane.sink.name))) {
      item.completing = true;
      this.ackRecords.push({ t: 'done', id: item.event.id });
      this.ackCompletes.push(item);
    }
    if (this.ackRecords.length >= ACK_GROUP_MAX) {
      this.flushAcks();
      return;
    }
    if (this.ackTurnSet) return;
    this.ackTurnSet = true;
    void setImmediateTurn().then(() => {
      this.ackTurnSet = false;
      this.flushAcks();
    });
  }

  /** Appends the queued ack/done records as one group (tracked, so stop() waits for it). */
  private flushAcks(): void {
    if (this.ackRecords.length === 0) return;
    const records = this.ackRecords;
    const completes = this.ackCompletes;
    this.ackRecords = [];
    this.ackCompletes = [];
    this.track(
      this.appendQuietly(records).then(() => {
        for (const item of completes) this.items.delete(item.event.id);
        this.resolveDrainedWaiters();
      }),
    );
  }

  private resolveDrainedWaiters(): void {
    if (this.items.size !== 0) return;
    for (const resolve of this.drainWaiters) resolve(true);
    this.drainWaiters.clear();
  }

  /** Appends `records` + done, then forgets the item and wakes flush() waiters when drained. */
  private async complete(item: Item, records: JournalRecord[]): Promise<void> {
    item.completing = true;
    await this.appendQuietly([...records, { t: 'done', id: item.event.id }]);
    this.items.delete(item.event.id);
    this.resolveDrainedWaiters();
  }

  /**
   * A failed ack/done append is logged, not retried: the event then stays undelivered in the ledger and is
   * delivered again after a restart, which at-least-once allows.
   */
  private async appendQuietly(records: JournalRecord[]): Promise<void> {
    try {
      await this.ledger.append(records);
    } catch (err) {
      this.logger.error(
        { err, records: records.map((r) => ('id' in r ? `${r.t}:${r.id}` : r.t)) },
        'could not record a delivery in the ledger; it will be redelivered after a restart',
      );
    }
  }

  private track(promise: Promise<void>): void {
    this.background.add(promise);
    void promise.finally(() => this.background.delete(promise));
  }

  /** The one jitter formula (core/backoff.ts): uniform in [retryInitialMs, min(retryMaxMs, retryInitialMs · 2^(n−1))]. */
  private backoffMs(failures: number): number {
    return nextDelayMs({ initialDelayMs: this.retryInitialMs, maxDelayMs: this.retryMaxMs, multiplier: 2 }, failures, this.random);
  }

  private report(sink: string, outcome: DeliveryOutcome, eventType: string): void {
    if (this.onDelivery === undefined) return;
    try {
      this.onDelivery({ sink, outcome, eventType });
    } catch {
      // metrics must never break delivery
    }
  }
}

/** Drops the head of a lane's queue; the array is cut only once its dead part is large (amortised O(1)). */
function shiftLane(lane: Lane): void {
  lane.head += 1;
  if (lane.head === lane.queue.length) {
    lane.queue.length = 0;
    lane.head = 0;
  } else if (lane.head >= 1024 && lane.head * 2 >= lane.queue.length) {
    lane.queue.splice(0, lane.head);
    lane.head = 0;
  }
}
