import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createManualClock } from '../../../src/core/clock.js';
import { DaemonError } from '../../../src/errors.js';
import { createEventsFileSink } from '../../../src/sinks/events-file.js';

import { makeEvent, makeEvents } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-events-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const readLines = async (file: string): Promise<unknown[]> =>
  (await readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);

describe('createEventsFileSink', () => {
  it('appends one JSON line per event, creating the parent directory', async () => {
    const file = path.join(dir, 'nested', 'events.jsonl');
    const sink = createEventsFileSink({ file, groupCommitMs: 0 });
    expect(sink.name).toBe('events_file');
    const events = makeEvents(3);
    for (const e of events) await sink.deliver(e);
    await sink.close();
    expect(await readLines(file)).toEqual(events);
    const text = await readFile(file, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(4);
    expect((await stat(file)).mode & 0o777 & ~0o640).toBe(0);
  });

  it('appends to an existing file and keeps earlier lines', async () => {
    const file = path.join(dir, 'events.jsonl');
    const first = createEventsFileSink({ file, groupCommitMs: 0 });
    await first.deliver(makeEvent({ id: 'a' }));
    await first.close();
    const second = createEventsFileSink({ file, groupCommitMs: 0 });
    await second.deliver(makeEvent({ id: 'b' }));
    await second.close();
    expect((await readLines(file)).map((e) => (e as { id: string }).id)).toEqual(['a', 'b']);
  });

  it('starts on a fresh line after a torn last line from a crashed process', async () => {
    const file = path.join(dir, 'events.jsonl');
    await writeFile(file, `${JSON.stringify(makeEvent({ id: 'ok' }))}\n{"id":"torn","ty`);
    const sink = createEventsFileSink({ file, groupCommitMs: 0 });
    await sink.deliver(makeEvent({ id: 'after' }));
    await sink.close();
    const lines = (await readFile(file, 'utf8')).split('\n');
    expect(lines[1]).toBe('{"id":"torn","ty');
    expect(JSON.parse(lines[2]!).id).toBe('after');
  });

  it('groups concurrent deliveries into one fsync; every deliver resolves only after it', async () => {
    const clock = createManualClock(0);
    const file = path.join(dir, 'events.jsonl');
    const sink = createEventsFileSink({ file, groupCommitMs: 5, clock });
    const events = makeEvents(50);
    let resolved = 0;
    const all = events.map((e) => sink.deliver(e).then(() => (resolved += 1)));
    await new Promise((r) => setImmediate(r));
    // The writer waits the group-commit window: nothing is acknowledged before the fsync.
    expect(resolved).toBe(0);
    expect(sink.commits()).toBe(0);
    await clock.advance(5);
    await Promise.all(all);
    expect(resolved).toBe(50);
    expect(sink.commits()).toBe(1);
    await sink.close();
    expect(await readLines(file)).toEqual(events);
  });

  it('lands every line of many concurrent deliveries, in delivery order, with real time', async () => {
    const file = path.join(dir, 'events.jsonl');
    const sink = createEventsFileSink({ file, groupCommitMs: 1 });
    const events = makeEvents(200);
    await Promise.all(events.map((e) => sink.deliver(e)));
    expect(sink.commits()).toBeLessThan(200);
    await sink.close();
    const lines = await readLines(file);
    expect(lines).toHaveLength(200);
    expect(lines).toEqual(events);
  });

  it('rejects when the file cannot be written, so the outbox retries', async () => {
    // The parent "directory" is a regular file: mkdir fails.
    const blocker = path.join(dir, 'blocker');
    await writeFile(blocker, 'x');
    const sink = createEventsFileSink({ file: path.join(blocker, 'events.jsonl'), groupCommitMs: 0 });
    const err = await sink.deliver(makeEvent()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).code).toBe('EventsFileWriteFailed');
    await sink.close();
  });

  it('rejects deliveries after close and when the signal is already aborted', async () => {
    const sink = createEventsFileSink({ file: path.join(dir, 'e.jsonl'), groupCommitMs: 0 });
    await expect(sink.deliver(makeEvent(), AbortSignal.abort())).rejects.toThrow(/aborted/);
    await sink.close();
    await expect(sink.deliver(makeEvent())).rejects.toThrow(/closed/);
  });

  it('rejects a negative groupCommitMs with a clear message', () => {
    expect(() => createEventsFileSink({ file: path.join(dir, 'e.jsonl'), groupCommitMs: -1 })).toThrow(
      'Expected `groupCommitMs` to be a finite number >= 0, got `-1` (number)',
    );
  });

  it('refuses an events file that is a symlink, naming it, and leaves the target unchanged', async () => {
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'untouched\n');
    const file = path.join(dir, 'events.jsonl');
    await symlink(victim, file);
    const sink = createEventsFileSink({ file, groupCommitMs: 0 });
    const err = await sink.deliver(makeEvent()).catch((e: unknown) => e);
    await sink.close();
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).code).toBe('EventsFileWriteFailed');
    expect(((err as DaemonError).cause as DaemonError).code).toBe('UnsafePath');
    expect((err as DaemonError).message).toContain(`refusing ${file}: it is a symbolic link`);
    expect(await readFile(victim, 'utf8')).toBe('untouched\n');
  });

  it('prepare() reports a bad events file at start-up, and opens a good one', async () => {
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'untouched\n');
    await symlink(victim, path.join(dir, 'link.jsonl'));
    const bad = createEventsFileSink({ file: path.join(dir, 'link.jsonl'), groupCommitMs: 0 });
    await expect(bad.prepare()).rejects.toMatchObject({ code: 'UnsafePath' });
    await bad.close();
    const good = createEventsFileSink({ file: path.join(dir, 'sub', 'events.jsonl'), groupCommitMs: 0 });
    await good.prepare();
    expect((await stat(path.join(dir, 'sub', 'events.jsonl'))).size).toBe(0);
    await good.deliver(makeEvent());
    await good.close();
    expect(await readLines(path.join(dir, 'sub', 'events.jsonl'))).toHaveLength(1);
  });
});
