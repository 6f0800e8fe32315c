/**
 * What only the PostgreSQL ledger has: group commit into one statement, compaction that does not block
 * appends, versioned non-destructive migrations, and no password in any message or log line.
 */
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';

import type { PostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { openPostgresLedger } from '../../../src/ledger/postgres-ledger.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../../src/ledger/postgres-migrations.js';
import { dropSchema, sql, testDatabaseUrl, uniqueSchema } from '../../helpers/postgres.js';
import { batchRec, captureLogger, eventRec, makeBatch } from '../../unit/ledger/helpers.js';

const opened: PostgresLedger[] = [];
const schemas: string[] = [];

afterEach(async () => {
  for (const l of opened.splice(0)) await l.close();
  for (const s of schemas.splice(0)) await dropSchema(s);
});

function freshSchema(): string {
  const s = uniqueSchema('ibw_pgl');
  schemas.push(s);
  return s;
}

async function open(schema: string, options: Partial<Parameters<typeof openPostgresLedger>[0]> = {}): Promise<PostgresLedger> {
  const ledger = await openPostgresLedger({ connectionString: testDatabaseUrl(), schema, leaseMs: 15_000, ...options });
  opened.push(ledger);
  return ledger;
}

describe('PostgreSQL ledger', () => {
  it('group commit: concurrent appends share one statement', async () => {
    const ledger = await open(freshSchema(), { groupCommitMs: 5 });
    const writes = Array.from({ length: 200 }, (_, i) => ledger.append([batchRec(makeBatch(i))]));
    await Promise.all(writes);
    expect(ledger.stats()).toMatchObject({ groupWrites: 1, appendedRecords: 200, seq: 200 });
    // Appends arriving while a group is in flight share the next one.
    const first = ledger.append([batchRec(makeBatch(1000))]);
    await new Promise((r) => setTimeout(r, 20));
    const more = Array.from({ length: 50 }, (_, i) => ledger.append([batchRec(makeBatch(2000 + i))]));
    await Promise.all([first, ...more]);
    expect(ledger.stats().groupWrites).toBeLessThanOrEqual(3);
    expect((await ledger.load()).batches.size).toBe(251);
  });

  it('a compaction blocked in the database blocks neither appends nor lease renewal', async () => {
    const schema = freshSchema();
    const ledger = await open(schema, { groupCommitMs: 0 });
    await ledger.append(Array.from({ length: 50 }, (_, i) => batchRec(makeBatch(i))));
    const state = await ledger.load();
    // Another session holds the snapshots table: the compaction's transaction waits on it.
    const blocker = new pg.Client({ connectionString: testDatabaseUrl() });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE "${schema}".snapshots IN ACCESS EXCLUSIVE MODE`);
    let compacted = false;
    const compaction = ledger.compact(state).then(() => {
      compacted = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 5; i += 1) await ledger.append([batchRec(makeBatch(100 + i)), eventRec(`e${i}`)]);
    // Nor the lease renewal: the compaction checks its fence only right before its commit.
    expect(await ledger.lease.renew()).toBe(true);
    expect(compacted).toBe(false);
    await blocker.query('COMMIT');
    await blocker.end();
    await compaction;
    const journal = await sql<{ seq: string }>(`SELECT seq FROM "${schema}".journal ORDER BY seq`);
    expect(journal.map((r) => Number(r.seq))).toEqual([51, 52, 53, 54, 55, 56, 57, 58, 59, 60]);
    const [snap] = await sql<{ snapshot_seq: string }>(`SELECT snapshot_seq FROM "${schema}".snapshots`);
    expect(Number(snap!.snapshot_seq)).toBe(50);
    expect((await ledger.load()).batches.size).toBe(55);
  });

  it('compaction keeps the order a Map would give, through forget and re-add', async () => {
    const schema = freshSchema();
    let ledger = await open(schema, { groupCommitMs: 0 });
    const [a, b, c] = [makeBatch(1), makeBatch(2), makeBatch(3)];
    await ledger.append([batchRec(a), batchRec(b), batchRec(c)]);
    await ledger.compact(await ledger.load());
    await ledger.append([{ t: 'forget', key: a.key }, batchRec(b), batchRec(a), eventRec('e1'), eventRec('e2')]);
    await ledger.append([{ t: 'done', id: 'e1' }, eventRec('e1')]);
    const expected = await ledger.load();
    expect([...expected.batches.keys()]).toEqual([b.key, c.key, a.key]);
    expect([...expected.outbox.keys()]).toEqual(['e2', 'e1']);
    await ledger.compact(expected);
    await ledger.close();
    ledger = await open(schema);
    const loaded = await ledger.load();
    expect([...loaded.batches.keys()]).toEqual([b.key, c.key, a.key]);
    expect([...loaded.outbox.keys()]).toEqual(['e2', 'e1']);
    expect(await sql(`SELECT * FROM "${schema}".journal`)).toEqual([]);
  });

  it('migrations: versioned, applied once, never destructive; a newer schema is refused', async () => {
    const schema = freshSchema();
    const first = await open(schema, { acquire: false });
    await first.close();
    await sql(`INSERT INTO "${schema}".results (account, product_key, apply_id, outcome, device_count, result) VALUES ('x', 'p', '1', 'created', 0, '{}')`);
    // Two replicas starting together take turns on the migration lock.
    const [a, b] = await Promise.all([open(schema, { acquire: false }), open(schema, { acquire: false })]);
    expect(a.schema).toBe(b.schema);
    const versions = await sql<{ version: number; name: string }>(`SELECT version, name FROM "${schema}".migrations ORDER BY version`);
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await sql(`SELECT apply_id FROM "${schema}".results`)).toEqual([{ apply_id: '1' }]);
    await sql(`INSERT INTO "${schema}".migrations (version, name) VALUES (${SCHEMA_VERSION + 1}, 'from the future')`);
    await expect(open(schema, { acquire: false })).rejects.toMatchObject({
      kind: 'store',
      message: expect.stringContaining(`newer than this iot-batch-watcher knows`),
    });
  });

  it('rejects an unsafe schema name before touching the database', async () => {
    await expect(open('x"; DROP TABLE y; --')).rejects.toMatchObject({ kind: 'config', code: 'InvalidSchema' });
  });

  it('the database password never reaches an error message or a log line (debug level)', async () => {
    const url = new URL(testDatabaseUrl());
    const password = decodeURIComponent(url.password);
    const { logger, lines } = captureLogger();
    const schema = freshSchema();
    // Success path, with everything logged at debug.
    const ledger = await open(schema, { logger, groupCommitMs: 0 });
    await ledger.append([batchRec(makeBatch(1))]);
    await ledger.compact(await ledger.load());
    await ledger.close();
    // Wrong password: the server refuses; the message is there, the password is not.
    const wrong = new URL(url.href);
    wrong.password = `${password}-but-wrong`;
    const badAuth = await open(schema, { connectionString: wrong.href, logger }).catch((e: unknown) => e as Error);
    expect(badAuth).toMatchObject({ kind: 'store', message: expect.stringContaining('password authentication failed') });
    // Nothing listening: a connection error.
    const closedPort = new URL(url.href);
    closedPort.port = '1';
    const refused = await open(schema, { connectionString: closedPort.href, logger }).catch((e: unknown) => e as Error);
    expect(refused).toMatchObject({ kind: 'store', code: 'ECONNREFUSED' });
    // A malformed URL whose text still carries the password.
    const garbled = `postgres://postgres:${password}@127.0.0.1:notaport/postgres`;
    const malformed = await open(schema, { connectionString: garbled, logger }).catch((e: unknown) => e as Error);
    expect(malformed).toMatchObject({ kind: 'config', code: 'InvalidDatabaseUrl' });
    const texts = [
      ...lines.map((l) => JSON.stringify(l)),
      ...[badAuth, refused, malformed].map((e) => `${(e as Error).message} ${JSON.stringify(e)} ${(e as Error).stack ?? ''}`),
    ];
    expect(lines.length).toBeGreaterThan(0);
    for (const text of texts) expect(text).not.toContain(password);
  });
});
