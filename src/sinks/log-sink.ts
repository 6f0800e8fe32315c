/**
 * The log sink: one pino line per event, with the whole event under `event` (DESIGN.md §4) and the type as
 * the message. Problems a human should look at (stalled, unexpected status, rejected) are `warn`, the rest
 * `info`. Logging cannot fail from the caller's point of view, so `deliver` always resolves.
 */
import type { Logger } from 'pino';

import type { EventSink } from '../core/ports.js';
import type { EventType, WatcherEvent } from '../events.js';

const WARN_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  'batch.stalled',
  'batch.unexpected_status',
  'batch.rejected',
]);

/** The pino level the log sink uses for an event type. */
export function logLevelFor(type: EventType): 'info' | 'warn' {
  return WARN_TYPES.has(type) ? 'warn' : 'info';
}

/** Creates the log sink (name `log`). */
export function createLogSink(logger: Logger): EventSink {
  return {
    name: 'log',
    deliver(event: WatcherEvent): Promise<void> {
      try {
        const detail = event.outcome === undefined ? (event.status ?? '') : event.outcome;
        const why = event.reason && event.type !== 'batch.settled' ? ` (${event.reason})` : '';
        const msg = `${event.type} ${event.productKey}/${event.applyId}${detail === '' ? '' : ` ${detail}`}${why}`;
        logger[logLevelFor(event.type)]({ event }, msg);
      } catch {
        // NOTE: a broken log destination must not turn into endless redelivery.
      }
      return Promise.resolve();
    },
    close(): Promise<void> {
      return Promise.resolve();
    },
  };
}
