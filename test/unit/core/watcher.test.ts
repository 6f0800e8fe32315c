import { afterEach, describe, expect, it } from 'vitest';

import { ApiBudget } from '../../../src/core/api-budget.js';
import { createManualClock, createSeededRandom, type ManualClock } from '../../../src/core/clock.js';
import { StateStore } from '../../../src/core/state-store.js';
import { Watcher } from '../../../src/core/watcher.js';
import type { BatchConfig, CompiledConfig } from '../../../src/config/types.js';
import type { BatchStatusResult, CallOptions } from '../../../src/core/ports.js';
import { DaemonError } from '../../../src/errors.js';
import { testBatch, testConfig } from '../../helpers/config.js';
import { CapturePublisher, MemoryResults, MemoryStore, ScriptedApi, silentLog } from '../../helpers/fakes.js';

const T0 = 1_800_000_000_000;

interface Rig {
  clock: ManualClock;
  api: ScriptedApi;
  store: MemoryStore;
  publisher: CapturePublisher;
  results: MemoryResults;
  watcher: Watcher;
}

const running: Watcher[] = [];
afterEach(async () => {
  for (const w of running.splice(0)) if (w.state === 'running') await w.stop();
});

function rig(config: CompiledConfig, shared?: { clock?: ManualClock; api?: ScriptedApi; store?: MemoryStore }): Rig {
  const clock = shared?.clock ?? createManualClock(T0);
  const api = shared?.api ?? new ScriptedApi(() => clock.now());
  const store = shared?.store ?? new MemoryStore();
  const publisher = new CapturePublisher();
  const results = new MemoryResults();
  const budget = new ApiBudget({ rates: config.rateLimit, clock, tuning: (qps) => ({ ratePerSec: qps }) });
  const state = new StateStore({ ledger: store, log: silentLog, now: () => clock.now(), clock });
  state.publishTo(publisher);
  const watcher = new Watcher({
    config,
    store: state,
    budget,
    statusApi: api,
    api,
    results,
    clock,
    random: createSeededRandom(1),
    log: silentLog,
    shutdownGraceMs: 100,
  });
  running.push(watcher);
  return { clock, api, store, publisher, results, watcher };
}

async function runFor(r: Rig, ms: number, step = 250): Promise<void> {
  for (let t = 0; t < ms; t += step) await r.clock.advance(step);
}

