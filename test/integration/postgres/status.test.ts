/**
 * `status` on the postgres backend (DESIGN.md §12: "`status`, `/v1/batches` and `/metrics` work on every
 * replica"): the rows of every account come from the database while their owners hold the leases, read-only (a
 * role that may only SELECT the ledger tables, and not the leases or results, reads them all), without disturbing
 * the owners (leases unchanged, fenced appends still succeed). Through the real CLI (child processes, tsx) and the
 * watch loop in process.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runStatusWatch } from '../../../src/commands/status-watch.js';
import { compileConfigObject } from '../../../src/config/compile.js';
import { batchKey, type BatchRecord } from '../../../src/core/record.js';
import type { StatusRow } from '../../../src/core/status-row.js';
import { openPostgresLedger, type PostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { openStatusSource, readPostgresStatusRows } from '../../../src/ledger/postgres-status.js';
import { runCli } from '../../helpers/child.js';
import { memoryIo } from '../../helpers/memory-io.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, makeBatch } from '../../unit/ledger/helpers.js';

/** A record of `account` (the daemon writes the account into every record of an account other than `default`). */
function batchOf(account: string, n: number, over: Partial<BatchRecord> = {}): BatchRecord {
  const rec = makeBatch(n, over);
  return account === 'default' ? rec : { ...rec, account, key: batchKey(rec.productKey, rec.applyId, account) };
}

