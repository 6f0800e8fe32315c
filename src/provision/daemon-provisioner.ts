/**
 * The daemon's provisioning (DESIGN.md §13): runs the `provision` entries of its configuration for one account.
 * Every job is planned, its chunks submitted under the account's budget, each ApplyId watched as a batch of the
 * daemon's own watcher (`register: true`, or `until: checked`), and the report and factory CSV rewritten as chunks
 * settle. The runs are job-runner.ts'; this module keeps them in step with the configuration and the daemon:
 *
 * - Chunk batches: every chunk with an ApplyId is a batch of the daemon's configuration ({@link withBatches}, used
 *   for the start configuration and for every reload), so the watcher resumes them after a restart and never sees
 *   them leave the file (a pending batch that leaves is cancelled).
 * - Results: {@link results} wraps the daemon's result writer. A chunk's result is handed to its run, and the write
 *   resolves only once the job state holding the chunk's outcome is durable. The watcher records a batch settled
 *   only after the write resolved, so a crash never leaves a batch settled whose chunk still waits for it.
 * - Reload ({@link apply}): a new entry starts; the device file of a names job is read again and appended names are
 *   submitted (removed names change nothing submitted); an entry removed from the file stops submitting and keeps
 *   watching what it submitted until it settles (its report stays up to date), also after a restart; an entry
 *   whose settings changed takes them at its next run.
 * - Events: `provision.*` events go through `publish` (durable in the account's ledger, then the outbox).
 */

import { setMaxListeners } from 'node:events';

import { compileSingleBatch } from '../config/compile.js';
import type { BatchConfig, CompiledConfig, ProvisionJobConfig } from '../config/types.js';
import type { Clock } from '../core/clock.js';
import type { BatchResult, ResultWriter } from '../core/ports.js';
import { batchKey, DEFAULT_ACCOUNT } from '../core/record.js';
import { coerceError, DaemonError } from '../errors.js';
import type { WatcherEvent } from '../events.js';
import type { Logger } from '../ops/logger.js';
import { toChunkOutcome } from './daemon-chunk-watcher.js';
import type { DeviceList } from './device-list.js';
import { type ChunkSubmitter, type ChunkWatcher, type JobStore, type SubmitBudget, ProvisionRunner } from './job-runner.js';
import { type JobSpec, type JobState, deviceCounts, isJobSettled, provisionStatusRow, type ProvisionStatusRow } from './job-state.js';
import type { ProvisionReport } from './provision-report.js';

/** A job store that can list its jobs (the daemon resumes jobs removed from the file). */
export interface ListableJobStore extends JobStore {
  list(): Promise<string[]>;
}

/** What the provisioner needs from its daemon. */
export interface DaemonProvisionerOptions {
  /** The account this daemon runs (jobs of other accounts wait for a process of theirs). */
  account: string;
  store: ListableJobStore;
  submitter: ChunkSubmitter;
  /** The account's budget (ApiBudget: BatchCheckDeviceNames and BatchRegisterDevice buckets). */
  budget: SubmitBudget;
  /** The daemon's result writer; chunk results pass through it. */
  results: ResultWriter;
  writeOutputs(report: ProvisionReport): Promise<void>;
  /** Makes an event durable and hands it to the sinks (the account's state store, then its outbox). */
  publish(event: WatcherEvent): Promise<void>;
  readDevices(file: string): Promise<DeviceList>;
  /** Runs the daemon's reload, so the chunk batches of {@link withBatches} reach the watcher. */
  reload(reason: string): Promise<unknown>;
  /** Whether the daemon's watcher has the batch (its configuration reached the watcher). */
  knows(key: string): boolean;
  clock: Clock;
  log: Logger;
}

/** A job as this daemon runs it. */
interface Job {
  spec: JobSpec;
  /** The entry is in the configuration (false: removed, or found in the store only: watch, never submit). */
  configured: boolean;
  runner: ProvisionRunner | null;
  /** The run in flight. */
  running: Promise<void> | null;
  /** The device file as last read (names joined), to see appended names. */
  fileSignature: string | null;
  /** Settings changed while running: a new run starts with them when this one ends. */
  nextSpec: JobSpec | null;
  /** Latest durable state. */
  state: JobState | null;
}

/**
 * A chunk result on its way to a run: the write resolves once its outcome is in the durable job state, and fails
 * when no run took it (the run ended first, or the daemon stops), so the watcher does not record the batch settled
 * and writes the result again later: a batch never settles while its chunk still waits for it.
 */
