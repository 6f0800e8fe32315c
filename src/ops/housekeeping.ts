/**
 * Housekeeping (DESIGN.md §2 `housekeeping`): three cron tasks in UTC — reload the config file, log a summary
 * line, prune settled batches older than the retention — plus a debounced watcher on the config file.
 *
 * Invariants:
 * - A task never crashes the daemon: a throw or a rejection is logged at warn under `err` and the next
 *   scheduled run happens as usual.
 * - Runs of the same task never overlap: a tick that comes while the previous run is still going is skipped
 *   (and logged), it is not queued.
 * - `stop()` unschedules every task first, then waits for the runs in flight, so a prune is never cut off
 *   half-way by a ledger that closes under it.
 *
 * The clock behind the schedule is a {@link CronScheduler}: node-cron in production
 * ({@link createNodeCronScheduler}), a manual one in tests ({@link createManualCronScheduler}), so tests fire
 * tasks without waiting for a minute to turn.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

import { createTask, validate } from 'node-cron';
import type { Logger as CronLogger } from 'node-cron';
import type { Logger } from 'pino';

import { systemClock } from '../core/clock.js';
import type { Clock } from '../core/clock.js';
import { coerceError } from '../errors.js';

/** A scheduled job; stopping it means it never fires again. */
export interface CronHandle {
  stop(): Promise<void> | void;
}

/** Where cron expressions meet a clock. */
export interface CronScheduler {
  /** Calls `fn` at every time `expr` matches; `name` identifies the job (logs, manual firing). Throws on a bad expression. */
  schedule(expr: string, fn: () => void, name: string): CronHandle;
}

/** Options of {@link createNodeCronScheduler}. */
export interface NodeCronSchedulerOptions {
  /**
   * IANA time zone the expressions are read in.
   * @default 'Etc/UTC'
   */
  timezone?: string;
  /**
   * Where node-cron's own warnings go (missed executions and the like) instead of the console.
   * @default none: node-cron's messages are dropped
   */
  logger?: Logger;
}

/** The production scheduler: node-cron 4 tasks (`createTask` + `start`, `stop` + `destroy`). */
export function createNodeCronScheduler(options: NodeCronSchedulerOptions = {}): CronScheduler {
  const timezone = options.timezone ?? 'Etc/UTC';
  const log = options.logger;
  const cronLogger: CronLogger = {
    info: (message) => log?.debug({ source: 'node-cron' }, message),
    warn: (message) => log?.warn({ source: 'node-cron' }, message),
    error: (message, err) => log?.warn({ source: 'node-cron', err: err ?? message }, String(message)),
    debug: (message, err) => log?.debug({ source: 'node-cron', err }, String(message)),
  };
  return {
    schedule(expr, fn, name) {
      const task = createTask(
        expr,
        () => {
          fn();
        },
        { timezone, name, logger: cronLogger },
      );
      const started = task.start();
      if (started instanceof Promise) {
        started.catch((error: unknown) => log?.warn({ err: error, task: name }, 'cron task did not start'));
      }
      return {
        async stop() {
          await task.stop();
          await task.destroy();
        },
      };
    },
  };
}

/** True when node-cron accepts `expr` (5 fields, or 6 with seconds). For config validation. */
export function isValidCronExpression(expr: string): boolean {
  return validate(expr);
}

/** A scheduler that fires only when told to (tests). */
export interface ManualCronScheduler extends CronScheduler {
  /** Calls the job named `name` once, as a tick would. Throws if no such job is scheduled. */
  fire(name: string): void;
  /** Names of the jobs scheduled and not stopped. */
  names(): string[];
  /** The expression a job was scheduled with, or undefined. */
  expressionOf(name: string): string | undefined;
}

/** Creates a {@link ManualCronScheduler}. It validates expressions as node-cron does. */
export function createManualCronScheduler(): ManualCronScheduler {
  const jobs = new Map<string, { expr: string; fn: () => void }>();
  return {
    schedule(expr, fn, name) {
      if (!validate(expr)) throw new Error(`invalid cron expression for ${name}: ${JSON.stringify(expr)}`);
      const job = { expr, fn };
      jobs.set(name, job);
      return {
        stop() {
          if (jobs.get(name) === job) jobs.delete(name);
        },
      };
    },
    fire(name) {
      const job = jobs.get(name);
      if (job === undefined) throw new Error(`no scheduled job named ${name}`);
      job.fn();
    },
    names: () => [...jobs.keys()],
    expressionOf: (name) => jobs.get(name)?.expr,
  };
}

/** The housekeeping tasks, by name. */
export type HousekeepingTaskName = 'reloadConfig' | 'summary' | 'prune';

/** Options of {@link startHousekeeping}. */
export interface HousekeepingOptions {
  /** Cron expressions (UTC) per task, from `housekeeping.*` in the config. */
  schedules: Record<HousekeepingTaskName, string>;
  /** What each task does. */
  tasks: Record<HousekeepingTaskName, () => Promise<void> | void>;
  /** Logger for task failures and skipped ticks. */
  logger: Logger;
  /**
   * The clock behind the schedules.
   * @default createNodeCronScheduler({ timezone: 'Etc/UTC', logger })
   */
  scheduler?: CronScheduler;
  /**
   * Clock for the run durations in debug logs.
   * @default systemClock
   */
  clock?: Clock;
}

