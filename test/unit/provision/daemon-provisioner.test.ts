/**
 * The daemon's provisioner in-process, against fakes of the daemon (reload, watcher, results) and of Alibaba: chunk
 * batches in the configuration, a chunk's result handed over before its batch may settle, appended names, a removed
 * entry, durable events with stable ids.
 */

import { describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import type { Clock } from '../../../src/core/clock.js';
import type { BatchResult } from '../../../src/core/ports.js';
import type { WatcherEvent } from '../../../src/events.js';
import { createLogger } from '../../../src/ops/logger.js';
import { DaemonProvisioner, type ListableJobStore } from '../../../src/provision/daemon-provisioner.js';
import type { DeviceList } from '../../../src/provision/device-list.js';
import type { ChunkSubmitter } from '../../../src/provision/job-runner.js';
import type { JobState } from '../../../src/provision/job-state.js';

const PK = 'a1Prov';

function memoryStore(): ListableJobStore & { states: Map<string, JobState>; gate: Promise<void> | null; failNext: Error | null } {
  const states = new Map<string, JobState>();
  const store = {
    states,
    /** While set, a save waits for it (a slow disk). */
    gate: null as Promise<void> | null,
    /** The next save fails with it (the database gone for a moment). */
    failNext: null as Error | null,
    list: () => Promise.resolve([...states.keys()]),
    load: (name: string) => Promise.resolve(states.has(name) ? structuredClone(states.get(name)!) : null),
    save: async (state: JobState) => {
      await store.gate;
      const failure = store.failNext;
      store.failNext = null;
      if (failure !== null) throw failure;
      states.set(state.name, structuredClone(state));
    },
  };
  return store;
}

const clock: Clock = { now: () => 1_000_000, sleep: () => Promise.resolve() };
const list = (names: string[]): DeviceList => ({ devices: names.map((deviceName, i) => ({ deviceName, nickname: null, line: i + 1 })), rejected: [] });
const config = (jobs: { name: string; devices?: string; count?: number; chunkSize?: number }[]): CompiledConfig =>
  compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, provision: jobs.map((j) => ({ productKey: PK, ...j })) }, { cwd: '/' });

const tick = () => new Promise((r) => setImmediate(r));
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i += 1) {
    if (cond()) return;
    await tick();
  }
  throw new Error(`never: ${what}`);
}

function result(applyId: string, names: string[]): BatchResult {
  return {
    applyId,
    productKey: PK,
    name: null,
    labels: {},
    outcome: 'created',
    status: 'CREATE_SUCCESS',
    firstSeenAt: '',
    settledAt: '',
    polls: 1,
    validNames: names,
    invalidNames: [],
    invalidDetails: [],
    devices: names.map((n) => ({ deviceName: n, iotId: `iot-${n}`, deviceSecret: `s-${n}` })),
    deviceCount: names.length,
    history: [],
  };
}

/** A daemon around the provisioner: its reload applies the configuration and "starts watching" the batches. */
function harness(files: Map<string, string[]>) {
  const store = memoryStore();
  const sent: { applyId: string; names: string[] }[] = [];
  const events: WatcherEvent[] = [];
  const written: string[] = [];
  let next = 500;
  const watched = new Set<string>();
  let current = config([]);
  const submitter: ChunkSubmitter = {
    submit: (rec) => {
      const applyId = String((next += 1));
      sent.push({ applyId, names: rec.names.map((n) => n.deviceName) });
      return Promise.resolve({ ok: true, applyId, refused: [] });
    },
  };
  const prov: DaemonProvisioner = new DaemonProvisioner({
    account: 'default',
    store,
    submitter,
    budget: { acquire: () => Promise.resolve() },
    results: {
      write: (r) => {
        written.push(r.applyId);
        return Promise.resolve(`/results/${r.applyId}.json`);
      },
    },
    writeOutputs: () => Promise.resolve(),
    publish: (e) => {
      events.push(e);
      return Promise.resolve();
    },
    readDevices: (file) => Promise.resolve(list(files.get(file) ?? [])),
    reload: async () => {
      const applied = await prov.apply(current);
      for (const b of applied.batches) watched.add(b.key);
    },
    knows: (key) => watched.has(key),
    clock,
    log: createLogger({ level: 'silent' }),
  });
  return {
    prov,
    store,
    sent,
    events,
    written,
    watched,
    setConfig(c: CompiledConfig) {
      current = c;
    },
  };
}

