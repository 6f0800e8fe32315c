/**
 * The durable state of one provisioning job and how it follows its configuration. Pure.
 *
 * `reconcileJob` is run at every start (and reload): it plans chunks for names (or devices of a count) that no
 * chunk holds yet (chunk-plan.ts), keeps every chunk already planned as it is, refreshes the local rejections
 * from the current file, and turns chunks found `submitting` into their recovery state (chunk-transitions.ts).
 */

import { planCountChunks, planNameChunks, type PlannedChunk } from './chunk-plan.js';
import { type ChunkEffect, type ChunkRecord, newChunkRecord, recoverSubmitting } from './chunk-transitions.js';
import type { DeviceList, RejectedName } from './device-list.js';
import { type ProvisionJobView, SETTLED_CHUNK_STATES } from './provision-report.js';

/** Version of the job state's shape; a reader refuses other versions. */
export const JOB_STATE_VERSION = 1;

/** What a job is, as far as its state cares (a subset of ProvisionJobConfig). */
export interface JobSpec {
  name: string;
  productKey: string;
  account: string | null;
  source: { kind: 'devices'; file: string } | { kind: 'count'; count: number };
  chunkSize: number;
  until: 'created' | 'checked';
  labels: Readonly<Record<string, string>>;
}

/** The durable state of a job. */
export interface JobState {
  version: typeof JOB_STATE_VERSION;
  name: string;
  productKey: string;
  kind: 'names' | 'count';
  chunks: ChunkRecord[];
  /** Local rejections of the device file as last read. */
  rejected: RejectedName[];
  /** Facts announced (events made durable), so a restart announces only what a crash left out. Absent: none. */
  announced?: string[];
  /** The daemon stores the job's settings too, so a job removed from the file is still watched after a restart. */
  spec?: JobSpec;
}

/** What reconciling a job did. */
export interface JobReconciliation {
  state: JobState;
  /** Chunks planned now. */
  added: number;
  /** Effects of recovered chunks (parking a count chunk emits an event). */
  effects: { chunk: number; effect: ChunkEffect }[];
}

function toPlanned(rec: ChunkRecord): PlannedChunk {
  // NOTE: a names chunk's identity is every name it was planned with, including names refused later, so a name
  // Alibaba refused is never planned again. `requested` keeps the first count; `rejected` keeps the refused names.
  if (rec.kind === 'count') return { index: rec.index, kind: 'count', count: rec.count };
  const names = [...rec.names, ...rec.rejected.map((r) => ({ deviceName: r.deviceName, nickname: null }))];
  return { index: rec.index, kind: 'names', names };
}

/**
 * Brings a job's state up to date with its spec and (for a names job) the device file as read now.
 *
 * @throws Error when the stored state belongs to another kind of job or another product (a renamed job must
 *   get a new name: its chunks were submitted to the old product).
 */
export function reconcileJob(previous: JobState | null, spec: JobSpec, devices: DeviceList | null, now: number): JobReconciliation {
  const kind = spec.source.kind === 'devices' ? 'names' : 'count';
  if (previous !== null && (previous.kind !== kind || previous.productKey !== spec.productKey)) {
    throw new Error(
      `provisioning job "${spec.name}" was planned as a ${previous.kind} job for ${previous.productKey}; ` +
        'it cannot become another kind or product: give the new job another name',
    );
  }
  const existing = previous?.chunks ?? [];
  const planned = existing.map(toPlanned);
  const extension =
    spec.source.kind === 'count'
      ? planCountChunks(planned, spec.source.count, spec.chunkSize)
      : planNameChunks(planned, (devices?.devices ?? []).map((d) => ({ deviceName: d.deviceName, nickname: d.nickname })), spec.chunkSize);
  const effects: { chunk: number; effect: ChunkEffect }[] = [];
  const chunks = existing.map((rec) => {
    const step = recoverSubmitting(rec, now);
    for (const effect of step.effects) effects.push({ chunk: rec.index, effect });
    return step.rec;
  });
  for (const c of extension.added) chunks.push(newChunkRecord(c));
  return {
    state: {
      version: JOB_STATE_VERSION,
      name: spec.name,
      productKey: spec.productKey,
      kind,
      chunks,
      rejected: devices?.rejected ?? previous?.rejected ?? [],
      ...(previous?.announced === undefined ? {} : { announced: previous.announced }),
      ...(previous?.spec === undefined ? {} : { spec: previous.spec }),
    },
    added: extension.added.length,
    effects,
  };
}

