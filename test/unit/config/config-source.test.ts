import { createHash } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { type ConfigSource, createConfigSource } from '../../../src/config/config-source.js';
import { parseConfigText } from '../../../src/config/load.js';
import type { ConfigFileContent } from '../../../src/config/read-file.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { createManualClock, type ManualClock } from '../../../src/core/clock.js';
import { ConfigError } from '../../../src/errors.js';

const SETTLE_MS = 2000;
const T0 = 1_000_000;

function yaml(ids: readonly string[]): string {
  return ['alibaba: { regionId: cn-shanghai }', 'batches:', ...ids.map((id) => `  - { applyId: "${id}", productKey: a1SimProduct1 }`), ''].join('\n');
}

/** A file whose content and modification time the test sets, on the manual clock. */
class FakeFile {
  text = '';
  mtimeMs = 0;
  reads = 0;
  constructor(private readonly clock: ManualClock) {}
  write(text: string): void {
    this.text = text;
    this.mtimeMs = this.clock.now();
  }
  read = (): Promise<ConfigFileContent> => {
    this.reads += 1;
    return Promise.resolve({
      absoluteFile: '/etc/ibw/watcher.yaml',
      text: this.text,
      hash: createHash('sha256').update(this.text).digest('hex'),
      mtimeMs: this.mtimeMs,
      size: Buffer.byteLength(this.text),
      ino: 1,
    });
  };
}

function setup(options: { maxWaitMs?: number } = {}) {
  const clock = createManualClock(T0);
  const file = new FakeFile(clock);
  let compiles = 0;
  const logged: string[] = [];
  const source = createConfigSource({
    file: 'watcher.yaml',
    cwd: '/etc/ibw',
    read: file.read,
    clock,
    settleMs: SETTLE_MS,
    ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs }),
    compile: (text, name) => {
      compiles += 1;
      return parseConfigText(text, name, { cwd: '/etc/ibw', env: {} });
    },
    logger: { info: (_o, msg) => logged.push(msg), warn: (_o, msg) => logged.push(msg) },
  });
  return { clock, file, source, logged, compiles: () => compiles };
}

/** Runs `load()` while moving the manual clock forward until it resolves (or `maxMs` passed). */
async function loadAdvancing(clock: ManualClock, source: ConfigSource, stepMs = 100, maxMs = 60_000): Promise<CompiledConfig> {
  let done = false;
  let result: CompiledConfig | undefined;
  let error: Error | undefined;
  const p = source.load().then(
    (r) => {
      done = true;
      result = r;
    },
    (e: unknown) => {
      done = true;
      error = e instanceof Error ? e : new Error(String(e));
    },
  );
  for (let t = 0; !done && t <= maxMs; t += stepMs) await clock.advance(stepMs);
  await p;
  if (error !== undefined) throw error;
  if (!done || result === undefined) throw new Error('load() did not finish');
  return result;
}

const keys = (c: CompiledConfig): string[] => c.batches.map((b) => b.applyId).sort();

