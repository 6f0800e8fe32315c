/**
 * The JSON-lines events file sink (`output.eventsFile`, DESIGN.md §4): one event per line, appended.
 *
 * Group commit: `deliver` queues the line; one writer takes everything queued, writes it in one `write`, and
 * fsyncs once. Lines queued while a write+fsync is in flight go into the next group. Before taking a group,
 * the writer waits `groupCommitMs` so deliveries arriving within a few ms share one fsync. `deliver`
 * resolves only after the fsync that covers its line (acknowledged = durable).
 *
 * The file is opened without following a symlink and must be a regular file (src/safe-fs.ts); a refusal fails
 * each delivery with `EventsFileWriteFailed` whose cause has `code: 'UnsafePath'`, naming the file.
 *
 * If a previous process died in the middle of a line, the file does not end in `\n`; the first group after
 * opening starts with a newline so the torn line cannot swallow the next event.
 */
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { systemClock } from '../core/clock.js';
import type { Clock } from '../core/clock.js';
import type { EventSink } from '../core/ports.js';
import type { WatcherEvent } from '../events.js';
import { AbortedError, DaemonError } from '../errors.js';
import { openAppendFile } from '../safe-fs.js';

/** Options of {@link createEventsFileSink}. */
export interface EventsFileSinkOptions {
  /**
   * The file to append to; its parent directory is created (0700, bounded) when missing. The parent may be a
   * symlink the operator chose; the file itself must not be one.
   */
  file: string;
  /**
   * How long the writer waits for more lines before writing a group and fsyncing it.
   * @default 5
   */
  groupCommitMs?: number;
  /**
   * Clock used for the group-commit wait.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * File mode when the file is created (events carry no secrets).
   * @default 0o640
   */
  mode?: number;
}

/** The events-file sink, with a counter of fsyncs (useful for tests and metrics). */
export interface EventsFileSink extends EventSink {
  /** Number of write+fsync groups committed so far. */
  commits(): number;
  /**
   * Opens (creating) the file now, so a bad `eventsFile` (a symlink, a FIFO, a parent that cannot be created)
   * is reported at start-up rather than at the first event. Optional: `deliver` opens on first use.
   */
  prepare(): Promise<void>;
}

interface Waiter {
  line: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Creates the events-file sink (name `events_file`). */
export function createEventsFileSink(options: EventsFileSinkOptions): EventsFileSink {
  const file = path.resolve(options.file);
  const groupCommitMs = options.groupCommitMs ?? 5;
  const clock = options.clock ?? systemClock;
  const mode = options.mode ?? 0o640;
  if (!Number.isFinite(groupCommitMs) || groupCommitMs < 0) {
    throw new TypeError(
      `Expected \`groupCommitMs\` to be a finite number >= 0, got \`${String(groupCommitMs)}\` (${typeof groupCommitMs})`,
    );
  }

  let queue: Waiter[] = [];
  let writer: Promise<void> | null = null;
  let handle: FileHandle | null = null;
  let needsLeadingNewline = false;
  let commitCount = 0;
  let closed = false;

  const openFile = async (): Promise<FileHandle> => {
    if (handle !== null) return handle;
    // NOTE: never through a symlink, never a FIFO or device: see safe-fs.ts (the parent is the configured place).
    const h = await openAppendFile(file, { mode, read: true, label: 'output.eventsFile' });
    const { size } = await h.stat();
    if (size > 0) {
      const last = Buffer.alloc(1);
      await h.read(last, 0, 1, size - 1);
      needsLeadingNewline = last[0] !== 0x0a;
    }
    handle = h;
    return h;
  };

  const runWriter = async (): Promise<void> => {
    while (queue.length > 0) {
      if (groupCommitMs > 0) await clock.sleep(groupCommitMs);
      const group = queue;
      queue = [];
      try {
        const h = await openFile();
        let text = group.map((w) => w.line).join('');
        if (needsLeadingNewline) text = `\n${text}`;
        await h.appendFile(text, 'utf8');
        needsLeadingNewline = false;
        await h.sync();
        commitCount += 1;
        for (const w of group) w.resolve();
      } catch (err) {
        const detail = err instanceof Error ? err.message : String(err);
        const error = new DaemonError(`events file ${file}: append failed: ${detail}`, {
          kind: 'sink',
          scope: 'attempt',
          code: 'EventsFileWriteFailed',
          cause: err,
        });
        // A failed write may have left a partial line; the next group starts on a fresh line.
        needsLeadingNewline = true;
        for (const w of group) w.reject(error);
      }
    }
  };

  const kick = (): void => {
    if (writer !== null) return;
    writer = runWriter().finally(() => {
      writer = null;
      if (queue.length > 0) kick();
    });
  };

  return {
    name: 'events_file',
    deliver(event: WatcherEvent, signal?: AbortSignal): Promise<void> {
      if (closed) {
        return Promise.reject(
          new DaemonError('events file sink is closed', { kind: 'sink', scope: 'attempt', code: 'SinkClosed' }),
        );
      }
      if (signal?.aborted) return Promise.reject(new AbortedError());
      const line = `${JSON.stringify(event)}\n`;
      return new Promise<void>((resolve, reject) => {
        queue.push({ line, resolve, reject });
        kick();
      });
    },
    async close(): Promise<void> {
      closed = true;
      while (writer !== null) await writer;
      const h = handle;
      handle = null;
      await h?.close();
    },
    commits: () => commitCount,
    async prepare() {
      if (closed) throw new DaemonError('events file sink is closed', { kind: 'sink', scope: 'attempt', code: 'SinkClosed' });
      await openFile();
    },
  };
}
