import { describe, expect, it } from 'vitest';

import { createManualClock } from '../../../src/core/clock.js';
import { StateStore } from '../../../src/core/state-store.js';
import { added, createRecord } from '../../../src/core/transitions.js';
import { DaemonError } from '../../../src/errors.js';
import { testBatch } from '../../helpers/config.js';
import { CapturePublisher, MemoryStore, silentLog } from '../../helpers/fakes.js';

const T0 = 1_800_000_000_000;

function storeOver(ledger: MemoryStore, health: [boolean, string][] = []): StateStore {
  return new StateStore({ ledger, log: silentLog, now: () => T0, onHealth: (ok, source) => health.push([ok, source]) });
}

describe('StateStore', () => {
  it('applies a step to the image only once it is durable, and publishes its events after that', async () => {
    const ledger = new MemoryStore();
    const store = storeOver(ledger);
    const publisher = new CapturePublisher();
    store.publishTo(publisher);
    await store.load();
    const rec = createRecord(testBatch({ applyId: '1' }), T0);
    ledger.failWith = new Error('EIO');
    expect(await store.commit([added(rec)])).toBe(false);
    expect(store.record(rec.key)).toBeUndefined();
    expect(publisher.events).toEqual([]);
    expect(store.healthy).toBe(false);
    ledger.failWith = null;
    expect(await store.commit([added(rec)])).toBe(true);
    expect(store.healthy).toBe(true);
    expect(store.record(rec.key)?.eventSeq).toBe(1);
    expect(publisher.events.map((e) => e.type)).toEqual(['batch.added']);
    // The image is what a restart replays.
    const replayed = await ledger.load();
    expect(replayed.batches.get(rec.key)).toEqual(store.record(rec.key));
    expect([...replayed.outbox.keys()]).toEqual([publisher.events[0]!.id]);
  });

  it('keeps one frozen empty labels object and list for every record that has none (memory at 100,000 batches)', async () => {
    const ledger = new MemoryStore();
    const store = storeOver(ledger);
    await store.load();
    const a = createRecord(testBatch({ applyId: '11' }), T0);
    const b = createRecord(testBatch({ applyId: '12', labels: { site: 'sh' } }), T0);
    expect(a.labels).not.toBe(createRecord(testBatch({ applyId: '13' }), T0).labels);
    expect(await store.commit([added(a), added(b)])).toBe(true);
    const ra = store.record(a.key)!;
    const rb = store.record(b.key)!;
    expect(Object.isFrozen(ra.labels)).toBe(true);
    expect(ra.history).toBe(ra.validNames);
    expect(ra.invalidNames).toBe(ra.invalidDetails);
    expect(rb.history).toBe(ra.history);
    expect(rb.labels).toEqual({ site: 'sh' });
    expect(Object.isFrozen(rb.labels)).toBe(false);
    // Records loaded from the ledger share them too.
    const second = storeOver(ledger);
    await second.load();
    expect(second.record(a.key)!.labels).toBe(ra.labels);
    expect(second.record(b.key)!.history).toBe(ra.history);
    expect(second.record(a.key)).toEqual(ra);
  });

  it('hands the undelivered events of the ledger to the publisher at load', async () => {
    const ledger = new MemoryStore();
    const first = storeOver(ledger);
    await first.load();
    await first.commit([added(createRecord(testBatch({ applyId: '2' }), T0))]);
    const publisher = new CapturePublisher();
    const second = storeOver(ledger);
    second.publishTo(publisher);
    expect(publisher.restored).toEqual([]);
    await second.load();
    expect(publisher.restored.map((e) => e.event.type)).toEqual(['batch.added']);
    expect(second.undeliveredKeys()).toEqual(new Set(['a1SimProduct1/2']));
  });

  it('tracks health per source: a failed result write keeps it unhealthy until one succeeds', async () => {
    const health: [boolean, string][] = [];
    const store = storeOver(new MemoryStore(), health);
    await store.load();
    store.reportResultWrite(false, new DaemonError('EACCES', { kind: 'store', scope: 'attempt', code: 'ResultWrite' }));
    await store.commit([added(createRecord(testBatch({ applyId: '3' }), T0))]);
    expect(store.healthy).toBe(false);
    store.reportResultWrite(true);
    expect(store.healthy).toBe(true);
    expect(health).toEqual([
      [false, 'results'],
      [true, 'results'],
    ]);
  });

  it('compacts after compactEvery records and once more at close', async () => {
    const ledger = new MemoryStore();
    const store = new StateStore({ ledger, log: silentLog, now: () => T0, compactEvery: 4 });
    await store.load();
    for (let i = 0; i < 2; i += 1) await store.commit([added(createRecord(testBatch({ applyId: String(10 + i) }), T0))]);
    await Promise.resolve();
    expect(ledger.compactions).toBe(1);
    expect(await store.close()).toBeNull();
    expect(ledger.compactions).toBe(2);
    expect((await ledger.load()).batches.size).toBe(2);
  });

  it('waits for two journal records per batch before compacting a large image (compactEvery is the floor)', async () => {
    const ledger = new MemoryStore();
    const store = new StateStore({ ledger, log: silentLog, now: () => T0, compactEvery: 4 });
    await store.load();
    // 10 batches: a record and a batch.added event each, 20 records, which is the threshold for 10 batches.
    await store.commit(Array.from({ length: 10 }, (_, i) => added(createRecord(testBatch({ applyId: String(100 + i) }), T0))));
    await Promise.resolve();
    expect(ledger.compactions).toBe(1);
    // 12 batches now: 24 records before the next one, not compactEvery's 4.
    for (let i = 0; i < 2; i += 1) await store.commit([added(createRecord(testBatch({ applyId: String(200 + i) }), T0))]);
    await Promise.resolve();
    expect(ledger.compactions).toBe(1);
    for (let i = 0; i < 8; i += 1) await store.commit([added(createRecord(testBatch({ applyId: String(300 + i) }), T0))]);
    await Promise.resolve();
    // 20 records since the first compaction, threshold 2 × 20 batches = 40: still none.
    expect(ledger.compactions).toBe(1);
    // Updates of known batches (one record each, no new batch): the 20th more reaches 40.
    const known = [...store.records()];
    for (let i = 0; i < 19; i += 1) await store.commit([{ rec: { ...known[i]!, polls: 1 }, effects: [] }]);
    await Promise.resolve();
    expect(ledger.compactions).toBe(1);
    await store.commit([{ rec: { ...known[19]!, polls: 1 }, effects: [] }]);
    await Promise.resolve();
    expect(ledger.compactions).toBe(2);
    await store.close();
  });

  it('close() reports a state it could not flush, and never snapshots a store that did not load', async () => {
    const failingCompact = new MemoryStore();
    failingCompact.compact = () => Promise.reject(new Error('EROFS: read-only file system'));
    const a = storeOver(failingCompact);
    await a.load();
    const errA = await a.close();
    expect(errA?.code).toBe('LedgerCompact');
    expect(errA?.message).toContain('EROFS');
    expect(a.healthy).toBe(false);

    const failingClose = new MemoryStore();
    failingClose.close = () => Promise.reject(new Error('EACCES: lock file'));
    const b = storeOver(failingClose);
    await b.load();
    expect((await b.close())?.code).toBe('LedgerClose');

    const never = new MemoryStore();
    await storeOver(never).commit([]);
    never.records.push({ t: 'batch', rec: createRecord(testBatch({ applyId: '9' }), T0) });
    expect(await storeOver(never).close()).toBeNull();
    expect(never.compactions).toBe(0);
    expect(never.records).toHaveLength(1);
  });

  it('defers quiet records into one group per window; a newer durable record is never overwritten by an older group', async () => {
    const clock = createManualClock(T0);
    const ledger = new MemoryStore();
    const store = new StateStore({ ledger, log: silentLog, now: () => clock.now(), clock, deferMs: 1000 });
    await store.load();
    const a = createRecord(testBatch({ applyId: '20' }), T0);
    const b = createRecord(testBatch({ applyId: '21' }), T0);
    await store.commit([added(a), added(b)]);
    const appends = ledger.appends;
    store.defer({ ...a, polls: 1, attempt: 1 });
    store.defer({ ...a, polls: 2, attempt: 2 });
    store.defer({ ...b, polls: 1, attempt: 1 });
    expect(store.record(a.key)?.polls).toBe(2);
    expect(store.list().map((row) => row.polls)).toEqual([2, 1]);
    expect((await ledger.load()).batches.get(a.key)?.polls).toBe(0);
    await clock.advance(1000);
    expect(ledger.appends).toBe(appends + 1);
    expect((await ledger.load()).batches.get(a.key)?.polls).toBe(2);

    // A failed group stays deferred, except for a key committed durably meanwhile.
    store.defer({ ...a, polls: 3 });
    store.defer({ ...b, polls: 2 });
    ledger.failWith = new Error('EIO');
    await clock.advance(1000);
    expect(store.healthy).toBe(false);
    ledger.failWith = null;
    expect(await store.commit([{ rec: { ...b, polls: 7, status: 'CREATE' }, effects: [] }])).toBe(true);
    expect(await store.close()).toBeNull();
    const after = await ledger.load();
    expect(after.batches.get(a.key)?.polls).toBe(3);
    expect(after.batches.get(b.key)).toMatchObject({ polls: 7, status: 'CREATE' });
    expect(clock.pendingSleeps()).toBe(0);
  });
});
