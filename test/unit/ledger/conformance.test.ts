/**
 * One contract, two implementations: every LedgerStore the daemon can run on passes the same suite.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { LedgerStore } from '../../../src/core/ports.js';
import { DaemonError } from '../../../src/errors.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { createMemoryLedger, createMemoryLedgerBacking } from '../../../src/ledger/memory-ledger.js';
import type { MemoryLedgerBacking } from '../../../src/ledger/memory-ledger.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { dropSchema, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, eventRec, makeBatch, plain, tempDir } from './helpers.js';

interface Harness {
  /** Opens the ledger over the same durable storage (a first start or a restart). */
  open(): Promise<LedgerStore>;
  cleanup(): Promise<void>;
}

const implementations: { name: string; create: () => Promise<Harness> }[] = [
  {
    name: 'memory',
    create: () => {
      const backing: MemoryLedgerBacking = createMemoryLedgerBacking();
      return Promise.resolve({
        open: () => Promise.resolve(createMemoryLedger({ backing })),
        cleanup: () => Promise.resolve(),
      });
    },
  },
  {
    name: 'file',
    create: async () => {
      const { dir, cleanup } = await tempDir();
      return { open: () => openFileLedger({ dir, groupCommitMs: 1 }), cleanup };
    },
  },
  {
    // The real server from test/setup/postgres.ts; one fresh schema per test.
    name: 'postgres',
    create: () => {
      const schema = uniqueSchema('ibw_conf');
      return Promise.resolve({
        open: () => openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 15_000, groupCommitMs: 1 }),
        cleanup: () => dropSchema(schema),
      });
    },
  },
];

