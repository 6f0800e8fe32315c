/**
 * The log sink: one pino line per event, with the whole event under `event` (DESIGN.md §4) and the type as
 * the message. Problems a human should look at (stalled, unexpected status, rejected) are `warn`, the rest
 * `info`. Logging cannot fail from the caller's point of view, so `deliver` always resolves.
 *
 * A burst of `batch.added` (a start-up with 20,000 batches, a reload that adds a fleet) is not 20,000 lines:
 * the first {@link LogSinkOptions.addedThreshold} of a burst are logged one by one, the rest are counted and
 * logged as one summary line once the burst is over (no `batch.added` for `burstQuietMs`), before any other
 * event, or at close. Only this log is summarised: the events file, the webhook and the outbox get every event.
 */
import type { Logger } from 'pino';

import { type Clock, systemClock } from '../core/clock.js';
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

/** Options of {@link createLogSink}. */
export interface LogSinkOptions {
  /** `batch.added` lines logged one by one per burst; the rest go into one summary line. @default 20 */
  addedThreshold?: number;
  /** A burst ends after this long without a `batch.added`. @default 1000 */
  burstQuietMs?: number;
  /** @default systemClock */
  clock?: Clock;
}

/**
 * A reason without its error code said twice: the core writes `code: message` and an API error's message
 * already names the code (`iot.x.Y: QueryDeviceBatch: iot.x.Y (HTTP 400): ...`).
 */
export function conciseReason(reason: string): string {
  const m = /^([^\s:]+): (.*)$/s.exec(reason);
  return m && m[2]!.includes(m[1]!) ? m[2]! : reason;
}

/** The message of an event's line: `type productKey/applyId detail (reason)`. */
export function eventMessage(event: WatcherEvent): string {
  const detail = event.outcome === undefined ? (event.status ?? '') : event.outcome;
  const why = event.reason && event.type !== 'batch.settled' ? ` (${conciseReason(event.reason)})` : '';
  return `${event.type} ${event.productKey}/${event.applyId}${detail === '' ? '' : ` ${detail}`}${why}`;
}

/** Creates the log sink (name `log`). */
export function createLogSink(logger: Logger, options: LogSinkOptions = {}): EventSink {
  const threshold = Math.max(0, options.addedThreshold ?? 20);
  const quietMs = Math.max(0, options.burstQuietMs ?? 1000);
  const clock = options.clock ?? systemClock;
  let burstCount = 0;
  let suppressed = 0;
  let byProduct = new Map<string, number>();
  let quietTimer: AbortController | null = null;

  const flushSummary = (): void => {
    quietTimer?.abort();
    quietTimer = null;
    if (suppressed > 0) {
      const products = [...byProduct].sort((a, b) => b[1] - a[1]);
      const shown = products.slice(0, 5).map(([pk, n]) => `${pk} ${n}`).join(', ');
      const more = products.length > 5 ? `, ${products.length - 5} more products` : '';
      try {
        logger.info(
          { added: burstCount, listed: burstCount - suppressed, notListed: suppressed, byProduct: Object.fromEntries(products) },
          `batch.added ${burstCount} batches: ${burstCount - suppressed} listed above, ${suppressed} more (${shown}${more}); \`status\` lists them all`,
        );
      } catch {
        // NOTE: see deliver.
      }
    }
    burstCount = 0;
    suppressed = 0;
    byProduct = new Map();
  };

  const armQuietTimer = (): void => {
    if (quietTimer) return;
    const controller = new AbortController();
    quietTimer = controller;
    void (async () => {
      let seen = -1;
      // NOTE: sleep again while batch.added keeps coming; the burst ends after one quiet window.
      while (seen !== burstCount) {
        seen = burstCount;
        try {
          await clock.sleep(quietMs, controller.signal);
        } catch {
          return;
        }
      }
      if (quietTimer === controller) flushSummary();
    })();
  };

  return {
    name: 'log',
    deliver(event: WatcherEvent): Promise<void> {
      try {
        if (event.type === 'batch.added') {
          burstCount += 1;
          armQuietTimer();
          if (burstCount > threshold) {
            suppressed += 1;
            byProduct.set(event.productKey, (byProduct.get(event.productKey) ?? 0) + 1);
            return Promise.resolve();
          }
        } else if (burstCount > 0) {
          flushSummary();
        }
        logger[logLevelFor(event.type)]({ event }, eventMessage(event));
      } catch {
        // NOTE: a broken log destination must not turn into endless redelivery.
      }
      return Promise.resolve();
    },
    close(): Promise<void> {
      flushSummary();
      return Promise.resolve();
    },
  };
}
