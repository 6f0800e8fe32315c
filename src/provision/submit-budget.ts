/**
 * The submit budget of one account: one token bucket per submit action (Alibaba: 10 QPS for each of
 * BatchCheckDeviceNames and BatchRegisterDevice), with the rate limiter the status and page budgets use.
 */

import type { Clock } from '../core/clock.js';
import { AdaptiveTokenBucket } from '../core/rate-limiter.js';
import type { SubmitBudget } from './job-runner.js';

/** Alibaba's per-account limit of each submit action, in requests per second. */
export const SUBMIT_QPS_LIMIT = 10;

/** Creates the budget; `qps` per action (default {@link SUBMIT_QPS_LIMIT}). */
export function createSubmitBudget(clock: Clock, qps: number = SUBMIT_QPS_LIMIT): SubmitBudget {
  const options = { ratePerSec: qps, windowMs: 1100, coldStartMargin: true };
  const buckets = {
    BatchCheckDeviceNames: new AdaptiveTokenBucket(options, clock.now()),
    BatchRegisterDevice: new AdaptiveTokenBucket(options, clock.now()),
  };
  return {
    async acquire(action, signal) {
      for (;;) {
        const wait = buckets[action].tryTake(clock.now());
        if (wait === 0) return;
        await clock.sleep(wait, signal);
      }
    },
  };
}
