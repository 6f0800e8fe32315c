/**
 * The watcher loop: one loop, one min-heap of due times, one shared API budget.
 *
 * Lifecycle (`WatcherState`):
 *
 *   created ──start()──► running ──stop()──► stopping ──(in-flight done or grace over)──► stopped
 *                           └──(process-fatal API error)──► stopping (fatal) ──► stopped
 *
 * Invariants:
 * - A batch key is either in the heap (waiting for its due time) or in flight, never both; so one batch has at
 *   most one request in flight and is never polled more often than its backoff allows.
 * - The loop always takes the earliest due key. Before a status poll it takes a token from the `status`
 *   bucket; if none is available it sleeps until one is (bounded by the bucket's current rate, no queue), so
 *   the tail is served in due order and no batch starves.
 * - Every transition is made durable (ledger append of the record and its events) before anything acts on it:
 *   before an event reaches the outbox, before BatchRegisterDeviceWithApplyId is called (the intent), and
 *   before a batch is marked settled (the result file is written first, idempotently).
 * - Requests in flight are capped by a semaphore (`rateLimit.concurrency`).
 */
import type { BatchConfig, CompiledConfig } from '../config/types.js';
import { DaemonError, coerceError } from '../errors.js';
import type { WatcherEvent } from '../events.js';
import { spreadOverdueMs } from './backoff.js';
import type { Clock, Random } from './clock.js';
import { DueHeap } from './heap.js';
import { applyJournalRecord, emptySnapshot } from './ledger-state.js';
import type {
  BatchResult,
  DeviceInfo,
  EventPublisher,
  IotApi,
  JournalRecord,
  LedgerSnapshot,
  LedgerStore,
  Log,
  ResultWriter,
} from './ports.js';
import type { RateLimiterSet } from './rate-limiter.js';
import { type BatchRecord, type OutboxEntry, accountOf } from './record.js';
import { Semaphore } from './semaphore.js';
import { type StatusRow, toStatusRows } from './status-row.js';
import {
  type Effect,
  type Step,
  added,
  applyError,
  applyFetchError,
  applyRegistration,
  applyStatus,
  buildEvent,
  cancel,
  checkDeadlines,
  createRecord,
  markSettled,
  needsDevices,
  settledEffect,
} from './transitions.js';

export type WatcherState = 'created' | 'running' | 'stopping' | 'stopped';

/** New and changed batches are recorded this many at a time during reconciliation. */
const RECONCILE_CHUNK = 1000;

/** The budgeted actions. */
export type BudgetAction = 'status' | 'page';

export interface WatcherHooks {
  /** A batch settled (result written, event journaled). */
  onSettled?(rec: BatchRecord): void;
  /** The ledger failed to write (readiness goes false) or recovered. */
  onStoreHealth?(healthy: boolean, error: DaemonError | null): void;
}

export interface WatcherOptions {
  config: CompiledConfig;
  /** Used for status polls: one attempt per poll, the batch's backoff does the retrying. */
  statusApi: IotApi;
  /** Used for device paging and registration: retries inside, budgeted by the client's beforeAttempt hook. */
  api: IotApi;
  ledger: LedgerStore;
  publisher: EventPublisher & { restore?(entries: Iterable<OutboxEntry>): void };
  results: ResultWriter;
  limiter: RateLimiterSet<BudgetAction>;
  clock: Clock;
  random: Random;
  log: Log;
  hooks?: WatcherHooks;
  /** How long requests in flight may finish after stop(). @default 5000 */
  shutdownGraceMs?: number;
  /** Compact the ledger after this many journal records since the last compaction. @default 50000 */
  compactEvery?: number;
  /** Longest single sleep of the loop; it re-checks `now` after waking (timers fire early or late). @default 60000 */
  maxSleepMs?: number;
}

export interface RunResult {
  /** Why the loop ended. */
  reason: 'stopped' | 'fatal';
  error: DaemonError | null;
}

