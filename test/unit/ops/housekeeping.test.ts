import { describe, expect, it, vi } from 'vitest';

import {
  createManualCronScheduler,
  createNodeCronScheduler,
  isValidCronExpression,
  startHousekeeping,
} from '../../../src/ops/housekeeping.js';
import type { HousekeepingTaskName } from '../../../src/ops/housekeeping.js';
import { createCaptureLogger } from './capture-logger.js';

const schedules = { reloadConfig: '*/1 * * * *', summary: '*/15 * * * *', prune: '0 3 * * *' };

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function counters(): { calls: Record<HousekeepingTaskName, number>; tasks: Record<HousekeepingTaskName, () => void> } {
  const calls = { reloadConfig: 0, summary: 0, prune: 0 };
  return {
    calls,
    tasks: {
      reloadConfig: () => {
        calls.reloadConfig += 1;
      },
      summary: () => {
        calls.summary += 1;
      },
      prune: () => {
        calls.prune += 1;
      },
    },
  };
}

describe('startHousekeeping with a manual scheduler', () => {
  it('schedules each task with its expression and runs it when fired', async () => {
    const scheduler = createManualCronScheduler();
    const { logger } = createCaptureLogger();
    const { calls, tasks } = counters();
    const hk = startHousekeeping({ schedules, tasks, logger, scheduler });

    expect(scheduler.names().sort()).toEqual(['prune', 'reloadConfig', 'summary']);
    expect(scheduler.expressionOf('prune')).toBe('0 3 * * *');
    scheduler.fire('reloadConfig');
    scheduler.fire('summary');
    scheduler.fire('prune');
    await hk.idle();
    scheduler.fire('summary');
    await hk.idle();
    expect(calls).toEqual({ reloadConfig: 1, summary: 2, prune: 1 });
    await hk.stop();
  });

  it('logs a throwing or rejecting task at warn and still runs the next tick', async () => {
    const scheduler = createManualCronScheduler();
    const { logger, lines } = createCaptureLogger();
    let pruneRuns = 0;
    let summaryRuns = 0;
    const hk = startHousekeeping({
      schedules,
      logger,
      scheduler,
      tasks: {
        reloadConfig: () => undefined,
        summary: () => {
          summaryRuns += 1;
          if (summaryRuns === 1) throw new Error('summary exploded');
        },
        prune: async () => {
          pruneRuns += 1;
          await Promise.resolve();
          if (pruneRuns === 1) throw new Error('ledger busy');
        },
      },
    });

    scheduler.fire('summary');
    scheduler.fire('prune');
    await hk.idle();
    const failures = lines.filter((l) => l.msg === 'housekeeping task failed');
    expect(failures).toHaveLength(2);
    expect(failures.every((l) => l.level === 40)).toBe(true);
    expect(failures.map((l) => [l.task, (l.err as { message: string }).message]).sort()).toEqual([
      ['prune', 'ledger busy'],
      ['summary', 'summary exploded'],
    ]);

    scheduler.fire('summary');
    scheduler.fire('prune');
    await hk.idle();
    expect([summaryRuns, pruneRuns]).toEqual([2, 2]);
    expect(lines.filter((l) => l.msg === 'housekeeping task failed')).toHaveLength(2);
    await hk.stop();
  });

  it('logs a non-Error rejection as an error object', async () => {
    const scheduler = createManualCronScheduler();
    const { logger, lines } = createCaptureLogger();
    const hk = startHousekeeping({
      schedules,
      logger,
      scheduler,
      tasks: {
        reloadConfig: () => {
          // eslint-disable-next-line @typescript-eslint/only-throw-error -- the point: a non-Error thrown by a task
          throw 'nope';
        },
        summary: () => undefined, prune: () => undefined },
    });
    scheduler.fire('reloadConfig');
    await hk.idle();
    const failure = lines.find((l) => l.msg === 'housekeeping task failed');
    expect((failure?.err as { message: string }).message).toBe('nope');
    await hk.stop();
  });

  it('skips a tick while the previous run of the same task is still going', async () => {
    const scheduler = createManualCronScheduler();
    const { logger, lines } = createCaptureLogger();
    const gate = deferred();
    let reloadRuns = 0;
    let summaryRuns = 0;
    const hk = startHousekeeping({
      schedules,
      logger,
      scheduler,
      tasks: {
        reloadConfig: async () => {
          reloadRuns += 1;
          await gate.promise;
        },
        summary: () => {
          summaryRuns += 1;
        },
        prune: () => undefined,
      },
    });

    scheduler.fire('reloadConfig');
    scheduler.fire('reloadConfig');
    scheduler.fire('summary'); // other tasks are not blocked by a slow one
    expect(await hk.runNow('reloadConfig')).toBe(false);
    expect(reloadRuns).toBe(1);
    expect(lines.filter((l) => l.msg?.toString().includes('skipped') && l.task === 'reloadConfig')).toHaveLength(2);

    gate.resolve();
    await hk.idle();
    expect(summaryRuns).toBe(1);
    expect(await hk.runNow('reloadConfig')).toBe(true);
    expect(reloadRuns).toBe(2);
    await hk.stop();
  });

  it('stop unschedules every task, waits for the run in flight, and runs nothing afterwards', async () => {
    const scheduler = createManualCronScheduler();
    const { logger } = createCaptureLogger();
    const gate = deferred();
    let pruneDone = false;
    const { calls, tasks } = counters();
    const hk = startHousekeeping({
      schedules,
      logger,
      scheduler,
      tasks: {
        ...tasks,
        prune: async () => {
          await gate.promise;
          pruneDone = true;
        },
      },
    });
    scheduler.fire('prune');
    let stopped = false;
    const stopping = hk.stop().then(() => {
      stopped = true;
    });
    await Promise.resolve();
    expect(scheduler.names()).toEqual([]);
    expect(stopped).toBe(false);
    gate.resolve();
    await stopping;
    expect(pruneDone).toBe(true);
    expect(await hk.runNow('summary')).toBe(false);
    expect(calls.summary).toBe(0);
    await hk.stop(); // idempotent
  });

  it('refuses an invalid expression and leaves nothing scheduled', () => {
    const scheduler = createManualCronScheduler();
    const { logger } = createCaptureLogger();
    const { tasks } = counters();
    expect(() =>
      startHousekeeping({ schedules: { ...schedules, prune: 'every day' }, tasks, logger, scheduler }),
    ).toThrow(/prune/);
    expect(scheduler.names()).toEqual([]);
  });

  it('manual fire of an unknown job throws', () => {
    expect(() => createManualCronScheduler().fire('nope')).toThrow(/nope/);
  });
});

