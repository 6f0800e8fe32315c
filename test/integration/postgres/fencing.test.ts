/**
 * Ownership and fencing (DESIGN.md §12): two ledgers on one schema and account. The server's clock decides
 * expiry, so the lapse below is real time (a 400 ms lease), polled with a bound instead of a fixed sleep.
 */
import { afterEach, describe, expect, it } from 'vitest';

import type { Clock } from '../../../src/core/clock.js';
import type { PostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, makeBatch } from '../../unit/ledger/helpers.js';

const opened: PostgresLedger[] = [];
const schemas: string[] = [];

afterEach(async () => {
  for (const l of opened.splice(0)) await l.close();
  for (const s of schemas.splice(0)) await dropSchema(s);
});

async function open(schema: string, options: Partial<Parameters<typeof openPostgresLedger>[0]> = {}): Promise<PostgresLedger> {
  const ledger = await openPostgresLedger({
    connectionString: testDatabaseUrl(),
    schema,
    leaseMs: 400,
    renewEveryMs: 0,
    groupCommitMs: 0,
    ...options,
  });
  opened.push(ledger);
  return ledger;
}

function freshSchema(): string {
  const s = uniqueSchema('ibw_fence');
  schemas.push(s);
  return s;
}

/** Retries `fn` until it returns true or `timeoutMs` passes. */
async function eventually(fn: () => Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await fn()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('account lease and fenced writes', () => {
  it('a standby cannot append while the owner holds the lease; after the lapse it takes over and the old owner is refused', async () => {
    const schema = freshSchema();
    const first = await open(schema, { owner: 'replica-1' });
    const second = await open(schema, { owner: 'replica-2', acquire: false });
    expect(first.lease.epoch).toBe(1);
    expect(second.lease.epoch).toBeNull();

    await first.append([batchRec(makeBatch(1))]);
    await expect(second.append([batchRec(makeBatch(2))])).rejects.toMatchObject({ kind: 'store', code: 'LeaseNotHeld' });
    expect(await second.acquireLease()).toBe(false);

    // The first stops renewing (renewEveryMs 0): once the lease lapses on the server, the second acquires it.
    await eventually(() => second.acquireLease());
    expect(second.lease.epoch).toBe(2);
    const [row] = await sql<{ owner: string; epoch: string }>(`SELECT owner, epoch FROM "${schema}".leases WHERE account = 'default'`);
    expect(row).toEqual({ owner: 'replica-2', epoch: '2' });

    // The first still believes it holds epoch 1: its late writes reach the database and are refused there.
    expect(first.lease.epoch).toBe(1);
    await expect(first.append([batchRec(makeBatch(3))])).rejects.toMatchObject({ kind: 'store', code: 'LeaseLost' });
    expect(first.lease.epoch).toBeNull();
    const journal = await sql<{ key: string }>(`SELECT rec->'rec'->>'key' AS key FROM "${schema}".journal ORDER BY seq`);
    expect(journal.map((r) => r.key)).toEqual([makeBatch(1).key]);

    // The new owner sees what the old one wrote under its lease, and continues the seq.
    await second.append([batchRec(makeBatch(4))]);
    expect([...(await second.load()).batches.keys()]).toEqual([makeBatch(1).key, makeBatch(4).key]);
    const seqs = await sql<{ seq: string }>(`SELECT seq FROM "${schema}".journal ORDER BY seq`);
    expect(seqs.map((r) => Number(r.seq))).toEqual([1, 2]);
  });

  it('a late compaction of the old owner is refused too, and leaves the state alone', async () => {
    const schema = freshSchema();
    const first = await open(schema, { owner: 'replica-1' });
    await first.append([batchRec(makeBatch(1)), batchRec(makeBatch(2))]);
    const stale = await first.load();
    const second = await open(schema, { owner: 'replica-2', acquire: false });
    await eventually(() => second.acquireLease());
    await second.append([{ t: 'forget', key: makeBatch(1).key }]);

    stale.batches.set(makeBatch(9).key, makeBatch(9));
    await expect(first.compact(stale)).rejects.toMatchObject({ code: 'LeaseLost' });
    expect(await sql(`SELECT * FROM "${schema}".snapshots`)).toEqual([]);
    expect([...(await second.load()).batches.keys()]).toEqual([makeBatch(2).key]);
  });

  it('open refuses while another live owner holds the lease, naming it; close releases at once', async () => {
    const schema = freshSchema();
    const first = await open(schema, { owner: 'replica-1', leaseMs: 60_000 });
    await expect(open(schema, { owner: 'replica-2', leaseMs: 60_000 })).rejects.toMatchObject({
      kind: 'store',
      code: 'LedgerLocked',
      message: expect.stringContaining('replica-1'),
    });
    await first.close();
    const second = await open(schema, { owner: 'replica-2', leaseMs: 60_000 });
    expect(second.lease.epoch).toBe(2);
  });

  it('renewal keeps the lease past its duration; a renewing owner is never taken over', async () => {
    const schema = freshSchema();
    // Lease 1 s renewed every 100 ms: tolerates a 900 ms stall of this busy machine's event loop.
    const first = await open(schema, { owner: 'replica-1', leaseMs: 1000, renewEveryMs: 100 });
    const second = await open(schema, { owner: 'replica-2', acquire: false });
    const [{ started }] = (await sql<{ started: Date }>('SELECT clock_timestamp() AS started')) as [{ started: Date }];
    // Keep trying for two lease durations (server clock): every attempt must fail.
    await eventually(async () => {
      expect(await second.acquireLease()).toBe(false);
      const [{ now }] = (await sql<{ now: Date }>('SELECT clock_timestamp() AS now')) as [{ now: Date }];
      return now.getTime() - started.getTime() > 2000;
    });
    await first.append([batchRec(makeBatch(1))]);
    expect(first.lease.epoch).toBe(1);
  });

  it('trusts the lease locally only for a window shorter than the lease, measured from when the renewal was sent', async () => {
    let now = 1_000_000;
    const clock: Clock = { now: () => now, sleep: () => Promise.resolve() };
    const schema = freshSchema();
    const ledger = await open(schema, { leaseMs: 30_000, clock });
    expect(ledger.lease.trustMs).toBe(20_000);
    expect(ledger.leaseTrusted()).toBe(true);
    now += 19_999;
    expect(ledger.leaseTrusted()).toBe(true);
    now += 1;
    expect(ledger.leaseTrusted()).toBe(false);
    expect(await ledger.lease.renew()).toBe(true);
    expect(ledger.leaseTrusted()).toBe(true);
    expect(ledger.lease.trustRemainingMs()).toBe(20_000);
    await ledger.close();
    expect(ledger.leaseTrusted()).toBe(false);
  });

  it('rejects a trust window that is not shorter than the lease', async () => {
    await expect(open(freshSchema(), { leaseMs: 1000, trustMs: 1000 })).rejects.toThrow(/shorter than the lease/);
  });
});