interface Handoff {
  job: string;
  applyId: string;
  result: BatchResult | null;
  ack: () => void;
  fail: (error: Error) => void;
}

/** Why a chunk's result could not be handed to its job now (the watcher retries the write). */
function notTaken(job: string, why: string): DaemonError {
  return new DaemonError(`provisioning job "${job}" did not take a chunk's result (${why}); it is written again`, {
    kind: 'store',
    scope: 'attempt',
    code: 'ChunkResultNotTaken',
  });
}

/** The job spec of a configuration entry. */
export function specOf(entry: ProvisionJobConfig): JobSpec {
  return { name: entry.name, productKey: entry.productKey, account: entry.account, source: entry.source, chunkSize: entry.chunkSize, until: entry.until, labels: entry.labels };
}

function signatureOf(devices: DeviceList): string {
  return devices.devices.map((d) => `${d.deviceName}\u0000${d.nickname ?? ''}`).join('\n');
}

/** See the module comment. */
export class DaemonProvisioner {
  readonly #o: DaemonProvisionerOptions;
  readonly #jobs = new Map<string, Job>();
  /** Chunk batches by key, and which job and chunk each one is. */
  readonly #batches = new Map<string, { batch: BatchConfig; job: string; chunk: number }>();
  readonly #handoffs = new Map<string, Handoff>();
  readonly #waiters = new Map<string, (result: BatchResult) => void>();
  #config: CompiledConfig | null = null;
  /** withBatches' last answer, so an unchanged configuration keeps its identity (the daemon compares it). */
  #merged: { inner: readonly BatchConfig[]; version: number; batches: BatchConfig[] } | null = null;
  #version = 0;
  #stopped = false;
  #started = false;
  readonly #abort = new AbortController();
  /** One daemon reload after another, so each sees the batches added before it. */
  #reloads: Promise<unknown> = Promise.resolve();

  constructor(options: DaemonProvisionerOptions) {
    this.#o = options;
  }

  /** The jobs of this account in `config`. */
  #entries(config: CompiledConfig): ProvisionJobConfig[] {
    const fallback = config.accounts[0]?.name ?? DEFAULT_ACCOUNT;
    return (config.provision ?? []).filter((j) => (j.account ?? fallback) === this.#o.account);
  }

