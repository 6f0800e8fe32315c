/**
 * AccountRuntime's ownership loop with an injected clock: the claim policy is asked before every attempt to acquire
 * the account (false: standby, ready, nothing opened), release() gives the account up (ledger closed, its LOCK
 * gone) and goes back to standby, and it takes the account back when the policy allows; stop() ends a standby.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { AccountRuntime } from '../../../src/account-runtime.js';
import { compileConfigObject } from '../../../src/config/compile.js';
import { createManualClock, createSeededRandom } from '../../../src/core/clock.js';
import { createLogger } from '../../../src/ops/logger.js';
import { createMetrics } from '../../../src/ops/metrics.js';

const credentials = { get: () => Promise.resolve({ accessKeyId: 'id', accessKeySecret: 'secret', securityToken: null }) };

/** Lets pending promise callbacks and file I/O run (the clock does not move). */
async function settle(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i += 1) await new Promise((r) => setTimeout(r, 10));
}

describe('AccountRuntime: claims, release and standby', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-runtime-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stands by while the policy says no, runs when it says yes, releases and takes the account back', async () => {
    const config = compileConfigObject(
      { alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' }, state: { dir: join(dir, 'state') }, output: { resultsDir: join(dir, 'results') }, http: { listen: 'off' }, batches: [] },
      { cwd: dir },
    );
    const clock = createManualClock(1_000_000);
    let allowed = false;
    const asked: string[] = [];
    const runtime = new AccountRuntime({
      account: config.accounts[0]!,
      config,
      logger: createLogger({ level: 'silent' }),
      env: {},
      clock,
      random: createSeededRandom(1),
      sinks: [],
      metrics: createMetrics({ collectDefault: false }),
      credentials,
      claims: {
        mayClaim: (account) => {
          asked.push(account);
          return allowed;
        },
      },
    });
    const lock = join(dir, 'state', 'LOCK');
    const started = runtime.start();
    await settle(() => asked.length > 0);
    expect(runtime.state).toBe('standby');
    expect(runtime.isReady()).toBe(true);
    expect(existsSync(lock)).toBe(false);

    // Asked again after a third of the lease (15 s by default).
    await clock.advance(4999);
    expect(asked).toEqual(['default']);
    allowed = true;
    await clock.advance(1);
    await started;
    expect(asked).toEqual(['default', 'default']);
    expect(runtime.state).toBe('running');
    expect(existsSync(lock)).toBe(true);

    allowed = false;
    await runtime.release();
    expect(runtime.state).toBe('standby');
    expect(runtime.watcher).toBeNull();
    expect(existsSync(lock)).toBe(false);
    await settle(() => asked.length === 3);
    expect(asked).toHaveLength(3);

    allowed = true;
    await clock.advance(5000);
    await settle(() => runtime.state === 'running');
    expect(runtime.state).toBe('running');
    expect(existsSync(lock)).toBe(true);

    const stopped = await runtime.stop();
    expect(stopped).toEqual({ reason: 'stopped', error: null, flushError: null });
    expect(runtime.state).toBe('stopped');
    expect(existsSync(lock)).toBe(false);
  });

  it('stop() ends a standby: start() rejects, nothing was opened', async () => {
    const config = compileConfigObject(
      { alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' }, state: { dir: join(dir, 'state') }, output: { resultsDir: join(dir, 'results') }, http: { listen: 'off' }, batches: [] },
      { cwd: dir },
    );
    const runtime = new AccountRuntime({
      account: config.accounts[0]!,
      config,
      logger: createLogger({ level: 'silent' }),
      env: {},
      clock: createManualClock(0),
      random: createSeededRandom(1),
      sinks: [],
      metrics: createMetrics({ collectDefault: false }),
      credentials,
      claims: { mayClaim: () => false },
    });
    const started = runtime.start();
    await settle(() => runtime.isReady());
    const stopped = await runtime.stop();
    expect(stopped.reason).toBe('stopped');
    await expect(started).rejects.toMatchObject({ code: 'Aborted' });
    expect(runtime.state).toBe('stopped');
    expect(existsSync(join(dir, 'state', 'LOCK'))).toBe(false);
  });
});
