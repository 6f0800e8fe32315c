/**
 * Builds the {@link DaemonProvisioner} of one account from the pieces a daemon (or an account runtime) owns, and
 * says which configurations it cannot run. Kept apart from the daemon so the daemon's hunk stays small.
 *
 * Backends: on the file backend a job's state lives in the account's state directory (`<dir>/provision/`); on
 * PostgreSQL in the account's `provision_jobs` rows (src/ledger/postgres-jobs.ts), fenced by its lease, so a replica
 * that takes the account over resumes the jobs from their last saved intents (docs/provisioning.md).
 */

import path from 'node:path';

import type { AlibabaIotApi } from '../alibaba/iot-api.js';
import type { CompiledConfig } from '../config/types.js';
import type { ApiBudget } from '../core/api-budget.js';
import type { Clock } from '../core/clock.js';
import type { EventPublisher, ResultWriter } from '../core/ports.js';
import type { StateStore } from '../core/state-store.js';
import { type ConfigIssue, DaemonError } from '../errors.js';
import type { Logger } from '../ops/logger.js';
import { createChunkSubmitter } from './chunk-submitter.js';
import { DaemonProvisioner, type ListableJobStore } from './daemon-provisioner.js';
import { readDeviceFile } from './device-file-reader.js';
import { createFileJobStore } from './file-job-store.js';
import { writeProvisionOutputs } from './provision-output-writer.js';

/**
 * Why the daemon cannot run the configuration's `provision` entries (empty: it can): device results without their
 * secrets (the factory CSV needs them).
 */
export function provisionConfigIssues(config: CompiledConfig): ConfigIssue[] {
  const jobs = config.provision ?? [];
  if (jobs.length === 0) return [];
  const first = jobs[0]!;
  const at = first.position ?? { file: config.file ?? '(config)', line: 0, col: 0 };
  if (config.devices.fetch && config.devices.includeSecrets) return [];
  return [{ ...at, path: 'provision', message: 'provision entries need devices.fetch: true and devices.includeSecrets: true (the factory CSV holds each DeviceSecret)' }];
}

/** What the daemon hands over. */
export interface DaemonProvisioningDeps {
  config: CompiledConfig;
  /** The account (its name) the daemon runs. */
  account: string;
  /** The account's state directory (`state.dir` for `default`): the job store of the file backend. */
  stateDir: string;
  /** The backend's job store when it has one (PostgreSQL); else the job files below {@link stateDir}. */
  jobs?: ListableJobStore;
  /** An API client whose submissions are sent once (maxAttempts 1): the runs retry under the budget themselves. */
  submitApi: AlibabaIotApi;
  /** Runs right before each submission is sent; throws to keep it unsent (the lease check on PostgreSQL). */
  beforeSend?: () => Promise<void>;
  budget: ApiBudget;
  store: StateStore;
  outbox: EventPublisher;
  results: ResultWriter;
  reload(reason: string): Promise<unknown>;
  knows(key: string): boolean;
  clock: Clock;
  log: Logger;
}

/**
 * The backend's job store, refusing a job that it does not hold but the state directory does: a file deployment
 * switched to PostgreSQL without `migrate --from-file`. Run from nothing, that job would plan and submit every
 * chunk again (a count job would create its devices twice), so its load fails with what to do instead.
 */
function refusingUnmigrated(jobs: ListableJobStore, stateDir: string): ListableJobStore {
  const files = createFileJobStore(stateDir);
  return {
    list: () => jobs.list(),
    save: (state) => jobs.save(state),
    async load(name) {
      const held = await jobs.load(name);
      if (held !== null) return held;
      const left = await files.load(name).catch(() => null);
      if (left === null) return null;
      throw new DaemonError(
        `provisioning job "${name}" has its state in ${path.join(stateDir, 'provision', `${name}.json`)} but not in the database: ` +
          `move it with \`iot-batch-watcher migrate --from-file ${stateDir}\` (started over here, it would submit its chunks again)`,
        { kind: 'config', scope: 'process', code: 'JobNotMigrated' },
      );
    },
  };
}

/** The provisioner of one account. */
export function createDaemonProvisioner(deps: DaemonProvisioningDeps): DaemonProvisioner {
  const resultsDir = deps.config.output.resultsDir;
  return new DaemonProvisioner({
    account: deps.account,
    store: deps.jobs ? refusingUnmigrated(deps.jobs, deps.stateDir) : createFileJobStore(deps.stateDir),
    submitter: createChunkSubmitter(deps.submitApi, deps.beforeSend ? { beforeSend: deps.beforeSend } : {}),
    budget: deps.budget,
    results: deps.results,
    writeOutputs: async (report) => {
      await writeProvisionOutputs(resultsDir, report);
    },
    publish: async (event) => {
      const entry = { event, acked: [] };
      // Durable first (the account's ledger), then the sinks: delivered at least once, like batch events.
      await deps.store.append([{ t: 'event', entry }]);
      deps.outbox.enqueue(entry);
    },
    readDevices: (file) => readDeviceFile(file),
    reload: (reason) => deps.reload(reason),
    knows: (key) => deps.knows(key),
    clock: deps.clock,
    log: deps.log,
  });
}
