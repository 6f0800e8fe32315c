/** The job runner against fakes: intent before the call, each name once, count chunks never sent twice. */

import { describe, expect, it } from 'vitest';

import type { Clock } from '../../../src/core/clock.js';
import { TASK_RUNNING_CODE, type ChunkBatchOutcome } from '../../../src/provision/chunk-transitions.js';
import type { DeviceList } from '../../../src/provision/device-list.js';
import { type ChunkSubmitter, type ChunkWatcher, type JobStore, ProvisionRunner, type ProvisionRunnerOptions, type SubmitAnswer } from '../../../src/provision/job-runner.js';
import type { JobSpec, JobState } from '../../../src/provision/job-state.js';

/** A clock whose sleeps pass at once, moving time forward. */
function instantClock(): Clock & { t: number } {
  const c = {
    t: 1_000,
    now: () => c.t,
    sleep: (ms: number) => {
      c.t += ms;
      return Promise.resolve();
    },
  };
  return c;
}

function memoryStore(initial: JobState | null = null): JobStore & { saved: JobState[] } {
  let current = initial;
  const saved: JobState[] = [];
  return {
    saved,
    load: () => Promise.resolve(current === null ? null : structuredClone(current)),
    save: (state) => {
      current = structuredClone(state);
      saved.push(current);
      return Promise.resolve();
    },
  };
}

const list = (names: string[]): DeviceList => ({ devices: names.map((deviceName, i) => ({ deviceName, nickname: null, line: i + 2 })), rejected: [] });
const spec = (over: Partial<JobSpec> = {}): JobSpec => ({
  name: 'line-4',
  productKey: 'a1P',
  account: null,
  source: { kind: 'devices', file: '/f.txt' },
  chunkSize: 2,
  until: 'created',
  labels: {},
  ...over,
});

/** A fake Alibaba: every submission gets an ApplyId; every watched ApplyId creates its names (or count). */
function fakeAlibaba(store: { saved: JobState[] }, answers: SubmitAnswer[] = []) {
  let next = 100;
  const sent: { chunk: number; names: string[]; count: number; stateAtSend: string | undefined }[] = [];
  const byApply = new Map<string, { names: string[]; count: number }>();
  const submitter: ChunkSubmitter = {
    submit: (rec) => {
      const names = rec.names.map((n) => n.deviceName);
      sent.push({ chunk: rec.index, names, count: rec.count, stateAtSend: store.saved.at(-1)?.chunks.find((c) => c.index === rec.index)?.state });
      const scripted = answers.shift();
      if (scripted !== undefined) return Promise.resolve(scripted);
      const applyId = String((next += 1));
      byApply.set(applyId, { names, count: rec.count });
      return Promise.resolve({ ok: true, applyId, refused: [] });
    },
  };
  const watched: { applyId: string; register: boolean }[] = [];
  const watcher: ChunkWatcher = {
    watch: (req): Promise<ChunkBatchOutcome> => {
      watched.push({ applyId: req.applyId, register: req.register });
      const b = byApply.get(req.applyId) ?? { names: [], count: 0 };
      const names = b.names.length > 0 ? b.names : Array.from({ length: b.count }, (_, i) => `rnd-${req.applyId}-${i}`);
      return Promise.resolve({ outcome: 'created', invalid: [], reason: null, devices: names.map((n) => ({ deviceName: n, iotId: `iot-${n}`, deviceSecret: `s-${n}` })) });
    },
  };
  return { submitter, watcher, sent, watched };
}

function runner(o: {
  spec: JobSpec;
  devices: DeviceList | null;
  store: JobStore;
  fake: ReturnType<typeof fakeAlibaba>;
  clock?: Clock;
  onSaveRetry?: ProvisionRunnerOptions['onSaveRetry'];
}) {
  const events: { type: string; fields: Record<string, unknown> }[] = [];
  const outputs: unknown[] = [];
  const acquired: string[] = [];
  const r = new ProvisionRunner({
    spec: o.spec,
    devices: o.devices,
    store: o.store,
    submitter: o.fake.submitter,
    watcher: o.fake.watcher,
    budget: { acquire: (action) => (acquired.push(action), Promise.resolve()) },
    clock: o.clock ?? instantClock(),
    writeOutputs: (report) => (outputs.push(report), Promise.resolve()),
    emit: (type, fields) => events.push({ type, fields }),
    ...(o.onSaveRetry === undefined ? {} : { onSaveRetry: o.onSaveRetry }),
  });
  return { r, events, outputs, acquired };
}