  /**
   * Loads every job's state (the configured ones and those found in the store), so {@link withBatches} holds their
   * chunk batches before the watcher starts. Call once, before the daemon's watcher starts.
   */
  async prepare(config: CompiledConfig): Promise<void> {
    this.#config = config;
    const configured = new Map(this.#entries(config).map((e) => [e.name, specOf(e)]));
    const skipped = (config.provision ?? []).filter((j) => !configured.has(j.name)).map((j) => j.name);
    if (skipped.length > 0) this.#o.log.warn({ jobs: skipped }, 'provisioning jobs of other accounts run in a process of their account');
    const names = new Set([...configured.keys(), ...(await this.#o.store.list())]);
    for (const name of names) {
      const state = await this.#o.store.load(name);
      const spec = configured.get(name) ?? state?.spec ?? null;
      if (spec === null) continue;
      const job: Job = { spec, configured: configured.has(name), runner: null, running: null, fileSignature: null, nextSpec: null, state };
      this.#jobs.set(name, job);
      for (const c of state?.chunks ?? []) if (c.applyId !== null) this.#register(job.spec, c.index, c.applyId, c.kind);
    }
  }

  /** Starts a run of every job (those removed from the file only watch what they submitted). */
  start(): void {
    this.#started = true;
    for (const job of this.#jobs.values()) this.#run(job);
  }

  /** `config` with the chunk batches added (the same array while nothing changed). */
  withBatches(config: CompiledConfig): CompiledConfig {
    const m = this.#merged;
    if (m !== null && m.inner === config.batches && m.version === this.#version) return { ...config, batches: m.batches };
    // NOTE: no chunk batch (no provisioning job, or none submitted yet): the file's list as it is. A key set and a
    // copy of 100,000 batches on every reload blocked the event loop for about 170 ms (docs/benchmarks.md §6).
    if (this.#batches.size === 0) return config;
    const inFile = new Set(config.batches.map((b) => b.key));
    const batches = [...config.batches, ...[...this.#batches.values()].filter((c) => !inFile.has(c.batch.key)).map((c) => c.batch)];
    this.#merged = { inner: config.batches, version: this.#version, batches };
    return { ...config, batches };
  }

  /** For the daemon's reload: applies the file's `provision` entries, then returns `config` with the chunk batches. */
  async apply(config: CompiledConfig): Promise<CompiledConfig> {
    if (this.#stopped) return this.withBatches(config);
    this.#config = config;
    const entries = new Map(this.#entries(config).map((e) => [e.name, specOf(e)]));
    for (const [name, spec] of entries) {
      const job = this.#jobs.get(name);
      if (job === undefined) {
        const state = await this.#o.store.load(name);
        const fresh: Job = { spec, configured: true, runner: null, running: null, fileSignature: null, nextSpec: null, state };
        this.#jobs.set(name, fresh);
        this.#o.log.info({ job: name }, 'provisioning job added');
        this.#run(fresh);
        continue;
      }
      const changed = JSON.stringify(spec) !== JSON.stringify(job.spec);
      if (!job.configured || changed) {
        job.configured = true;
        if (job.running === null) {
          job.spec = spec;
          this.#run(job);
        } else {
          if (changed) this.#o.log.info({ job: name }, 'provisioning job changed; its new settings apply when the current run ends');
          job.nextSpec = spec;
          void job.runner?.drain();
        }
        continue;
      }
      // A run that stopped on an error resumes here; so does a job that `provision resolve` changed (a parked chunk
      // given its ApplyId, or marked not submitted). A settled job runs again only for appended names.
      if (job.running === null) {
        const stored = await this.#o.store.load(name).catch(() => null);
        if (stored !== null) job.state = stored;
      }
      if (job.running === null && job.state !== null && !isJobSettled(job.state)) this.#run(job);
      else await this.#refreshDevices(job);
    }
    for (const job of this.#jobs.values()) {
      if (!job.configured || entries.has(job.spec.name)) continue;
      job.configured = false;
      job.nextSpec = null;
      this.#o.log.info({ job: job.spec.name }, 'provisioning job removed from the file: no more submissions; its submitted chunks are still watched');
      void job.runner?.drain();
    }
    return this.withBatches(config);
  }

  /** A names job: reads its file again; appended names go to the running job, or start a new run. */
  async #refreshDevices(job: Job): Promise<void> {
    if (job.spec.source.kind !== 'devices') return;
    let devices: DeviceList;
    try {
      devices = await this.#o.readDevices(job.spec.source.file);
    } catch (err) {
      this.#o.log.error({ job: job.spec.name, err: coerceError(err) }, 'cannot read the device file; nothing new is submitted until it can be read');
      return;
    }
    const signature = signatureOf(devices);
    if (signature === job.fileSignature) return;
    job.fileSignature = signature;
    if (job.runner !== null && job.runner.extend(devices)) return;
    if (job.running === null) this.#run(job, devices);
    else job.nextSpec ??= job.spec;
  }

  /** Starts a run of the job (unless one runs or the provisioner stopped). */
  #run(job: Job, known: DeviceList | null = null): void {
    if (this.#stopped || job.running !== null) return;
    const spec = job.spec;
    // NOTE: the run's own signal, aborted when it ends: a run that ended on an error must not leave watches behind
    // (a later chunk result would wake one, and it would save the ended run's stale state over the next run's).
    const runAbort = new AbortController();
    setMaxListeners(0, runAbort.signal); // one listener per chunk being watched
    const onStop = (): void => runAbort.abort(this.#abort.signal.reason);
    this.#abort.signal.addEventListener('abort', onStop, { once: true });
    job.running = (async () => {
      let devices = known;
      if (devices === null && spec.source.kind === 'devices' && job.configured) {
        try {
          devices = await this.#o.readDevices(spec.source.file);
          job.fileSignature = signatureOf(devices);
        } catch (err) {
          this.#o.log.error({ job: spec.name, err: coerceError(err) }, 'cannot read the device file; the job waits for the next reload');
          if (job.state === null) return;
        }
      }
      const runner = new ProvisionRunner({
        spec,
        devices,
        store: this.#jobStore(job),
        submitter: this.#o.submitter,
        watcher: this.#watcher(),
        budget: this.#o.budget,
        clock: this.#o.clock,
        writeOutputs: (report) => this.#o.writeOutputs(report),
        emit: (type, fields, fact) => this.#o.publish(this.#event(spec, type, fields, fact)),
        onSaveRetry: ({ chunk, applyId, delayMs, error }) =>
          this.#o.log.warn({ job: spec.name, chunk, applyId, retryInMs: delayMs, err: coerceError(error) }, 'cannot save the answer of a submission; retrying (the ApplyId is in this line)'),
      });
      job.runner = runner;
      // A job removed from the file (or not in it) never submits: it watches what it submitted.
      if (!job.configured) void runner.drain();
      const report = await runner.run(runAbort.signal);
      if (report.settled) this.#o.log.info({ job: spec.name, outcome: report.outcome, ...report.summary.devices }, 'provisioning job settled');
    })()
      .catch((err: unknown) => {
        if (!this.#stopped) this.#o.log.error({ job: spec.name, err: coerceError(err) }, 'provisioning job stopped; it resumes at its next chunk result, reload or restart');
      })
      .finally(() => {
        this.#abort.signal.removeEventListener('abort', onStop);
        runAbort.abort(new Error('the provisioning run ended'));
        job.running = null;
        job.runner = null;
        for (const [key, h] of this.#handoffs) if (h.job === spec.name) this.#fail(key, notTaken(spec.name, 'its run ended first'));
        if (job.nextSpec !== null && job.configured && !this.#stopped) {
          job.spec = job.nextSpec;
          job.nextSpec = null;
          this.#run(job);
        }
      });
  }

  /** The job's store: keeps the spec beside the state (for a job removed from the file) and acknowledges handoffs. */
  #jobStore(job: Job): JobStore {
    return {
      load: (name) => this.#o.store.load(name),
      save: async (state) => {
        await this.#o.store.save({ ...state, spec: job.spec });
        job.state = state;
        for (const [key, h] of this.#handoffs) {
          if (h.job !== state.name) continue;
          const c = state.chunks.find((x) => x.applyIds.includes(h.applyId));
          if (c === undefined || !(c.state === 'watching' && c.applyId === h.applyId)) this.#release(key);
        }
      },
    };
  }

  #release(key: string): void {
    const h = this.#handoffs.get(key);
    this.#handoffs.delete(key);
    h?.ack();
  }

  #fail(key: string, error: Error): void {
    const h = this.#handoffs.get(key);
    this.#handoffs.delete(key);
    h?.fail(error);
  }

  /** Compiles and registers a chunk's batch; returns its key. */
  #register(spec: JobSpec, chunk: number, applyId: string, kind: 'names' | 'count'): string {
    const config = this.#config;
    if (config === null) throw new Error('DaemonProvisioner: prepare() first');
    const until = kind === 'count' ? 'created' : spec.until;
    const account = config.accounts.find((a) => a.name === this.#o.account) ?? config.alibaba;
    const compiled = compileSingleBatch(
      {
        applyId,
        productKey: spec.productKey,
        name: `${spec.name}#${chunk}`,
        until,
        register: kind === 'names' && until === 'created',
        labels: { ...spec.labels, provisionJob: spec.name, provisionChunk: String(chunk) },
      },
      { regionId: account.regionId, iotInstanceId: account.iotInstanceId, endpoint: account.endpoint, polling: config.polling, account: this.#o.account },
    );
    if (!compiled.ok) throw new Error(`provisioning job ${spec.name} chunk ${chunk}: ${compiled.issues.map((i) => i.message).join('; ')}`);
    const key = compiled.batch.key;
    if (!this.#batches.has(key)) {
      this.#batches.set(key, { batch: compiled.batch, job: spec.name, chunk });
      this.#version += 1;
    }
    return key;
  }

  /** The chunk watcher of the runs: registers the batch, reloads the daemon until its watcher has it, waits. */
  #watcher(): ChunkWatcher {
    return {
      watch: async (req, signal) => {
        const key = this.#register(req.spec, req.chunk, req.applyId, req.register || req.until === 'checked' ? 'names' : 'count');
        const arrived = this.#handoffs.get(key)?.result ?? null;
        if (arrived !== null) return toChunkOutcome(arrived);
        let waiter: ((result: BatchResult) => void) | null = null;
        const settled = new Promise<BatchResult>((resolve, reject) => {
          waiter = resolve;
          this.#waiters.set(key, resolve);
          signal?.addEventListener('abort', () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')), { once: true });
        });
        settled.catch(() => undefined);
        for (let i = 0; !this.#o.knows(key) && i < 20; i += 1) {
          signal?.throwIfAborted();
          const next = this.#reloads.then(() => this.#o.reload(`provision ${req.spec.name} chunk ${req.chunk}`));
          this.#reloads = next.catch(() => undefined);
          await next;
        }
        try {
          return toChunkOutcome(await settled);
        } finally {
          // Only its own: a watch of an ended run may end after the next run's watch of the chunk began.
          if (this.#waiters.get(key) === waiter) this.#waiters.delete(key);
        }
      },
    };
  }

  /** Pass to the daemon's watcher instead of its result writer. See the module comment. */
  readonly results: ResultWriter = {
    write: async (result) => {
      const written = await this.#o.results.write(result);
      const key = batchKey(result.productKey, result.applyId, result.account ?? DEFAULT_ACCOUNT);
      const chunk = this.#batches.get(key);
      const job = chunk === undefined ? undefined : this.#jobs.get(chunk.job);
      const waiting = job?.state?.chunks.some((c) => c.state === 'watching' && c.applyId === result.applyId) === true;
      if (chunk === undefined || job === undefined || !waiting) return written;
      if (this.#stopped) throw notTaken(chunk.job, 'the daemon is stopping');
      // NOTE: before start() the runs have not begun: they will, and take the result then. A run that ended on an
      // error (the store down for a moment) is resumed for it now, rather than at the next reload.
      if (job.running === null && this.#started) {
        this.#o.log.info({ job: chunk.job, applyId: result.applyId }, 'resuming the provisioning job: a chunk result arrived');
        this.#run(job);
      }
      const acked = new Promise<void>((ack, fail) => this.#handoffs.set(key, { job: chunk.job, applyId: result.applyId, result, ack, fail }));
      this.#waiters.get(key)?.(result);
      await acked;
      return written;
    },
    remove: (productKey, applyId) => this.#o.results.remove?.(productKey, applyId) ?? Promise.resolve(),
  };

  #event(spec: JobSpec, type: 'provision.chunk_submitted' | 'provision.chunk_parked' | 'provision.settled', fields: Record<string, unknown>, fact: string): WatcherEvent {
    const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
    const prefix = this.#o.account === DEFAULT_ACCOUNT ? '' : `${this.#o.account}:`;
    const event: WatcherEvent = {
      id: `${prefix}provision:${spec.name}:${fact}`,
      type,
      at: new Date(this.#o.clock.now()).toISOString(),
      account: this.#o.account,
      applyId: typeof fields.applyId === 'string' ? fields.applyId : '',
      productKey: spec.productKey,
      name: spec.name,
      labels: { ...spec.labels },
      status: null,
      job: spec.name,
    };
    const chunk = num(fields.chunk);
    if (chunk !== undefined) event.chunk = chunk;
    for (const k of ['requested', 'created', 'rejected', 'chunks'] as const) {
      const v = num(fields[k]);
      if (v !== undefined) event[k] = v;
    }
    if (typeof fields.reason === 'string') event.reason = fields.reason;
    if (typeof fields.outcome === 'string') event.jobOutcome = fields.outcome;
    return event;
  }

  /** A status row per job (chunks settled / total, devices created / requested). */
  rows(): ProvisionStatusRow[] {
    return [...this.#jobs.values()].filter((j) => j.state !== null).map((j) => provisionStatusRow(j.state!));
  }

  /** Devices per job and state, for `ibw_provision_devices{job,state}`. */
  deviceCounts(): { job: string; counts: ReturnType<typeof deviceCounts> }[] {
    return [...this.#jobs.values()].filter((j) => j.state !== null).map((j) => ({ job: j.spec.name, counts: deviceCounts(j.state!) }));
  }

  /**
   * Stops: no new submission; the ones in flight finish (they are never cut off: a count chunk cut off would be
   * parked as unknown), then every run ends (its chunks are resumed at the next start).
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all([...this.#jobs.values()].map((j) => j.runner?.drain() ?? Promise.resolve()));
    this.#abort.abort(new Error('the daemon is stopping'));
    for (const key of [...this.#handoffs.keys()]) this.#fail(key, notTaken(this.#handoffs.get(key)!.job, 'the daemon is stopping'));
    await Promise.all([...this.#jobs.values()].map((j) => j.running ?? Promise.resolve()));
  }
}
