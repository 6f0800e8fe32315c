/**
 * The event contract (DESIGN.md §4). The same object goes to every sink: the log line's `event` field,
 * one line of `eventsFile`, the webhook body and the library's typed emitter. Events never carry secrets.
 */

export const EVENT_TYPES = [
  'batch.added',
  'batch.status_changed',
  'batch.awaiting_registration',
  'batch.registration_requested',
  'batch.stalled',
  'batch.unexpected_status',
  'batch.settled',
  'batch.rejected',
  'batch.cancelled',
] as const;

/**
 * Events of provisioning jobs (DESIGN.md §13), through the same outbox and sinks: `provision.chunk_submitted` (a
 * chunk got its ApplyId), `provision.chunk_parked` (a count chunk whose submission may or may not have reached
 * Alibaba: `submission_unknown`), `provision.settled` (every chunk of the job settled).
 */
export const PROVISION_EVENT_TYPES = ['provision.chunk_submitted', 'provision.chunk_parked', 'provision.settled'] as const;

/** Every event type: the batch events, then the provisioning events. */
export const ALL_EVENT_TYPES = [...EVENT_TYPES, ...PROVISION_EVENT_TYPES] as const;

export type ProvisionEventType = (typeof PROVISION_EVENT_TYPES)[number];

export type EventType = (typeof EVENT_TYPES)[number] | ProvisionEventType;

/** Final outcomes of a batch (DESIGN.md §3). */
export const OUTCOMES = [
  'checked',
  'check_failed',
  'created',
  'create_failed',
  'timed_out',
  'rejected',
  'cancelled',
] as const;

export type Outcome = (typeof OUTCOMES)[number];

export interface WatcherEvent {
  /**
   * Stable for the same fact: `<applyId>:<discriminator>:<seq>`, prefixed `<account>:` for accounts other than
   * `default` (unique across accounts); consumers de-duplicate on it.
   */
  id: string;
  type: EventType;
  /** ISO-8601 time the fact was observed. */
  at: string;
  /**
   * The account of the batch (DESIGN.md §11); `default` without an `accounts` section. Every event built by this
   * version carries it; only events journaled by a version before accounts (still in an old outbox) lack it.
   */
  account?: string;
  applyId: string;
  productKey: string;
  name: string | null;
  labels: Record<string, string>;
  /** Last status seen from the API, or null before the first answer. */
  status: string | null;
  /** Set on batch.settled (and the rejected/cancelled events that settle a batch). */
  outcome?: Outcome;
  /** The previous status, on batch.status_changed. */
  previousStatus?: string | null;
  /** Why: the error code and message on rejected, the timeout on timed_out, etc. */
  reason?: string;
  /** Polls so far. */
  polls?: number;
  /** For batch.settled: where the result file is, and how many devices it holds. */
  resultFile?: string | null;
  deviceCount?: number | null;
  validNames?: string[];
  invalidNames?: string[];
  /** For batch.stalled: how long the current phase has lasted. */
  phaseMs?: number;
  /**
   * provision.* events: the job (`name` is the job's name too). `applyId` is the chunk's ApplyId on
   * provision.chunk_submitted, and empty on provision.chunk_parked and provision.settled.
   */
  job?: string;
  /** provision.chunk_*: the chunk's index in the job's report. */
  chunk?: number;
  /** provision.*: devices the chunk (or the job) asked for; provision.settled: created and rejected too. */
  requested?: number;
  created?: number;
  rejected?: number;
  /** provision.settled: chunks of the job, and whether every one of them succeeded (`complete`) or not (`incomplete`). */
  chunks?: number;
  jobOutcome?: string;
}

/** Typed listener map for the library emitter (`createWatcher(...).on(type, listener)`). */
export type WatcherEventMap = { [K in EventType]: (event: WatcherEvent & { type: K }) => void };
