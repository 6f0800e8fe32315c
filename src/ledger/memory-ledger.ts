/**
 * An in-memory {@link LedgerStore} for tests, `wait` (one batch, nothing to resume) and benchmarks.
 *
 * It behaves like the file ledger as far as callers can tell: records are validated and copied through JSON
 * when appended (so later mutation by the caller does not leak in, and `undefined` fields vanish the same way),
 * `load` returns fresh copies, and calls after `close` reject with `LedgerClosed`. Pass the same `backing` to a
 * new ledger to simulate a restart.
 */
import { applyJournalRecord, emptySnapshot } from '../core/ledger-state.js';
import type { JournalRecord, LedgerSnapshot, LedgerStore } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import { checkJournalRecord, encodeSnapshotBody, encodeSnapshotHeader, parseSnapshot } from './journal-format.js';

/** The "disk" of a memory ledger: survives `close`, shareable with the next ledger. */
export interface MemoryLedgerBacking {
  state: LedgerSnapshot;
  /** Records appended since the backing was created. */
  appendedRecords: number;
  compactions: number;
}

/** Options of {@link createMemoryLedger}. */
export interface MemoryLedgerOptions {
  /** Storage to continue from (a "restart"). @default a new empty backing */
  backing?: MemoryLedgerBacking;
}

/** A memory ledger, with access to its backing. */
export interface MemoryLedger extends LedgerStore {
  readonly backing: MemoryLedgerBacking;
}

/** A new, empty backing for {@link createMemoryLedger}. */
export function createMemoryLedgerBacking(): MemoryLedgerBacking {
  return { state: emptySnapshot(), appendedRecords: 0, compactions: 0 };
}

function copyState(state: LedgerSnapshot): LedgerSnapshot {
  // Same serialisation as the file ledger's snapshot, so both give identical results.
  return parseSnapshot(encodeSnapshotHeader(0, 0) + encodeSnapshotBody(state), 'memory').state;
}

/** Creates an in-memory ledger. */
export function createMemoryLedger(options: MemoryLedgerOptions = {}): MemoryLedger {
  const backing = options.backing ?? createMemoryLedgerBacking();
  let closed = false;
  const closedError = (): DaemonError =>
    new DaemonError('the ledger is closed', { kind: 'internal', scope: 'process', code: 'LedgerClosed' });

  return {
    backing,
    load() {
      if (closed) return Promise.reject(closedError());
      return Promise.resolve(copyState(backing.state));
    },
    append(records) {
      if (closed) return Promise.reject(closedError());
      let copies: JournalRecord[];
      try {
        copies = records.map((r) => JSON.parse(JSON.stringify(checkJournalRecord(r))) as JournalRecord);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      for (const record of copies) applyJournalRecord(backing.state, record);
      backing.appendedRecords += copies.length;
      return Promise.resolve();
    },
    compact(state) {
      if (closed) return Promise.reject(closedError());
      try {
        backing.state = copyState(state);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      backing.compactions += 1;
      return Promise.resolve();
    },
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}
