/**
 * The state store: the one owner of durable state (DESIGN.md §5) and of its in-memory image.
 *
 * - It owns the {@link LedgerStore} (file, memory or PostgreSQL: any backend of the port plugs in unchanged).
 * - Image = replayed journal, always: every record is applied to the image only after `append` made it durable,
 *   and nothing else edits the image. So a compaction can snapshot the image, and a restart sees what this
 *   process saw.
 * - {@link StateStore.commit} makes steps durable (each step's record and the events of its `emit` effects, in one
 *   append), and only then hands the events to the publisher (the outbox).
 * - {@link StateStore.append} is the door for the outbox's ack/done records and for housekeeping (`forget`).
 * - Write-behind for quiet polls ({@link StateStore.defer}): a poll that changed nothing but the backoff position
 *   (attempt, polls, next due time, last transient error; no event, same state and status) is appended with the
 *   others of the same `deferMs` window in one group, not one append each. Until then the queries answer with the
 *   deferred record, and the image (the durable journal) keeps the previous one. Bound: a kill -9 loses at most
 *   `deferMs` of quiet polls per batch, so a restart resumes each batch at most that far behind its backoff
 *   position; anything that emits an event, changes state or status, or is acted on is committed durably first.
 * - Health: a failed append makes the store unhealthy (readiness false) until an append succeeds; a result file
 *   that cannot be written does the same until one can. `onHealth` hears every change.
 * - Compaction: after `compactEvery` records (at least two per batch), in the background; and once more at {@link StateStore.close}, which
 *   reports a state it could not flush (an unclean shutdown).
 * - Queries for `status`, metrics and the summary: {@link StateStore.list}, {@link StateStore.counts},
 *   {@link StateStore.outcomes}, {@link StateStore.record}.
 */
import { DaemonError, coerceError } from '../errors.js';
import type { Clock } from './clock.js';
import type { WatcherEvent } from '../events.js';
import { applyJournalRecord, emptySnapshot } from './ledger-state.js';
import type { EventPublisher, JournalRecord, LedgerSnapshot, LedgerStore, Log } from './ports.js';
import type { BatchRecord, OutboxEntry } from './record.js';
import { type StatusRow, toStatusRows } from './status-row.js';
import { type Step, buildEvent } from './transitions.js';

/** Journal records per batch of the image that may accumulate before a compaction (see `compactEvery`). */
export const COMPACT_RECORDS_PER_BATCH = 2;

// NOTE: frozen, so code that would change one in place fails loudly instead of changing every record.
const EMPTY_LABELS: Record<string, string> = Object.freeze({});
const EMPTY_LIST: never[] = Object.freeze([]) as never[];

/**
 * Points the empty labels and lists of a record at one frozen empty object each, in place (the contents stay the
 * same). Records are replaced, never changed, by the transitions; at 100,000 pending batches the four empty lists
 * and the `{}` of labels each record carries were about 18 MB of the image (heap snapshot, issue #14).
 */
function shareEmpties(rec: BatchRecord): void {
  if (rec.labels !== EMPTY_LABELS && Object.keys(rec.labels).length === 0) rec.labels = EMPTY_LABELS;
  if (rec.history.length === 0) rec.history = EMPTY_LIST;
  if (rec.validNames.length === 0) rec.validNames = EMPTY_LIST;
  if (rec.invalidNames.length === 0) rec.invalidNames = EMPTY_LIST;
  if (rec.invalidDetails.length === 0) rec.invalidDetails = EMPTY_LIST;
}

/** Where a health change came from. */
export type HealthSource = 'ledger' | 'results';

export interface StateStoreOptions {
  ledger: LedgerStore;
  log: Log;
  /** Epoch ms for event times. */
  now: () => number;
  /**
   * Compact after this many journal records since the last compaction, and after no fewer than
   * {@link COMPACT_RECORDS_PER_BATCH} per batch of the image: a snapshot costs in proportion to the batches, so the
   * journal it replaces must grow with them too, or compaction's cost per record would (100,000 batches: one
   * 57 MB snapshot per 50,000 records, ten of them during a start-up). @default 50000
   */
  compactEvery?: number;
  /** Longest time a deferred (quiet) record waits before its group is appended. @default 1000 */
  deferMs?: number;
  /** Times the deferred groups; without it, {@link StateStore.defer} commits at once. */
  clock?: Clock;
  /** Every change of health: false when a source failed (with its error), true once all sources work again. */
  onHealth?(healthy: boolean, source: HealthSource, error: DaemonError | null): void;
}

/** The publisher the store hands committed events to (the outbox); `restore` receives the undelivered ones. */
export type StorePublisher = EventPublisher & { restore?(entries: Iterable<OutboxEntry>): void };