/** A store whose saves fail with `error` while `failing()` says so (after the intent: the answer's save). */
function flakyStore(error: () => Error, failing: (state: JobState) => boolean): JobStore & { saved: JobState[]; refused: number } {
  const inner = memoryStore();
  const store = {
    saved: inner.saved,
    refused: 0,
    load: (name: string) => inner.load(name),
    save: (state: JobState) => {
      if (failing(state)) {
        store.refused += 1;
        return Promise.reject(error());
      }
      return inner.save(state);
    },
  };
  return store;
}

const storeError = (code: string): Error => Object.assign(new Error(`store: ${code}`), { kind: 'store', scope: 'attempt', code });

describe('ProvisionRunner', () => {
  it('retries the save of an answer while the store is down, then goes on with the chunk (a count chunk is not parked)', async () => {
    let down = 3;
    const store = flakyStore(
      () => storeError('DatabaseUnreachable'),
      (state) => state.chunks.some((c) => c.applyId !== null && c.state === 'watching') && down-- > 0,
    );
    const fake = fakeAlibaba(store);
    const retries: { chunk: number; applyId: string | null; delayMs: number }[] = [];
    const { r } = runner({
      spec: spec({ source: { kind: 'count', count: 2 }, chunkSize: 2 }),
      devices: null,
      store,
      fake,
      onSaveRetry: ({ chunk, applyId, delayMs }) => retries.push({ chunk, applyId, delayMs }),
    });
    const report = await r.run();
    expect(store.refused).toBe(3);
    expect(retries).toEqual([
      { chunk: 0, applyId: '101', delayMs: 1000 },
      { chunk: 0, applyId: '101', delayMs: 2000 },
      { chunk: 0, applyId: '101', delayMs: 4000 },
    ]);
    expect(fake.sent).toHaveLength(1);
    expect(report).toMatchObject({ outcome: 'complete', summary: { devices: { created: 2 } } });
    expect(report.chunks.map((c) => [c.state, c.applyId])).toEqual([['created', '101']]);
  });

  it('does not retry a save refused because another process owns the state now', async () => {
    const store = flakyStore(
      () => storeError('LeaseLost'),
      (state) => state.chunks.some((c) => c.applyId !== null),
    );
    const fake = fakeAlibaba(store);
    const retries: unknown[] = [];
    const { r } = runner({ spec: spec({ source: { kind: 'count', count: 2 }, chunkSize: 2 }), devices: null, store, fake, onSaveRetry: (info) => retries.push(info) });
    await expect(r.run()).rejects.toMatchObject({ code: 'LeaseLost' });
    expect(store.refused).toBe(1);
    expect(retries).toEqual([]);
    expect(fake.sent).toHaveLength(1);
  });

  it('submits each chunk once with its intent durable first, watches with register, and reports every device once', async () => {
    const store = memoryStore();
    const fake = fakeAlibaba(store);
    const { r, events, acquired } = runner({ spec: spec(), devices: list(['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee']), store, fake });
    const report = await r.run();
    expect(fake.sent.map((s) => [s.chunk, s.names, s.stateAtSend])).toEqual([
      [0, ['aaaa', 'bbbb'], 'submitting'],
      [1, ['cccc', 'dddd'], 'submitting'],
      [2, ['eeee'], 'submitting'],
    ]);
    expect(acquired).toEqual(['BatchCheckDeviceNames', 'BatchCheckDeviceNames', 'BatchCheckDeviceNames']);
    expect(fake.watched.every((w) => w.register)).toBe(true);
    expect(report).toMatchObject({ outcome: 'complete', settled: true, summary: { devices: { requested: 5, created: 5 } } });
    expect(report.devices.map((d) => d.deviceName)).toEqual(['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee']);
    expect(events.filter((e) => e.type === 'provision.chunk_submitted')).toHaveLength(3);
    expect(events.at(-1)).toMatchObject({ type: 'provision.settled', fields: { job: 'line-4', outcome: 'complete', created: 5 } });
  });

  it('submits only appended names on the next run', async () => {
    const store = memoryStore();
    await runner({ spec: spec(), devices: list(['aaaa', 'bbbb', 'cccc']), store, fake: fakeAlibaba(store) }).r.run();
    const fake = fakeAlibaba(store);
    const report = await runner({ spec: spec(), devices: list(['bbbb', 'cccc', 'ffff']), store, fake }).r.run();
    expect(fake.sent.map((s) => s.names)).toEqual([['ffff']]);
    expect(report.devices.map((d) => d.deviceName)).toEqual(['aaaa', 'bbbb', 'cccc', 'ffff']);
  });

  it('waits out CreateDeviceTaskIsRunning and then submits', async () => {
    const store = memoryStore();
    const busy: SubmitAnswer = { ok: false, failure: { code: TASK_RUNNING_CODE, message: 'busy', notProcessed: false, answered: true, scope: 'batch' } };
    const fake = fakeAlibaba(store, [busy]);
    const clock = instantClock();
    const report = await runner({ spec: spec({ source: { kind: 'count', count: 3 }, chunkSize: 5 }), devices: null, store, fake, clock }).r.run();
    expect(fake.sent).toHaveLength(2);
    expect(clock.t).toBeGreaterThanOrEqual(3_000);
    expect(report).toMatchObject({ outcome: 'complete', summary: { devices: { created: 3 } } });
  });

  it('parks a count chunk whose answer was lost and never sends it again', async () => {
    const store = memoryStore();
    const lost: SubmitAnswer = { ok: false, failure: { code: 'Transport.Timeout', message: 'no answer', notProcessed: false, answered: false, scope: 'attempt' } };
    const fake = fakeAlibaba(store, [lost]);
    const { r, events } = runner({ spec: spec({ source: { kind: 'count', count: 4 }, chunkSize: 2 }), devices: null, store, fake });
    const report = await r.run();
    expect(fake.sent.map((s) => [s.chunk, s.count])).toEqual([
      [0, 2],
      [1, 2],
    ]);
    expect(report.chunks.map((c) => c.state)).toEqual(['submission_unknown', 'created']);
    expect(report).toMatchObject({ settled: true, outcome: 'incomplete' });
    expect(events.map((e) => e.type)).toContain('provision.chunk_parked');
    // A second run does not send it either.
    const again = fakeAlibaba(store);
    await runner({ spec: spec({ source: { kind: 'count', count: 4 }, chunkSize: 2 }), devices: null, store, fake: again }).r.run();
    expect(again.sent).toEqual([]);
  });

  it('after a crash inside the call: a count chunk is parked without a call, a names chunk is checked again', async () => {
    const countStore = memoryStore();
    const first = runner({ spec: spec({ source: { kind: 'count', count: 2 } }), devices: null, store: countStore, fake: fakeAlibaba(countStore) });
    // Simulate the crash: the intent is durable, the process dies before the answer is recorded.
    const crashed = { ...(await planOnly(first.r, countStore)) };
    crashed.chunks = crashed.chunks.map((c) => ({ ...c, state: 'submitting' as const, intentAt: 1 }));
    const afterCount = memoryStore(crashed);
    const fake = fakeAlibaba(afterCount);
    const report = await runner({ spec: spec({ source: { kind: 'count', count: 2 } }), devices: null, store: afterCount, fake }).r.run();
    expect(fake.sent).toEqual([]);
    expect(report.chunks[0]).toMatchObject({ state: 'submission_unknown', reason: expect.stringMatching(/the daemon stopped while the call was in flight/) });

    const namesStore = memoryStore();
    const planned = await planOnly(runner({ spec: spec(), devices: list(['aaaa', 'bbbb']), store: namesStore, fake: fakeAlibaba(namesStore) }).r, namesStore);
    const afterNames = memoryStore({ ...planned, chunks: planned.chunks.map((c) => ({ ...c, state: 'submitting' as const, intentAt: 1 })) });
    const namesFake = fakeAlibaba(afterNames);
    const namesReport = await runner({ spec: spec(), devices: list(['aaaa', 'bbbb']), store: afterNames, fake: namesFake }).r.run();
    expect(namesFake.sent.map((s) => s.names)).toEqual([['aaaa', 'bbbb']]);
    expect(namesReport.outcome).toBe('complete');
  });

  it('a crash before the intent was recorded leaves the chunk planned: the next run submits it once', async () => {
    const store = memoryStore();
    const planned = await planOnly(runner({ spec: spec({ source: { kind: 'count', count: 3 }, chunkSize: 5 }), devices: null, store, fake: fakeAlibaba(store) }).r, store);
    expect(planned.chunks.map((c) => c.state)).toEqual(['planned']);
    const after = memoryStore(planned);
    const fake = fakeAlibaba(after);
    const report = await runner({ spec: spec({ source: { kind: 'count', count: 3 }, chunkSize: 5 }), devices: null, store: after, fake }).r.run();
    expect(fake.sent.map((s) => s.count)).toEqual([3]);
    expect(report.outcome).toBe('complete');
  });
});

/** Runs until the first save (the plan), then returns that state without submitting anything. */
async function planOnly(r: ProvisionRunner, store: { saved: JobState[] }): Promise<JobState> {
  const ac = new AbortController();
  ac.abort(new Error('plan only'));
  await r.run(ac.signal).catch(() => undefined);
  return structuredClone(store.saved[0]!);
}
