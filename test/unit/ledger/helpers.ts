/** Test data and helpers shared by the ledger tests (unit and integration). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino } from 'pino';
import type { Logger } from 'pino';

import type { JournalRecord, LedgerSnapshot } from '../../../src/core/ports.js';
import type { BatchRecord, OutboxEntry } from '../../../src/core/record.js';
import type { WatcherEvent } from '../../../src/events.js';

export function makeBatch(id: string | number, overrides: Partial<BatchRecord> = {}): BatchRecord {
  const applyId = typeof id === 'number' ? String(1_000_000 + id) : id;
  const productKey = 'a1TestProduct';
  return {
    key: `${productKey}/${applyId}`,
    applyId,
    productKey,
    name: `batch ${applyId}`,
    labels: { team: 'fleet', 'région': 'cn-shanghai ✓' },
    entryHash: 'h1',
    state: 'pending',
    status: 'CHECK',
    attempt: 2,
    polls: 3,
    firstSeenAt: 1_700_000_000_000,
    phaseStartedAt: 1_700_000_000_000,
    nextDueAt: 1_700_000_060_000,
    stalledWarned: false,
    registration: null,
    lastError: null,
    history: [{ status: 'CHECK', at: 1_700_000_000_000 }],
    validNames: [],
    invalidNames: [],
    invalidDetails: [],
    outcome: null,
    settledAt: null,
    reason: null,
    resultFile: null,
    deviceCount: null,
    fetchAttempts: 0,
    eventSeq: 1,
    ...overrides,
  };
}

export function makeEvent(id: string, overrides: Partial<WatcherEvent> = {}): WatcherEvent {
  return {
    id,
    type: 'batch.status_changed',
    at: '2024-01-01T00:00:00.000Z',
    applyId: '1000001',
    productKey: 'a1TestProduct',
    name: null,
    labels: {},
    status: 'CHECK',
    ...overrides,
  };
}

export function batchRec(rec: BatchRecord): JournalRecord {
  return { t: 'batch', rec };
}

export function eventRec(id: string, acked: string[] = []): JournalRecord {
  const entry: OutboxEntry = { event: makeEvent(id), acked };
  return { t: 'event', entry };
}

/** Plain-object view of a snapshot, for deep equality (keeps Map order). */
export function plain(state: LedgerSnapshot): { batches: [string, BatchRecord][]; outbox: [string, OutboxEntry][] } {
  return { batches: [...state.batches], outbox: [...state.outbox] };
}

export async function tempDir(prefix = 'ibw-ledger-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const base = await mkdtemp(join(tmpdir(), prefix));
  return { dir: join(base, 'state'), cleanup: () => rm(base, { recursive: true, force: true }) };
}

export interface CapturedLog {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger that keeps its lines in memory. */
export function captureLogger(): { logger: Logger; lines: CapturedLog[]; warnings: () => CapturedLog[] } {
  const lines: CapturedLog[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        lines.push(JSON.parse(line) as CapturedLog);
      },
    },
  );
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

/** An errno-style error like the ones node:fs throws. */
export function errnoError(code: string, message = code): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}