describe.each(implementations)('LedgerStore conformance: $name', ({ create }) => {
  let harness: Harness;
  let open: LedgerStore[];

  beforeEach(async () => {
    harness = await create();
    open = [];
  });
  afterEach(async () => {
    for (const ledger of open) await ledger.close();
    await harness.cleanup();
  });

  async function start(): Promise<LedgerStore> {
    const ledger = await harness.open();
    open.push(ledger);
    return ledger;
  }

  async function restart(ledger: LedgerStore): Promise<LedgerStore> {
    await ledger.close();
    return start();
  }

  it('starts empty', async () => {
    const ledger = await start();
    const state = await ledger.load();
    expect(state.batches.size).toBe(0);
    expect(state.outbox.size).toBe(0);
  });

  it('round-trips appended batches, in this process and after a restart', async () => {
    let ledger = await start();
    await ledger.load();
    const a = makeBatch(1);
    const b = makeBatch(2, { state: 'settled', outcome: 'created', settledAt: 5, deviceCount: 3 });
    await ledger.append([batchRec(a), batchRec(b)]);
    expect(plain(await ledger.load()).batches).toEqual([
      [a.key, a],
      [b.key, b],
    ]);
    ledger = await restart(ledger);
    expect(plain(await ledger.load()).batches).toEqual([
      [a.key, a],
      [b.key, b],
    ]);
  });

  it('a later batch record replaces the earlier one (upsert)', async () => {
    let ledger = await start();
    await ledger.append([batchRec(makeBatch(1, { polls: 1 }))]);
    await ledger.append([batchRec(makeBatch(1, { polls: 2, status: 'CHECK_SUCCESS' }))]);
    ledger = await restart(ledger);
    const state = await ledger.load();
    expect(state.batches.size).toBe(1);
    expect(state.batches.get(makeBatch(1).key)).toMatchObject({ polls: 2, status: 'CHECK_SUCCESS' });
  });

  it('forget deletes a batch', async () => {
    let ledger = await start();
    const a = makeBatch(1);
    const b = makeBatch(2);
    await ledger.append([batchRec(a), batchRec(b)]);
    await ledger.append([{ t: 'forget', key: a.key }]);
    ledger = await restart(ledger);
    expect([...(await ledger.load()).batches.keys()]).toEqual([b.key]);
  });

  it('outbox: event adds, ack records sinks once, done removes, order is emission order', async () => {
    let ledger = await start();
    await ledger.append([eventRec('e1'), eventRec('e2'), eventRec('e3')]);
    await ledger.append([
      { t: 'ack', id: 'e1', sink: 'log' },
      { t: 'ack', id: 'e1', sink: 'webhook' },
      { t: 'ack', id: 'e1', sink: 'log' },
      { t: 'ack', id: 'nope', sink: 'log' },
    ]);
    await ledger.append([{ t: 'done', id: 'e2' }]);
    ledger = await restart(ledger);
    const state = await ledger.load();
    expect([...state.outbox.keys()]).toEqual(['e1', 'e3']);
    expect(state.outbox.get('e1')?.acked).toEqual(['log', 'webhook']);
    expect(state.outbox.get('e3')?.acked).toEqual([]);
    expect(state.outbox.get('e1')?.event).toMatchObject({ id: 'e1', type: 'batch.status_changed' });
  });

  it('compact, then more appends, then load after a restart', async () => {
    let ledger = await start();
    const batches = Array.from({ length: 20 }, (_, i) => makeBatch(i));
    await ledger.append(batches.map(batchRec));
    await ledger.append([eventRec('e1'), { t: 'ack', id: 'e1', sink: 'log' }]);
    const state = await ledger.load();
    await ledger.compact(state);
    await ledger.append([batchRec(makeBatch(3, { polls: 99 })), { t: 'forget', key: batches[4]!.key }]);
    await ledger.append([eventRec('e2'), { t: 'done', id: 'e1' }]);
    ledger = await restart(ledger);
    const loaded = await ledger.load();
    expect(loaded.batches.size).toBe(19);
    expect(loaded.batches.has(batches[4]!.key)).toBe(false);
    expect(loaded.batches.get(batches[3]!.key)?.polls).toBe(99);
    expect([...loaded.outbox.keys()]).toEqual(['e2']);
    // A second compaction over the loaded state, then a restart, keeps it all.
    await ledger.compact(loaded);
    ledger = await restart(ledger);
    expect(plain(await ledger.load())).toEqual(plain(loaded));
  });

  it('compaction snapshots the state it is given, ordered with appends made before and after it', async () => {
    let ledger = await start();
    const state = await ledger.load();
    const a = makeBatch(1);
    const b = makeBatch(2);
    // Not awaited: the appends and the compaction race inside the ledger, but their call order decides.
    const p1 = ledger.append([batchRec(a)]);
    state.batches.set(a.key, a);
    const p2 = ledger.compact(state);
    const p3 = ledger.append([batchRec(b)]);
    state.batches.set(b.key, b); // after compact() returned: must not leak into the snapshot twice or matter
    await Promise.all([p1, p2, p3]);
    ledger = await restart(ledger);
    expect([...(await ledger.load()).batches.keys()]).toEqual([a.key, b.key]);
  });

  it('load after close rejects; a new instance loads the data', async () => {
    const ledger = await start();
    await ledger.append([batchRec(makeBatch(7))]);
    await ledger.close();
    await expect(ledger.load()).rejects.toMatchObject({ code: 'LedgerClosed' });
    await expect(ledger.append([batchRec(makeBatch(8))])).rejects.toBeInstanceOf(DaemonError);
    await expect(ledger.close()).resolves.toBeUndefined();
    const again = await start();
    expect([...(await again.load()).batches.keys()]).toEqual([makeBatch(7).key]);
  });

  it('big numeric-looking applyIds stay strings', async () => {
    let ledger = await start();
    const big = makeBatch('9007199254740993123456789');
    const zero = makeBatch('000123');
    await ledger.append([batchRec(big), batchRec(zero)]);
    ledger = await restart(ledger);
    const loaded = await ledger.load();
    expect(loaded.batches.get(big.key)?.applyId).toBe('9007199254740993123456789');
    expect(loaded.batches.get(zero.key)?.applyId).toBe('000123');
    expect(typeof loaded.batches.get(big.key)?.applyId).toBe('string');
  });

  it('copies records: mutating them after append does not change what was stored', async () => {
    let ledger = await start();
    const a = makeBatch(1);
    const p = ledger.append([batchRec(a)]);
    a.polls = 1234;
    a.history.push({ status: 'X', at: 1 });
    await p;
    ledger = await restart(ledger);
    const loaded = await ledger.load();
    expect(loaded.batches.get(a.key)?.polls).toBe(3);
    expect(loaded.batches.get(a.key)?.history).toHaveLength(1);
  });

  it('many concurrent appends all resolve and apply in call order', async () => {
    let ledger = await start();
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 200; i += 1) writes.push(ledger.append([batchRec(makeBatch(i % 10, { polls: i }))]));
    await Promise.all(writes);
    ledger = await restart(ledger);
    const loaded = await ledger.load();
    expect(loaded.batches.size).toBe(10);
    for (let k = 0; k < 10; k += 1) expect(loaded.batches.get(makeBatch(k).key)?.polls).toBe(190 + k);
  });

  it('rejects malformed records without storing anything', async () => {
    let ledger = await start();
    await expect(ledger.append([{ t: 'nope' } as never])).rejects.toMatchObject({ code: 'LedgerInvalidRecord' });
    await expect(ledger.append([batchRec(makeBatch(1)), { t: 'ack', id: 'x' } as never])).rejects.toMatchObject({
      code: 'LedgerInvalidRecord',
    });
    await expect(ledger.append([batchRec(makeBatch(2, { polls: 10n as unknown as number }))])).rejects.toThrow();
    await ledger.append([]);
    ledger = await restart(ledger);
    expect((await ledger.load()).batches.size).toBe(0);
  });
});
