import { applyJournalRecord, emptySnapshot } from '../../src/core/ledger-state.js';
import type {
  BatchResult,
  BatchStatusResult,
  CallOptions,
  DeviceInfo,
  EventPublisher,
  IotApi,
  JournalRecord,
  LedgerSnapshot,
  LedgerStore,
  Log,
  ResultWriter,
} from '../../src/core/ports.js';
import type { OutboxEntry } from '../../src/core/record.js';
import type { WatcherEvent } from '../../src/events.js';

/** A ledger kept in memory that can "crash": `reopen()` returns a new store over the same durable records. */
export class MemoryStore implements LedgerStore {
  readonly records: JournalRecord[] = [];
  failWith: Error | null = null;
  compactions = 0;
  /** append() calls that succeeded (each one a group commit in a real ledger). */
  appends = 0;
  async load(): Promise<LedgerSnapshot> {
    const s = emptySnapshot();
    for (const r of this.records) applyJournalRecord(s, structuredClone(r));
    return s;
  }
  async append(records: JournalRecord[]): Promise<void> {
    if (this.failWith) throw this.failWith;
    this.appends += 1;
    for (const r of records) this.records.push(structuredClone(r));
  }
  async compact(state: LedgerSnapshot): Promise<void> {
    this.compactions += 1;
    const recs: JournalRecord[] = [];
    for (const rec of state.batches.values()) recs.push({ t: 'batch', rec: structuredClone(rec) });
    for (const entry of state.outbox.values()) recs.push({ t: 'event', entry: structuredClone(entry) });
    this.records.length = 0;
    this.records.push(...recs);
  }
  async close(): Promise<void> {}
}

export class CapturePublisher implements EventPublisher {
  readonly events: WatcherEvent[] = [];
  restored: OutboxEntry[] = [];
  enqueue(entry: OutboxEntry): void {
    this.events.push(entry.event);
  }
  restore(entries: Iterable<OutboxEntry>): void {
    this.restored = [...entries];
  }
}

export class MemoryResults implements ResultWriter {
  readonly files = new Map<string, BatchResult>();
  async write(result: BatchResult): Promise<string> {
    const path = `/results/${result.productKey}/${result.applyId}.json`;
    this.files.set(path, structuredClone(result));
    return path;
  }
  async remove(productKey: string, applyId: string): Promise<void> {
    this.files.delete(`/results/${productKey}/${applyId}.json`);
  }
}

export const silentLog: Log = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  fatal: () => {},
  child: () => silentLog,
  isLevelEnabled: () => false,
};

/**
 * A scripted IotApi: each ApplyId has a list of statuses returned in order (the last repeats); a function can be
 * given instead. Records every call with the clock time.
 */
export class ScriptedApi implements IotApi {
  readonly calls: { action: string; applyId: string; at: number }[] = [];
  readonly scripts = new Map<string, (n: number) => BatchStatusResult | Error>();
  readonly devices = new Map<string, DeviceInfo[]>();
  registrations = new Map<string, number>();
  registerResult: (applyId: string) => Error | null = () => null;
  constructor(private readonly now: () => number) {}

  script(applyId: string, statuses: (string | Error)[]): void {
    this.scripts.set(applyId, (n) => {
      const s = statuses[Math.min(n, statuses.length - 1)];
      if (s instanceof Error) return s;
      return { status: s ?? null, validNames: [], invalidNames: [], invalidDetails: [], requestId: `req-${n}` };
    });
  }

  async queryBatchRegisterDeviceStatus(target: { productKey: string; applyId: string }, _options?: CallOptions): Promise<BatchStatusResult> {
    const n = this.calls.filter((c) => c.action === 'status' && c.applyId === target.applyId).length;
    this.calls.push({ action: 'status', applyId: target.applyId, at: this.now() });
    const fn = this.scripts.get(target.applyId);
    if (!fn) throw new Error(`no script for ${target.applyId}`);
    const out = fn(n);
    if (out instanceof Error) throw out;
    return out;
  }
  async queryPageByApplyId(): Promise<never> {
    throw new Error('not used');
  }
  async listAllDevicesByApplyId(req: { applyId: string }): Promise<{ total: number; devices: DeviceInfo[] }> {
    this.calls.push({ action: 'devices', applyId: req.applyId, at: this.now() });
    const d = this.devices.get(req.applyId) ?? [];
    return { total: d.length, devices: d };
  }
  async batchRegisterDeviceWithApplyId(target: { applyId: string }): Promise<{ applyId: string; requestId: string | null }> {
    this.calls.push({ action: 'register', applyId: target.applyId, at: this.now() });
    this.registrations.set(target.applyId, (this.registrations.get(target.applyId) ?? 0) + 1);
    const err = this.registerResult(target.applyId);
    if (err) throw err;
    return { applyId: target.applyId, requestId: 'reg' };
  }
  async batchCheckDeviceNames(): Promise<never> {
    throw new Error('not used');
  }
  async batchRegisterDevice(): Promise<never> {
    throw new Error('not used');
  }
}
