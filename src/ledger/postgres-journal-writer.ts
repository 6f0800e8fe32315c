/**
 * The append path of the PostgreSQL ledger (DESIGN.md §12): group commit into the `journal` table.
 *
 * Records get their seq at call time; appends arriving within `groupCommitMs`, and all appends arriving while
 * a write is in flight, go in one statement (one transaction): a multi-row
 * `INSERT ... SELECT FROM json_array_elements(...)` fenced by the lease (owner and epoch checked in the same
 * statement). Its cost does not depend on the number of batches.
 *
 * The writer also keeps what compaction needs: the journal after the last compaction, one {@link RecordMeta}
 * per record (failed appends removed).
 */
import type pg from 'pg';

import type { Clock } from '../core/clock.js';
import type { JournalRecord } from '../core/ports.js';
import type { DaemonError } from '../errors.js';
import { checkJournalRecord } from './journal-format.js';
import { databaseError } from './postgres-connection.js';
import type { Fence } from './postgres-lease.js';
import { fenceSql } from './postgres-lease.js';

/** What compaction needs to know of one journal record. */
export interface RecordMeta {
  seq: number;
  t: JournalRecord['t'];
  /** Batch key for batch/forget, event id for event/ack/done. */
  key: string;
}

/** The {@link RecordMeta} of a record. */
export function metaOf(seq: number, record: JournalRecord): RecordMeta {
  switch (record.t) {
    case 'batch':
      return { seq, t: record.t, key: record.rec.key };
    case 'forget':
      return { seq, t: record.t, key: record.key };
    case 'event':
      return { seq, t: record.t, key: record.entry.event.id };
    case 'ack':
    case 'done':
      return { seq, t: record.t, key: record.id };
  }
}

/**
 * Rows as one JSON array parameter: `[[a, b, <json>], ...]` from pre-serialised cells. pg's own array
 * serialisation is far slower (about 1 s for 10,000 records here), and `->` on a `json` value keeps the record's
 * text exactly as written.
 */
export function jsonRows(rows: readonly (readonly (string | number)[])[]): string {
  return `[${rows.map((cells) => `[${cells.join(',')}]`).join(',')}]`;
}

/** What the writer needs of its ledger. */
export interface JournalWriterDeps {
  pool: pg.Pool;
  quoted: string;
  account: string;
  clock: Clock;
  redact: (text: string) => string;
  /** How long the first append of a group waits for others. */
  groupCommitMs: number;
  /** The current fence, or null when the lease is not held. */
  fence(): Fence | null;
  /** The error of an append while the lease is not held. */
  notHeld(): DaemonError;
  /** The error of an append the fence refused (marks the lease lost). */
  fenceRefused(what: string): DaemonError;
}

/** Counters of a {@link JournalWriter}. */
export interface JournalWriterCounters {
  appendedRecords: number;
  /** Statements that wrote a group of appends (one transaction each). */
  groupWrites: number;
  failedWrites: number;
}

const MAX_GROUP_RECORDS = 2000;

interface AppendItem {
  rows: { seq: number; json: string }[];
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Assigns seqs and writes appends in groups, one statement at a time. */
export class JournalWriter {
  /** Records after the last compaction, in seq order (assigned at call time; failed ones removed). */
  journal: RecordMeta[] = [];
  private nextSeq = 1;
  private queue: AppendItem[] = [];
  private flushing: Promise<void> | null = null;
  readonly counters: JournalWriterCounters = { appendedRecords: 0, groupWrites: 0, failedWrites: 0 };

  constructor(private readonly deps: JournalWriterDeps) {}

  /** The last seq assigned. */
  lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Makes the next seq at least `seq` (after reading the journal, or an import). */
  advanceTo(seq: number): void {
    this.nextSeq = Math.max(this.nextSeq, seq);
  }

  /**
   * Replaces the known journal with what the database holds (`stored`, in seq order, after `snapshotSeq`),
   * keeping appends assigned later than its last row.
   */
  resync(stored: RecordMeta[], snapshotSeq: number): void {
    const last = stored.length > 0 ? stored[stored.length - 1]!.seq : snapshotSeq;
    const pending = this.journal.filter((m) => m.seq > last);
    this.journal = [...stored, ...pending];
    this.advanceTo(last + 1);
  }

  /** Drops the records a compaction folded (seq ≤ `upTo`). */
  folded(upTo: number): void {
    this.journal = this.journal.filter((m) => m.seq > upTo);
  }

  /** Queues `records` for the next group; resolves when they are committed. */
  append(records: JournalRecord[]): Promise<void> {
    let rows: { seq: number; json: string }[];
    let metas: RecordMeta[];
    try {
      const checked = records.map((r) => checkJournalRecord(r));
      const jsons = checked.map((r) => JSON.stringify(r));
      if (checked.length === 0) return Promise.resolve();
      if (!this.deps.fence()) return Promise.reject(this.deps.notHeld());
      rows = jsons.map((json) => ({ seq: this.nextSeq++, json }));
      metas = checked.map((r, i) => metaOf(rows[i]!.seq, r));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.journal.push(...metas);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Resolves when every append assigned so far has settled. */
  async drained(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
  }

  /** Writes queued groups one after the other until the queue is empty. */
  private async flushLoop(): Promise<void> {
    try {
      if (this.deps.groupCommitMs > 0) await this.deps.clock.sleep(this.deps.groupCommitMs).catch(() => undefined);
      while (this.queue.length > 0) {
        // At most MAX_GROUP_RECORDS per statement: a huge group would hold the lease row's share lock (and
        // so delay a renewal) for as long as it takes to write.
        let count = 0;
        let take = 0;
        while (take < this.queue.length && (take === 0 || count + this.queue[take]!.rows.length <= MAX_GROUP_RECORDS)) {
          count += this.queue[take]!.rows.length;
          take += 1;
        }
        const group = this.queue.splice(0, take);
        await this.writeGroup(group);
      }
    } finally {
      this.flushing = null;
    }
  }

  private async writeGroup(group: AppendItem[]): Promise<void> {
    const { deps } = this;
    const rows = group.flatMap((item) => item.rows);
    const fence = deps.fence();
    let error: Error | null = null;
    if (fence === null) {
      error = deps.notHeld();
    } else {
      try {
        const { rowCount } = await deps.pool.query(
          `WITH ${fenceSql(deps.quoted)}
           INSERT INTO ${deps.quoted}.journal (account, seq, rec)
           SELECT $1, (e->>0)::bigint, e->1 FROM json_array_elements($4::json) AS e
            WHERE EXISTS (SELECT 1 FROM fence)`,
          [deps.account, fence.owner, fence.epoch, jsonRows(rows.map((r) => [r.seq, r.json]))],
        );
        if (rowCount !== rows.length) error = deps.fenceRefused('append');
      } catch (err) {
        error = databaseError('append to the journal', err, deps.redact);
      }
    }
    if (error === null) {
      this.counters.groupWrites += 1;
      this.counters.appendedRecords += rows.length;
      for (const item of group) item.resolve();
      return;
    }
    this.counters.failedWrites += 1;
    const failed = new Set(rows.map((r) => r.seq));
    this.journal = this.journal.filter((m) => !failed.has(m.seq));
    for (const item of group) item.reject(error);
  }
}
