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

  it('routes a reload to its batches with an injected clock: added ones start, removed pending ones are cancelled and drained', async () => {
    const base = {
      alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' },
      // Nobody listens on port 1: every poll fails transiently, so the batches stay pending until cancelled.
      polling: { initialDelay: '10s', maxDelay: '60s' },
      state: { dir: join(dir, 'state') },
      output: { resultsDir: join(dir, 'results') },
      http: { listen: 'off' },
    };
    const config = (ids: string[]) =>
      compileConfigObject({ ...base, batches: ids.map((applyId) => ({ applyId, productKey: 'a1SimProduct1' })) }, { cwd: dir });
    const clock = createManualClock(5_000_000);
    const first = config(['1', '2']);
    const runtime = new AccountRuntime({
      account: first.accounts[0]!,
      config: first,
      logger: createLogger({ level: 'silent' }),
      env: {},
      clock,
      random: createSeededRandom(3),
      sinks: [],
      metrics: createMetrics({ collectDefault: false }),
      credentials,
      rpc: { connectTimeoutMs: 200 },
    });
    /** Moves the clock a second at a time (the budget refills, due work runs) until `p` settles. */
    const drive = async <T>(p: Promise<T>): Promise<T> => {
      let done = false;
      void p.finally(() => {
        done = true;
      });
      for (let i = 0; i < 700 && !done; i += 1) {
        await clock.advance(1000);
        await new Promise((r) => setTimeout(r, 5));
      }
      return p;
    };
    await runtime.start();
    expect(runtime.list().map((r) => [r.applyId, r.state])).toEqual([
      ['1', 'pending'],
      ['2', 'pending'],
    ]);
    const stats = await runtime.reload(config(['2', '3']));
    // A batch whose poll is in flight is cancelled when that poll ends instead of by the reload itself.
    expect(stats.added).toBe(1);
    expect(stats.cancelled).toBeLessThanOrEqual(1);
    expect(await drive(runtime.whenDrained(30_000))).toBe(false); // 2 and 3 stay pending
    expect(runtime.record('a1SimProduct1/1')?.outcome).toBe('cancelled');
    expect(runtime.list().map((r) => [r.applyId, r.state, r.outcome])).toEqual([
      ['1', 'settled', 'cancelled'],
      ['2', 'pending', null],
      ['3', 'pending', null],
    ]);
    // Removing every batch (as for an account removed from the file): all drained.
    await runtime.reload(config([]));
    expect(await drive(runtime.whenDrained(600_000))).toBe(true);
    expect(runtime.counts()).toMatchObject({ pending: 0, fetching: 0, settled: 3 });
    expect(existsSync(join(dir, 'results', 'a1SimProduct1', '3.json'))).toBe(true);
    await runtime.stop();
  });
});