/** Replaces one chunk's record. */
export function withChunk(state: JobState, rec: ChunkRecord): JobState {
  return { ...state, chunks: state.chunks.map((c) => (c.index === rec.index ? rec : c)) };
}

/** Whether every chunk has settled. A job without chunks (every name rejected) is settled at once. */
export function isJobSettled(state: JobState): boolean {
  return state.chunks.every((c) => SETTLED_CHUNK_STATES.has(c.state));
}

/**
 * The settings of a stored job for its report when no run has them at hand (`results --provision`): the ones the
 * daemon stored with it, else (a job of the foreground `provision` command, which stores none) what its chunks
 * show: the product, the kind, the largest chunk, `checked` when a chunk settled as checked, no labels.
 */
export function storedJobSpec(state: JobState, account: string | null): JobSpec {
  if (state.spec !== undefined) return state.spec;
  const requested = state.chunks.reduce((n, c) => n + c.requested, 0);
  return {
    name: state.name,
    productKey: state.productKey,
    account,
    source: state.kind === 'count' ? { kind: 'count', count: requested } : { kind: 'devices', file: '(not stored with the job)' },
    chunkSize: Math.max(1, ...state.chunks.map((c) => c.requested)),
    until: state.chunks.some((c) => c.state === 'checked') ? 'checked' : 'created',
    labels: {},
  };
}

/** The job as the report builder takes it. */
export function jobView(state: JobState, spec: JobSpec): ProvisionJobView {
  return {
    name: spec.name,
    productKey: spec.productKey,
    account: spec.account,
    labels: spec.labels,
    until: spec.until,
    chunkSize: spec.chunkSize,
    source: spec.source,
    chunks: state.chunks.map((c) => ({
      index: c.index,
      kind: c.kind,
      requested: c.requested,
      applyId: c.applyId,
      state: c.state,
      reason: c.reason,
      rejected: c.rejected,
      devices: c.devices,
    })),
    rejected: state.rejected,
  };
}

/** Devices per state for `ibw_provision_devices{job,state}`: requested, created, rejected, pending. */
export function deviceCounts(state: JobState): { requested: number; created: number; rejected: number; pending: number } {
  let requested = 0;
  let created = 0;
  let rejected = state.rejected.length;
  let pending = 0;
  for (const c of state.chunks) {
    requested += c.requested;
    created += c.devices.length;
    rejected += c.rejected.length;
    if (!SETTLED_CHUNK_STATES.has(c.state)) pending += c.requested - c.rejected.length;
  }
  return { requested, created, rejected, pending };
}

/** One row of `status` for a job (DESIGN.md §13: chunks settled / total, devices created / requested). */
export interface ProvisionStatusRow {
  job: string;
  productKey: string;
  chunksSettled: number;
  chunksTotal: number;
  devicesCreated: number;
  devicesRequested: number;
  /** Chunks parked `submission_unknown`: they need the operator (docs/provisioning.md). */
  parked: number;
}

/** The status row of a job. */
export function provisionStatusRow(state: JobState): ProvisionStatusRow {
  const d = deviceCounts(state);
  return {
    job: state.name,
    productKey: state.productKey,
    chunksSettled: state.chunks.filter((c) => SETTLED_CHUNK_STATES.has(c.state)).length,
    chunksTotal: state.chunks.length,
    devicesCreated: d.created,
    devicesRequested: d.requested,
    parked: state.chunks.filter((c) => c.state === 'submission_unknown').length,
  };
}
