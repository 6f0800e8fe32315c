/**
 * Issue #13.1 through the CLI as a separate process: `wait` against a server that sends headers and then one
 * body byte at a time must not hang. Every poll is closed at `alibaba.requestTimeout` (+1 s slack), the process
 * ends by `--timeout` with exit code 4, and the deadline is visible at info on stderr.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { SIM_ENV, runCli } from '../../helpers/child.js';
import type { DripServer } from '../../helpers/drip-server.js';
import { startDripServer } from '../../helpers/drip-server.js';

let dir: string;
let server: DripServer;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ibw-wait-drip-'));
  server = await startDripServer({ dripMs: 300 });
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('wait against a dripping endpoint', () => {
  it('closes every poll at requestTimeout and exits 4 at --timeout instead of hanging', async () => {
    const config = join(dir, 'watcher.yaml');
    await writeFile(
      config,
      ['alibaba:', '  regionId: cn-shanghai', '  requestTimeout: 1s', 'polling:', '  initialDelay: 1s', '  maxDelay: 1s', 'batches: []', ''].join('\n'),
    );
    const child = runCli(
      ['wait', '--config', config, '--product-key', 'a1SimProduct1', '--apply-id', '7100001', '--endpoint', server.url, '--timeout', '3s'],
      { ...SIM_ENV, LOG_LEVEL: 'info' },
      dir,
    );
    // Measure from the first request (the child's start-up time through tsx varies on a loaded machine).
    while (server.requests() === 0) await new Promise((r) => setTimeout(r, 20));
    const firstRequest = performance.now();
    const exit = await child.exited;
    const afterFirst = performance.now() - firstRequest;
    expect(exit.code).toBe(4);
    // 3 s of --timeout + one poll's 1 s deadline + 2 s of slack for the process to stop.
    expect(afterFirst).toBeLessThan(6_000);
    const result = JSON.parse(child.stdout.join('\n')) as { outcome: string };
    expect(result.outcome).toBe('timed_out');
    await new Promise((r) => setTimeout(r, 100));
    expect(server.open()).toBe(0);
    const carried = server.connections.filter((c) => c.requests > 0);
    expect(carried.length).toBeGreaterThanOrEqual(1);
    for (const c of carried) expect(c.closedAt! - c.requestAt!).toBeLessThan(2_000);
    const stderr = child.stderr.join('');
    expect(stderr).toContain('alibaba api request exceeded its deadline; connection closed');
    expect(stderr).toContain('"code":"Transport.Timeout"');
  }, 30_000);
});
