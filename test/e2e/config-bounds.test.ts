import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli, SIM_ENV } from '../helpers/child.js';

/** Issue #13.5 through the CLI: a huge file, a FIFO and a device are refused with exit 2, none hangs. */
describe('config file bounds through the CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-cfg-bounds-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('validate refuses a 100 MB file with exit 2, naming the file and the limit, without reading it', async () => {
    const big = join(dir, 'big.yaml');
    const handle = await open(big, 'w');
    await handle.truncate(100 * 1024 * 1024);
    await handle.close();
    const startedAt = Date.now();
    const child = runCli(['validate', '--config', big], {}, dir);
    const exit = await child.exited;
    // Generous: the CLI starts through tsx here; reading 100 MB and parsing it would take far longer (and a
    // hang forever). The built CLI's figure is in the report of issue #13.
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    expect(exit.code).toBe(2);
    expect(child.stdout.join('\n')).toContain(`${big}:0:0: (root): the file is 100.0 MiB, more than the limit of 64.0 MiB`);
  }, 30_000);

  it('validate and run refuse a FIFO and /dev/urandom with exit 2 instead of hanging', async () => {
    const fifo = join(dir, 'pipe.yaml');
    execFileSync('mkfifo', [fifo]);
    const v = runCli(['validate', '--config', fifo], {}, dir);
    expect((await v.exited).code).toBe(2);
    expect(v.stdout.join('\n')).toContain('expected a regular file, got a FIFO (named pipe)');
    const r = runCli(['run', '--config', '/dev/urandom'], SIM_ENV, dir);
    expect((await r.exited).code).toBe(2);
    expect(r.stderr.join('')).toContain('/dev/urandom:0:0: (root): expected a regular file, got a character device');
  }, 30_000);
});