function toDaemonError(err: unknown): DaemonError {
  if (err instanceof DaemonError) return err;
  const e = coerceError(err);
  return new DaemonError(`internal error: ${e.message}`, { kind: 'internal', scope: 'attempt', code: 'Internal', cause: e });
}

export class Watcher {
  #state: WatcherState = 'created';
  #config: CompiledConfig;
  readonly #o: WatcherOptions;
  readonly #heap = new DueHeap();
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #image: LedgerSnapshot = emptySnapshot();
  #batches = new Map<string, BatchConfig>();
  readonly #sem: Semaphore;
  readonly #loopAbort = new AbortController();
  readonly #requestAbort = new AbortController();
  #wake: AbortController | null = null;
  #loopDone: Promise<RunResult> | null = null;
  #fatal: DaemonError | null = null;
  #storeHealthy = true;
  #journalSinceCompact = 0;
  #compacting: Promise<void> | null = null;
  #settledWaiters: (() => void)[] = [];
  /** Polls dispatched by the loop that have not taken their status token yet (0 or 1). */
  #statusDispatched = 0;

  constructor(options: WatcherOptions) {
    this.#o = options;
    this.#config = options.config;
    this.#sem = new Semaphore(options.config.rateLimit.concurrency);
  }

  get state(): WatcherState {
    return this.#state;
  }

  /** Aborted when requests in flight must give up (shutdown past the grace period). Shared by every request. */
  get requestSignal(): AbortSignal {
    return this.#requestAbort.signal;
  }

  get storeHealthy(): boolean {
    return this.#storeHealthy;
  }

  get config(): CompiledConfig {
    return this.#config;
  }

