/**
 * The in-memory image of the ledger: batches and the outbox, updated by the same journal records the store
 * replays. The watcher applies every record it appends, so a compaction can snapshot this state.
 */
import type { JournalRecord, LedgerSnapshot } from './ports.js';

export function emptySnapshot(): LedgerSnapshot {
  return { batches: new Map(), outbox: new Map() };
}

/** Applies one journal record to a snapshot in place. */
export function applyJournalRecord(state: LedgerSnapshot, record: JournalRecord): void {
  switch (record.t) {
    case 'batch':
      state.batches.set(record.rec.key, record.rec);
      return;
    case 'forget':
      state.batches.delete(record.key);
      return;
    case 'event':
      state.outbox.set(record.entry.event.id, { event: record.entry.event, acked: [...record.entry.acked] });
      return;
    case 'ack': {
      const entry = state.outbox.get(record.id);
      if (entry && !entry.acked.includes(record.sink)) entry.acked.push(record.sink);
      return;
    }
    case 'done':
      state.outbox.delete(record.id);
      return;
  }
}
