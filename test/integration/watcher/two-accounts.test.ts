/**
 * Several accounts in one process (DESIGN.md §11, issue #15): one AccountRuntime per account, each against its
 * own in-process simulator with its own AccessKey pair and QPS limit. Both settle; a throttled account does not
 * slow the other (its adaptive rate and throttles stay its own); a wrong secret parks only its account's batches,
 * durably and with the reason, and they resume at the next start; each account has its own ledger directory.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';

import { readStatusRows } from '../../../src/commands/status-rows.js';
import { compileConfigObject } from '../../../src/config/compile.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { Daemon } from '../../../src/daemon.js';
import { createLogger } from '../../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../../src/simulator/server.js';

const KEYS = {
  a: { id: 'FleetAKeyId', secret: 'FleetASecret-do-not-log' },
  b: { id: 'FleetBKeyId', secret: 'FleetBSecret-do-not-log' },
};
const ENV = { A_ID: KEYS.a.id, A_SECRET: KEYS.a.secret, B_ID: KEYS.b.id, B_SECRET: KEYS.b.secret };
const PER_ACCOUNT = 12;

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function captureLogger(lines: Record<string, unknown>[], level: 'info' | 'debug' = 'info') {
  return createLogger({
    level,
    destination: new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }),
  });
}

const applyIdA = (i: number) => String(8_200_000 + i);
const applyIdB = (i: number) => String(8_300_000 + i);

describe('two accounts in one process', () => {
  let simA: SimulatorHandle;
  let simB: SimulatorHandle;
  let dir: string;
  const daemons: Daemon[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-two-accounts-'));
  });

  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    await simA?.close();
    await simB?.close();
    await rm(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    await simA?.close();
    await simB?.close();
  });

  async function sims(qpsB = 0): Promise<void> {
    simA = await startSimulator({ port: 0, timeScale: 20, seed: 11, accessKeyId: KEYS.a.id, accessKeySecret: KEYS.a.secret, qps: { QueryBatchRegisterDeviceStatus: 0 } });
    simB = await startSimulator({ port: 0, timeScale: 20, seed: 12, accessKeyId: KEYS.b.id, accessKeySecret: KEYS.b.secret, qps: { QueryBatchRegisterDeviceStatus: qpsB } });
    for (let i = 0; i < PER_ACCOUNT; i += 1) {
      simA.control.addBatch({ applyId: applyIdA(i), productKey: 'a1SimProduct1', mode: 'custom', deviceNames: [`a-${i}-1`, `a-${i}-2`], registered: true });
      simB.control.addBatch({ applyId: applyIdB(i), productKey: 'a1SimProduct2', mode: 'custom', deviceNames: [`b-${i}-1`], registered: true });
    }
  }

  const account = (name: string, sim: SimulatorHandle, idEnv: string, secretEnv: string, statusQps = 10) => ({
    name,
    endpoint: sim.url,
    credentials: { accessKeyIdEnv: idEnv, accessKeySecretEnv: secretEnv },
    rateLimit: { statusQps, pageQps: 10 },
  });

  function config(accounts: unknown[], batches: unknown[]): CompiledConfig {
    return compileConfigObject(
      {
        // A loopback port nobody listens on: only the accounts' endpoints (the simulators) can answer.
        alibaba: { regionId: 'cn-shanghai', endpoint: 'http://127.0.0.1:1' },
        accounts,
        polling: { initialDelay: '200ms', maxDelay: '400ms', timeout: '120s' },
        state: { dir: join(dir, 'state') },
        output: { resultsDir: join(dir, 'results'), eventsFile: join(dir, 'events.jsonl') },
        http: { listen: '127.0.0.1:0' },
        batches,
      },
      { cwd: dir },
    );
  }

  const batchesA = () => Array.from({ length: PER_ACCOUNT }, (_, i) => ({ account: 'fleet-a', applyId: applyIdA(i), productKey: 'a1SimProduct1' }));
  const batchesB = () => Array.from({ length: PER_ACCOUNT }, (_, i) => ({ account: 'fleet-b', applyId: applyIdB(i), productKey: 'a1SimProduct2' }));

  function daemon(cfg: CompiledConfig, env: Record<string, string>, lines: Record<string, unknown>[] = [], loadConfig?: () => Promise<CompiledConfig>): Daemon {
    const d = new Daemon({ config: cfg, logger: captureLogger(lines), env, housekeeping: false, ...(loadConfig ? { loadConfig } : {}) });
    daemons.push(d);
    return d;
  }

  it('settles 2 × 12 batches, each through its own account, each account in its own ledger directory', async () => {
    await sims();
    const cfg = config([account('fleet-a', simA, 'A_ID', 'A_SECRET'), account('fleet-b', simB, 'B_ID', 'B_SECRET')], [...batchesA(), ...batchesB()]);
    const d = daemon(cfg, ENV);
    await d.start();
    expect(d.runtimes.map((r) => [r.name, r.state])).toEqual([
      ['fleet-a', 'running'],
      ['fleet-b', 'running'],
    ]);
    await d.whenAllSettled();
    await d.flushSinks(5000);
    const rows = d.list();
    expect(rows).toHaveLength(2 * PER_ACCOUNT);
    expect(rows.filter((r) => r.account === 'fleet-a' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    expect(rows.filter((r) => r.account === 'fleet-b' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    // /v1/batches shows both accounts; /metrics labels each account's series.
    const http = (await (await fetch(`${d.httpUrl!}/v1/batches`)).json()) as { account?: string }[];
    expect(new Set(http.map((r) => r.account))).toEqual(new Set(['fleet-a', 'fleet-b']));
    const metrics = await (await fetch(`${d.httpUrl!}/metrics`)).text();
    expect(metrics).toMatch(/ibw_batches\{state="settled",account="fleet-a"\} 12/);
    expect(metrics).toMatch(/ibw_batches\{state="settled",account="fleet-b"\} 12/);
    expect(metrics).toMatch(/ibw_api_requests_total\{action="QueryBatchRegisterDeviceStatus",outcome="success",account="fleet-b"\} [1-9]/);
    expect(metrics).toMatch(/ibw_rate_limit_qps\{action="QueryBatchRegisterDeviceStatus",account="fleet-a"\} 10/);
    // File backend: the process owns each account it runs (it holds the account's state directory).
    expect(metrics).toContain('ibw_account_owned{account="fleet-a"} 1\n');
    expect(metrics).toContain('ibw_account_owned{account="fleet-b"} 1\n');
    // Results per account.
    const result = JSON.parse(await readFile(join(dir, 'results', 'fleet-b', 'a1SimProduct2', `${applyIdB(0)}.json`), 'utf8')) as Record<string, unknown>;
    expect(result).toMatchObject({ account: 'fleet-b', outcome: 'created', deviceCount: 1 });
    await d.stop();

    // The layout: neither account is `default`, so each has <state.dir>/accounts/<name>/; offline status reads both.
    for (const name of ['fleet-a', 'fleet-b']) expect((await stat(join(dir, 'state', 'accounts', name, 'snapshot.json'))).isFile()).toBe(true);
    const offline = await readStatusRows(join(dir, 'state'));
    expect(offline.map((r) => [r.account, r.applyId, r.outcome])).toEqual(rows.map((r) => [r.account, r.applyId, r.outcome]));
  }, 60_000);

  it('a throttled account does not slow the other: its adaptive rate and throttles stay its own', async () => {
    // fleet-b's simulator allows 2 status polls a second against a budget of 10: it throttles hard.
    await sims(2);
    const cfg = config([account('fleet-a', simA, 'A_ID', 'A_SECRET'), account('fleet-b', simB, 'B_ID', 'B_SECRET')], [...batchesA(), ...batchesB()]);
    const d = daemon(cfg, ENV);
    await d.start();
    await d.runtime('fleet-a')!.whenAllSettled();
    const metrics = await (await fetch(`${d.httpUrl!}/metrics`)).text();
    expect(metrics).toMatch(/ibw_throttled_total\{action="QueryBatchRegisterDeviceStatus",account="fleet-b"\} [1-9]/);
    expect(metrics).toMatch(/ibw_throttled_total\{action="QueryBatchRegisterDeviceStatus",account="fleet-a"\} 0/);
    expect(metrics).toMatch(/ibw_rate_limit_qps\{action="QueryBatchRegisterDeviceStatus",account="fleet-a"\} 10\n/);
    const rateB = Number(/ibw_rate_limit_qps\{action="QueryBatchRegisterDeviceStatus",account="fleet-b"\} ([\d.]+)/.exec(metrics)?.[1]);
    expect(rateB).toBeLessThan(10);
    expect(d.list().filter((r) => r.account === 'fleet-a' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    // fleet-b still gets there, at its own pace.
    await d.whenAllSettled();
    expect(d.list().filter((r) => r.account === 'fleet-b' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
  }, 90_000);

  it('a wrong secret parks only that account (durably, with the reason), the other settles; the next start resumes it', async () => {
    await sims();
    const lines: Record<string, unknown>[] = [];
    const cfg = config([account('fleet-a', simA, 'A_ID', 'A_SECRET'), account('fleet-b', simB, 'B_ID', 'B_SECRET')], [...batchesA(), ...batchesB()]);
    const d = daemon(cfg, { ...ENV, B_SECRET: 'a-wrong-secret-do-not-log' }, lines);
    let ended = false;
    void d.done().then(() => {
      ended = true;
    });
    await d.start();
    await until(() => d.runtime('fleet-b')?.state === 'parked');
    await d.whenAllSettled();
    expect(d.runtime('fleet-a')!.state).toBe('running');
    expect(d.list().filter((r) => r.account === 'fleet-a' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    const parked = d.list().filter((r) => r.account === 'fleet-b');
    expect(parked).toHaveLength(PER_ACCOUNT);
    for (const r of parked) {
      expect(r.state).toBe('parked');
      expect(r.outcome).toBeNull();
      expect(r.lastError).toMatch(/account "fleet-b" parked: .*SignatureDoesNotMatch/);
    }
    const fatal = lines.filter((l) => l.level === 60);
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatchObject({ account: 'fleet-b', code: 'SignatureDoesNotMatch' });
    expect(JSON.stringify(lines)).not.toContain('a-wrong-secret-do-not-log');
    expect(JSON.stringify(lines)).not.toContain(KEYS.a.secret);
    // Parked is not ready (one account does not work); the process goes on until stopped.
    expect(d.isReady()).toBe(false);
    expect((await fetch(`${d.httpUrl!}/readyz`)).status).toBe(503);
    expect(ended).toBe(false);
    const stopped = await d.stop();
    expect(stopped).toMatchObject({ reason: 'stopped', error: null, flushError: null });

    // Durable: offline status shows the parking with its reason.
    const offline = (await readStatusRows(join(dir, 'state'))).filter((r) => r.account === 'fleet-b');
    expect(offline.every((r) => r.state === 'parked' && /parked: .*SignatureDoesNotMatch/.test(r.lastError ?? ''))).toBe(true);

    // The operator fixes the secret and restarts: the parked batches resume and settle, nothing re-added.
    const events0 = (await readFile(join(dir, 'events.jsonl'), 'utf8')).split('\n').filter(Boolean).length;
    const again = daemon(cfg, ENV);
    await again.start();
    await again.whenAllSettled();
    expect(again.list().filter((r) => r.account === 'fleet-b' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    await again.flushSinks(5000);
    const events = (await readFile(join(dir, 'events.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .slice(events0)
      .map((l) => JSON.parse(l) as { type: string; account: string });
    expect(events.filter((e) => e.type === 'batch.added')).toHaveLength(0);
    expect(events.filter((e) => e.type === 'batch.settled' && e.account === 'fleet-b')).toHaveLength(PER_ACCOUNT);
  }, 90_000);

  it('with a single account a wrong secret still ends the daemon (DESIGN.md §3)', async () => {
    await sims();
    const cfg = config([account('fleet-b', simB, 'B_ID', 'B_SECRET')], batchesB());
    const d = daemon(cfg, { ...ENV, B_SECRET: 'wrong' });
    await d.start();
    const result = await d.done();
    expect(result.reason).toBe('fatal');
    expect(result.error?.code).toBe('SignatureDoesNotMatch');
    const stopped = await d.stop();
    expect(stopped.reason).toBe('fatal');
    expect(d.list().every((r) => r.state === 'pending')).toBe(true);
  }, 60_000);

  it('a reload adds an account (its batches start) and removes one (its pending batches cancelled, its runtime stopped)', async () => {
    await sims();
    // fleet-b's batches never finish: they are pending when the account is removed.
    for (let i = 0; i < 3; i += 1) simB.control.addBatch({ applyId: String(8_400_000 + i), productKey: 'a1SimProduct2', mode: 'random', count: 1, outcome: 'never' });
    const never = Array.from({ length: 3 }, (_, i) => ({ account: 'fleet-b', applyId: String(8_400_000 + i), productKey: 'a1SimProduct2' }));
    const lines: Record<string, unknown>[] = [];
    const a = account('fleet-a', simA, 'A_ID', 'A_SECRET');
    const b = account('fleet-b', simB, 'B_ID', 'B_SECRET');
    let next = config([a], batchesA());
    const d = daemon(next, ENV, lines, () => Promise.resolve(next));
    await d.start();
    expect(d.runtimes.map((r) => r.name)).toEqual(['fleet-a']);

    next = config([a, b], [...batchesA(), ...batchesB(), ...never]);
    expect(await d.reload('test')).toBe('ok');
    expect(d.runtimes.map((r) => [r.name, r.state])).toEqual([
      ['fleet-a', 'running'],
      ['fleet-b', 'running'],
    ]);
    expect(lines.some((l) => l.msg === 'account added to the configuration: starting it' && l.account === 'fleet-b')).toBe(true);
    await until(() => d.list().filter((r) => r.account === 'fleet-b' && r.outcome === 'created').length === PER_ACCOUNT);

    next = config([a], batchesA());
    expect(await d.reload('test')).toBe('ok');
    expect(d.runtimes.map((r) => r.name)).toEqual(['fleet-a']);
    expect(lines.some((l) => l.msg === 'account removed from the configuration: its pending batches were cancelled; stopped' && l.account === 'fleet-b')).toBe(true);
    const metrics = await (await fetch(`${d.httpUrl!}/metrics`)).text();
    expect(metrics).not.toMatch(/ibw_batches\{state="pending",account="fleet-b"\}/);
    await d.stop();
    const rowsB = (await readStatusRows(join(dir, 'state'))).filter((r) => r.account === 'fleet-b');
    expect(rowsB.filter((r) => r.outcome === 'cancelled').map((r) => r.applyId)).toEqual(['8400000', '8400001', '8400002']);
    expect(rowsB.filter((r) => r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    const cancelled = JSON.parse(await readFile(join(dir, 'results', 'fleet-b', 'a1SimProduct2', '8400000.json'), 'utf8')) as Record<string, unknown>;
    expect(cancelled).toMatchObject({ account: 'fleet-b', outcome: 'cancelled' });
  }, 90_000);

  it('a reload that fixes a parked account restarts it: its parked batches resume and settle', async () => {
    await sims();
    const lines: Record<string, unknown>[] = [];
    const a = account('fleet-a', simA, 'A_ID', 'A_SECRET');
    let next = config([a, account('fleet-b', simB, 'B_ID', 'B_BAD')], [...batchesA(), ...batchesB()]);
    const d = daemon(next, { ...ENV, B_BAD: 'not-the-secret' }, lines, () => Promise.resolve(next));
    await d.start();
    await until(() => d.runtime('fleet-b')?.state === 'parked');
    const parkedRuntime = d.runtime('fleet-b');
    expect(d.list().filter((r) => r.account === 'fleet-b').every((r) => r.state === 'parked')).toBe(true);

    // The operator points the account at the right variable: the account changed, so it restarts.
    next = config([a, account('fleet-b', simB, 'B_ID', 'B_SECRET')], [...batchesA(), ...batchesB()]);
    expect(await d.reload('test')).toBe('ok');
    expect(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('account changed') && l.account === 'fleet-b' && l.parked === true)).toBe(true);
    expect(d.runtime('fleet-b')).not.toBe(parkedRuntime);
    expect(parkedRuntime!.state).toBe('stopped');
    await d.whenAllSettled();
    expect(d.runtime('fleet-b')!.state).toBe('running');
    expect(d.list().filter((r) => r.account === 'fleet-b' && r.outcome === 'created')).toHaveLength(PER_ACCOUNT);
    expect(d.isReady()).toBe(true);
  }, 90_000);
});
