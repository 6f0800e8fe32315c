/** Test helpers shared by the sink tests: events, a memory ledger, a capturing logger, a recording clock. */
import { Writable } from 'node:stream';

import { pino } from 'pino';
import type { Logger } from 'pino';

import type { Clock } from '../../../src/core/clock.js';
import type { JournalRecord, LedgerStore } from '../../../src/core/ports.js';
import type { OutboxEntry } from '../../../src/core/record.js';
import type { WatcherEvent } from '../../../src/events.js';

export function makeEvent(overrides: Partial<WatcherEvent> = {}): WatcherEvent {
  return {
    id: '1295006:CREATE_SUCCESS:7',
    type: 'batch.settled',
    at: '2026-11-28T10:04:12.345Z',
    applyId: '1295006',
    productKey: 'a1BwAGVxxxx',
    name: 'line-3-sensors',
    labels: { site: 'shanghai' },
    status: 'CREATE_SUCCESS',
    outcome: 'created',
    polls: 9,
    resultFile: '/data/results/a1BwAGVxxxx/1295006.json',
    deviceCount: 1,
    ...overrides,
  };
}

/** `n` events of one batch with distinct ids. */
export function makeEvents(n: number): WatcherEvent[] {
  return Array.from({ length: n }, (_, i) =>
    makeEvent({ id: `1295006:seq:${i}`, type: 'batch.status_changed', status: 'CREATE', outcome: undefined }),
  );
}

/** A ledger that records appended batches; `replay()` computes the undelivered outbox like the real ledger. */
export interface MemoryLedger extends Pick<LedgerStore, 'append'> {
  records: JournalRecord[];
  /** Undelivered entries, in emission order, after replaying every record. */
  replay(): OutboxEntry[];
  /** Makes the next appends fail (or pass again with `false`). */
  failAppends(fail: boolean): void;
}

export function createMemoryLedger(initial: JournalRecord[] = []): MemoryLedger {
  const records: JournalRecord[] = [...initial];
  let failing = false;
  return {
    records,
    append(batch) {
      if (failing) return Promise.reject(new Error('disk full'));
      records.push(...structuredClone(batch));
      return Promise.resolve();
    },
    failAppends(fail) {
      failing = fail;
    },
    replay() {
      const outbox = new Map<string, OutboxEntry>();
      for (const r of records) {
        if (r.t === 'event') outbox.set(r.entry.event.id, structuredClone(r.entry));
        else if (r.t === 'ack') {
          const e = outbox.get(r.id);
          if (e !== undefined && !e.acked.includes(r.sink)) e.acked.push(r.sink);
        } else if (r.t === 'done') outbox.delete(r.id);
      }
      return [...outbox.values()];
    },
  };
}

export interface CapturedLogger {
  logger: Logger;
  lines: string[];
  entries: () => Record<string, unknown>[];
}

/** A pino logger at trace level writing into memory. */
export function captureLogger(): CapturedLogger {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  const logger = pino({ level: 'trace' }, stream);
  return { logger, lines, entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export interface RecordingClock extends Clock {
  sleeps: number[];
}

/** A clock whose sleeps complete at once (after a macrotask) and advance `now`; every sleep is recorded. */
export function createInstantClock(startMs = Date.parse('2026-11-28T10:00:00.000Z')): RecordingClock {
  let now = startMs;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep(ms, signal) {
      sleeps.push(ms);
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) {
          reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
          return;
        }
        setImmediate(() => {
          if (signal?.aborted) {
            reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
            return;
          }
          now += ms;
          resolve();
        });
      });
    },
  };
}