/** See the module comment. */
export class StateStore {
  readonly #o: StateStoreOptions;
  readonly #image: LedgerSnapshot = emptySnapshot();
  readonly #failing = new Map<HealthSource, DaemonError | null>();
  #publisher: StorePublisher | null = null;
  #sinceCompact = 0;
  #compacting: Promise<void> | null = null;
  #closed = false;
  #loaded = false;
  /** Quiet records not appended yet, by key (the newest only). */
  readonly #deferred = new Map<string, BatchRecord>();
  /** Keys committed durably while a deferred group was being written (a failed group must not bring them back). */
  readonly #touched = new Set<string>();
  /** A deferred group's timer is set. */
  #timerSet = false;
  /** Ends the deferred group's timer at close. */
  readonly #stopTimer = new AbortController();

  constructor(options: StateStoreOptions) {
    this.#o = options;
  }

  /** Reads the ledger into the image (once; later calls do nothing). */
  async load(): Promise<void> {
    if (this.#loaded) return;
    const snapshot = await this.#o.ledger.load();
    for (const [k, v] of snapshot.batches) {
      shareEmpties(v);
      this.#image.batches.set(k, v);
    }
    for (const [k, v] of snapshot.outbox) this.#image.outbox.set(k, v);
    this.#loaded = true;
    this.#publisher?.restore?.(this.#image.outbox.values());
  }

  /**
   * Sets where committed events go; the undelivered events of the ledger are handed to it first (now, or at load).
   * (The outbox writes its acknowledgements through {@link append}, so it is built after the store and attached here.)
   */
  publishTo(publisher: StorePublisher): void {
    this.#publisher = publisher;
    if (this.#loaded) publisher.restore?.(this.#image.outbox.values());
  }

  /** Whether every source of durable state works (readiness). */
  get healthy(): boolean {
    return this.#failing.size === 0;
  }

  /**
   * Makes the steps durable in one append: each step's record, then the events of its `emit` effects (which
   * advance the record's event sequence). On success the image has them and the publisher got the events; on
   * failure nothing changed (logged), and the caller retries from the last durable state.
   */
  async commit(steps: readonly Step[]): Promise<boolean> {
    const now = this.#o.now();
    const records: JournalRecord[] = [];
    const events: WatcherEvent[] = [];
    for (const step of steps) {
      let rec = step.rec;
      const own: WatcherEvent[] = [];
      for (const effect of step.effects) {
        if (effect.kind !== 'emit') continue;
        const built = buildEvent(rec, effect, now);
        rec = built.rec;
        own.push(built.event);
      }
      records.push({ t: 'batch', rec });
      for (const event of own) records.push({ t: 'event', entry: { event, acked: [] } });
      events.push(...own);
    }
    const failingBefore = this.#failing.has('ledger');
    try {
      await this.append(records);
    } catch (err) {
      const e = asStoreError(err, 'LedgerWrite', 'ledger write failed');
      // One error line when the ledger starts failing (onHealth says when it recovers), not one per retry.
      this.#o.log[failingBefore ? 'debug' : 'error']({ err: e, batches: steps.map((st) => st.rec.applyId).slice(0, 10) }, 'could not record a transition; will retry');
      return false;
    }
    for (const step of steps) {
      // The durable record supersedes a deferred one (it was derived from it).
      this.#deferred.delete(step.rec.key);
      this.#touched.add(step.rec.key);
    }
    for (const event of events) this.#publisher?.enqueue({ event, acked: [] });
    return true;
  }

  /**
   * Records a quiet step (no effects, same state and status) in the next deferred group instead of at once; the
   * queries see it now. See the module comment for the bound.
   */
  defer(rec: BatchRecord): void {
    const clock = this.#o.clock;
    if (!clock || this.#closed) {
      void this.commit([{ rec, effects: [] }]);
      return;
    }
    this.#deferred.set(rec.key, rec);
    this.#armTimer(clock);
  }

  /** One timer while records are deferred; none when there are none. */
  #armTimer(clock: Clock): void {
    if (this.#timerSet) return;
    this.#timerSet = true;
    clock.sleep(this.#o.deferMs ?? 1000, this.#stopTimer.signal).then(
      () => {
        this.#timerSet = false;
        void this.flush();
      },
      () => undefined, // closed: close() flushes
    );
  }

  /** Appends every deferred record now (one group). A failure keeps them deferred and retries with the next group. */
  async flush(): Promise<void> {
    if (this.#deferred.size === 0) return;
    const recs = [...this.#deferred.values()];
    this.#deferred.clear();
    this.#touched.clear();
    const failingBefore = this.#failing.has('ledger');
    try {
      await this.append(recs.map((rec): JournalRecord => ({ t: 'batch', rec })));
    } catch (err) {
      this.#o.log[failingBefore ? 'debug' : 'error']({ err: coerceError(err), records: recs.length }, 'could not record deferred polls; will retry');
      for (const rec of recs) if (!this.#deferred.has(rec.key) && !this.#touched.has(rec.key)) this.#deferred.set(rec.key, rec);
      if (this.#o.clock && !this.#closed) this.#armTimer(this.#o.clock);
    }
  }

  /** Appends records durably, then applies them to the image. Rejects (unhealthy) when the ledger fails. */
  async append(records: JournalRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      await this.#o.ledger.append(records);
    } catch (err) {
      this.#setHealth('ledger', false, err instanceof DaemonError ? err : null);
      throw err;
    }
    this.#setHealth('ledger', true, null);
    for (const r of records) {
      if (r.t === 'batch') shareEmpties(r.rec);
      applyJournalRecord(this.#image, r);
    }
    this.#sinceCompact += records.length;
    const threshold = Math.max(this.#o.compactEvery ?? 50_000, COMPACT_RECORDS_PER_BATCH * this.#image.batches.size);
    if (this.#sinceCompact >= threshold && !this.#compacting && !this.#closed) {
      this.#compacting = this.compact()
        .catch((err: unknown) => this.#o.log.error({ err: coerceError(err) }, 'ledger compaction failed; the journal keeps growing until it succeeds'))
        .finally(() => {
          this.#compacting = null;
        });
    }
  }

  /** Whether result files can be written (a failed write makes the store unhealthy until one succeeds). */
  reportResultWrite(ok: boolean, error: DaemonError | null = null): void {
    this.#setHealth('results', ok, error);
  }

  /** Writes a snapshot of the image and truncates the journal. Rejects when the ledger cannot. */
  async compact(): Promise<void> {
    this.#sinceCompact = 0;
    await this.#o.ledger.compact(this.#image);
  }

  /**
   * Flushes the state for the next start (a last compaction, when the ledger is healthy) and closes the ledger.
   * Resolves with the error when the state could not be flushed or closed (an unclean shutdown), else null.
   */
  async close(): Promise<DaemonError | null> {
    if (this.#closed) return null;
    this.#closed = true;
    this.#stopTimer.abort();
    await this.flush();
    await this.#compacting;
    let failure: DaemonError | null = null;
    // NOTE: a store that never loaded has nothing to flush (and an empty snapshot would wipe the ledger). A loaded
    // one compacts even when unhealthy: the image holds only durable records, so the snapshot is safe, and a
    // ledger that works again flushes cleanly.
    if (this.#loaded) {
      try {
        await this.compact();
      } catch (err) {
        failure = asStoreError(err, 'LedgerCompact', 'could not write the ledger snapshot at shutdown');
      }
    }
    try {
      await this.#o.ledger.close();
    } catch (err) {
      failure ??= asStoreError(err, 'LedgerClose', 'could not close the ledger');
    }
    if (failure) this.#setHealth('ledger', false, failure);
    return failure;
  }

  // ---------------------------------------------------------------------------------------------------------
  // queries

  /** The batch's latest record (a deferred one if there is, else the durable one). */
  record(key: string): BatchRecord | undefined {
    return this.#deferred.get(key) ?? this.#image.batches.get(key);
  }

  /** Every batch's latest record. */
  *records(): IterableIterator<BatchRecord> {
    for (const rec of this.#image.batches.values()) yield this.#deferred.get(rec.key) ?? rec;
  }

  /** Rows for `status` and `/v1/batches`. */
  list(): StatusRow[] {
    return toStatusRows(this.records());
  }

  /** Number of batch records per state (for the `ibw_batches{state}` gauge). */
  counts(): Record<string, number> {
    const counts: Record<string, number> = { pending: 0, fetching: 0, settled: 0, parked: 0 };
    for (const rec of this.#image.batches.values()) counts[rec.state] = (counts[rec.state] ?? 0) + 1;
    return counts;
  }

  /** Outcome counts of settled and parked batches (for the summary line). */
  outcomes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const rec of this.#image.batches.values()) {
      if (rec.state === 'settled' || rec.state === 'parked') out[rec.outcome ?? 'unknown'] = (out[rec.outcome ?? 'unknown'] ?? 0) + 1;
    }
    return out;
  }

  /** Batch keys (`productKey/applyId`) that still have an event waiting for a sink. */
  undeliveredKeys(): Set<string> {
    const keys = new Set<string>();
    for (const entry of this.#image.outbox.values()) keys.add(`${entry.event.productKey}/${entry.event.applyId}`);
    return keys;
  }

  #setHealth(source: HealthSource, ok: boolean, error: DaemonError | null): void {
    const was = this.healthy;
    if (ok) this.#failing.delete(source);
    else this.#failing.set(source, error);
    if (was !== this.healthy) this.#o.onHealth?.(this.healthy, source, error);
  }
}

/**
 * A poll step that changed nothing but the backoff position (attempt, polls, next due time, last transient error):
 * no effect, same state, status, phase, stall flag and registration. Such a step may be deferred.
 */
export function isQuiet(prev: BatchRecord, step: Step): boolean {
  const next = step.rec;
  return (
    step.effects.length === 0 &&
    next.state === prev.state &&
    next.status === prev.status &&
    next.phaseStartedAt === prev.phaseStartedAt &&
    next.stalledWarned === prev.stalledWarned &&
    next.registration === prev.registration &&
    next.eventSeq === prev.eventSeq
  );
}

function asStoreError(err: unknown, code: string, what: string): DaemonError {
  if (err instanceof DaemonError) return err;
  return new DaemonError(`${what}: ${coerceError(err).message}`, { kind: 'store', scope: 'attempt', code, cause: err });
}
