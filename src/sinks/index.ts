/**
 * Event sinks, the delivery outbox and the result writer (DESIGN.md §4). `main.ts` wires these; the core
 * only sees the `EventSink`, `ResultWriter` and `LedgerStore` ports.
 */
export { createEmitterSink } from './emitter.js';
export type { AnyEventListener, EmitterSink, EmitterSinkOptions } from './emitter.js';
export { createEventsFileSink } from './events-file.js';
export type { EventsFileSink, EventsFileSinkOptions } from './events-file.js';
export { createLogSink, logLevelFor } from './log-sink.js';
export { Outbox } from './outbox.js';
export type { DeliveryInfo, DeliveryOutcome, OutboxLaneStats, OutboxOptions, OutboxState } from './outbox.js';
export { isReportingSink } from './reporting.js';
export type { DeliveryReport, ReportingSink } from './reporting.js';
export { assertSafePathSegment, createResultWriter, syncDirectory, toResultJson } from './result-writer.js';
export type { ResultWriterOptions } from './result-writer.js';
export { findSecretPath } from './secret-guard.js';
export { createWebhookSink, isLoopbackHost, parseRetryAfter, signWebhookBody } from './webhook.js';
export type { WebhookSink, WebhookSinkOptions } from './webhook.js';
