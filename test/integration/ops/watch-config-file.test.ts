import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { createManualClock } from '../../../src/core/clock.js';
import { watchConfigFile } from '../../../src/ops/housekeeping.js';
import type { ConfigFileWatch } from '../../../src/ops/housekeeping.js';
import { createCaptureLogger } from '../../unit/ops/capture-logger.js';

const DEBOUNCE_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let watches: ConfigFileWatch[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ibw-watch-'));
});
afterEach(async () => {
  for (const w of watches) w.close();
  watches = [];
  await rm(dir, { recursive: true, force: true });
});

function startWatch(file: string) {
  const { logger, lines } = createCaptureLogger();
  let calls = 0;
  const watch = watchConfigFile({ file, debounceMs: DEBOUNCE_MS, logger, onChange: () => (calls += 1) });
  watches.push(watch);
  return { watch, lines, calls: () => calls };
}

async function expectCallsSettleAt(calls: () => number, expected: number): Promise<void> {
  await vi.waitFor(() => expect(calls()).toBe(expected), { timeout: 3000, interval: 10 });
  await sleep(DEBOUNCE_MS * 4); // and no more arrive afterwards
  expect(calls()).toBe(expected);
}

describe('watchConfigFile', () => {
  it('debounces a burst of writes into one callback', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const { calls } = startWatch(file);
    for (let i = 1; i <= 5; i += 1) {
      await writeFile(file, `a: ${i}\n`);
      await sleep(5);
    }
    await expectCallsSettleAt(calls, 1);
    await writeFile(file, 'a: 6\n');
    await expectCallsSettleAt(calls, 2);
  });

  it('sees an editor-style replace by rename', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const { calls } = startWatch(file);
    await writeFile(join(dir, '.watcher.yaml.tmp'), 'a: 1\n');
    await rename(join(dir, '.watcher.yaml.tmp'), file);
    await expectCallsSettleAt(calls, 1);
  });

  it('sees a Kubernetes ConfigMap ..data symlink swap', async () => {
    await mkdir(join(dir, '..2026_01_01_00_00_00.1'));
    await writeFile(join(dir, '..2026_01_01_00_00_00.1', 'watcher.yaml'), 'a: 0\n');
    await symlink('..2026_01_01_00_00_00.1', join(dir, '..data'));
    await symlink('..data/watcher.yaml', join(dir, 'watcher.yaml'));
    const { calls } = startWatch(join(dir, 'watcher.yaml'));

    await mkdir(join(dir, '..2026_01_01_00_05_00.2'));
    await writeFile(join(dir, '..2026_01_01_00_05_00.2', 'watcher.yaml'), 'a: 1\n');
    await symlink('..2026_01_01_00_05_00.2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await expectCallsSettleAt(calls, 1);
  });

  it('ignores other files in the directory', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const { calls } = startWatch(file);
    await writeFile(join(dir, 'other.yaml'), 'b: 1\n');
    await sleep(DEBOUNCE_MS * 5);
    expect(calls()).toBe(0);
    await writeFile(file, 'a: 1\n'); // the watch is alive: the file itself still counts
    await expectCallsSettleAt(calls, 1);
  });

  it('close() drops a pending call and stops watching', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const { watch, calls } = startWatch(file);
    await writeFile(file, 'a: 1\n');
    await sleep(5);
    watch.close();
    watch.close(); // idempotent
    await writeFile(file, 'a: 2\n');
    await sleep(DEBOUNCE_MS * 5);
    expect(calls()).toBe(0);
  });

  it('logs a throwing onChange instead of propagating it', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const { logger, lines } = createCaptureLogger();
    let calls = 0;
    watches.push(
      watchConfigFile({
        file,
        debounceMs: DEBOUNCE_MS,
        logger,
        onChange: () => {
          calls += 1;
          throw new Error('reload blew up');
        },
      }),
    );
    await writeFile(file, 'a: 1\n');
    await vi.waitFor(() => expect(calls).toBe(1), { timeout: 3000, interval: 10 });
    const line = lines.find((l) => l.msg === 'config change handler failed');
    expect(line?.level).toBe(40);
    expect((line?.err as { message: string }).message).toBe('reload blew up');
  });

  it('logs a rejecting async onChange', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const { logger, lines } = createCaptureLogger();
    watches.push(
      watchConfigFile({ file, debounceMs: DEBOUNCE_MS, logger, onChange: () => Promise.reject(new Error('async reload failed')) }),
    );
    await writeFile(file, 'a: 1\n');
    await vi.waitFor(
      () => expect(lines.some((l) => (l.err as { message?: string } | undefined)?.message === 'async reload failed')).toBe(true),
      { timeout: 3000, interval: 10 },
    );
  });

  it('a directory that does not exist gives a logged warning and a no-op watch', () => {
    const { logger, lines } = createCaptureLogger();
    const watch = watchConfigFile({
      file: join(dir, 'missing', 'watcher.yaml'),
      debounceMs: DEBOUNCE_MS,
      logger,
      onChange: () => undefined,
    });
    expect(lines.some((l) => l.level === 40 && String(l.msg).startsWith('cannot watch the config file'))).toBe(true);
    expect(() => watch.close()).not.toThrow();
  });

  it('uses the injected clock for the debounce', async () => {
    const file = join(dir, 'watcher.yaml');
    await writeFile(file, 'a: 0\n');
    const clock = createManualClock(0);
    const { logger } = createCaptureLogger();
    let calls = 0;
    watches.push(watchConfigFile({ file, debounceMs: 1000, logger, clock, onChange: () => (calls += 1) }));
    await writeFile(file, 'a: 1\n');
    await vi.waitFor(() => expect(clock.pendingSleeps()).toBe(1), { timeout: 3000, interval: 10 });
    await sleep(50); // a write can raise several events; let them all arrive (each re-arms the one sleep)
    expect(clock.pendingSleeps()).toBe(1);
    await clock.advance(999);
    expect(calls).toBe(0);
    await clock.advance(1);
    expect(calls).toBe(1);
  });
});