describe('ConfigSource: stable first', () => {
  it('uses a file whose modification time is older than the settle window at once, without sleeping', async () => {
    const { clock, file, source } = setup();
    file.write(yaml(['1', '2']));
    await clock.advance(SETTLE_MS);
    const config = await source.load();
    expect(keys(config)).toEqual(['1', '2']);
    expect(file.reads).toBe(1);
    expect(source.lastOutcome).toBe('loaded');
  });

  it('waits for a file written just now, and loads what the writer finished, not its first half', async () => {
    const { clock, file, source } = setup();
    file.write(yaml(['1', '2', '3']));
    await clock.advance(60_000);
    await source.load();
    // In place: truncate, write half, pause 1.5 s, write the rest.
    file.write(yaml(['1']));
    const loading = source.load();
    let finished = false;
    void loading.then(() => (finished = true));
    await clock.advance(1500);
    expect(finished).toBe(false);
    file.write(yaml(['1', '2', '3']));
    await clock.advance(SETTLE_MS - 1);
    expect(finished).toBe(false); // the rest was written 1999 ms ago: not stable yet
    await clock.advance(SETTLE_MS);
    const config = await loading;
    expect(keys(config)).toEqual(['1', '2', '3']);
    expect(source.keptKeys()).toEqual([]);
  });

  it('with a modification time in the future, a content unchanged across the settle window is stable', async () => {
    const { clock, file, source } = setup();
    file.write(yaml(['7']));
    file.mtimeMs = T0 + 3_600_000; // skewed file server
    const config = await loadAdvancing(clock, source);
    expect(keys(config)).toEqual(['7']);
    expect(clock.now() - T0).toBeGreaterThanOrEqual(SETTLE_MS);
    expect(clock.now() - T0).toBeLessThan(SETTLE_MS + 500);
  });

  it('a file that keeps changing: the first load fails, a reload keeps the running configuration', async () => {
    const { clock, file, source, logged } = setup({ maxWaitMs: 10_000 });
    file.write(yaml(['1']));
    await clock.advance(SETTLE_MS);
    const first = await source.load();
    // A writer that changes the file every 500 ms, for longer than maxWaitMs.
    file.write(yaml(['1', '199']));
    const loading = source.load();
    for (let t = 0; t < 12_000; t += 500) {
      file.write(yaml(['1', String(200 + t)]));
      await clock.advance(500);
    }
    expect(await loading).toBe(first);
    expect(source.lastOutcome).toBe('unstable');
    expect(logged).toContain('config file still changing; keeping the running configuration until it is stable');

    const fresh = setup({ maxWaitMs: 10_000 });
    fresh.file.write(yaml(['1']));
    const failed = fresh.source.load().then(
      () => null,
      (e: unknown) => e,
    );
    for (let t = 0; t < 12_000; t += 500) {
      fresh.file.write(yaml([String(300 + t)]));
      await fresh.clock.advance(500);
    }
    const err = await failed;
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues[0]?.message).toMatch(/kept changing for 10000 ms/);
  });
});

describe('ConfigSource: unchanged is free', () => {
  it('does not parse an unchanged file and returns the same objects', async () => {
    const { clock, file, source, compiles } = setup();
    file.write(yaml(['1', '2']));
    await clock.advance(SETTLE_MS);
    const first = await source.load();
    expect(compiles()).toBe(1);
    await clock.advance(60_000);
    const second = await source.load();
    expect(second).toBe(first);
    expect(compiles()).toBe(1);
    expect(source.lastOutcome).toBe('unchanged');
    // A touch without a content change: still unchanged.
    file.mtimeMs = clock.now() - SETTLE_MS;
    expect(await source.load()).toBe(first);
    expect(compiles()).toBe(1);
  });

  it('does not parse an unchanged invalid file again: the same error, compiled once', async () => {
    const { clock, file, source, compiles } = setup();
    file.write(yaml(['1']));
    await clock.advance(SETTLE_MS);
    const first = await source.load();
    file.write('alibaba: { regionId: cn-shanghai }\nbatches:\n  - { applyId: "1", productKey: a1SimProduct1, polling: { maxDelay: soon } }\n');
    await clock.advance(SETTLE_MS);
    const e1 = await source.load().catch((e: unknown) => e);
    const e2 = await source.load().catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ConfigError);
    expect(e2).toBe(e1);
    expect(compiles()).toBe(2);
    // Fixed back to the applied content: that is the running configuration, nothing to parse.
    file.write(yaml(['1']));
    await clock.advance(SETTLE_MS);
    expect(await source.load()).toBe(first);
    expect(compiles()).toBe(2);
    // Another valid content is parsed.
    file.write(yaml(['1', '2']));
    await clock.advance(SETTLE_MS);
    expect(keys(await source.load())).toEqual(['1', '2']);
    expect(compiles()).toBe(3);
  });
});

