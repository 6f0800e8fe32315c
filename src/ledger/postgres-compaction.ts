/**
 * Compaction and import of the PostgreSQL ledger (DESIGN.md §12).
 *
 * Compaction folds the journal up to a seq N into the `batches`/`outbox` tables: the caller captures, at call
 * time, the entries of `state` for the keys the journal touched ({@link captureTouched}); once those appends
 * are durable, one transaction upserts those rows, deletes the removed ones, records N in `snapshots` and
 * deletes journal rows ≤ N. Appends go on meanwhile (they only insert rows > N). Cost is proportional to the
 * journal, not to the state. A key the journal never touched is not rewritten: the port's callers keep
 * `state` equal to the applied records.
 *
 * Import (`migrate --from-file`) writes a whole state as the account's compacted state, refusing when the
 * account already has one.
 */
import type pg from 'pg';

import type { JournalRecord, LedgerSnapshot } from '../core/ports.js';
import type { OutboxEntry } from '../core/record.js';
import { DaemonError } from '../errors.js';
import { databaseError } from './postgres-connection.js';
import type { RecordMeta } from './postgres-journal-writer.js';
import { jsonRows } from './postgres-journal-writer.js';
import type { Fence } from './postgres-lease.js';
import { fenceSql } from './postgres-lease.js';
import type { LedgerLocation } from './postgres-load.js';

/** Where to write, and how to report a refused fence. */
export interface FencedLocation extends LedgerLocation {
  /** The error of a write the fence refused (marks the lease lost). */
  fenceRefused(what: string): DaemonError;
}

/** The serialised entries of `state` for every key the journal touched (undefined: gone from `state`). */
export interface TouchedValues {
  batches: Map<string, string | undefined>;
  outbox: Map<string, string | undefined>;
}

/** Captures, now, the entries of `state` for every key in `journal` (later edits must not leak in). */
export function captureTouched(journal: readonly RecordMeta[], state: LedgerSnapshot): TouchedValues {
  const batches = new Map<string, string | undefined>();
  const outbox = new Map<string, string | undefined>();
  for (const m of journal) {
    if (m.t === 'batch' || m.t === 'forget') {
      if (!batches.has(m.key)) {
        const rec = state.batches.get(m.key);
        batches.set(m.key, rec === undefined ? undefined : JSON.stringify(rec));
      }
    } else if (!outbox.has(m.key)) {
      const entry: OutboxEntry | undefined = state.outbox.get(m.key);
      outbox.set(m.key, entry === undefined ? undefined : JSON.stringify(entry));
    }
  }
  return { batches, outbox };
}

/** Folds `window` (the journal records with seq ≤ `upTo`) into the compacted tables, in one transaction. */
export async function compactJournal(
  at: FencedLocation,
  fence: Fence,
  window: readonly RecordMeta[],
  upTo: number,
  values: TouchedValues,
): Promise<void> {
  const batches = foldWindow(window, 'batch', 'forget', values.batches, upTo);
  const outbox = foldWindow(window, 'event', 'done', values.outbox, upTo);
  await inTransaction(at, 'compact the ledger', async (client) => {
    const q = at.quoted;
    await applyFold(client, at.account, `${q}.batches`, 'key', 'rec', batches);
    await applyFold(client, at.account, `${q}.outbox`, 'id', 'entry', outbox);
    await client.query(
      `INSERT INTO ${q}.snapshots (account, snapshot_seq) VALUES ($1, $2)
       ON CONFLICT (account) DO UPDATE SET snapshot_seq = GREATEST(${q}.snapshots.snapshot_seq, EXCLUDED.snapshot_seq),
         compacted_at = now()`,
      [at.account, upTo],
    );
    await client.query(`DELETE FROM ${q}.journal WHERE account = $1 AND seq <= $2`, [at.account, upTo]);
    await checkFenceBeforeCommit(client, at, fence, 'compact');
  });
}