describe('DaemonProvisioner', () => {
  it('submits, watches each chunk as a batch of the daemon, and hands its result over before the write resolves', async () => {
    const files = new Map([['/f.txt', ['aaaa', 'bbbb', 'cccc']]]);
    const h = harness(files);
    const c = config([{ name: 'job', devices: '/f.txt', chunkSize: 2 }]);
    h.setConfig(c);
    await h.prov.prepare(c);
    h.prov.start();
    await until('two chunks watched', () => h.watched.size === 2);
    expect(h.sent.map((s) => s.names)).toEqual([['aaaa', 'bbbb'], ['cccc']]);
    const merged = h.prov.withBatches(c);
    expect(merged.batches.map((b) => [b.key, b.register, b.labels.provisionJob])).toEqual([
      [`${PK}/501`, true, 'job'],
      [`${PK}/502`, true, 'job'],
    ]);
    // Unchanged: the same array (the daemon's reload compares it by identity).
    expect(h.prov.withBatches(c).batches).toBe(merged.batches);

    // The write of chunk 0's result resolves only once the job state holds the chunk created: not while saves hang.
    let open = (): void => undefined;
    h.store.gate = new Promise<void>((r) => (open = r));
    let resolved = false;
    const write = h.prov.results.write(result('501', ['aaaa', 'bbbb'])).then(() => (resolved = true));
    for (let i = 0; i < 50; i += 1) await tick();
    expect(resolved).toBe(false);
    expect(h.store.states.get('job')?.chunks[0]?.state).toBe('watching');
    h.store.gate = null;
    open();
    await until('write resolved', () => resolved);
    expect(h.store.states.get('job')?.chunks[0]).toMatchObject({ state: 'created', devices: [{ deviceName: 'aaaa' }, { deviceName: 'bbbb' }] });
    await write;
    await h.prov.results.write(result('502', ['cccc']));
    await until('settled', () => h.events.some((e) => e.type === 'provision.settled'));
    expect(h.events.map((e) => [e.type, e.id, e.applyId])).toEqual([
      ['provision.chunk_submitted', 'provision:job:submitted:0:501', '501'],
      ['provision.chunk_submitted', 'provision:job:submitted:1:502', '502'],
      ['provision.settled', 'provision:job:settled:2:3:3:0', ''],
    ]);
    expect(h.events.at(-1)).toMatchObject({ job: 'job', jobOutcome: 'complete', created: 3, requested: 3, chunks: 2, status: null });
    expect(h.prov.rows()).toEqual([{ job: 'job', productKey: PK, chunksSettled: 2, chunksTotal: 2, devicesCreated: 3, devicesRequested: 3, parked: 0 }]);
    expect(h.prov.deviceCounts()).toEqual([{ job: 'job', counts: { requested: 3, created: 3, rejected: 0, pending: 0 } }]);

    // Appended names: only they are submitted at the next reload; the job settles again and says so.
    files.set('/f.txt', ['aaaa', 'bbbb', 'cccc', 'dddd']);
    await h.prov.apply(c);
    await until('the new chunk watched', () => h.watched.size === 3);
    expect(h.sent.at(-1)?.names).toEqual(['dddd']);
    await h.prov.results.write(result('503', ['dddd']));
    await until('settled again', () => h.events.filter((e) => e.type === 'provision.settled').length === 2);
    await h.prov.stop();
  });

  it('a result its job cannot take is refused (the batch must not settle); the ended run leaves no watch behind; the job resumes for the next result', async () => {
    const files = new Map([['/f.txt', ['aaaa', 'bbbb', 'cccc', 'dddd']]]);
    const h = harness(files);
    const c = config([{ name: 'job', devices: '/f.txt', chunkSize: 2 }]);
    h.setConfig(c);
    await h.prov.prepare(c);
    h.prov.start();
    await until('two chunks watched', () => h.watched.size === 2);

    // The save of chunk 0's outcome fails: the run ends on that error, and the write is refused, not resolved.
    h.store.failNext = Object.assign(new Error('database gone'), { kind: 'store', scope: 'attempt', code: 'ECONNREFUSED' });
    await expect(h.prov.results.write(result('501', ['aaaa', 'bbbb']))).rejects.toMatchObject({ code: 'ChunkResultNotTaken' });
    expect(h.store.states.get('job')?.chunks.map((c) => c.state)).toEqual(['watching', 'watching']);

    // The next chunk result resumes the job at once (not at the next reload); the refused one, written again, lands.
    await h.prov.results.write(result('502', ['cccc', 'dddd']));
    expect(h.store.states.get('job')?.chunks.map((c) => c.state)).toEqual(['watching', 'created']);
    await h.prov.results.write(result('501', ['aaaa', 'bbbb']));
    await until('settled', () => h.events.some((e) => e.type === 'provision.settled'));
    expect(h.store.states.get('job')?.chunks.map((c) => c.state)).toEqual(['created', 'created']);
    expect(h.sent).toHaveLength(2);
    await h.prov.stop();
  });

  it('a chunk result that arrives while the daemon stops is refused, so its batch is fetched again at the next start', async () => {
    const h = harness(new Map([['/f.txt', ['aaaa']]]));
    const c = config([{ name: 'job', devices: '/f.txt' }]);
    h.setConfig(c);
    await h.prov.prepare(c);
    h.prov.start();
    await until('the chunk watched', () => h.watched.size === 1);
    await h.prov.stop();
    await expect(h.prov.results.write(result('501', ['aaaa']))).rejects.toMatchObject({ code: 'ChunkResultNotTaken' });
    expect(h.store.states.get('job')?.chunks[0]?.state).toBe('watching');
  });

  it('a result that is not awaited by a run passes straight through', async () => {
    const h = harness(new Map());
    await h.prov.prepare(config([]));
    h.prov.start();
    await expect(h.prov.results.write(result('999', ['zzzz']))).resolves.toBe('/results/999.json');
    await h.prov.stop();
  });

  it('a removed entry submits nothing more and keeps watching its submitted chunks; a restart keeps them too', async () => {
    const files = new Map([['/f.txt', ['aaaa', 'bbbb', 'cccc', 'dddd']]]);
    const h = harness(files);
    const c = config([{ name: 'job', devices: '/f.txt', chunkSize: 2 }]);
    h.setConfig(c);
    await h.prov.prepare(c);
    h.prov.start();
    await until('two chunks watched', () => h.watched.size === 2);
    const empty = config([]);
    h.setConfig(empty);
    await h.prov.apply(empty);
    // Still batches of the daemon (a pending batch that left the configuration would be cancelled).
    expect(h.prov.withBatches(empty).batches.map((b) => b.applyId)).toEqual(['501', '502']);
    files.set('/f.txt', ['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee']);
    await h.prov.apply(empty);
    await h.prov.results.write(result('501', ['aaaa', 'bbbb']));
    expect(h.sent).toHaveLength(2);
    await h.prov.stop();

    // After a restart without the entry: its state (with its spec) is found, chunk 502 is still a batch and watched.
    const again = new DaemonProvisioner({
      account: 'default',
      store: h.store,
      submitter: { submit: () => Promise.reject(new Error('must not submit')) },
      budget: { acquire: () => Promise.resolve() },
      results: { write: (r) => Promise.resolve(r.applyId) },
      writeOutputs: () => Promise.resolve(),
      publish: () => Promise.resolve(),
      readDevices: () => Promise.reject(new Error('must not read')),
      reload: () => Promise.resolve(),
      knows: () => true,
      clock,
      log: createLogger({ level: 'silent' }),
    });
    await again.prepare(empty);
    expect(again.withBatches(empty).batches.map((b) => b.applyId)).toEqual(['501', '502']);
    again.start();
    await until('chunk 1 taken over', () => h.store.states.get('job')?.chunks[1]?.state === 'watching');
    await again.results.write(result('502', ['cccc', 'dddd']));
    await until('job settled', () => h.store.states.get('job')?.chunks.every((c) => c.state === 'created') === true);
    expect(h.store.states.get('job')?.chunks.map((ch) => ch.requested)).toEqual([2, 2]);
    await again.stop();
  });
});
