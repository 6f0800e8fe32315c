/**
 * The only doors from the core to I/O (style guide rule 1). Adapters implement these; `main.ts` wires them.
 */
import type { WatcherEvent } from '../events.js';
import type { BatchRecord, InvalidDetail, OutboxEntry } from './record.js';

/** The API actions the daemon budgets separately. */
export type ApiAction =
  | 'QueryBatchRegisterDeviceStatus'
  | 'QueryPageByApplyId'
  | 'BatchRegisterDeviceWithApplyId'
  | 'BatchCheckDeviceNames'
  | 'BatchRegisterDevice';

export interface CallOptions {
  signal?: AbortSignal;
  /** Endpoint override for this call (per-batch regionId). */
  endpoint?: string;
  /**
   * Awaited right before each attempt goes on the wire (after signing): where a status poll takes its budget
   * token, so the server sees the spacing the budget granted. An implementation that ignores it is charged by the
   * caller after the call instead.
   */
  beforeSend?: () => Promise<void>;
  /** Called when an attempt's request is handed to its socket (after `beforeSend`), for the budget's window. */
  onSent?: () => void;
}

export interface BatchTarget {
  productKey: string;
  applyId: string;
  iotInstanceId?: string | null;
}

/** Normalised QueryBatchRegisterDeviceStatus answer: lists are always arrays. */
export interface BatchStatusResult {
  /** `Data.Status`, or null when the body had none. */
  status: string | null;
  validNames: string[];
  invalidNames: string[];
  invalidDetails: InvalidDetail[];
  requestId: string | null;
}

export interface DeviceInfo {
  deviceName: string;
  iotId: string;
  /** Absent when the API omitted it. */
  deviceSecret: string | null;
}

export interface DevicePage {
  page: number;
  pageSize: number;
  pageCount: number;
  total: number;
  devices: DeviceInfo[];
  requestId: string | null;
}

export interface AllDevices {
  total: number;
  devices: DeviceInfo[];
}

/**
 * The typed IoT Platform API. Errors are `ApiError` (src/alibaba/errors.ts), classified by the table in
 * src/alibaba/error-codes.ts.
 */
export interface IotApi {
  queryBatchRegisterDeviceStatus(target: BatchTarget, options?: CallOptions): Promise<BatchStatusResult>;
  queryPageByApplyId(
    req: { applyId: string; currentPage: number; pageSize: number; iotInstanceId?: string | null },
    options?: CallOptions,
  ): Promise<DevicePage>;
  /** Pages through every device with PageSize 50 and checks the count against `Total`. */
  listAllDevicesByApplyId(
    req: { applyId: string; iotInstanceId?: string | null },
    options?: CallOptions,
  ): Promise<AllDevices>;
  batchRegisterDeviceWithApplyId(target: BatchTarget, options?: CallOptions): Promise<{ applyId: string; requestId: string | null }>;
  batchCheckDeviceNames(
    req: { productKey: string; deviceNames: string[]; iotInstanceId?: string | null },
    options?: CallOptions,
  ): Promise<{ applyId: string; invalidDeviceNames: string[]; requestId: string | null }>;
  batchRegisterDevice(
    req: { productKey: string; count: number; iotInstanceId?: string | null },
    options?: CallOptions,
  ): Promise<{ applyId: string; requestId: string | null }>;
}

/** One journal record. The ledger replays them in order over the last snapshot. */
export type JournalRecord =
  | { t: 'batch'; rec: BatchRecord }
  | { t: 'forget'; key: string }
  | { t: 'event'; entry: OutboxEntry }
  | { t: 'ack'; id: string; sink: string }
  | { t: 'done'; id: string };

export interface LedgerSnapshot {
  batches: Map<string, BatchRecord>;
  /** Undelivered events by id, in emission order. */
  outbox: Map<string, OutboxEntry>;
}

/**
 * Durable state (DESIGN.md §5). `append` resolves once the records are durable (fsync'd, possibly in a
 * group with others); its cost does not depend on the number of batches. `compact` rewrites a snapshot.
 * The core reaches a ledger only through core/state-store.ts, which keeps the image and calls these four.
 */
export interface LedgerStore {
  load(): Promise<LedgerSnapshot>;
  append(records: JournalRecord[]): Promise<void>;
  /** Write a snapshot of the current state atomically and truncate the journal. */
  compact(state: LedgerSnapshot): Promise<void>;
  close(): Promise<void>;
}

/**
 * An event sink. `deliver` resolves when the sink has durably accepted the event (acknowledged) and
 * rejects when it has not; the outbox retries later. Permanent rejections (webhook 4xx) are the sink's own
 * business (dead letter) and resolve.
 */
export interface EventSink {
  readonly name: string;
  deliver(event: WatcherEvent, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** The full result written to `<resultsDir>/<productKey>/<applyId>.json` (DESIGN.md §4). */
export interface BatchResult {
  /** The account of the batch (DESIGN.md §11); `default` without an `accounts` section. */
  account?: string;
  applyId: string;
  productKey: string;
  name: string | null;
  labels: Record<string, string>;
  outcome: string;
  status: string | null;
  firstSeenAt: string;
  settledAt: string;
  polls: number;
  validNames: string[];
  invalidNames: string[];
  invalidDetails: InvalidDetail[];
  devices: { deviceName: string; iotId: string; deviceSecret?: string }[];
  deviceCount: number;
  history: { status: string; at: string }[];
  reason?: string | null;
}

/** Writes result files. Resolves with the path once the file is durable. */
export interface ResultWriter {
  write(result: BatchResult): Promise<string>;
  /**
   * Withdraws the result file of a batch, if there is one (a settled batch is re-armed: its old result must not
   * stay as if final). Optional: a writer without it leaves the file until the new outcome overwrites it.
   */
  remove?(productKey: string, applyId: string): Promise<void>;
}

/** A pino-compatible logger, as the core sees it (the core does not import pino). */
export interface Log {
  trace(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  fatal(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Log;
  isLevelEnabled?(level: string): boolean;
}

/** Where journaled events go for delivery (the outbox in src/sinks/outbox.ts). */
export interface EventPublisher {
  /** The entry's `{t:'event'}` record is already durable in the ledger. */
  enqueue(entry: OutboxEntry): void;
}
