import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { runCli } from '../helpers/child.js';

describe('iot-batch-watcher demo', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs the simulator and the daemon, settles every batch, prints a summary and exits 0 in under a minute', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-demo-'));
    const started = Date.now();
    // No credentials in the environment: the demo needs none.
    const child = runCli(['demo'], {}, dir);
    const exit = await child.exited;
    const tookMs = Date.now() - started;
    const out = child.stdout.join('\n');
    expect(exit.code, child.stderr.join('')).toBe(0);
    expect(tookMs).toBeLessThan(60_000);
    const summary = out.slice(out.indexOf('Demo summary'));
    const outcome = (applyId: string): string | undefined =>
      summary
        .split('\n')
        .find((l) => l.startsWith(`${applyId} `))
        ?.split(/\s{2,}/)[4];
    expect(outcome('1300001')).toBe('created');
    expect(outcome('1300002')).toBe('check_failed');
    expect(outcome('1300003')).toBe('create_failed');
    expect(outcome('1300004')).toBe('created');
    expect(outcome('9007199254740993')).toBe('created');
    // Pretty logs for people, with the story of the batches.
    expect(out).toMatch(/INFO.*batch\.registration_requested a1SimProduct2\/1300004/);
    expect(out).toMatch(/batch\.awaiting_registration|batch\.status_changed a1SimProduct2\/1300004 CHECK_SUCCESS/);
    const results = await readdir(join(dir, 'data', 'demo', 'results', 'a1SimProduct1'));
    expect(results.sort()).toEqual(['1300001.json', '1300002.json', '9007199254740993.json']);
  }, 90_000);
});
