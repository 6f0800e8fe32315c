/**
 * Changes of ownership as one replica sees them (DESIGN.md §12), and the database going away for that replica:
 * it connects through a proxy the test cuts (a partition), the other replica connects directly. Renewals fail,
 * the local trust lapses (no API calls), one line when it goes and one when it comes back, and recovery without
 * reopening: renewed when nobody took the account meanwhile, otherwise `lost` (onLeaseLost) and a standby that
 * can acquire again later. Expiry is the server's clock, so the waits are real time, bounded.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import type { DaemonError } from '../../../src/errors.js';
import type { LeaseChange } from '../../../src/ledger/postgres-lease.js';
import type { PostgresLedger, PostgresLedgerOptions } from '../../../src/ledger/postgres-ledger.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { createMetrics } from '../../../src/ops/metrics.js';
import { dropSchema, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { type PostgresProxy, startPostgresProxy } from '../../helpers/postgres-proxy.js';
import { batchRec, captureLogger, makeBatch } from '../../unit/ledger/helpers.js';

const opened: PostgresLedger[] = [];
const schemas: string[] = [];
let proxy: PostgresProxy;

beforeAll(async () => {
  proxy = await startPostgresProxy(testDatabaseUrl());
});
afterAll(async () => {
  await proxy.close();
});
afterEach(async () => {
  proxy.restore();
  for (const l of opened.splice(0)) await l.close();
  for (const s of schemas.splice(0)) await dropSchema(s);
});

async function open(schema: string, options: Partial<PostgresLedgerOptions> = {}): Promise<PostgresLedger> {
  const ledger = await openPostgresLedger({
    connectionString: testDatabaseUrl(),
    schema,
    leaseMs: 900,
    renewEveryMs: 150,
    groupCommitMs: 0,
    connectTimeoutMs: 1000,
    ...options,
  });
  opened.push(ledger);
  return ledger;
}

function freshSchema(): string {
  const s = uniqueSchema('ibw_lchg');
  schemas.push(s);
  return s;
}

async function eventually(fn: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!(await fn())) {
    if (performance.now() - start > timeoutMs) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('lease changes', () => {
  it('acquired on open, released on close; a standby acquires after the release; metrics follow', async () => {
    const schema = freshSchema();
    const changes: LeaseChange[] = [];
    const metrics = createMetrics({ collectDefault: false });
    const record = (c: LeaseChange): void => {
      changes.push(c);
      metrics.recordLeaseChange(c);
    };
    const a = await open(schema, { owner: 'a', onLeaseChange: record });
    const b = await open(schema, { owner: 'b', acquire: false, onLeaseChange: record });
    expect(changes.map((c) => [c.owner, c.reason, c.epoch, c.owned])).toEqual([['a', 'acquired', 1, true]]);
    expect(await metrics.render()).toContain('ibw_account_owned{account="default"} 1');
    await a.releaseLease();
    expect(a.leaseTrusted()).toBe(false);
    expect(await b.acquireLease()).toBe(true);
    expect(changes.map((c) => [c.owner, c.reason, c.epoch])).toEqual([
      ['a', 'acquired', 1],
      ['a', 'released', 1],
      ['b', 'acquired', 2],
    ]);
    // A released replica stays open as a standby and may take the account again.
    await b.close();
    expect(await a.acquireLease()).toBe(true);
    expect(a.lease.epoch).toBe(3);
    await a.append([batchRec(makeBatch(1))]);
    const text = await metrics.render();
    expect(text).toContain('ibw_lease_changes_total{reason="acquired"} 3');
    expect(text).toContain('ibw_lease_changes_total{reason="released"} 2');
    expect(text).toContain('ibw_lease_changes_total{reason="lost"} 0');
  });

  it('database unreachable, nobody takes over: one line each way, trust lapses, then renewed and writable again', async () => {
    const schema = freshSchema();
    const changes: LeaseChange[] = [];
    const { logger, lines } = captureLogger();
    const a = await open(schema, { connectionString: proxy.url, owner: 'a', logger, onLeaseChange: (c) => changes.push(c) });
    await a.append([batchRec(makeBatch(1))]);
    proxy.cut();
    await eventually(() => changes.some((c) => c.reason === 'renew_failed'));
    await eventually(() => !a.leaseTrusted());
    await expect(a.append([batchRec(makeBatch(2))])).rejects.toMatchObject({ kind: 'store' });
    // Several renewal periods pass while it is down.
    await new Promise((r) => setTimeout(r, 1200));
    proxy.restore();
    await eventually(() => changes.some((c) => c.reason === 'renew_recovered'));
    expect(a.leaseTrusted()).toBe(true);
    await a.append([batchRec(makeBatch(3))]);
    expect([...(await a.load()).batches.keys()]).toEqual([makeBatch(1).key, makeBatch(3).key]);
    expect(changes.map((c) => c.reason)).toEqual(['acquired', 'renew_failed', 'renew_recovered']);
    const msgs = lines.map((l) => String(l.msg));
    expect(msgs.filter((m) => m === 'cannot renew the account lease')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'PostgreSQL reachable again: lease renewed')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'PostgreSQL connection lost').length).toBeLessThanOrEqual(1);
    expect(JSON.stringify(lines)).not.toContain(new URL(testDatabaseUrl()).password);
  });

  it('database unreachable while another replica takes over: lost (onLeaseLost), refused, standby, acquires again later', async () => {
    const schema = freshSchema();
    const changes: LeaseChange[] = [];
    const lostErrors: DaemonError[] = [];
    const { logger, lines } = captureLogger();
    const a = await open(schema, {
      connectionString: proxy.url,
      owner: 'a',
      logger,
      onLeaseChange: (c) => changes.push(c),
      onLeaseLost: (e) => lostErrors.push(e),
    });
    const b = await open(schema, { owner: 'b', acquire: false });
    await a.append([batchRec(makeBatch(1))]);
    proxy.cut();
    await eventually(() => !a.leaseTrusted());
    // b takes the account once the lease lapses on the server's clock.
    await eventually(() => b.acquireLease());
    await b.append([batchRec(makeBatch(2))]);
    proxy.restore();
    await eventually(() => lostErrors.length > 0);
    expect(lostErrors).toHaveLength(1);
    expect(lostErrors[0]).toMatchObject({ kind: 'store', code: 'LeaseLost' });
    expect(a.lease.epoch).toBeNull();
    await expect(a.append([batchRec(makeBatch(3))])).rejects.toMatchObject({ code: 'LeaseNotHeld' });
    expect(await a.acquireLease()).toBe(false);
    expect(changes.map((c) => c.reason)).toEqual(['acquired', 'renew_failed', 'lost']);
    const msgs = lines.map((l) => String(l.msg));
    expect(msgs.filter((m) => m === 'cannot renew the account lease')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'lost the account lease to another replica')).toHaveLength(1);

    // b leaves (SIGTERM): a, still open, takes the account back and sees b's write.
    await b.close();
    expect(await a.acquireLease()).toBe(true);
    expect(a.lease.epoch).toBe(3);
    expect([...(await a.load()).batches.keys()]).toEqual([makeBatch(1).key, makeBatch(2).key]);
    expect(changes.map((c) => c.reason)).toEqual(['acquired', 'renew_failed', 'lost', 'acquired']);
  });
});
