/**
 * Replica heartbeats against the real server (src/ledger/replicas.ts): the `replicas` table (migration 2, added
 * to a version-1 schema without touching its rows), live rows on the server's clock, leave(), the view of held
 * leases; and the policy wired to real account ledgers the way the daemon does it: two accounts over three
 * replicas end 1/1/0, and a leaving owner's account moves at once.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { systemClock } from '../../../src/core/clock.js';
import { quoteSchema } from '../../../src/ledger/postgres-connection.js';
import type { PostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { MIGRATIONS } from '../../../src/ledger/postgres-migrations.js';
import { type Replicas, startReplicas } from '../../../src/ledger/replicas.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

function freshSchema(): string {
  const s = uniqueSchema('ibw_repl');
  cleanups.push(() => dropSchema(s));
  return s;
}

async function eventually(fn: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const start = performance.now();
  while (!(await fn())) {
    if (performance.now() - start > timeoutMs) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - start;
}

async function replicas(schema: string, id: string, leaseMs: number, accounts: string[], onRelease: (a: string) => Promise<void> = async () => undefined): Promise<Replicas> {
  const r = await startReplicas({ connectionString: testDatabaseUrl(), schema, id, leaseMs, accounts, clock: systemClock, onRelease });
  cleanups.push(() => r.stop());
  return r;
}

describe('replica heartbeats', () => {
  it('migration 2 adds the table to a version-1 schema and keeps its rows', async () => {
    const schema = freshSchema();
    const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 5000, renewEveryMs: 0 });
    await ledger.close();
    // Make it a schema written by the previous release: version 1 only.
    await sql(`DROP TABLE "${schema}".replicas`);
    await sql(`DELETE FROM "${schema}".migrations WHERE version = 2`);
    await sql(`INSERT INTO "${schema}".results (account, product_key, apply_id, outcome, device_count, result) VALUES ('x', 'p', '1', 'created', 0, '{}')`);
    const r = await replicas(schema, 'r1', 3000, ['x']);
    const versions = await sql<{ version: number }>(`SELECT version FROM "${schema}".migrations ORDER BY version`);
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await sql(`SELECT apply_id FROM "${schema}".results`)).toEqual([{ apply_id: '1' }]);
    await eventually(() => r.view() !== null);
    expect(r.view()!.live).toEqual(['r1']);
  });

  it('live rows expire on the server clock; leave() deletes at once; held leases are in the view', async () => {
    const schema = freshSchema();
    const r1 = await replicas(schema, 'r1', 600, ['a']);
    const r2 = await replicas(schema, 'r2', 600, ['a']);
    await eventually(async () => (await r1.heartbeat.beat()).live.length === 2);
    const rows = await sql<{ id: string; pid: number; alive: boolean }>(
      `SELECT id, pid, expires_at > clock_timestamp() AS alive FROM ${quoteSchema(schema)}.replicas ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: 'r1', pid: process.pid, alive: true },
      { id: 'r2', pid: process.pid, alive: true },
    ]);
    await r2.stop();
    expect((await r1.heartbeat.beat()).live).toEqual(['r1']);

    // A replica that stops beating without leaving (killed) drops out when its row expires on the server's clock.
    await sql(`INSERT INTO ${quoteSchema(schema)}.replicas VALUES ('r4', 'h', 1, now(), now(), clock_timestamp() + interval '300 milliseconds')`);
    expect((await r1.heartbeat.beat()).live).toEqual(['r1', 'r4']);
    await eventually(async () => (await r1.heartbeat.beat()).live.length === 1);
    expect(await sql(`SELECT id FROM ${quoteSchema(schema)}.replicas WHERE id = 'r4'`)).toEqual([{ id: 'r4' }]); // kept for the DBA

    const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, account: 'a', owner: 'r1', leaseMs: 5000, renewEveryMs: 0 });
    cleanups.push(() => ledger.close());
    expect((await r1.heartbeat.beat()).owners).toEqual(new Map([['a', 'r1']]));
  });

  it('wired to account ledgers: two accounts over three replicas end 1/1/0, and a leaving owner hands over at once', async () => {
    const schema = freshSchema();
    const accounts = ['fleet-a', 'fleet-b'];
    const leaseMs = 900;
    interface Node {
      id: string;
      ledgers: Map<string, PostgresLedger>;
      replicas: Replicas;
      stop: AbortController;
      loop: Promise<void>;
    }
    const nodes: Node[] = [];
    // What the daemon does per account runtime: a standby loop asks the claims before acquiring; onLeaseChange
    // tells the claims what is held; onRelease hands the account over.
    const start = async (id: string): Promise<Node> => {
      const ledgers = new Map<string, PostgresLedger>();
      const node = { id, ledgers } as Node;
      node.replicas = await replicas(schema, id, leaseMs, accounts, async (account) => {
        await ledgers.get(account)!.releaseLease();
      });
      for (const account of accounts) {
        const ledger = await openPostgresLedger({
          connectionString: testDatabaseUrl(),
          schema,
          account,
          owner: id,
          leaseMs,
          acquire: false,
          onLeaseChange: (c) => node.replicas.claims.noteLeaseChange(c),
        });
        ledgers.set(account, ledger);
        cleanups.push(() => ledger.close());
      }
      node.stop = new AbortController();
      node.loop = (async () => {
        while (!node.stop.signal.aborted) {
          for (const [account, ledger] of ledgers) {
            if (ledger.lease.epoch === null && node.replicas.claims.mayClaim(account)) await ledger.acquireLease().catch(() => false);
          }
          await new Promise((r) => setTimeout(r, leaseMs / 6));
        }
      })();
      cleanups.push(async () => {
        node.stop.abort();
        await node.loop;
      });
      nodes.push(node);
      return node;
    };
    const held = async (): Promise<Map<string, string>> =>
      new Map(
        (await sql<{ account: string; owner: string }>(`SELECT account, owner FROM "${schema}".leases WHERE owner IS NOT NULL AND expires_at > clock_timestamp()`)).map(
          (r) => [r.account, r.owner],
        ),
      );
    const spread = async (): Promise<number[]> => {
      const h = await held();
      return nodes.filter((n) => !n.stop.signal.aborted).map((n) => [...h.values()].filter((o) => o === n.id).length).sort();
    };

    await start('r1');
    await eventually(async () => (await held()).size === 2); // alone, it takes both
    await start('r2');
    await start('r3');
    await eventually(async () => JSON.stringify(await spread()) === '[0,1,1]');
    // Stable for a few heartbeats.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await spread()).toEqual([0, 1, 1]);

    // An owner leaves (SIGTERM): it stops claiming, releases its lease and its row; the idle replica takes the account.
    const h = await held();
    const [account, ownerId] = [...h][0]!;
    const owner = nodes.find((n) => n.id === ownerId)!;
    const idle = nodes.find((n) => ![...h.values()].includes(n.id))!;
    const leftAt = performance.now();
    owner.replicas.claims.leave();
    owner.stop.abort();
    await owner.loop;
    for (const l of owner.ledgers.values()) await l.close();
    await owner.replicas.stop();
    await eventually(async () => (await held()).get(account) === idle.id, leaseMs + 5000);
    // Released, not lapsed: well within the lease.
    expect(performance.now() - leftAt).toBeLessThan(leaseMs + 1000);
  });
});
