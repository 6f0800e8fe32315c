/**
 * Loud, not noisy: one warn line when an API action has failed continuously for `failureWarnAfterMs`, and one
 * info line when it answers again (issue #13 item 3). Never a line per retry.
 *
 * Pure and clock-only: the caller feeds the outcome of every attempt ({@link ActionHealth.record}, from the RPC
 * client's `onAttempt`) and runs {@link ActionHealth.run}, which sleeps with the injected clock until the earliest
 * streak reaches the threshold: no timer per attempt, and no wake-up at all while every action answers (a streak
 * that ends early costs one wake-up). {@link ActionHealth.tick} does the same check for a caller with its own timer.
 *
 * Tracked per key = (account, endpoint, action): an endpoint that is down is not hidden by another region's
 * endpoint that answers the same action. States of one key and the lines they log:
 *
 *   healthy ──failed attempt──► failing(since = that attempt) ──(now − since ≥ failureWarnAfterMs, checked on
 *   every attempt and every tick)──► failing, warned   [one warn: "alibaba api action failing"]
 *   failing ──answered attempt──► healthy               [nothing: the streak was shorter than the threshold]
 *   failing, warned ──answered attempt──► healthy       [one info: "alibaba api action recovered"]
 *
 * What counts:
 * - answered (the action works): `success`, and the batch-scope errors `business_error` / `batch_error` (an
 *   unknown ApplyId, a bad ProductKey, a RAM denial for one resource). The endpoint understood, authenticated and
 *   answered the request; the problem belongs to one batch, which is parked and reported on its own
 *   (`batch.rejected`), so it neither starts nor prolongs an outage.
 * - failed: `transient` (refused or reset connections, timeouts, 5xx, HTML or malformed bodies, unknown codes),
 *   `throttled` (nothing gets through while every answer is a throttle) and `fatal` (bad AccessKey, signature,
 *   clock skew: it is logged at fatal elsewhere as well).
 * An action that fails and is then not called again stays failing until its next answered attempt: the line
 * carries `lastFailureAt` and `failedAttempts` so a reader can tell a burst from a steady outage.
 */
import type { Clock } from './clock.js';
import type { Log } from './ports.js';

/** The outcome of one attempt, as the RPC client reports it (`AttemptInfo.outcome`, the metrics label). */
export type HealthOutcome = 'success' | 'throttled' | 'transient' | 'batch_error' | 'fatal' | 'business_error';

/** One attempt, fed to {@link ActionHealth.record}. */
export interface HealthAttempt {
  action: string;
  outcome: HealthOutcome;
  /** The error code, or null on success. */
  code: string | null;
  /** The error message (already scrubbed of secrets by the client), or null. */
  message?: string | null;
  httpStatus?: number | null;
  /** The endpoint origin the attempt went to, when known. */
  endpoint?: string | null;
  /** The account (DESIGN.md §11) the attempt belongs to, when there are several. */
  account?: string | null;
}

/** Options of {@link ActionHealth}. */
export interface ActionHealthOptions {
  /** A streak of failures this long (ms) logs the warn line. Must be > 0. */
  failureWarnAfterMs: number;
  clock: Clock;
  log: Log;
}

/** What one key looks like now (for status pages and tests). */
export interface ActionHealthState {
  action: string;
  endpoint: string | null;
  account: string | null;
  state: 'healthy' | 'failing' | 'warned';
  /** Start of the current failure streak (ms), or null when healthy. */
  failingSince: number | null;
  failedAttempts: number;
}

/** Distinct codes counted per streak; the rest are summed under {@link OTHER_CODES}. Bounds a hostile server. */
export const MAX_CODES_PER_STREAK = 16;
/** The bucket of codes beyond {@link MAX_CODES_PER_STREAK}. */
export const OTHER_CODES = '(other)';
const MAX_CODE_CHARS = 100;
const MAX_MESSAGE_CHARS = 300;

/** Whether an outcome proves that the action works (see the module comment). */
export function isAnswered(outcome: HealthOutcome): boolean {
  return outcome === 'success' || outcome === 'business_error' || outcome === 'batch_error';
}

interface Streak {
  since: number;
  lastFailureAt: number;
  failedAttempts: number;
  lastCode: string | null;
  lastMessage: string | null;
  lastHttpStatus: number | null;
  codes: Map<string, number>;
  warned: boolean;
}

interface Entry {
  action: string;
  endpoint: string | null;
  account: string | null;
  streak: Streak | null;
}

/** Tracks the health of every (account, endpoint, action) fed to it; logs one line per state change. */
export class ActionHealth {
  readonly #warnAfterMs: number;
  readonly #clock: Clock;
  readonly #log: Log;
  readonly #entries = new Map<string, Entry>();
  /** Keys with a streak not yet warned: what a tick has to look at (usually none). */
  readonly #pending = new Set<Entry>();
  /** Wakes {@link ActionHealth.run} when a streak starts while nothing was pending. */
  #wake: (() => void) | null = null;

