/**
 * Scheduling overhead per poll: DueHeap + backoff + token bucket, driven by a fake clock with no I/O,
 * so the number is pure bookkeeping cost. Not a vitest test; run it directly
 * (`npx tsx test/bench/scheduler-bench.ts`) or call {@link benchScheduler} from `test/bench/run.ts`.
 */

import { pathToFileURL } from 'node:url';

import type { PollingPolicy } from '../../src/config/types.js';
import { nextDelayMs } from '../../src/core/backoff.js';
import { createSeededRandom } from '../../src/core/clock.js';
import { DueHeap } from '../../src/core/heap.js';
import { AdaptiveTokenBucket } from '../../src/core/rate-limiter.js';
import { defaultPolling } from '../helpers/config.js';

/** Options of {@link benchScheduler}. */
export interface SchedulerBenchOptions {
  /** Batches in the heap. @default 100_000 */
  batches?: number;
  /** Polls to schedule in total. @default 1_000_000 */
  polls?: number;
  /** Token-bucket rate; simulated time only, so it does not slow the run. @default 30 */
  ratePerSec?: number;
  /** @default 1 */
  seed?: number;
}

/** What {@link benchScheduler} measured. */
export interface SchedulerBenchResult {
  /** Wall-clock microseconds of scheduling work per poll. */
  usPerPoll: number;
  polls: number;
  batches: number;
  /** Wall-clock ms of the whole run. */
  elapsedMs: number;
  /** Simulated seconds the polls spanned. */
  simulatedSec: number;
  /** Refused token takes (each makes the loop advance its fake clock). */
  refusals: number;
}

const POLICY: PollingPolicy = defaultPolling;

/**
 * Pushes `batches` keys, then runs the watcher's scheduling steps `polls` times: peek the earliest due
 * batch, jump the fake clock to it, take a token (jumping by the returned wait when refused), pop it, draw
 * its next delay and push it back.
 */
export function benchScheduler(options: SchedulerBenchOptions = {}): SchedulerBenchResult {
  const batches = options.batches ?? 100_000;
  const polls = options.polls ?? 1_000_000;
  const random = createSeededRandom(options.seed ?? 1);
  const start = 1_700_000_000_000;
  let now = start;

  const t0 = performance.now();
  const heap = new DueHeap();
  const attempts = new Map<string, number>();
  for (let i = 0; i < batches; i += 1) {
    const key = `a1SimProduct1/${1_000_000 + i}`;
    heap.push(key, now);
    attempts.set(key, 0);
  }
  const bucket = new AdaptiveTokenBucket({ ratePerSec: options.ratePerSec ?? 30 }, now);
  let done = 0;
  let refusals = 0;
  while (done < polls) {
    const next = heap.peek();
    if (next === undefined) break;
    if (next.dueAt > now) now = next.dueAt;
    const wait = bucket.tryTake(now);
    if (wait > 0) {
      refusals += 1;
      now += wait;
      continue;
    }
    heap.pop();
    const attempt = (attempts.get(next.key) ?? 0) + 1;
    attempts.set(next.key, attempt);
    heap.push(next.key, now + nextDelayMs(POLICY, attempt, random));
    done += 1;
  }
  const elapsedMs = performance.now() - t0;
  return {
    usPerPoll: (elapsedMs * 1000) / Math.max(1, done),
    polls: done,
    batches,
    elapsedMs,
    simulatedSec: (now - start) / 1000,
    refusals,
  };
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  console.log(JSON.stringify(benchScheduler()));
}
