/**
 * An optional extension of {@link EventSink} for sinks that can acknowledge an event in more than one way.
 * The outbox uses `deliverReport` when a sink has it, to count `dead_letter` separately from `ok` in
 * `sink_deliveries_total{sink,outcome}`.
 */
import type { EventSink } from '../core/ports.js';
import type { WatcherEvent } from '../events.js';

/** How a sink acknowledged an event: delivered, or accepted into its dead-letter store. */
export type DeliveryReport = 'ok' | 'dead_letter';

/** A sink that reports how it acknowledged. `deliver` must behave as `deliverReport` without the report. */
export interface ReportingSink extends EventSink {
  deliverReport(event: WatcherEvent, signal?: AbortSignal): Promise<DeliveryReport>;
}

/** True when `sink` implements {@link ReportingSink}. */
export function isReportingSink(sink: EventSink): sink is ReportingSink {
  return typeof (sink as Partial<ReportingSink>).deliverReport === 'function';
}