/** Running housekeeping. */
export interface Housekeeping {
  /** Unschedules every task, then waits for the runs in flight. Idempotent. */
  stop(): Promise<void>;
  /** Runs a task now, outside its schedule, with the same guards. Resolves false when skipped (already running or stopped). */
  runNow(name: HousekeepingTaskName): Promise<boolean>;
  /** Resolves when no task is running. */
  idle(): Promise<void>;
}

const TASK_NAMES: readonly HousekeepingTaskName[] = ['reloadConfig', 'summary', 'prune'];

/** Schedules the housekeeping tasks. Throws (after unscheduling what it had scheduled) on an invalid expression. */
export function startHousekeeping(options: HousekeepingOptions): Housekeeping {
  const { logger, tasks, schedules } = options;
  const scheduler = options.scheduler ?? createNodeCronScheduler({ logger });
  const clock = options.clock ?? systemClock;
  const running = new Map<HousekeepingTaskName, Promise<void>>();
  const handles: CronHandle[] = [];
  let stopped = false;

  function run(name: HousekeepingTaskName, reason: 'scheduled' | 'manual'): Promise<boolean> {
    if (stopped) return Promise.resolve(false);
    const inFlight = running.get(name);
    if (inFlight !== undefined) {
      logger.warn({ task: name, reason }, 'housekeeping task skipped: the previous run is still going');
      return Promise.resolve(false);
    }
    const startedAt = clock.now();
    const execution = (async () => {
      try {
        logger.debug({ task: name, reason }, 'housekeeping task started');
        await tasks[name]();
        logger.debug({ task: name, durationMs: clock.now() - startedAt }, 'housekeeping task finished');
      } catch (error) {
        logger.warn({ task: name, err: coerceError(error) }, 'housekeeping task failed');
      }
    })();
    const tracked = execution.finally(() => {
      running.delete(name);
    });
    running.set(name, tracked);
    return tracked.then(() => true);
  }

  try {
    for (const name of TASK_NAMES) {
      handles.push(
        scheduler.schedule(
          schedules[name],
          () => {
            void run(name, 'scheduled');
          },
          name,
        ),
      );
    }
  } catch (error) {
    stopped = true;
    for (const handle of handles) void Promise.resolve(handle.stop()).catch(() => undefined);
    throw error;
  }

  async function idle(): Promise<void> {
    while (running.size > 0) await Promise.all(running.values());
  }

  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        stopped = true;
        // NOTE: every schedule is stopped synchronously first, so no tick can sneak in while we await.
        const stops = handles.map(async (handle) => handle.stop());
        for (const result of await Promise.allSettled(stops)) {
          if (result.status === 'rejected') {
            logger.warn({ err: coerceError(result.reason) }, 'stopping a housekeeping schedule failed');
          }
        }
        await idle();
      })();
      return stopping;
    },
    runNow: (name) => run(name, 'manual'),
    idle,
  };
}

/** Options of {@link watchConfigFile}. */
export interface WatchConfigFileOptions {
  /** The config file. Its directory is watched, so renames (editors) and ConfigMap `..data` swaps are seen. */
  file: string;
  /** Quiet time after the last change before `onChange` runs. */
  debounceMs: number;
  /** Called once per burst of changes. A throw or a rejection is logged, not propagated. */
  onChange: () => unknown;
  /** Logger for watch errors. */
  logger: Logger;
  /**
   * Clock for the debounce.
   * @default systemClock
   */
  clock?: Clock;
}

/** A running file watch. */
export interface ConfigFileWatch {
  /** Stops watching and drops a pending debounced call. Idempotent. */
  close(): void;
}

/**
 * Watches a config file for changes, debounced. Watching the directory rather than the file keeps working
 * when editors replace the file by rename and when Kubernetes swaps the `..data` symlink of a ConfigMap
 * volume. Never throws: a directory that cannot be watched is logged and gives a watch that does nothing.
 */
export function watchConfigFile(options: WatchConfigFileOptions): ConfigFileWatch {
  const { logger, debounceMs, onChange } = options;
  const clock = options.clock ?? systemClock;
  const file = resolve(options.file);
  const dir = dirname(file);
  const base = basename(file);
  let pending: AbortController | undefined;
  let closed = false;

  const fire = (): void => {
    const report = (error: unknown): void => {
      logger.warn({ err: coerceError(error), file }, 'config change handler failed');
    };
    try {
      void Promise.resolve(onChange()).catch(report);
    } catch (error) {
      report(error);
    }
  };

  const trigger = (): void => {
    if (closed) return;
    pending?.abort();
    const controller = new AbortController();
    pending = controller;
    void clock.sleep(debounceMs, controller.signal).then(
      () => {
        if (pending !== controller || closed) return;
        pending = undefined;
        fire();
      },
      () => undefined, // superseded by a later change, or closed
    );
  };

  const isRelevant = (name: string | null): boolean =>
    name === null || name === base || name.startsWith('..data') || name.startsWith('..20');

  let watcher: FSWatcher;
  try {
    watcher = watch(dir, { persistent: false }, (_event, name) => {
      if (isRelevant(name)) trigger();
    });
  } catch (error) {
    logger.warn({ err: coerceError(error), file }, 'cannot watch the config file; reload on SIGHUP and the cron schedule only');
    return { close: () => undefined };
  }
  watcher.on('error', (error) => {
    logger.warn({ err: error, file }, 'config file watch failed; reload on SIGHUP and the cron schedule only');
  });

  return {
    close() {
      if (closed) return;
      closed = true;
      pending?.abort();
      pending = undefined;
      watcher.close();
    },
  };
}