describe('createNodeCronScheduler', () => {
  it('creates node-cron tasks in UTC and stops them without firing', async () => {
    const { logger } = createCaptureLogger();
    const { calls, tasks } = counters();
    const hk = startHousekeeping({
      // NOTE: once a year at midnight UTC on Jan 1st: cannot fire during the few milliseconds of this test.
      schedules: { reloadConfig: '0 0 1 1 *', summary: '0 0 1 1 *', prune: '0 0 1 1 *' },
      tasks,
      logger,
      scheduler: createNodeCronScheduler({ logger }),
    });
    await hk.stop();
    expect(calls).toEqual({ reloadConfig: 0, summary: 0, prune: 0 });
  });

  it('fires a task through node-cron and stops it', async () => {
    const scheduler = createNodeCronScheduler();
    let fired = 0;
    // Every second (6-field form); wait for one tick at most ~1 s, then stop.
    const handle = scheduler.schedule('* * * * * *', () => (fired += 1), 'tick');
    await vi.waitFor(
      () => {
        expect(fired).toBeGreaterThan(0);
      },
      { timeout: 5000, interval: 20 },
    );
    await handle.stop();
    const after = fired;
    await new Promise((r) => setTimeout(r, 1100)); // one more second: a stopped task must not tick
    expect(after).toBeGreaterThan(0);
    expect(fired).toBe(after);
  });

  it('rejects an invalid expression', () => {
    expect(() => createNodeCronScheduler().schedule('61 * * * *', () => undefined, 'bad')).toThrow();
    expect(isValidCronExpression('*/15 * * * *')).toBe(true);
    expect(isValidCronExpression('*/15 * * *')).toBe(false);
  });
});