/** True when the account has no snapshot, no batch, no event and no journal row. */
export async function isLedgerEmpty(at: LedgerLocation): Promise<boolean> {
  const q = at.quoted;
  try {
    const { rows } = await at.pool.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ${q}.snapshots WHERE account = $1) + (SELECT count(*) FROM ${q}.batches WHERE account = $1)
            + (SELECT count(*) FROM ${q}.outbox WHERE account = $1) + (SELECT count(*) FROM ${q}.journal WHERE account = $1) AS n`,
      [at.account],
    );
    return Number(rows[0]?.n ?? 0) === 0;
  } catch (err) {
    throw databaseError('read the ledger', err, at.redact);
  }
}

/**
 * Writes `state` as the account's whole compacted state, with snapshot seq at least `minSeq`; refuses
 * (`LedgerNotEmpty`) when the account already has a snapshot or journal. Returns the snapshot seq written.
 */
export async function importLedgerState(at: FencedLocation, fence: Fence, state: LedgerSnapshot, minSeq: number): Promise<number> {
  const batches = [...state.batches.values()].map((rec, i) => ({ key: rec.key, ord: i + 1, value: JSON.stringify(rec) }));
  const outbox = [...state.outbox.values()].map((entry, i) => ({
    key: entry.event.id,
    ord: batches.length + i + 1,
    value: JSON.stringify(entry),
  }));
  const upTo = Math.max(minSeq, batches.length + outbox.length);
  const q = at.quoted;
  await inTransaction(at, 'import the ledger', async (client) => {
    const { rows } = await client.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ${q}.snapshots WHERE account = $1) + (SELECT count(*) FROM ${q}.journal WHERE account = $1) AS n`,
      [at.account],
    );
    if (Number(rows[0]?.n ?? 0) > 0) {
      throw new DaemonError(`account ${at.account} in schema ${at.schema} already has a ledger`, {
        kind: 'store',
        scope: 'process',
        code: 'LedgerNotEmpty',
      });
    }
    const chunk = 5000;
    for (let i = 0; i < batches.length; i += chunk) {
      await applyFold(client, at.account, `${q}.batches`, 'key', 'rec', { remove: [], upsert: batches.slice(i, i + chunk) });
    }
    for (let i = 0; i < outbox.length; i += chunk) {
      await applyFold(client, at.account, `${q}.outbox`, 'id', 'entry', { remove: [], upsert: outbox.slice(i, i + chunk) });
    }
    await client.query(`INSERT INTO ${q}.snapshots (account, snapshot_seq) VALUES ($1, $2)`, [at.account, upTo]);
    await checkFenceBeforeCommit(client, at, fence, 'import');
  });
  return upTo;
}

/** Runs `body` in a transaction on a pooled connection; a driver error becomes a redacted store error. */
async function inTransaction(at: LedgerLocation, action: string, body: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await at.pool.connect().catch((err: unknown) => {
    throw databaseError('connect', err, at.redact);
  });
  try {
    await client.query('BEGIN');
    await body(client);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (err instanceof DaemonError) throw err;
    throw databaseError(action, err, at.redact);
  } finally {
    client.release();
  }
}

/**
 * The fence of a long transaction (compaction, import), checked last: its `FOR SHARE` lock on the lease row
 * is then held only until the COMMIT right after, so lease renewals never wait behind a long compaction,
 * while a takeover still cannot commit between this check and our commit.
 */
async function checkFenceBeforeCommit(client: pg.PoolClient, at: FencedLocation, fence: Fence, what: string): Promise<void> {
  const held = await client.query(`WITH ${fenceSql(at.quoted)} SELECT 1 FROM fence`, [at.account, fence.owner, fence.epoch]);
  if (held.rowCount !== 1) throw at.fenceRefused(what);
}

interface Fold {
  remove: string[];
  upsert: { key: string; ord: number; value: string }[];
}

async function applyFold(
  client: pg.PoolClient,
  account: string,
  table: string,
  keyCol: string,
  valueCol: string,
  fold: Fold,
): Promise<void> {
  if (fold.remove.length > 0) {
    await client.query(
      `DELETE FROM ${table} WHERE account = $1 AND ${keyCol} IN (SELECT json_array_elements_text($2::json))`,
      [account, JSON.stringify(fold.remove)],
    );
  }
  if (fold.upsert.length > 0) {
    await client.query(
      `INSERT INTO ${table} (account, ${keyCol}, ord, ${valueCol})
       SELECT $1, e->>0, (e->>1)::bigint, e->2 FROM json_array_elements($2::json) AS e
       ON CONFLICT (account, ${keyCol}) DO UPDATE SET ${valueCol} = EXCLUDED.${valueCol}`,
      [account, jsonRows(fold.upsert.map((u) => [JSON.stringify(u.key), u.ord, u.value]))],
    );
  }
}

/**
 * Folds the journal window for one table: which keys to delete first (removed, or removed and re-added, or
 * gone from `state`) and which to upsert, with the `ord` a new row gets (the seq of its first insertion after
 * its last removal: the position a Map would give it).
 */
function foldWindow(
  window: readonly RecordMeta[],
  insertType: JournalRecord['t'],
  removeType: JournalRecord['t'],
  values: Map<string, string | undefined>,
  upTo: number,
): Fold {
  const keys = new Map<string, { reset: boolean; firstInsert: number | null }>();
  for (const m of window) {
    const touchesThis = insertType === 'batch' ? m.t === 'batch' || m.t === 'forget' : m.t !== 'batch' && m.t !== 'forget';
    if (!touchesThis) continue;
    const k = keys.get(m.key) ?? { reset: false, firstInsert: null };
    if (m.t === removeType) {
      k.reset = true;
      k.firstInsert = null;
    } else if (m.t === insertType && k.firstInsert === null) {
      k.firstInsert = m.seq;
    }
    keys.set(m.key, k);
  }
  const fold: Fold = { remove: [], upsert: [] };
  for (const [key, k] of keys) {
    const value = values.get(key);
    if (k.reset || value === undefined) fold.remove.push(key);
    if (value !== undefined) fold.upsert.push({ key, ord: k.firstInsert ?? upTo, value });
  }
  return fold;
}