describe('ConfigSource: removals need two stable reads', () => {
  it('keeps a batch that one stable read lacked, and removes it when a later stable read lacks it too', async () => {
    const { clock, file, source, logged } = setup();
    file.write(yaml(['1', '2', '3']));
    await clock.advance(SETTLE_MS);
    await source.load();

    file.write(yaml(['1', '3']));
    await clock.advance(SETTLE_MS);
    const once = await source.load();
    expect(keys(once)).toEqual(['1', '2', '3']); // 2 is kept
    expect(source.keptKeys()).toEqual(['a1SimProduct1/2']);
    expect(logged).toContain('batches missing from the config file are kept until a second stable read confirms their removal');

    // A second read too soon after the first does not confirm.
    await clock.advance(SETTLE_MS - 1);
    expect(keys(await source.load())).toEqual(['1', '2', '3']);

    await clock.advance(60_000); // the next scheduled reload
    const twice = await source.load();
    expect(keys(twice)).toEqual(['1', '3']);
    expect(source.lastOutcome).toBe('removals-confirmed');
    expect(source.keptKeys()).toEqual([]);
    expect(logged).toContain('batches missing from two stable reads of the config file: removing them');
  });

  it('a half-written file that stays still longer than the settle window removes nothing once the writer finishes', async () => {
    const { clock, file, source } = setup();
    const all = Array.from({ length: 20 }, (_, i) => String(500 + i));
    file.write(yaml(all));
    await clock.advance(SETTLE_MS);
    await source.load();

    file.write(yaml(all.slice(0, 7))); // the writer stalls for 30 s after the first part
    const half = await loadAdvancing(clock, source);
    expect(keys(half)).toEqual([...all].sort()); // nothing removed: 13 kept
    expect(source.keptKeys()).toHaveLength(13);
    // The kept entries are the previous ones, as they were.
    expect(half.batches.find((b) => b.applyId === '519')?.key).toBe('a1SimProduct1/519');

    await clock.advance(30_000);
    file.write(yaml(all));
    const full = await loadAdvancing(clock, source);
    expect(keys(full)).toEqual([...all].sort());
    expect(source.keptKeys()).toEqual([]);

    // And a later read of the same full file confirms nothing: nothing is missing.
    await clock.advance(60_000);
    expect(keys(await source.load())).toEqual([...all].sort());
  });

  it('removal check after a matching prefix: an added last entry keeps all, a removed last or middle entry is kept once', async () => {
    const { clock, file, source } = setup();
    file.write(yaml(['1', '2', '3']));
    await clock.advance(SETTLE_MS);
    await source.load();
    file.write(yaml(['1', '2', '3', '4'])); // the previous batches are the new file's first ones, in order
    await clock.advance(SETTLE_MS);
    expect(keys(await source.load())).toEqual(['1', '2', '3', '4']);
    expect(source.keptKeys()).toEqual([]);
    file.write(yaml(['1', '2', '3'])); // the last one removed: the prefix matches up to it
    await clock.advance(SETTLE_MS);
    expect(keys(await source.load())).toEqual(['1', '2', '3', '4']);
    expect(source.keptKeys()).toEqual(['a1SimProduct1/4']);
    file.write(yaml(['1', '3', '5'])); // 2 removed after a one-entry prefix, 4 still missing, 5 new
    await clock.advance(SETTLE_MS);
    expect(keys(await source.load())).toEqual(['1', '2', '3', '5']);
    expect(source.keptKeys()).toEqual(['a1SimProduct1/2']);
  });

  it('a stable read that has the batch again resets its count', async () => {
    const { clock, file, source } = setup();
    file.write(yaml(['1', '2']));
    await clock.advance(SETTLE_MS);
    await source.load();
    file.write(yaml(['1']));
    await clock.advance(SETTLE_MS);
    await source.load(); // 2 missing once
    file.write(yaml(['1', '2']));
    await clock.advance(SETTLE_MS);
    await source.load(); // back
    file.write(yaml(['1']));
    await clock.advance(SETTLE_MS);
    expect(keys(await source.load())).toEqual(['1', '2']); // missing once again, not twice in a row
    await clock.advance(SETTLE_MS);
    expect(keys(await source.load())).toEqual(['1']);
  });
});