  /** Loads the ledger, reconciles it with the configuration and starts the loop. */
  async start(): Promise<void> {
    if (this.#state !== 'created') throw new Error(`Watcher.start() called in state ${this.#state}`);
    const snapshot = await this.#o.ledger.load();
    for (const [k, v] of snapshot.batches) this.#image.batches.set(k, v);
    for (const [k, v] of snapshot.outbox) this.#image.outbox.set(k, v);
    this.#o.publisher.restore?.(this.#image.outbox.values());
    this.#state = 'running';
    await this.#reconcile(this.#config, true);
    this.#loopDone = this.#loop();
  }

  /** Resolves when the loop has ended (after stop() or a fatal error). */
  async done(): Promise<RunResult> {
    if (!this.#loopDone) throw new Error('Watcher not started');
    return this.#loopDone;
  }

  /** Applies a new configuration: added batches start, removed ones are cancelled, changed parked ones re-armed. */
  async reload(config: CompiledConfig): Promise<{ added: number; cancelled: number; rearmed: number }> {
    if (this.#state !== 'running') throw new Error(`Watcher.reload() called in state ${this.#state}`);
    this.#config = config;
    return this.#reconcile(config, false);
  }

  /** Stops scheduling, lets requests in flight finish within the grace period, then aborts the rest. */
  async stop(): Promise<RunResult> {
    if (this.#state === 'created') {
      this.#state = 'stopped';
      return { reason: 'stopped', error: null };
    }
    if (this.#state === 'running') this.#state = 'stopping';
    this.#loopAbort.abort(new Error('stopping'));
    this.#wake?.abort();
    return this.done();
  }

  /** Rows for `status` and `/v1/batches`. */
  list(): StatusRow[] {
    return toStatusRows(this.#image.batches.values());
  }

  /** Number of batch records per state (for the `ibw_batches{state}` gauge). */
  counts(): Record<string, number> {
    const counts: Record<string, number> = { pending: 0, fetching: 0, settled: 0, parked: 0 };
    for (const rec of this.#image.batches.values()) counts[rec.state] = (counts[rec.state] ?? 0) + 1;
    return counts;
  }

  /** Outcome counts of settled batches (for the summary line). */
  outcomes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const rec of this.#image.batches.values()) {
      if (rec.state === 'settled' || rec.state === 'parked') out[rec.outcome ?? 'unknown'] = (out[rec.outcome ?? 'unknown'] ?? 0) + 1;
    }
    return out;
  }

  record(key: string): BatchRecord | undefined {
    return this.#image.batches.get(key);
  }

  /** Whether every batch of the current configuration has settled (or is parked). */
  allSettled(): boolean {
    for (const key of this.#batches.keys()) {
      const rec = this.#image.batches.get(key);
      if (!rec || rec.state === 'pending' || rec.state === 'fetching') return false;
    }
    return true;
  }

  /** Resolves once every configured batch has settled, or the loop ended. */
  whenAllSettled(): Promise<void> {
    if (this.allSettled() || this.#state === 'stopped') return Promise.resolve();
    return new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /** Drops settled batches older than the retention that are no longer in the configuration. */
  async prune(now = this.#o.clock.now()): Promise<number> {
    const cutoff = now - this.#config.housekeeping.retentionMs;
    const records: JournalRecord[] = [];
    for (const rec of this.#image.batches.values()) {
      if ((rec.state === 'settled' || rec.state === 'parked') && (rec.settledAt ?? now) < cutoff && !this.#batches.has(rec.key)) {
        const undelivered = [...this.#image.outbox.values()].some((e) => e.event.applyId === rec.applyId && e.event.productKey === rec.productKey);
        if (!undelivered) records.push({ t: 'forget', key: rec.key });
      }
    }
    if (records.length > 0) await this.#append(records);
    return records.length;
  }

  // ---------------------------------------------------------------------------------------------------------
  // reconciliation (start and reload)

  async #reconcile(config: CompiledConfig, atStart: boolean): Promise<{ added: number; cancelled: number; rearmed: number }> {
    const now = this.#o.clock.now();
    const next = new Map(config.batches.map((b) => [b.key, b] as const));
    const stats = { added: 0, cancelled: 0, rearmed: 0 };
    this.#batches = next;
    const overdue: BatchRecord[] = [];
    // NOTE: new and changed batches are recorded in chunks (one ledger append per chunk, not per batch), so a
    // first start with 100,000 batches does not wait for 100,000 group commits.
    const pendingSteps: { step: Step; kind: 'added' | 'rearmed' | 'renamed' }[] = [];
    const flush = async (): Promise<void> => {
      const chunk = pendingSteps.splice(0);
      if (chunk.length === 0) return;
      if (!(await this.#commitMany(chunk.map((c) => c.step)))) return; // picked up by the next reload
      for (const { step, kind } of chunk) {
        if (kind === 'renamed') continue;
        this.#heap.push(step.rec.key, now);
        stats[kind] += 1;
      }
    };
    for (const batch of next.values()) {
      const rec = this.#image.batches.get(batch.key);
      if (this.#inFlight.has(batch.key)) continue; // re-checked when the task ends
      if (!rec) {
        pendingSteps.push({ step: added(createRecord(batch, now)), kind: 'added' });
      } else if (isRearmable(rec, batch)) {
        const step = added(createRecord(batch, now));
        pendingSteps.push({ step: { rec: { ...step.rec, eventSeq: rec.eventSeq }, effects: step.effects }, kind: 'rearmed' });
      } else if ((rec.name !== batch.name || rec.entryHash !== batch.entryHash) && (rec.state === 'pending' || rec.state === 'fetching')) {
        // Labels and names follow the file; the position (backoff, deadlines) is kept.
        const renamed = { ...rec, name: batch.name, labels: { ...batch.labels }, entryHash: batch.entryHash };
        pendingSteps.push({ step: { rec: renamed, effects: [] }, kind: 'renamed' });
      }
      if (pendingSteps.length >= RECONCILE_CHUNK) await flush();
    }
    await flush();
    for (const batch of next.values()) {
      if (this.#inFlight.has(batch.key)) continue;
      const rec = this.#image.batches.get(batch.key);
      if (!rec) continue;
      if ((rec.state === 'pending' || rec.state === 'fetching') && !this.#heap.has(batch.key)) {
        if (atStart && rec.nextDueAt <= now) overdue.push(rec);
        else this.#heap.push(batch.key, rec.nextDueAt);
      }
    }
    if (overdue.length > 0) {
      // Spread overdue polls over a jittered window sized by the budget instead of bursting.
      const windowMs = Math.max(1000, Math.ceil((overdue.length * 1000) / Math.max(0.1, config.rateLimit.statusQps)));
      for (const rec of overdue) this.#heap.push(rec.key, spreadOverdueMs(now, rec.nextDueAt, windowMs, this.#o.random));
    }
    const removed = [...this.#image.batches.values()].filter((rec) => !next.has(rec.key) && !this.#inFlight.has(rec.key));
    const cancels = removed.filter((rec) => rec.state === 'pending').map((rec) => cancel(rec, now));
    for (let i = 0; i < cancels.length; i += RECONCILE_CHUNK) {
      const chunk = cancels.slice(i, i + RECONCILE_CHUNK);
      if (await this.#commitMany(chunk)) stats.cancelled += chunk.length;
    }
    // A cancelled (or already settling) batch still gets its result file and batch.settled.
    for (const rec of removed) {
      const after = this.#image.batches.get(rec.key);
      if (after?.state === 'fetching') this.#heap.push(rec.key, Math.min(after.nextDueAt, now));
      else if (after?.state === 'pending') this.#heap.remove(rec.key);
    }
    this.#wake?.abort();
    this.#notifySettled();
    return stats;
  }

  // ---------------------------------------------------------------------------------------------------------
  // the loop

  async #loop(): Promise<RunResult> {
    const { clock } = this.#o;
    const maxSleep = this.#o.maxSleepMs ?? 60_000;
    try {
      while (this.#state === 'running') {
        const top = this.#heap.peek();
        const now = clock.now();
        if (!top) {
          await this.#sleep(maxSleep);
          continue;
        }
        if (top.dueAt > now) {
          await this.#sleep(Math.min(top.dueAt - now, maxSleep));
          continue;
        }
        if (!this.#sem.tryAcquire()) {
          await this.#race(this.#sem.whenAvailable());
          continue;
        }
        const rec = this.#image.batches.get(top.key);
        const isPoll = rec?.state === 'pending';
        if (isPoll) {
          // The poll takes its token right before it goes on the wire (#takeStatusToken), so the server sees the
          // spacing the limiter granted. The loop only dispatches when a token is free and no dispatched poll is
          // still on its way to take one, which keeps the polls in due order.
          // (A dispatched poll wakes the loop once it has its token, hence the long sleep in that case.)
          const waitMs = this.#statusDispatched > 0 ? maxSleep : this.#o.limiter.peek('status', now);
          if (waitMs > 0) {
            this.#sem.release();
            await this.#sleep(waitMs);
            continue;
          }
          this.#statusDispatched += 1;
        }
        this.#heap.pop();
        const key = top.key;
        let tokenPending = isPoll;
        const releaseDispatch = (): void => {
          if (tokenPending) {
            tokenPending = false;
            this.#statusDispatched -= 1;
            this.#wake?.abort();
          }
        };
        const task = this.#runTask(key, releaseDispatch)
          .catch((err: unknown) => {
            this.#o.log.error({ err: coerceError(err), key }, 'batch task failed unexpectedly; will retry');
            const r = this.#image.batches.get(key);
            if (r && (r.state === 'pending' || r.state === 'fetching') && this.#state === 'running') {
              this.#heap.push(key, this.#o.clock.now() + this.#config.polling.maxDelayMs);
            }
          })
          .finally(() => {
            releaseDispatch();
            this.#inFlight.delete(key);
            this.#sem.release();
            this.#afterTask(key);
          });
        this.#inFlight.set(key, task);
      }
    } catch (err) {
      this.#o.log.error({ err: coerceError(err) }, 'watcher loop crashed');
      this.#fatal ??= toDaemonError(err);
    }
    await this.#drainInFlight();
    this.#state = 'stopped';
    this.#notifySettled(true);
    return this.#fatal ? { reason: 'fatal', error: this.#fatal } : { reason: 'stopped', error: null };
  }

  async #drainInFlight(): Promise<void> {
    if (this.#inFlight.size === 0) return;
    const grace = this.#o.shutdownGraceMs ?? 5000;
    const all = Promise.allSettled([...this.#inFlight.values()]);
    const timer = new AbortController();
    const timedOut = await Promise.race([
      all.then(() => false),
      this.#o.clock.sleep(grace, timer.signal).then(
        () => true,
        () => false,
      ),
    ]);
    timer.abort();
    if (timedOut) {
      this.#o.log.warn({ inFlight: this.#inFlight.size, graceMs: grace }, 'requests still in flight after the grace period; aborting them');
      this.#requestAbort.abort(new Error('shutdown'));
      await Promise.allSettled([...this.#inFlight.values()]);
    }
  }

  async #sleep(ms: number): Promise<void> {
    const wake = new AbortController();
    this.#wake = wake;
    const onStop = (): void => wake.abort();
    this.#loopAbort.signal.addEventListener('abort', onStop, { once: true });
    try {
      await this.#o.clock.sleep(Math.max(0, ms), wake.signal);
    } catch {
      // woken early: re-check
    } finally {
      this.#loopAbort.signal.removeEventListener('abort', onStop);
      if (this.#wake === wake) this.#wake = null;
    }
  }

  /** Waits for `p`, or until woken or stopped; leaves no listener behind. */
  async #race(p: Promise<void>): Promise<void> {
    const wake = new AbortController();
    this.#wake = wake;
    const onStop = (): void => wake.abort();
    this.#loopAbort.signal.addEventListener('abort', onStop, { once: true });
    const woken = new Promise<void>((resolve) => wake.signal.addEventListener('abort', () => resolve(), { once: true }));
    try {
      await Promise.race([p, woken]);
    } finally {
      this.#loopAbort.signal.removeEventListener('abort', onStop);
      if (this.#wake === wake) this.#wake = null;
    }
  }

  #afterTask(key: string): void {
    const rec = this.#image.batches.get(key);
    if (rec && this.#state === 'running') {
      const open = rec.state === 'pending' || rec.state === 'fetching';
      if (open && !this.#batches.has(key)) {
        // Removed from the file while its request was in flight: the next task cancels it and writes the result.
        this.#heap.push(key, this.#o.clock.now());
        this.#wake?.abort();
        return;
      }
      if (rec.state === 'parked' || rec.state === 'settled') {
        const batch = this.#batches.get(key);
        if (batch && isRearmable(rec, batch)) {
          // Re-armed while in flight: reconcile the single key.
          void this.#reconcile(this.#config, false).catch((err: unknown) =>
            this.#o.log.error({ err: coerceError(err) }, 'reconcile failed'),
          );
        }
      }
      if (open && !this.#heap.has(key)) this.#heap.push(key, rec.nextDueAt);
    }
    this.#notifySettled();
    this.#wake?.abort();
  }

  #notifySettled(force = false): void {
    if (this.#settledWaiters.length === 0) return;
    if (force || this.allSettled()) {
      const waiters = this.#settledWaiters;
      this.#settledWaiters = [];
      for (const w of waiters) w();
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // one batch

  async #runTask(key: string, tokenTaken: () => void): Promise<void> {
    let rec = this.#image.batches.get(key);
    const batch = this.#batches.get(key);
    if (!rec) return;
    if (!batch) {
      if (rec.state === 'pending') await this.#apply(cancel(rec, this.#o.clock.now()));
      rec = this.#image.batches.get(key);
      if (rec?.state === 'fetching') await this.#fetchAndSettle(rec, null);
      return;
    }
    if (rec.state === 'pending') {
      const deadlines = checkDeadlines(rec, batch, this.#o.clock.now());
      if (deadlines.effects.length > 0) await this.#apply(deadlines, batch);
      rec = this.#image.batches.get(key);
      if (rec?.state === 'pending') await this.#poll(rec, batch, tokenTaken);
      rec = this.#image.batches.get(key);
    }
    if (rec?.state === 'fetching') await this.#fetchAndSettle(rec, batch);
  }

  async #poll(rec: BatchRecord, batch: BatchConfig, tokenTaken: () => void): Promise<void> {
    const { clock, random, log } = this.#o;
    const started = clock.now();
    let step: Step;
    let requestId: string | null = null;
    let took = false;
    const takeToken = async (): Promise<void> => {
      await this.#takeStatusToken();
      took = true;
      tokenTaken();
    };
    try {
      const result = await this.#o.statusApi.queryBatchRegisterDeviceStatus(
        { productKey: batch.productKey, applyId: batch.applyId, iotInstanceId: batch.iotInstanceId },
        { signal: this.#requestAbort.signal, endpoint: batch.endpoint, beforeSend: takeToken },
      ).finally(async () => {
        // NOTE: an IotApi that ignores beforeSend still pays for its request (late, but never for free).
        if (!took && !this.#requestAbort.signal.aborted) await takeToken().catch(() => undefined);
      });
      requestId = result.requestId;
      step = applyStatus(rec, batch, result, clock.now(), random);
    } catch (err) {
      const e = toDaemonError(err);
      if (e.kind === 'internal') log.error({ err: e, applyId: rec.applyId }, 'unexpected error while polling');
      if (e.kind === 'aborted' || this.#requestAbort.signal.aborted) return;
      step = applyError(rec, batch, e, clock.now(), random);
    }
    if (log.isLevelEnabled?.('debug') !== false) {
      log.debug(
        {
          applyId: rec.applyId,
          productKey: rec.productKey,
          status: step.rec.status,
          attempt: step.rec.attempt,
          delayMs: Math.max(0, step.rec.nextDueAt - clock.now()),
          requestId,
          durationMs: clock.now() - started,
          error: step.rec.lastError?.code,
        },
        'poll',
      );
    }
    await this.#apply(step, batch);
  }

  /** Waits for a token of the status budget (bounded by the bucket's current rate; no queue). */
  async #takeStatusToken(): Promise<void> {
    for (;;) {
      const wait = this.#o.limiter.tryTake('status', this.#o.clock.now());
      if (wait <= 0) return;
      await this.#o.clock.sleep(wait, this.#requestAbort.signal);
    }
  }

  /** Makes a step durable, then performs its effects. */
  async #apply(step: Step, batch?: BatchConfig): Promise<void> {
    const ok = await this.#commit(step);
    if (!ok) return;
    for (const effect of step.effects) {
      if (effect.kind === 'register' && batch) await this.#register(batch);
      else if (effect.kind === 'fatal') this.#setFatal(effect.error);
    }
  }

  /** Appends the record and its events; on success updates the image and hands the events to the outbox. */
  #commit(step: Step): Promise<boolean> {
    return this.#commitMany([step]);
  }

  /** Records several steps in one append (one group commit). */
  async #commitMany(steps: readonly Step[]): Promise<boolean> {
    const now = this.#o.clock.now();
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
    try {
      await this.#append(records);
    } catch (err) {
      const e =
        err instanceof DaemonError
          ? err
          : new DaemonError(`ledger write failed: ${coerceError(err).message}`, { kind: 'store', scope: 'attempt', code: 'LedgerWrite', cause: err });
      this.#o.log.error({ err: e, batches: steps.map((st) => st.rec.applyId).slice(0, 10) }, 'could not record a transition; will retry');
      // NOTE: nothing acts on an unrecorded transition; the batch is retried from its last durable state.
      for (const step of steps) {
        const prev = this.#image.batches.get(step.rec.key);
        if (prev && (prev.state === 'pending' || prev.state === 'fetching')) {
          this.#image.batches.set(prev.key, { ...prev, nextDueAt: now + this.#config.polling.initialDelayMs });
        }
      }
      return false;
    }
    for (const event of events) this.#o.publisher.enqueue({ event, acked: [] });
    return true;
  }

  async #append(records: JournalRecord[]): Promise<void> {
    try {
      await this.#o.ledger.append(records);
    } catch (err) {
      if (this.#storeHealthy) {
        this.#storeHealthy = false;
        this.#o.hooks?.onStoreHealth?.(false, err instanceof DaemonError ? err : null);
      }
      throw err;
    }
    if (!this.#storeHealthy) {
      this.#storeHealthy = true;
      this.#o.hooks?.onStoreHealth?.(true, null);
    }
    for (const r of records) applyJournalRecord(this.#image, r);
    this.#journalSinceCompact += records.length;
    if (this.#journalSinceCompact >= (this.#o.compactEvery ?? 50_000) && !this.#compacting) {
      this.#compacting = this.compact().finally(() => {
        this.#compacting = null;
      });
    }
  }

  /** Writes a snapshot of the current image and truncates the journal. */
  async compact(): Promise<void> {
    this.#journalSinceCompact = 0;
    try {
      await this.#o.ledger.compact(this.#image);
    } catch (err) {
      this.#o.log.error({ err: coerceError(err) }, 'ledger compaction failed; the journal keeps growing until it succeeds');
    }
  }

  /** Records or settles the outbox's acknowledgements (the outbox appends them through this door). */
  appendDelivery(records: JournalRecord[]): Promise<void> {
    return this.#append(records);
  }

  async #register(batch: BatchConfig): Promise<void> {
    const { clock, random, log } = this.#o;
    let outcome: Parameters<typeof applyRegistration>[2];
    try {
      const res = await this.#o.api.batchRegisterDeviceWithApplyId(
        { productKey: batch.productKey, applyId: batch.applyId, iotInstanceId: batch.iotInstanceId },
        { signal: this.#requestAbort.signal, endpoint: batch.endpoint },
      );
      outcome = { ok: true, requestId: res.requestId };
      log.info({ applyId: batch.applyId, productKey: batch.productKey, requestId: res.requestId }, 'BatchRegisterDeviceWithApplyId accepted');
    } catch (err) {
      const e = toDaemonError(err);
      if (e.kind === 'aborted' || this.#requestAbort.signal.aborted) return;
      log.warn({ applyId: batch.applyId, productKey: batch.productKey, code: e.code, err: e }, 'BatchRegisterDeviceWithApplyId failed');
      outcome = { ok: false, error: e };
    }
    const rec = this.#image.batches.get(batch.key);
    if (!rec) return;
    await this.#apply(applyRegistration(rec, batch, outcome, clock.now(), random), batch);
  }

  async #fetchAndSettle(rec0: BatchRecord, batch: BatchConfig | null): Promise<void> {
    const { clock, random, log } = this.#o;
    let rec = rec0;
    let devices: DeviceInfo[] = [];
    if (this.#config.devices.fetch && needsDevices(rec.outcome)) {
      try {
        const all = await this.#o.api.listAllDevicesByApplyId(
          { applyId: rec.applyId, iotInstanceId: batch?.iotInstanceId ?? null },
          { signal: this.#requestAbort.signal, endpoint: batch?.endpoint },
        );
        devices = all.devices;
      } catch (err) {
        const e = toDaemonError(err);
        if (e.kind === 'aborted' || this.#requestAbort.signal.aborted) return;
        if (e.scope === 'process') {
          this.#setFatal(e);
          return;
        }
        const policy = batch ?? this.#config.batches[0] ?? null;
        const next = applyFetchError(rec, policy ?? fallbackBatch(this.#config, rec), e, clock.now(), random);
        log.warn(
          { applyId: rec.applyId, productKey: rec.productKey, code: e.code, fetchAttempts: next.fetchAttempts, delayMs: next.nextDueAt - clock.now() },
          'device fetch failed; the batch stays recorded and is retried',
        );
        await this.#commit({ rec: next, effects: [] });
        return;
      }
    }
    let file: string;
    try {
      file = await this.#o.results.write(buildResult(rec, devices, this.#config.devices.includeSecrets));
    } catch (err) {
      const e =
        err instanceof DaemonError
          ? err
          : new DaemonError(`result file write failed: ${coerceError(err).message}`, { kind: 'store', scope: 'attempt', code: 'ResultWrite', cause: err });
      const next = applyFetchError(rec, batch ?? fallbackBatch(this.#config, rec), e, clock.now(), random);
      log.error({ applyId: rec.applyId, productKey: rec.productKey, err: e }, 'could not write the result file; will retry');
      if (this.#storeHealthy) {
        this.#storeHealthy = false;
        this.#o.hooks?.onStoreHealth?.(false, e);
      }
      await this.#commit({ rec: next, effects: [] });
      return;
    }
    rec = markSettled(rec, file, devices.length);
    const ok = await this.#commit({ rec, effects: [settledEffect(rec)] });
    if (ok) {
      const stored = this.#image.batches.get(rec.key) ?? rec;
      this.#o.hooks?.onSettled?.(stored);
    }
  }

  #setFatal(error: DaemonError): void {
    if (this.#fatal) return;
    this.#fatal = error;
    if (this.#state === 'running') this.#state = 'stopping';
    this.#loopAbort.abort(error);
    this.#wake?.abort();
  }
}

/**
 * A settled batch starts again from scratch (a new record, `batch.added`) when:
 * - it was rejected (parked) and its YAML entry changed (the operator fixed something);
 * - it timed out and its entry changed (e.g. a longer `polling.timeout`);
 * - it was cancelled (removed from the file) and is back in the file.
 */
export function isRearmable(rec: BatchRecord, batch: BatchConfig): boolean {
  if (rec.state === 'parked') return rec.entryHash !== batch.entryHash;
  if (rec.state !== 'settled') return false;
  if (rec.outcome === 'cancelled') return true;
  return rec.outcome === 'timed_out' && rec.entryHash !== batch.entryHash;
}

function fallbackBatch(config: CompiledConfig, rec: BatchRecord): BatchConfig {
  const account = accountOf(rec);
  const inherited = config.accounts.find((a) => a.name === account) ?? config.alibaba;
  return {
    account,
    applyId: rec.applyId,
    productKey: rec.productKey,
    key: rec.key,
    name: rec.name,
    until: 'created',
    register: false,
    iotInstanceId: inherited.iotInstanceId,
    regionId: inherited.regionId,
    endpoint: inherited.endpoint,
    labels: rec.labels,
    polling: config.polling,
    entryHash: rec.entryHash,
    source: null,
  };
}

/** The result file content (DESIGN.md §4). Secrets are included only when asked. */
export function buildResult(rec: BatchRecord, devices: readonly DeviceInfo[], includeSecrets: boolean): BatchResult {
  return {
    account: accountOf(rec),
    applyId: rec.applyId,
    productKey: rec.productKey,
    name: rec.name,
    labels: rec.labels,
    outcome: rec.outcome ?? 'unknown',
    status: rec.status,
    firstSeenAt: new Date(rec.firstSeenAt).toISOString(),
    settledAt: new Date(rec.settledAt ?? rec.firstSeenAt).toISOString(),
    polls: rec.polls,
    validNames: rec.validNames,
    invalidNames: rec.invalidNames,
    invalidDetails: rec.invalidDetails,
    devices: devices.map((d) =>
      includeSecrets && d.deviceSecret !== null
        ? { deviceName: d.deviceName, iotId: d.iotId, deviceSecret: d.deviceSecret }
        : { deviceName: d.deviceName, iotId: d.iotId },
    ),
    deviceCount: devices.length,
    history: rec.history.map((h) => ({ status: h.status, at: new Date(h.at).toISOString() })),
    reason: rec.reason,
  };
}

export type { Effect };