describe('Watcher', () => {
  it('watches a register:true batch through CHECK → CREATE_SUCCESS, registering once, writing the result', async () => {
    const batch = testBatch({ applyId: '9007199254740993', register: true, name: 'line-3', labels: { site: 'sh' } });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script(batch.applyId, ['CHECK', 'CHECK', 'CHECK_SUCCESS', 'CREATE', 'CREATE', 'CREATE_SUCCESS']);
    r.api.devices.set(batch.applyId, [{ deviceName: 'd1', iotId: 'i1', deviceSecret: 's3cr3t' }]);
    await r.watcher.start();
    await runFor(r, 60_000);
    expect(r.watcher.allSettled()).toBe(true);
    expect(r.api.registrations.get(batch.applyId)).toBe(1);
    const rec = r.watcher.record(batch.key)!;
    expect(rec.outcome).toBe('created');
    expect(rec.state).toBe('settled');
    const result = r.results.files.get(`/results/${batch.productKey}/${batch.applyId}.json`)!;
    expect(result.devices).toEqual([{ deviceName: 'd1', iotId: 'i1', deviceSecret: 's3cr3t' }]);
    expect(result.history.map((h) => h.status)).toEqual(['CHECK', 'CHECK_SUCCESS', 'CREATE', 'CREATE_SUCCESS']);
    const types = r.publisher.events.map((e) => e.type);
    expect(types).toEqual([
      'batch.added',
      'batch.status_changed',
      'batch.status_changed',
      'batch.registration_requested',
      'batch.status_changed',
      'batch.status_changed',
      'batch.settled',
    ]);
    const ids = r.publisher.events.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(JSON.stringify(r.publisher.events)).not.toContain('s3cr3t');
    expect(JSON.stringify(r.store.records)).not.toContain('s3cr3t');
    expect(r.publisher.events.at(-1)!.applyId).toBe('9007199254740993');
  });

  it('keeps the status QPS under the budget in every 1-second window and serves batches in due order', async () => {
    const batches: BatchConfig[] = Array.from({ length: 40 }, (_, i) => testBatch({ applyId: String(1000 + i) }));
    const r = rig(testConfig({ batches, rateLimit: { statusQps: 5, pageQps: 5, concurrency: 4 } }));
    for (const b of batches) r.api.script(b.applyId, ['CHECK', 'CHECK', 'CHECK_FAILED']);
    await r.watcher.start();
    await runFor(r, 60_000, 50);
    expect(r.watcher.allSettled()).toBe(true);
    const times = r.api.calls.filter((c) => c.action === 'status').map((c) => c.at);
    expect(times.length).toBe(120);
    for (let i = 0; i < times.length; i += 1) {
      const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(5);
    }
    // The first polls go out in the order the batches were added (all due at once: FIFO).
    const firstPolls = r.api.calls.filter((c) => c.action === 'status').slice(0, 40).map((c) => c.applyId);
    expect(new Set(firstPolls).size).toBe(40);
  });

  it('takes the status token in beforeSend (after signing): spacing from the send, one dispatch per free token', async () => {
    const clock = createManualClock(T0);
    /** An API whose requests take 3 ms to sign before beforeSend, like the RPC client's. */
    class SigningApi extends ScriptedApi {
      readonly sent: number[] = [];
      signing = 0;
      maxSigning = 0;
      override async queryBatchRegisterDeviceStatus(target: { productKey: string; applyId: string }, options?: CallOptions): Promise<BatchStatusResult> {
        this.signing += 1;
        this.maxSigning = Math.max(this.maxSigning, this.signing);
        await clock.sleep(3);
        await options?.beforeSend?.();
        this.signing -= 1;
        this.sent.push(clock.now());
        return super.queryBatchRegisterDeviceStatus(target, options);
      }
    }
    const api = new SigningApi(() => clock.now());
    const batches: BatchConfig[] = Array.from({ length: 20 }, (_, i) => testBatch({ applyId: String(2000 + i) }));
    const r = rig(testConfig({ batches, rateLimit: { statusQps: 5, pageQps: 5, concurrency: 4 } }), { clock, api });
    for (const b of batches) api.script(b.applyId, ['CHECK', 'CHECK_FAILED']);
    await r.watcher.start();
    await runFor(r, 30_000, 1);
    expect(r.watcher.allSettled()).toBe(true);
    expect(api.sent.length).toBe(40);
    // One free token is promised to one poll: never two dispatched and signing for the same token.
    expect(api.maxSigning).toBe(1);
    // Tokens are taken at the send: 200 ms apart from the send, 3 ms after each dispatch.
    for (let i = 1; i < api.sent.length; i += 1) expect(api.sent[i]! - api.sent[i - 1]!).toBeGreaterThanOrEqual(200);
    for (let i = 0; i < api.sent.length; i += 1) {
      expect(api.sent.filter((t) => t >= api.sent[i]! && t < api.sent[i]! + 1000).length).toBeLessThanOrEqual(5);
    }
  });

  it('never polls a batch more often than its backoff allows', async () => {
    const batch = testBatch({ applyId: '77' });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script(batch.applyId, ['CHECK']);
    await r.watcher.start();
    await runFor(r, 120_000, 100);
    const times = r.api.calls.filter((c) => c.applyId === '77').map((c) => c.at);
    expect(times.length).toBeGreaterThan(10);
    for (let i = 1; i < times.length; i += 1) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
    expect(Math.max(...times.slice(1).map((t, i) => t - times[i]!))).toBeLessThanOrEqual(8000);
  });

  it('times out, and warns stalled once', async () => {
    const batch = testBatch({
      applyId: '55',
      polling: { initialDelayMs: 1000, maxDelayMs: 4000, multiplier: 2, stalledAfterMs: 10_000, timeoutMs: 30_000, awaitingRegistrationDelayMs: 5000 },
    });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script(batch.applyId, ['CHECK']);
    await r.watcher.start();
    await runFor(r, 40_000, 100);
    expect(r.watcher.record(batch.key)?.outcome).toBe('timed_out');
    expect(r.publisher.events.filter((e) => e.type === 'batch.stalled')).toHaveLength(1);
    const settled = r.publisher.events.find((e) => e.type === 'batch.settled')!;
    expect(settled.outcome).toBe('timed_out');
    expect(settled.at).toBe(new Date(T0 + 30_000).toISOString());
  });

  it('rejects a batch on a batch-fatal error, keeps it parked, and re-arms it when its entry changes', async () => {
    const batch = testBatch({ applyId: '404' });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script(batch.applyId, [
      new DaemonError('not found', { kind: 'not-found', scope: 'batch', code: 'iot.device.DeviceApplyIsNotFound' }),
      'CREATE_SUCCESS',
    ]);
    await r.watcher.start();
    await runFor(r, 5000);
    expect(r.watcher.record(batch.key)?.state).toBe('parked');
    expect(r.watcher.record(batch.key)?.outcome).toBe('rejected');
    await runFor(r, 30_000);
    expect(r.api.calls.filter((c) => c.action === 'status')).toHaveLength(1);
    // Same entry: stays parked. Changed entry: re-armed.
    await r.watcher.reload(testConfig({ batches: [batch] }));
    await runFor(r, 5000);
    expect(r.watcher.record(batch.key)?.state).toBe('parked');
    await r.watcher.reload(testConfig({ batches: [{ ...batch, entryHash: 'h2' }] }));
    await runFor(r, 5000);
    expect(r.watcher.record(batch.key)?.outcome).toBe('created');
    expect(r.publisher.events.filter((e) => e.type === 'batch.settled')).toHaveLength(2);
  });

  it('cancels a batch removed from the configuration, with a result and a settled event', async () => {
    const a = testBatch({ applyId: '1' });
    const b = testBatch({ applyId: '2' });
    const r = rig(testConfig({ batches: [a, b] }));
    r.api.script('1', ['CHECK']);
    r.api.script('2', ['CHECK']);
    await r.watcher.start();
    await runFor(r, 3000);
    await r.watcher.reload(testConfig({ batches: [a] }));
    await runFor(r, 3000);
    expect(r.watcher.record(b.key)?.outcome).toBe('cancelled');
    expect(r.results.files.get(`/results/${b.productKey}/2.json`)?.outcome).toBe('cancelled');
    expect(r.publisher.events.filter((e) => e.type === 'batch.cancelled' && e.applyId === '2')).toHaveLength(1);
    expect(r.watcher.record(a.key)?.state).toBe('pending');
  });

  it('re-arms a cancelled batch that comes back, and a timed-out batch whose entry changed', async () => {
    const a = testBatch({ applyId: '21' });
    const t = testBatch({
      applyId: '22',
      polling: { initialDelayMs: 1000, maxDelayMs: 2000, multiplier: 2, stalledAfterMs: 60_000, timeoutMs: 3000, awaitingRegistrationDelayMs: 5000 },
    });
    const r = rig(testConfig({ batches: [a, t] }));
    r.api.script('21', ['CHECK']);
    r.api.script('22', ['CHECK']);
    await r.watcher.start();
    await runFor(r, 4000);
    expect(r.watcher.record(t.key)?.outcome).toBe('timed_out');
    await r.watcher.reload(testConfig({ batches: [t] }));
    await runFor(r, 1000);
    expect(r.watcher.record(a.key)?.outcome).toBe('cancelled');
    // Same entry for the timed-out batch: stays settled. The cancelled one is back: watched again.
    await r.watcher.reload(testConfig({ batches: [a, t] }));
    await runFor(r, 1000);
    expect(r.watcher.record(a.key)?.state).toBe('pending');
    expect(r.watcher.record(t.key)?.outcome).toBe('timed_out');
    r.api.script('22', ['CREATE_SUCCESS']);
    await r.watcher.reload(testConfig({ batches: [a, { ...t, entryHash: 'longer-timeout', polling: { ...t.polling, timeoutMs: 600_000 } }] }));
    await runFor(r, 2000);
    expect(r.watcher.record(t.key)?.outcome).toBe('created');
    expect(r.publisher.events.filter((e) => e.type === 'batch.added').map((e) => e.applyId)).toEqual(['21', '22', '21', '22']);
  });

  it('keeps a settled batch whose device fetch fails, records the reason, and retries until it succeeds', async () => {
    const batch = testBatch({ applyId: '31' });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script('31', ['CREATE_SUCCESS']);
    r.api.devices.set('31', [{ deviceName: 'd', iotId: 'i', deviceSecret: 's' }]);
    let failures = 2;
    const real = r.api.listAllDevicesByApplyId.bind(r.api);
    r.api.listAllDevicesByApplyId = async (req) => {
      if (failures > 0) {
        failures -= 1;
        throw new DaemonError('page mismatch', { kind: 'transient', scope: 'attempt', code: 'Devices.CountMismatch' });
      }
      return real(req);
    };
    await r.watcher.start();
    await r.clock.advance(10);
    expect(r.watcher.record(batch.key)).toMatchObject({ state: 'fetching', outcome: 'created', fetchAttempts: 1 });
    expect(r.watcher.record(batch.key)?.lastError?.code).toBe('Devices.CountMismatch');
    expect(r.watcher.list()[0]?.lastError).toContain('Devices.CountMismatch');
    await runFor(r, 30_000);
    expect(r.watcher.record(batch.key)).toMatchObject({ state: 'settled', outcome: 'created', deviceCount: 1, lastError: null });
    expect(r.publisher.events.filter((e) => e.type === 'batch.settled')).toHaveLength(1);
  });

  it('retries the device fetch of a batch removed from the file with the default polling policy, not the first batch\'s', async () => {
    // The first batch of the file has a very slow policy; the removed batch must not inherit it.
    const slow = testBatch({ applyId: '40', polling: { ...testBatch().polling, initialDelayMs: 600_000, maxDelayMs: 600_000 } });
    const removed = testBatch({ applyId: '41' });
    const r = rig(testConfig({ batches: [slow, removed] }));
    r.api.script('40', ['CHECK']);
    r.api.script('41', ['CREATE_SUCCESS']);
    let fetches = 0;
    r.api.listAllDevicesByApplyId = async (req) => {
      r.api.calls.push({ action: 'devices', applyId: req.applyId, at: r.clock.now() });
      fetches += 1;
      // A bound, so that a retry loop that does not back off ends instead of spinning forever.
      if (fetches > 50) return { total: 0, devices: [] };
      throw new DaemonError('page mismatch', { kind: 'transient', scope: 'attempt', code: 'Devices.CountMismatch' });
    };
    await r.watcher.start();
    await runFor(r, 500, 50);
    expect(r.watcher.record(removed.key)).toMatchObject({ state: 'fetching', fetchAttempts: 1 });
    const reloadedAt = r.clock.now();
    await r.watcher.reload(testConfig({ batches: [slow] }));
    await runFor(r, 20_000, 100);
    const times = r.api.calls.filter((c) => c.action === 'devices' && c.applyId === '41' && c.at >= reloadedAt).map((c) => c.at);
    // config.polling (1 s doubling to 8 s) gives several retries in 20 s, each after its backoff; the first batch's
    // 10-minute policy would give one.
    expect(times.length).toBeGreaterThanOrEqual(3);
    expect(times.length).toBeLessThan(20);
    for (let i = 1; i < times.length; i += 1) {
      expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
      expect(times[i]! - times[i - 1]!).toBeLessThanOrEqual(8000);
    }
    expect(r.watcher.record(removed.key)?.state).toBe('fetching');
  });

  it('parks a batch whose device fetch is refused for it (RAM), keeping status and history, and re-arms it when its entry changes', async () => {
    const batch = testBatch({ applyId: '45' });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script('45', ['CREATE', 'CREATE_SUCCESS']);
    r.api.devices.set('45', [{ deviceName: 'd', iotId: 'i', deviceSecret: 's' }]);
    let refuse = true;
    const real = r.api.listAllDevicesByApplyId.bind(r.api);
    r.api.listAllDevicesByApplyId = async (req) => {
      if (refuse) {
        r.api.calls.push({ action: 'devices', applyId: req.applyId, at: r.clock.now() });
        throw new DaemonError('no permission', { kind: 'auth', scope: 'batch', code: 'Forbidden.RAM' });
      }
      return real(req);
    };
    await r.watcher.start();
    await runFor(r, 30_000);
    const rec = r.watcher.record(batch.key)!;
    expect(rec).toMatchObject({ state: 'parked', outcome: 'rejected', status: 'CREATE_SUCCESS' });
    expect(rec.reason).toContain('Forbidden.RAM');
    expect(rec.history.map((h) => h.status)).toEqual(['CREATE', 'CREATE_SUCCESS']);
    // Parked: not retried forever.
    expect(r.api.calls.filter((c) => c.action === 'devices')).toHaveLength(1);
    expect(r.results.files.get(`/results/${batch.productKey}/45.json`)?.outcome).toBe('rejected');
    expect(r.publisher.events.filter((e) => e.type === 'batch.rejected')).toHaveLength(1);
    expect(r.publisher.events.filter((e) => e.type === 'batch.settled').map((e) => e.outcome)).toEqual(['rejected']);
    // The same entry keeps it parked; a changed entry (the operator granted the permission) re-arms it.
    await r.watcher.reload(testConfig({ batches: [batch] }));
    await runFor(r, 5000);
    expect(r.watcher.record(batch.key)?.state).toBe('parked');
    refuse = false;
    await r.watcher.reload(testConfig({ batches: [{ ...batch, entryHash: 'h2' }] }));
    await runFor(r, 5000);
    expect(r.watcher.record(batch.key)).toMatchObject({ state: 'settled', outcome: 'created', deviceCount: 1 });
    expect(r.results.files.get(`/results/${batch.productKey}/45.json`)?.outcome).toBe('created');
  });

  it('withdraws the stale result of a cancelled batch that comes back, until its new outcome is written', async () => {
    const a = testBatch({ applyId: '46' });
    const r = rig(testConfig({ batches: [a] }));
    r.api.script('46', ['CHECK']);
    await r.watcher.start();
    await runFor(r, 2000);
    await r.watcher.reload(testConfig({ batches: [] }));
    await runFor(r, 1000);
    const file = `/results/${a.productKey}/46.json`;
    expect(r.results.files.get(file)?.outcome).toBe('cancelled');
    await r.watcher.reload(testConfig({ batches: [a] }));
    expect(r.results.files.has(file)).toBe(false);
    expect(r.watcher.record(a.key)?.state).toBe('pending');
    r.api.script('46', ['CHECK_FAILED']);
    await runFor(r, 10_000);
    expect(r.results.files.get(file)?.outcome).toBe('check_failed');
  });

  it('keeps the image equal to the journal when a write fails (no edit behind the ledger\'s back)', async () => {
    const batch = testBatch({ applyId: '47' });
    const r = rig(testConfig({ batches: [batch] }));
    // Every poll after the first sees a new status: each is a transition that must be recorded before it counts.
    r.api.script('47', ['CHECK', 'CREATE']);
    await r.watcher.start();
    await r.clock.advance(10);
    const durable = structuredClone(r.watcher.record(batch.key));
    r.store.failWith = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    await runFor(r, 5000);
    expect(r.api.calls.filter((c) => c.action === 'status').length).toBeGreaterThan(1);
    expect(r.watcher.record(batch.key)).toEqual(durable);
    expect((await r.store.load()).batches.get(batch.key)).toEqual(durable);
    r.store.failWith = null;
    await runFor(r, 5000);
    expect(r.watcher.record(batch.key)!.polls).toBeGreaterThan(durable!.polls);
  });

  it('marks a registration refused for the batch as failed, and parks the batch', async () => {
    const batch = testBatch({ applyId: '48', register: true });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script('48', ['CHECK_SUCCESS']);
    r.api.registerResult = () => new DaemonError('mismatch', { kind: 'invalid-request', scope: 'batch', code: 'iot.device.IncorrentDeviceApplyInfo' });
    await r.watcher.start();
    await runFor(r, 2000);
    const rec = r.watcher.record(batch.key)!;
    expect(rec).toMatchObject({ state: 'parked', outcome: 'rejected' });
    expect(rec.registration).toMatchObject({ state: 'failed', error: 'iot.device.IncorrentDeviceApplyInfo' });
    expect(r.api.registrations.get('48')).toBe(1);
  });

  it('records quiet polls in groups: far fewer appends than polls, and a kill -9 loses at most one group per batch', async () => {
    const batches = Array.from({ length: 20 }, (_, i) => testBatch({ applyId: String(900 + i) }));
    const config = testConfig({ batches, rateLimit: { statusQps: 20, pageQps: 5, concurrency: 8 } });
    const r = rig(config);
    for (const b of batches) r.api.script(b.applyId, ['CHECK']);
    await r.watcher.start();
    const appendsAtStart = r.store.appends;
    await runFor(r, 60_000, 50);
    const polls = r.api.calls.filter((c) => c.action === 'status');
    const appends = r.store.appends - appendsAtStart;
    // Each batch polls every 1–8 s; the first poll of each is a status change (recorded at once), the rest are quiet.
    expect(polls.length).toBeGreaterThan(200);
    expect(appends).toBeLessThanOrEqual(20 + 61);
    expect(appends * 3).toBeLessThan(polls.length);
    // "kill -9": nothing is flushed; a new store over the same durable records sees each batch at most one
    // deferred group (1 s) behind what the API saw.
    const durable = await r.store.load();
    const crashAt = r.clock.now();
    for (const b of batches) {
      const seen = polls.filter((c) => c.applyId === b.applyId);
      const recorded = durable.batches.get(b.key)!.polls;
      const lastSecond = seen.filter((c) => c.at > crashAt - 1000 - 50).length;
      expect(recorded, b.applyId).toBeLessThanOrEqual(seen.length);
      expect(seen.length - recorded, b.applyId).toBeLessThanOrEqual(lastSecond);
    }
  });

  it('stops on a process-fatal error', async () => {
    const batch = testBatch({ applyId: '3' });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.script('3', [new DaemonError('bad key', { kind: 'auth', scope: 'process', code: 'InvalidAccessKeyId.NotFound' })]);
    await r.watcher.start();
    await runFor(r, 1000);
    const res = await r.watcher.done();
    expect(res.reason).toBe('fatal');
    expect(res.error?.code).toBe('InvalidAccessKeyId.NotFound');
  });

  it('resumes after a crash without registering twice', async () => {
    const batch = testBatch({ applyId: '500', register: true });
    const config = testConfig({ batches: [batch] });
    const first = rig(config);
    first.api.script('500', ['CHECK', 'CHECK_SUCCESS', 'CREATE', 'CREATE', 'CREATE', 'CREATE_SUCCESS']);
    await first.watcher.start();
    await runFor(first, 4000);
    expect(first.api.registrations.get('500')).toBe(1);
    // "crash": abandon the first watcher without stop(); a new one loads the same durable records.
    await first.watcher.stop();
    const before = first.store.records.length;
    const second = rig(config, { clock: first.clock, api: first.api, store: first.store });
    await second.watcher.start();
    await runFor(second, 60_000);
    expect(second.watcher.record(batch.key)?.outcome).toBe('created');
    expect(first.api.registrations.get('500')).toBe(1);
    expect(first.store.records.length).toBeGreaterThan(before);
    expect(second.publisher.events.filter((e) => e.type === 'batch.added')).toHaveLength(0);
  });

  it('with a registration intent on record but no answer, re-calls only if the status is still CHECK_SUCCESS', async () => {
    const batch = testBatch({ applyId: '600', register: true });
    const config = testConfig({ batches: [batch] });
    const store = new MemoryStore();
    const first = rig(config, { store });
    first.api.script('600', ['CHECK_SUCCESS']);
    // The call "hangs": fail with a transient error, leaving the intent on record.
    first.api.registerResult = () => new DaemonError('timeout', { kind: 'transient', scope: 'attempt', code: 'Transport.Timeout' });
    await first.watcher.start();
    await first.clock.advance(10);
    await first.watcher.stop();
    expect(first.watcher.record(batch.key)?.registration?.state).toBe('intent');
    const calls = first.api.registrations.get('600');
    expect(calls).toBe(1);
    // Restart where the first call actually landed: the status moved on, no second call.
    const second = rig(config, { store, clock: first.clock });
    second.api.script('600', ['CREATE', 'CREATE_SUCCESS']);
    await second.watcher.start();
    await runFor(second, 30_000);
    expect(second.api.registrations.get('600') ?? 0).toBe(0);
    expect(second.watcher.record(batch.key)?.outcome).toBe('created');
  });

  it('spreads overdue polls over a window on restart instead of bursting', async () => {
    const batches = Array.from({ length: 20 }, (_, i) => testBatch({ applyId: String(700 + i) }));
    const config = testConfig({ batches, rateLimit: { statusQps: 10, pageQps: 5, concurrency: 8 } });
    const store = new MemoryStore();
    const first = rig(config, { store });
    for (const b of batches) first.api.script(b.applyId, ['CHECK']);
    await first.watcher.start();
    await runFor(first, 5000);
    await first.watcher.stop();
    await first.clock.advance(300_000); // down for 5 minutes: everything is overdue
    const second = rig(config, { store, clock: first.clock });
    for (const b of batches) second.api.script(b.applyId, ['CHECK']);
    await second.watcher.start();
    const starts = second.clock.now();
    await runFor(second, 3000, 50);
    const first_ = new Map<string, number>();
    for (const c of second.api.calls) if (!first_.has(c.applyId)) first_.set(c.applyId, c.at - starts);
    const times = [...first_.values()];
    expect(times.length).toBe(20);
    expect(Math.max(...times)).toBeLessThan(3000);
    expect(Math.max(...times)).toBeGreaterThan(1000);
  });

  it('does not act on a transition the ledger could not record, and recovers', async () => {
    const batch = testBatch({ applyId: '800', register: true });
    const r = rig(testConfig({ batches: [batch] }));
    r.api.scripts.set('800', (n) => ({
      status: n === 0 ? 'CHECK' : r.api.registrations.has('800') ? 'CREATE_SUCCESS' : 'CHECK_SUCCESS',
      validNames: [],
      invalidNames: [],
      invalidDetails: [],
      requestId: null,
    }));
    await r.watcher.start();
    await r.clock.advance(10);
    expect(r.api.calls).toHaveLength(1);
    r.store.failWith = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    await runFor(r, 5000);
    expect(r.api.registrations.get('800') ?? 0).toBe(0);
    expect(r.watcher.storeHealthy).toBe(false);
    r.store.failWith = null;
    await runFor(r, 30_000);
    expect(r.watcher.storeHealthy).toBe(true);
    expect(r.api.registrations.get('800')).toBe(1);
    expect(r.watcher.record(batch.key)?.outcome).toBe('created');
  });

  it('reconciles a large file in slices with a yield between them: every batch added, the removed ones cancelled', async () => {
    const clock = createManualClock(T0);
    const config = testConfig({ batches: Array.from({ length: 12_000 }, (_, i) => testBatch({ applyId: String(100_000 + i) })) });
    const store = new MemoryStore();
    const publisher = new CapturePublisher();
    const state = new StateStore({ ledger: store, log: silentLog, now: () => clock.now(), clock });
    state.publishTo(publisher);
    let yields = 0;
    const api = new ScriptedApi(() => clock.now());
    const watcher = new Watcher({
      config,
      store: state,
      budget: new ApiBudget({ rates: config.rateLimit, clock, tuning: (qps) => ({ ratePerSec: qps }) }),
      statusApi: api,
      api,
      results: new MemoryResults(),
      clock,
      random: createSeededRandom(1),
      log: silentLog,
      shutdownGraceMs: 100,
      yieldToLoop: () => {
        yields += 1;
        return Promise.resolve();
      },
    });
    running.push(watcher);
    await watcher.start();
    expect(watcher.counts().pending).toBe(12_000);
    expect(publisher.events.filter((e) => e.type === 'batch.added')).toHaveLength(12_000);
    // 12,000 batches in slices of 2,000: map 5, plan 5, schedule 0 (nothing to resume), removals 6.
    expect(yields).toBe(16);
    yields = 0;
    const kept = config.batches.slice(0, 6000);
    const stats = await watcher.reload(testConfig({ batches: [...kept, testBatch({ applyId: '999999' })] }));
    expect(stats).toEqual({ added: 1, cancelled: 6000, rearmed: 0 });
    expect(yields).toBeGreaterThanOrEqual(3);
    const counts = watcher.counts();
    // Cancelled ones settle (result, batch.settled) when their task runs.
    expect([counts.pending, (counts.fetching ?? 0) + (counts.settled ?? 0)]).toEqual([6001, 6000]);
  });

  it('stops reconciling a large file when stopped during start: start() rejects with AbortedError', async () => {
    const clock = createManualClock(T0);
    const config = testConfig({ batches: Array.from({ length: 12_000 }, (_, i) => testBatch({ applyId: String(200_000 + i) })) });
    const store = new MemoryStore();
    const state = new StateStore({ ledger: store, log: silentLog, now: () => clock.now(), clock });
    state.publishTo(new CapturePublisher());
    const api = new ScriptedApi(() => clock.now());
    let yields = 0;
    const watcher: Watcher = new Watcher({
      config,
      store: state,
      budget: new ApiBudget({ rates: config.rateLimit, clock, tuning: (qps) => ({ ratePerSec: qps }) }),
      statusApi: api,
      api,
      results: new MemoryResults(),
      clock,
      random: createSeededRandom(1),
      log: silentLog,
      shutdownGraceMs: 100,
      yieldToLoop: () => {
        yields += 1;
        // SIGTERM arrives while the first slices are being reconciled (the map pass yields 5 times, then the
        // planning pass once after each slice it recorded).
        if (yields === 6) void watcher.stop().catch(() => undefined);
        return Promise.resolve();
      },
    });
    await expect(watcher.start()).rejects.toMatchObject({ name: 'AbortedError' });
    // The first slice (2,000 batches) was recorded; the rest waits for the next start.
    expect(watcher.counts().pending).toBe(2000);
  });
});