  constructor(options: ActionHealthOptions) {
    if (!Number.isFinite(options.failureWarnAfterMs) || options.failureWarnAfterMs <= 0) {
      throw new RangeError(`Expected \`failureWarnAfterMs\` to be a finite number > 0, got \`${String(options.failureWarnAfterMs)}\``);
    }
    this.#warnAfterMs = options.failureWarnAfterMs;
    this.#clock = options.clock;
    this.#log = options.log;
  }

  /** Feeds one attempt's outcome. Never throws on odd input (it runs inside the client's hook). */
  record(attempt: HealthAttempt): void {
    const now = this.#clock.now();
    const entry = this.#entry(attempt);
    if (isAnswered(attempt.outcome)) {
      const streak = entry.streak;
      if (streak === null) return;
      entry.streak = null;
      this.#pending.delete(entry);
      if (streak.warned) {
        this.#log.info(
          {
            ...this.#where(entry),
            outageMs: Math.max(0, now - streak.since),
            failedAttempts: streak.failedAttempts,
            codes: Object.fromEntries(streak.codes),
            recoveredWith: attempt.outcome,
          },
          'alibaba api action recovered',
        );
      }
      return;
    }
    let streak = entry.streak;
    if (streak === null) {
      streak = { since: now, lastFailureAt: now, failedAttempts: 0, lastCode: null, lastMessage: null, lastHttpStatus: null, codes: new Map(), warned: false };
      entry.streak = streak;
      this.#pending.add(entry);
      this.#wake?.();
    }
    const code = clip(attempt.code ?? 'Unknown', MAX_CODE_CHARS);
    streak.failedAttempts += 1;
    streak.lastFailureAt = now;
    streak.lastCode = code;
    streak.lastMessage = attempt.message === null || attempt.message === undefined ? null : clip(attempt.message, MAX_MESSAGE_CHARS);
    streak.lastHttpStatus = attempt.httpStatus ?? null;
    const bucket = streak.codes.has(code) || streak.codes.size < MAX_CODES_PER_STREAK ? code : OTHER_CODES;
    streak.codes.set(bucket, (streak.codes.get(bucket) ?? 0) + 1);
    this.#check(entry, now);
  }

  /** Checks every streak not yet warned against the threshold. Cheap: usually no streak is pending. */
  tick(): void {
    if (this.#pending.size === 0) return;
    const now = this.#clock.now();
    for (const entry of [...this.#pending]) this.#check(entry, now);
  }

  /**
   * Checks each streak when it reaches the threshold, with the injected clock, until `signal` aborts; resolves then
   * (never rejects). One sleep at a time: until the earliest pending streak is due, or, with none, until one starts.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const due = this.#earliestDue();
      try {
        if (due === null) await this.#nextStreak(signal);
        else await this.#clock.sleep(Math.max(1, due - this.#clock.now()), signal);
      } catch {
        return;
      }
      this.tick();
    }
  }

  #earliestDue(): number | null {
    let due: number | null = null;
    for (const entry of this.#pending) {
      const at = (entry.streak?.since ?? 0) + this.#warnAfterMs;
      if (due === null || at < due) due = at;
    }
    return due;
  }

  #nextStreak(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#wake = null;
        reject(new Error('aborted'));
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.#wake = () => {
        this.#wake = null;
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
    });
  }

  /** Every key seen so far, in first-seen order. */
  states(): ActionHealthState[] {
    return [...this.#entries.values()].map((e) => ({
      action: e.action,
      endpoint: e.endpoint,
      account: e.account,
      state: e.streak === null ? 'healthy' : e.streak.warned ? 'warned' : 'failing',
      failingSince: e.streak?.since ?? null,
      failedAttempts: e.streak?.failedAttempts ?? 0,
    }));
  }

  #check(entry: Entry, now: number): void {
    const streak = entry.streak;
    if (streak === null || streak.warned) return;
    // NOTE: a clock stepped backwards gives a negative age: no warn until real time has passed.
    const failingForMs = now - streak.since;
    if (failingForMs < this.#warnAfterMs) return;
    streak.warned = true;
    this.#pending.delete(entry);
    this.#log.warn(
      {
        ...this.#where(entry),
        failingForMs,
        failingSince: new Date(streak.since).toISOString(),
        lastFailureAt: new Date(streak.lastFailureAt).toISOString(),
        failedAttempts: streak.failedAttempts,
        lastCode: streak.lastCode,
        lastHttpStatus: streak.lastHttpStatus,
        lastError: streak.lastMessage,
        codes: Object.fromEntries(streak.codes),
        failureWarnAfterMs: this.#warnAfterMs,
      },
      'alibaba api action failing',
    );
  }

  #where(entry: Entry): Record<string, string> {
    const where: Record<string, string> = { action: entry.action };
    if (entry.endpoint !== null) where.endpoint = entry.endpoint;
    if (entry.account !== null) where.account = entry.account;
    return where;
  }

  #entry(attempt: HealthAttempt): Entry {
    const account = attempt.account ?? null;
    const endpoint = attempt.endpoint ?? null;
    const key = `${account ?? ''}\u0000${endpoint ?? ''}\u0000${attempt.action}`;
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { action: attempt.action, endpoint, account, streak: null };
      this.#entries.set(key, entry);
    }
    return entry;
  }
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
