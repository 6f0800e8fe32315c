/**
 * A file with an `accounts` section (DESIGN.md §11, issue #15) run by the daemon: the account's own credential
 * variables, its endpoint and budget; batches keyed, evented and written per account. Start refuses missing
 * variables per account. Several accounts: test/integration/watcher/two-accounts.test.ts.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { Daemon } from '../../../src/daemon.js';
import { ConfigError } from '../../../src/errors.js';
import type { WatcherEvent } from '../../../src/events.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';

const ENV = { FLEET_AK_ID: 'SimAccessKeyId', FLEET_AK_SECRET: 'SimAccessKeySecret' };

describe('one account of accounts, end to end', () => {
  let sim: SimulatorHandle;
  let dir: string;
  let daemon: Daemon;

  const configFor = (accounts: unknown[]) =>
    compileConfigObject(
      {
        // A loopback port nobody listens on: only the account's endpoint (the simulator) can answer.
        alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' },
        accounts,
        polling: { initialDelay: '200ms', maxDelay: '400ms', timeout: '60s' },
        state: { dir: join(dir, 'state') },
        output: { resultsDir: join(dir, 'results'), eventsFile: join(dir, 'events.jsonl') },
        http: { listen: 'off' },
        batches: [
          { applyId: 8_100_001, productKey: 'a1SimProduct1' },
          { applyId: 8_100_002, productKey: 'a1SimProduct2', account: 'fleet-a' },
        ],
      },
      { cwd: dir },
    );
  const fleetA = () => ({
    name: 'fleet-a',
    endpoint: sim.url,
    credentials: { accessKeyIdEnv: 'FLEET_AK_ID', accessKeySecretEnv: 'FLEET_AK_SECRET' },
    rateLimit: { statusQps: 10 },
    reserve: '50%',
  });

  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 20, seed: 3 });
    sim.control.addBatch({ applyId: '8100001', productKey: 'a1SimProduct1', mode: 'custom', deviceNames: ['dev-a-1', 'dev-a-2'], registered: true });
    sim.control.addBatch({ applyId: '8100002', productKey: 'a1SimProduct2', mode: 'custom', deviceNames: ['dev-b-1'], registered: true });
    dir = await mkdtemp(join(tmpdir(), 'ibw-one-account-'));
    daemon = new Daemon({ config: configFor([fleetA()]), logger: createLogger({ level: 'silent' }), env: ENV, housekeeping: false });
    await daemon.start();
    await daemon.whenAllSettled();
    await daemon.flushSinks(5000);
    await daemon.stop();
  }, 60_000);

  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('settles both batches through the account (its endpoint and variables), rows naming the account', () => {
    expect(daemon.watcher.list().map((r) => [r.account, r.productKey, r.applyId, r.outcome])).toEqual([
      ['fleet-a', 'a1SimProduct1', '8100001', 'created'],
      ['fleet-a', 'a1SimProduct2', '8100002', 'created'],
    ]);
  });

  it('writes results under <resultsDir>/<account>/ with account first, and prefixes event ids', async () => {
    const file = join(dir, 'results', 'fleet-a', 'a1SimProduct1', '8100001.json');
    const result = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(result).slice(0, 3)).toEqual(['account', 'applyId', 'productKey']);
    expect(result).toMatchObject({ account: 'fleet-a', outcome: 'created', deviceCount: 2 });
    const events = (await readFile(join(dir, 'events.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as WatcherEvent);
    expect(events.length).toBeGreaterThan(3);
    for (const e of events) {
      expect(e.account).toBe('fleet-a');
      expect(e.id).toMatch(/^fleet-a:\d+:[^:]+:\d+$/);
    }
  });

  it('refuses to start when an account lacks its variables, naming the account', async () => {
    const d = new Daemon({ config: configFor([fleetA()]), logger: createLogger({ level: 'silent' }), env: { FLEET_AK_ID: 'x' }, housekeeping: false });
    const err = await d.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'accounts[0].credentials: Alibaba Cloud credentials of account "fleet-a" missing: set FLEET_AK_SECRET (or FLEET_AK_SECRET_FILE) ' +
        '(the variables its credentials name), or configure its credentials as { mode: chain }.',
    ]);
  });

  it('starts a file with two accounts, one runtime each (no longer refused)', async () => {
    const d = new Daemon({
      config: { ...configFor([fleetA(), { ...fleetA(), name: 'fleet-b' }]), batches: [] },
      logger: createLogger({ level: 'silent' }),
      env: ENV,
      housekeeping: false,
    });
    await d.start();
    expect(d.runtimes.map((r) => [r.name, r.state])).toEqual([
      ['fleet-a', 'running'],
      ['fleet-b', 'running'],
    ]);
    await d.stop();
  });

  it('a reload that adds an account starts its runtime: its batches go out with its own key', async () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(...chunk.toString().split('\n').filter(Boolean));
          cb();
        },
      }),
    });
    const first = configFor([fleetA()]);
    const base = { ...first, state: { ...first.state, dir: join(dir, 'state-reload') }, batches: [] };
    const two = configFor([fleetA(), { ...fleetA(), name: 'fleet-b' }]);
    const next = { ...base, accounts: two.accounts, batches: [{ ...two.batches[1]!, account: 'fleet-b', key: 'fleet-b:a1SimProduct2/8100002' }] };
    const d = new Daemon({ config: base, logger, env: ENV, housekeeping: false, loadConfig: () => Promise.resolve(next) });
    await d.start();
    await d.reload('test');
    await d.whenAllSettled();
    expect(d.list().map((r) => [r.account, r.applyId, r.outcome])).toEqual([['fleet-b', '8100002', 'created']]);
    await d.stop();
    expect(lines.some((l) => l.includes('account added to the configuration: starting it') && l.includes('fleet-b'))).toBe(true);
  });
});
