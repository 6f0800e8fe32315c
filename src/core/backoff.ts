/**
 * Per-batch poll delays: capped exponential backoff with full jitter (DESIGN.md §2 `polling`).
 *
 * `attempt` is the number of polls already made in the current phase:
 * - `0`: nothing polled yet, so the delay is 0 (the first poll of a batch is immediate);
 * - `n ≥ 1`: the delay is drawn uniformly from `[initialDelayMs, min(cap, initialDelayMs · multiplier^(n−1))]`.
 *
 * Phase reset is the caller's job: when a poll sees a new phase (CHECK → CREATE), the caller sets
 * `attempt = 1` (that poll is the first of the new phase), so the next delay is `initialDelayMs` again.
 * The cap is `policy.maxDelayMs`, or an override such as `awaitingRegistrationDelayMs` while a batch
 * waits in CHECK_SUCCESS for someone else to register it.
 *
 * Pure functions: randomness comes from the injected {@link Random}.
 */

import type { PollingPolicy } from '../config/types.js';
import type { Random } from './clock.js';

/** The subset of {@link PollingPolicy} the backoff reads. */
export type BackoffPolicy = Pick<PollingPolicy, 'initialDelayMs' | 'maxDelayMs' | 'multiplier'>;

/**
 * The upper bound of the delay after `attempt` polls: `min(cap, initialDelayMs · multiplier^(attempt−1))`,
 * never below `initialDelayMs`. `cap` is `capOverrideMs ?? policy.maxDelayMs`. Attempts below 1 count as 1;
 * huge attempts saturate at the cap (no overflow to `Infinity` or `NaN`).
 */
export function backoffCapMs(policy: BackoffPolicy, attempt: number, capOverrideMs?: number): number {
  const initial = policy.initialDelayMs;
  const cap = capOverrideMs ?? policy.maxDelayMs;
  const exponent = Number.isFinite(attempt) ? Math.max(0, attempt - 1) : attempt > 0 ? Infinity : 0;
  const grown = initial * Math.pow(policy.multiplier, exponent);
  // NOTE: 0 · Infinity is NaN, and NaN must not leak into a due time.
  const bounded = Number.isFinite(grown) ? Math.min(cap, grown) : cap;
  return Math.max(initial, bounded);
}

/**
 * The delay before the next poll, in whole milliseconds: 0 for `attempt ≤ 0` (the first poll is
 * immediate), otherwise uniform in `[initialDelayMs, backoffCapMs(policy, attempt, capOverrideMs)]` (full jitter).
 */
export function nextDelayMs(policy: BackoffPolicy, attempt: number, random: Random, capOverrideMs?: number): number {
  if (!(attempt >= 1)) return 0;
  const lo = Math.ceil(policy.initialDelayMs);
  const hi = Math.max(lo, Math.floor(backoffCapMs(policy, attempt, capOverrideMs)));
  const drawn = lo + Math.floor(random.float() * (hi - lo + 1));
  return Math.min(hi, drawn);
}

/**
 * On restart, spreads overdue polls over a jittered window instead of bursting them all at once:
 * returns `now + ⌊random · windowMs⌋` when `dueAt ≤ now`, else `dueAt` unchanged.
 */
export function spreadOverdueMs(now: number, dueAt: number, windowMs: number, random: Random): number {
  if (dueAt > now) return dueAt;
  return now + Math.floor(random.float() * Math.max(0, windowMs));
}