async function cli(args: string[], env: Record<string, string>, cwd: string) {
  const child = runCli(args, env, cwd);
  const { code } = await child.exited;
  return { code, stdout: child.stdout.join('\n'), stderr: child.stderr.join('') };
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

interface LeaseRow {
  account: string;
  owner: string | null;
  epoch: string;
  expires_at: Date;
  renewed_at: Date;
}

describe('status on the postgres backend', () => {
  const schema = uniqueSchema('ibw_status');
  const suffix = randomBytes(4).toString('hex');
  const reader = { name: `ibw_reader_${suffix}`, password: `rd-${randomBytes(8).toString('hex')}` };
  let dir: string;
  let readerUrl: string;
  const ledgers = new Map<string, PostgresLedger>();

  const configText = (s: string): string =>
    [
      'alibaba:',
      '  regionId: cn-shanghai',
      'accounts:',
      '  - name: fleet-a',
      '  - name: fleet-b',
      'state:',
      '  backend: postgres',
      '  dir: ./state',
      '  postgres:',
      `    schema: ${s}`,
      '    lease: 60s',
      '',
    ].join('\n');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-pgstatus-'));
    await writeFile(join(dir, 'watcher.yaml'), configText(schema));
    // The owners: one ledger per account, each holding its lease (not renewed during the test, so the lease rows
    // stay byte-for-byte what they were unless someone else writes them).
    for (const account of ['default', 'fleet-a', 'fleet-b']) {
      ledgers.set(account, await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, account, leaseMs: 60_000, renewEveryMs: 0 }));
    }
    const a = ledgers.get('fleet-a')!;
    const first = [1, 2, 3].map((n) => batchOf('fleet-a', n));
    await a.append(first.map(batchRec));
    // Compacted rows (the `batches` table) with journal records on top: one updated, one forgotten, one added.
    await a.compact({ batches: new Map(first.map((r) => [r.key, r])), outbox: new Map() });
    await a.append([
      batchRec(batchOf('fleet-a', 2, { state: 'settled', status: 'CREATE_SUCCESS', outcome: 'created', settledAt: 1_700_000_120_000, deviceCount: 50 })),
      { t: 'forget', key: batchOf('fleet-a', 3).key },
      batchRec(batchOf('fleet-a', 4)),
    ]);
    // The same ApplyId as fleet-a's first batch, in another account.
    await ledgers.get('fleet-b')!.append([batchRec(batchOf('fleet-b', 1, { polls: 9 })), batchRec(batchOf('fleet-b', 5, { state: 'parked', outcome: 'rejected' }))]);
    await ledgers.get('default')!.append([batchRec(batchOf('default', 7))]);

    // A role that may read the ledger tables and nothing else: no lease table, no results (device secrets), no
    // write anywhere. `status` must work with it.
    await sql(`CREATE ROLE ${reader.name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${reader.password}'`);
    await sql(`GRANT USAGE ON SCHEMA "${schema}" TO ${reader.name}`);
    await sql(`GRANT SELECT ON "${schema}".migrations, "${schema}".snapshots, "${schema}".batches, "${schema}".outbox, "${schema}".journal TO ${reader.name}`);
    const url = new URL(testDatabaseUrl());
    url.username = reader.name;
    url.password = reader.password;
    readerUrl = url.toString();
  }, 60_000);

  afterAll(async () => {
    for (const ledger of ledgers.values()) await ledger.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
    await sql(`DROP ROLE IF EXISTS ${reader.name}`).catch(() => undefined);
  });

  const leases = (): Promise<LeaseRow[]> =>
    sql<LeaseRow>(`SELECT account, owner, epoch, expires_at, renewed_at FROM "${schema}".leases ORDER BY account`);

  it('status --json prints every account\'s rows while the owners hold the leases, and disturbs none of them', async () => {
    const before = await leases();
    expect(before.map((l) => [l.account, l.owner !== null])).toEqual([
      ['default', true],
      ['fleet-a', true],
      ['fleet-b', true],
    ]);
    const journalBefore = await sql<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".journal`);

    const out = await cli(['status', '--json', '--config', join(dir, 'watcher.yaml')], { IBW_DATABASE_URL: readerUrl }, dir);
    expect(out.code, out.stderr).toBe(0);
    const rows = JSON.parse(out.stdout) as StatusRow[];
    expect(rows.map((r) => [r.account ?? 'default', r.applyId, r.state])).toEqual([
      ['default', '1000007', 'pending'],
      ['fleet-a', '1000001', 'pending'],
      ['fleet-a', '1000002', 'settled'],
      ['fleet-a', '1000004', 'pending'],
      ['fleet-b', '1000001', 'pending'],
      ['fleet-b', '1000005', 'parked'],
    ]);
    // The journal applied over the compacted row; the default account's row keeps the §7 shape (no account field).
    const settled = rows.find((r) => r.applyId === '1000002')!;
    expect(settled).toMatchObject({ status: 'CREATE_SUCCESS', outcome: 'created', deviceCount: 50, settledAt: '2023-11-14T22:15:20.000Z' });
    expect(rows[0]!).not.toHaveProperty('account');
    expect(rows.find((r) => r.account === 'fleet-b' && r.applyId === '1000001')!.polls).toBe(9);
    expect(out.stderr).not.toContain(reader.password);

    // Nothing written: the lease rows are exactly as they were, the journal holds no row more.
    expect(await leases()).toEqual(before);
    expect(await sql<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".journal`)).toEqual(journalBefore);
    // The owners go on: their fenced appends still succeed and their leases are still trusted.
    for (const [account, ledger] of ledgers) {
      expect(ledger.leaseTrusted(), account).toBe(true);
      await ledger.append([batchRec(batchOf(account, 8, { polls: 1 }))]);
    }
    const after = await leases();
    expect(after.map((l) => [l.account, l.owner, l.epoch])).toEqual(before.map((l) => [l.account, l.owner, l.epoch]));
    const again = await readPostgresStatusRows(
      compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, state: { backend: 'postgres', postgres: { schema } } }, { cwd: dir }),
      { IBW_DATABASE_URL: readerUrl },
    );
    expect(again.filter((r) => r.applyId === '1000008').map((r) => r.account ?? 'default')).toEqual(['default', 'fleet-a', 'fleet-b']);
  }, 60_000);

  it('the reader\'s session refuses writes (default_transaction_read_only), whatever the role may do', async () => {
    const config = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, state: { backend: 'postgres', postgres: { schema } } }, { cwd: dir });
    const source = await openStatusSource(config, { IBW_DATABASE_URL: testDatabaseUrl() });
    try {
      expect((await source.pool.query<{ r: string }>("SELECT current_setting('default_transaction_read_only') AS r")).rows).toEqual([{ r: 'on' }]);
      await expect(source.pool.query(`DELETE FROM "${schema}".leases`)).rejects.toMatchObject({ code: '25006' });
    } finally {
      await source.pool.end();
    }
    expect((await leases()).map((l) => l.account)).toEqual(['default', 'fleet-a', 'fleet-b']);
  });

  it('--account and --state filter; the plain table shows the account column', async () => {
    const env = { IBW_DATABASE_URL: testDatabaseUrl() };
    const config = join(dir, 'watcher.yaml');
    const b = await cli(['status', '--json', '--config', config, '--account', 'fleet-b'], env, dir);
    expect(b.code, b.stderr).toBe(0);
    expect((JSON.parse(b.stdout) as StatusRow[]).map((r) => [r.account, r.applyId])).toEqual([
      ['fleet-b', '1000001'],
      ['fleet-b', '1000005'],
      ['fleet-b', '1000008'],
    ]);
    const parked = await cli(['status', '--json', '--config', config, '--state', 'parked', '--state', 'settled'], env, dir);
    expect((JSON.parse(parked.stdout) as StatusRow[]).map((r) => [r.account, r.applyId, r.state])).toEqual([
      ['fleet-a', '1000002', 'settled'],
      ['fleet-b', '1000005', 'parked'],
    ]);
    const none = await cli(['status', '--json', '--config', config, '--account', 'fleet-zz'], env, dir);
    expect(none.code).toBe(0);
    expect(JSON.parse(none.stdout)).toEqual([]);
    const table = await cli(['status', '--config', config, '--account', 'fleet-a', '--account', 'default'], env, dir);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.split('\n').filter((l) => l.trim() !== '');
    expect(lines[0]).toMatch(/^applyId +productKey +account +name/);
    expect(lines.filter((l) => /^1000\d{3} +a1TestProduct +fleet-a /.test(l))).toHaveLength(4);
    expect(lines.filter((l) => /^1000\d{3} +a1TestProduct +default /.test(l))).toHaveLength(2);
  }, 60_000);

  it('a schema that does not exist yet has no rows, and none is created', async () => {
    const missing = uniqueSchema('ibw_status_none');
    const cwd = await mkdtemp(join(tmpdir(), 'ibw-pgstatus-none-'));
    try {
      await writeFile(join(cwd, 'watcher.yaml'), configText(missing));
      const out = await cli(['status', '--json', '--config', join(cwd, 'watcher.yaml')], { IBW_DATABASE_URL: testDatabaseUrl() }, cwd);
      expect(out.code, out.stderr).toBe(0);
      expect(JSON.parse(out.stdout)).toEqual([]);
      expect(await sql('SELECT 1 FROM pg_namespace WHERE nspname = $1', [missing])).toEqual([]);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  }, 60_000);

  it('a schema migrated by a newer version is refused (SchemaTooNew), not misread', async () => {
    const newer = uniqueSchema('ibw_status_newer');
    try {
      const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema: newer, leaseMs: 5000, renewEveryMs: 0 });
      await ledger.append([batchRec(batchOf('default', 1))]);
      await ledger.close();
      await sql(`INSERT INTO "${newer}".migrations (version, name) VALUES (99, 'from the future')`);
      const config = compileConfigObject({ alibaba: { regionId: 'cn-shanghai' }, state: { backend: 'postgres', postgres: { schema: newer } } }, { cwd: dir });
      await expect(readPostgresStatusRows(config, { IBW_DATABASE_URL: testDatabaseUrl() })).rejects.toMatchObject({
        code: 'SchemaTooNew',
        message: expect.stringMatching(/version 99, newer than this iot-batch-watcher knows/),
      });
    } finally {
      await dropSchema(newer);
    }
  });

  it('a database that cannot be reached: one error line without the password, exit 1', async () => {
    const port = await closedPort();
    const password = 'Sup3r-s3cret-pw';
    const env = { IBW_DATABASE_URL: `postgres://ibw:${password}@127.0.0.1:${port}/ibw`, PGPASSWORD: 'Other-s3cret-pw' };
    for (const args of [['status'], ['status', '--json'], ['status', '--wide', '--account', 'fleet-a']]) {
      const out = await cli([...args, '--config', join(dir, 'watcher.yaml')], env, dir);
      expect(out.code, out.stderr).toBe(1);
      expect(out.stdout).toBe('');
      const lines = out.stderr.split('\n').filter((l) => l !== '');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^iot-batch-watcher: PostgreSQL: cannot connect: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
      expect(out.stderr).not.toContain(password);
      expect(out.stderr).not.toContain('Other-s3cret-pw');
    }
  }, 60_000);

  it('status --watch reads the database every interval and shows a read error as the ledger error', async () => {
    const config = compileConfigObject(
      { alibaba: { regionId: 'cn-shanghai' }, accounts: [{ name: 'fleet-a' }, { name: 'fleet-b' }], state: { backend: 'postgres', postgres: { schema } } },
      { cwd: dir },
    );
    const run = async (env: Record<string, string>): Promise<string[]> => {
      const m = memoryIo([], env);
      let now = 1_700_000_200_000;
      let sleeps = 0;
      const clock = {
        now: () => now,
        sleep: async () => {
          sleeps += 1;
          now += 2000;
          if (sleeps === 2) m.signal('SIGINT');
        },
      };
      const filter = { states: null, accounts: new Set(['fleet-a', 'fleet-b']), jobs: null };
      expect(await runStatusWatch({ config, filter, intervalMs: 2000, wide: false }, m.io, { clock })).toBe(0);
      return m.stdout.text.trimEnd().split('\n');
    };
    // fleet-a: 1000001, 1000002 (settled, 50 devices), 1000004, 1000008; fleet-b: 1000001, 1000005 (parked), 1000008.
    const good = await run({ IBW_DATABASE_URL: testDatabaseUrl() });
    expect(good).toHaveLength(2);
    for (const line of good) expect(line).toMatch(/ batches=7 pending=5 fetching=0 settled=1 parked=1 .*devices=50 /);
    expect(good[0]).not.toContain('ledger_error');
    const port = await closedPort();
    const bad = await run({ IBW_DATABASE_URL: `postgres://ibw:Watch-s3cret@127.0.0.1:${port}/ibw` });
    expect(bad).toHaveLength(2);
    expect(bad[0]).toMatch(/ batches=0 .*ledger_error="PostgreSQL: cannot connect: .*ECONNREFUSED/);
    expect(bad.join('\n')).not.toContain('Watch-s3cret');
  }, 60_000);
});
