/**
 * The per-job outputs of DESIGN.md §13, built purely from the job's state:
 * - `provision-<name>.json`: every chunk with its ApplyId and outcome, every device with its secret, every
 *   rejected name with its reason;
 * - `provision-<name>.csv`: `ProductKey,DeviceName,DeviceSecret,IotId`, what a factory flashing tool takes.
 * The bytes depend only on the input (fixed key order, labels sorted, trailing newline), so writing the same
 * state again gives the same files. The writer (provision-output-writer.ts) makes them 0600 and atomic.
 */

import type { RejectedName, RejectionCode } from './device-list.js';

/**
 * Where a chunk is. `planned`: not submitted; `submitting`: the intent is durable, the call may be in flight;
 * `watching`: its ApplyId is durable and it is watched as a batch; then one of the settled states.
 * `submission_unknown`: a count chunk whose submission may or may not have reached Alibaba (never resubmitted).
 */
export type ChunkState = 'planned' | 'submitting' | 'watching' | 'checked' | 'created' | 'partial' | 'failed' | 'submission_unknown';

/** The states after which nothing happens to a chunk by itself. */
export const SETTLED_CHUNK_STATES: ReadonlySet<ChunkState> = new Set(['checked', 'created', 'partial', 'failed', 'submission_unknown']);

/** One device created by a chunk, as QueryPageByApplyId returned it. */
export interface ProvisionedDevice {
  deviceName: string;
  iotId: string;
  deviceSecret: string;
}

/** One chunk as the report shows it. */
export interface ChunkReport {
  index: number;
  kind: 'names' | 'count';
  /** Names (or devices) the chunk asked for. */
  requested: number;
  applyId: string | null;
  state: ChunkState;
  /** Why the chunk is failed, partial or submission_unknown (and how to resolve it); null otherwise. */
  reason: string | null;
  /** Names the check or the creation rejected, with Alibaba's reason. */
  rejected: readonly { deviceName: string; reason: string }[];
  devices: readonly ProvisionedDevice[];
}

/** The job as the report shows it. */
export interface ProvisionJobView {
  name: string;
  productKey: string;
  account: string | null;
  labels: Readonly<Record<string, string>>;
  until: 'created' | 'checked';
  chunkSize: number;
  /** The device file as configured, or the count. */
  source: { kind: 'devices'; file: string } | { kind: 'count'; count: number };
  chunks: readonly ChunkReport[];
  /** Names rejected locally (invalid, duplicate, malformed rows), before any submission. */
  rejected: readonly RejectedName[];
}

/** One line of the report's `rejected` list. */
export interface ReportRejection {
  deviceName: string | null;
  line: number | null;
  code: RejectionCode;
  reason: string;
  chunk: number | null;
}

/** The report JSON's shape (also printed by `iot-batch-watcher provision`). */
export interface ProvisionReport {
  job: string;
  productKey: string;
  account: string | null;
  labels: Record<string, string>;
  until: 'created' | 'checked';
  chunkSize: number;
  source: { devices: string } | { count: number };
  settled: boolean;
  /** `complete`: every chunk created (or checked); `incomplete`: some chunk failed, partial or unknown; `running`. */
  outcome: 'running' | 'complete' | 'incomplete';
  summary: {
    chunks: { total: number; settled: number; byState: Record<string, number> };
    devices: { requested: number; created: number; rejected: number };
  };
  chunks: { index: number; kind: 'names' | 'count'; requested: number; applyId: string | null; state: ChunkState; reason: string | null; created: number }[];
  devices: { deviceName: string; iotId: string; deviceSecret: string; chunk: number }[];
  rejected: ReportRejection[];
}

/** Every created device of the job, once each (the first chunk that reports a name wins), in chunk order. */
export function jobDevices(chunks: readonly ChunkReport[]): { device: ProvisionedDevice; chunk: number }[] {
  const seen = new Set<string>();
  const out: { device: ProvisionedDevice; chunk: number }[] = [];
  for (const c of [...chunks].sort((a, b) => a.index - b.index)) {
    for (const d of c.devices) {
      if (seen.has(d.deviceName)) continue;
      seen.add(d.deviceName);
      out.push({ device: d, chunk: c.index });
    }
  }
  return out;
}

/** Builds the report of a job from its view. Pure. */
export function buildProvisionReport(job: ProvisionJobView): ProvisionReport {
  const chunks = [...job.chunks].sort((a, b) => a.index - b.index);
  const byState: Record<string, number> = {};
  let settled = 0;
  let requested = 0;
  let complete = true;
  for (const c of chunks) {
    byState[c.state] = (byState[c.state] ?? 0) + 1;
    if (SETTLED_CHUNK_STATES.has(c.state)) settled += 1;
    requested += c.requested;
    if (c.state !== (job.until === 'checked' && c.kind === 'names' ? 'checked' : 'created')) complete = false;
  }
  const devices = jobDevices(chunks);
  const rejected: ReportRejection[] = job.rejected.map((r) => ({ deviceName: r.deviceName, line: r.line, code: r.code, reason: r.reason, chunk: null }));
  for (const c of chunks) {
    for (const r of c.rejected) rejected.push({ deviceName: r.deviceName, line: null, code: 'alibaba_refused', reason: r.reason, chunk: c.index });
  }
  const labels: Record<string, string> = {};
  for (const key of Object.keys(job.labels).sort()) labels[key] = job.labels[key] ?? '';
  const isSettled = settled === chunks.length;
  return {
    job: job.name,
    productKey: job.productKey,
    account: job.account,
    labels,
    until: job.until,
    chunkSize: job.chunkSize,
    source: job.source.kind === 'devices' ? { devices: job.source.file } : { count: job.source.count },
    settled: isSettled,
    outcome: !isSettled ? 'running' : complete ? 'complete' : 'incomplete',
    summary: {
      chunks: { total: chunks.length, settled, byState },
      devices: { requested, created: devices.length, rejected: rejected.length },
    },
    chunks: chunks.map((c) => ({
      index: c.index,
      kind: c.kind,
      requested: c.requested,
      applyId: c.applyId,
      state: c.state,
      reason: c.reason,
      created: c.devices.length,
    })),
    devices: devices.map(({ device, chunk }) => ({ deviceName: device.deviceName, iotId: device.iotId, deviceSecret: device.deviceSecret, chunk })),
    rejected,
  };
}

/** The report file's text: 2-space JSON with a trailing newline. */
export function toProvisionReportJson(report: ProvisionReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

/** Quotes a CSV field when it holds a comma, a quote or a line break (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** The columns of the factory CSV, in order. */
export const FACTORY_CSV_HEADER = 'ProductKey,DeviceName,DeviceSecret,IotId';

/**
 * The factory CSV of a job: the header, then one row per created device of the report (each name once, in
 * chunk order). Lines end with CRLF, as RFC 4180 and spreadsheet tools expect.
 */
export function toFactoryCsv(report: Pick<ProvisionReport, 'productKey' | 'devices'>): string {
  let out = `${FACTORY_CSV_HEADER}\r\n`;
  const pk = csvField(report.productKey);
  for (const d of report.devices) out += `${pk},${csvField(d.deviceName)},${csvField(d.deviceSecret)},${csvField(d.iotId)}\r\n`;
  return out;
}

/** The file names of a job's outputs (the job name is already a safe path segment by the config rule). */
export function provisionFileNames(job: string): { json: string; csv: string } {
  return { json: `provision-${job}.json`, csv: `provision-${job}.csv` };
}
