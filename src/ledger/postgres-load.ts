/**
 * Reading the PostgreSQL ledger (DESIGN.md §12): the whole state (snapshot tables + journal, in one
 * REPEATABLE READ transaction) for `load()`, and where the journal stands for the writer after open and after
 * a takeover.
 */
import type pg from 'pg';

import { applyJournalRecord, emptySnapshot } from '../core/ledger-state.js';
import type { JournalRecord, LedgerSnapshot } from '../core/ports.js';
import type { BatchRecord, OutboxEntry } from '../core/record.js';
import { DaemonError } from '../errors.js';
import { checkJournalRecord } from './journal-format.js';
import { databaseError } from './postgres-connection.js';
import type { RecordMeta } from './postgres-journal-writer.js';
import { metaOf } from './postgres-journal-writer.js';

/** Where to read one account's ledger. */
export interface LedgerLocation {
  pool: pg.Pool;
  /** The unquoted schema name (for messages). */
  schema: string;
  quoted: string;
  account: string;
  redact: (text: string) => string;
}

/** A journal row parsed and checked; a row that is not a valid record is `LedgerCorrupt`, naming it. */
function parseJournalRow(at: LedgerLocation, seq: string, text: string): JournalRecord {
  try {
    return checkJournalRecord(JSON.parse(text));
  } catch (err) {
    throw new DaemonError(
      `ledger journal row ${at.schema}.journal account=${at.account} seq=${seq} is not a valid record: ${
        err instanceof Error ? err.message : String(err)
      }`,
      { kind: 'store', scope: 'process', code: 'LedgerCorrupt' },
    );
  }
}

/** The account's state: the compacted rows with the journal after the snapshot applied on top. */
export async function loadLedgerState(at: LedgerLocation): Promise<LedgerSnapshot> {
  const client = await at.pool.connect().catch((err: unknown) => {
    throw databaseError('connect', err, at.redact);
  });
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const q = at.quoted;
    const snap = await client.query<{ s: string }>(`SELECT snapshot_seq AS s FROM ${q}.snapshots WHERE account = $1`, [at.account]);
    const snapshotSeq = Number(snap.rows[0]?.s ?? 0);
    const batches = await client.query<{ rec: string }>(
      `SELECT rec::text AS rec FROM ${q}.batches WHERE account = $1 ORDER BY ord, key`,
      [at.account],
    );
    const outbox = await client.query<{ entry: string }>(
      `SELECT entry::text AS entry FROM ${q}.outbox WHERE account = $1 ORDER BY ord, id`,
      [at.account],
    );
    const journal = await client.query<{ seq: string; rec: string }>(
      `SELECT seq, rec::text AS rec FROM ${q}.journal WHERE account = $1 AND seq > $2 ORDER BY seq`,
      [at.account, snapshotSeq],
    );
    await client.query('COMMIT');
    const state = emptySnapshot();
    for (const row of batches.rows) {
      const rec = JSON.parse(row.rec) as BatchRecord;
      state.batches.set(rec.key, rec);
    }
    for (const row of outbox.rows) {
      const entry = JSON.parse(row.entry) as OutboxEntry;
      state.outbox.set(entry.event.id, entry);
    }
    for (const row of journal.rows) applyJournalRecord(state, parseJournalRow(at, row.seq, row.rec));
    return state;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (err instanceof DaemonError) throw err;
    throw databaseError('load the ledger', err, at.redact);
  } finally {
    client.release();
  }
}

/** The snapshot seq and the journal records after it, as the database holds them now. */
export async function readJournalPosition(at: LedgerLocation): Promise<{ snapshotSeq: number; stored: RecordMeta[] }> {
  try {
    const q = at.quoted;
    const snap = await at.pool.query<{ s: string }>(`SELECT snapshot_seq AS s FROM ${q}.snapshots WHERE account = $1`, [at.account]);
    const snapshotSeq = Number(snap.rows[0]?.s ?? 0);
    const { rows } = await at.pool.query<{ seq: string; rec: string }>(
      `SELECT seq, rec::text AS rec FROM ${q}.journal WHERE account = $1 AND seq > $2 ORDER BY seq`,
      [at.account, snapshotSeq],
    );
    return { snapshotSeq, stored: rows.map((row) => metaOf(Number(row.seq), parseJournalRow(at, row.seq, row.rec))) };
  } catch (err) {
    if (err instanceof DaemonError) throw err;
    throw databaseError('read the journal', err, at.redact);
  }
}
