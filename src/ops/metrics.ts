/**
 * Prometheus metrics (DESIGN.md §8, contract). Every series lives in a private `Registry` (never prom-client's
 * global one), so several daemons or tests in one process never collide, and every name carries the `ibw_` prefix:
 *
 *   ibw_api_requests_total{action,outcome}        counter    one per API attempt (outcome: success, throttled, transient, batch_error, business_error, fatal)
 *   ibw_api_request_duration_seconds{action}      histogram  latency of each attempt
 *   ibw_batches{state}                            gauge      batches per ledger state (pending, fetching, settled, parked)
 *   ibw_throttled_total{action}                   counter    throttling answers (the budget halves on each)
 *   ibw_rate_limit_qps{action}                    gauge      the current adaptive rate
 *   ibw_sink_deliveries_total{sink,outcome}       counter    event deliveries per sink
 *   ibw_batch_settle_seconds{outcome}             histogram  first sight → settled
 *   ibw_config_reloads_total{outcome}             counter    ok | invalid | error
 *   ibw_account_owned{account}                    gauge      1 while this replica owns the account and can confirm it (postgres backend)
 *   ibw_lease_changes_total{reason}               counter    acquired | released | lost | renew_failed | renew_recovered
 *
 * With an `accounts` section (DESIGN.md §11) every per-account series (all but `ibw_config_reloads_total` and the
 * process metrics) carries an `account` label: each recorder takes the account its runtime serves. Without
 * `accounts` no series has the label, as before accounts.
 *
 * plus prom-client's default process metrics (`ibw_process_cpu_seconds_total`, `ibw_nodejs_eventloop_lag_seconds`, ...).
 * Label combinations known up front (sinks and delivery outcomes included) are initialised at 0 so dashboards,
 * `rate()` and `increase()` see them before the first event.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { ApiAction } from '../core/ports.js';
import type { BatchState } from '../core/record.js';
import { OUTCOMES } from '../events.js';
import type { DeliveryOutcome } from '../sinks/outbox.js';
import { LEASE_CHANGE_REASONS, type LeaseChange } from '../ledger/postgres-lease.js';

/** The prefix of every metric name. */

/** Resolution of the event-loop delay monitor (prom-client's default is 10 ms). */
const EVENT_LOOP_SAMPLE_MS = 1000;
export const METRIC_PREFIX = 'ibw_';

/** Outcomes counted by `ibw_config_reloads_total`. */
export type ConfigReloadOutcome = 'ok' | 'invalid' | 'error';

/** The contract's metric names, with the prefix (DESIGN.md §8). */
export const METRIC_NAMES = {
  apiRequestsTotal: 'ibw_api_requests_total',
  apiRequestDurationSeconds: 'ibw_api_request_duration_seconds',
  batches: 'ibw_batches',
  throttledTotal: 'ibw_throttled_total',
  rateLimitQps: 'ibw_rate_limit_qps',
  sinkDeliveriesTotal: 'ibw_sink_deliveries_total',
  batchSettleSeconds: 'ibw_batch_settle_seconds',
  configReloadsTotal: 'ibw_config_reloads_total',
  provisionDevices: 'ibw_provision_devices',
  accountOwned: 'ibw_account_owned',
  leaseChangesTotal: 'ibw_lease_changes_total',
} as const;

const CONFIG_RELOAD_OUTCOMES: readonly ConfigReloadOutcome[] = ['ok', 'invalid', 'error'];
const BATCH_STATES: readonly BatchState[] = ['pending', 'fetching', 'settled', 'parked'];
const BUDGETED_ACTIONS: readonly ApiAction[] = ['QueryBatchRegisterDeviceStatus', 'QueryPageByApplyId'];
/** The daemon's sinks (src/sinks/*) and their delivery outcomes. */
const SINK_NAMES: readonly string[] = ['log', 'emitter', 'events_file', 'webhook'];
const DELIVERY_OUTCOMES: readonly DeliveryOutcome[] = ['ok', 'retry', 'dead_letter', 'error'];

/** API latency: tens of milliseconds to the request timeout. */
const API_DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Settle time: a demo settles in seconds, real batches in minutes to hours (timeout default 24 h). */
const SETTLE_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400, 28_800, 86_400];

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /**
   * Registry to register into.
   * @default a new private `Registry`
   */
  registry?: Registry;
  /**
   * Also collect prom-client's default process metrics (with the `ibw_` prefix).
   * @default true
   */
  collectDefault?: boolean;
  /**
   * A process serving one named account: per-account series get an `account` label, and this value when a
   * recorder is called without an account. Same as `accounts: [account]`.
   */
  account?: string;
  /**
   * The accounts of a configuration with `accounts` (DESIGN.md §11): per-account series carry an `account` label
   * and start at zero for each of these. Absent (and no `account`): no `account` label anywhere, as before accounts.
   */
  accounts?: readonly string[];
}

/** What one API attempt looked like, for {@link Metrics.recordApiAttempt}. */
export interface ApiAttemptInfo {
  /** The API action, e.g. `QueryBatchRegisterDeviceStatus`. */
  action: string;
  /** `ok`, `throttled`, or the error code / kind. */
  outcome: string;
  /** Wall time of the attempt in milliseconds. */
  durationMs: number;
  /** The account whose client made the attempt (ignored without account labels). */
  account?: string;
}

/** The daemon's metrics: typed recorders over one private registry. */
export interface Metrics {
  /** The registry holding every series (private unless one was passed in). */
  readonly registry: Registry;
  /** Whether per-account series carry an `account` label (the configuration has `accounts`). */
  readonly labelled: boolean;
  /**
   * Starts an account's series at zero (an account added by a reload). Does nothing without account labels or
   * for an account already known.
   */
  addAccount(account: string): void;
  /** Drops the gauges of an account removed from the configuration (its counters stay, as counters do). */
  removeAccount(account: string): void;
  /** Counts one API attempt and observes its duration. */
  recordApiAttempt(info: ApiAttemptInfo): void;
  /**
   * Sets `ibw_batches{state}` (of `account`); states missing from `counts` that were reported before drop to 0.
   * `account` is ignored without account labels, here and in every recorder below.
   */
  setBatchCounts(counts: Record<string, number>, account?: string): void;
  /** Sets the current adaptive rate of an action. */
  setRateLimit(action: string, qps: number, account?: string): void;
  /** Counts one throttling answer. */
  recordThrottle(action: string, account?: string): void;
  /** Counts one delivery attempt to a sink (`outcome`: ok, retry, dead_letter, ...). */
  recordSinkDelivery(sink: string, outcome: string, account?: string): void;
  /** Observes the time from first sight to settlement of one batch. */
  recordSettled(outcome: string, seconds: number, account?: string): void;
  /** Counts one configuration reload. */
  recordConfigReload(outcome: ConfigReloadOutcome): void;
  /** Sets `ibw_provision_devices{job,state}` of one provisioning job (state: requested, created, rejected, pending). */
  setProvisionDevices(job: string, counts: Readonly<Record<string, number>>, account?: string): void;
  /** A change of account ownership (postgres backend): sets `ibw_account_owned`, counts `ibw_lease_changes_total`. */
  recordLeaseChange(change: Pick<LeaseChange, 'account' | 'reason' | 'owned'>): void;
  /** Sets `ibw_account_owned` (file backend: 1 while this process runs the account, holding its state directory). */
  setAccountOwned(account: string, owned: boolean): void;
  /** The Prometheus text exposition of every series. */
  render(): Promise<string>;
  /** The content type that goes with {@link Metrics.render}'s output. */
  readonly contentType: string;
}

/** Creates the daemon's metrics in a private registry (or the one given). */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = options.registry ?? new Registry();
  const registers = [registry];
  const initial = [...new Set([...(options.account !== undefined ? [options.account] : []), ...(options.accounts ?? [])])];
  const labelled = options.account !== undefined || options.accounts !== undefined;
  const fallback = options.account ?? initial[0] ?? 'default';
  // NOTE: with account labels the label is part of every per-account series' label set; without, it is absent
  // altogether (not an empty value), so dashboards of a file without accounts see the series they always saw.
  const acc = labelled ? (['account'] as const) : ([] as const);
  const withAccount = <L extends Record<string, string>>(labels: L, account: string | undefined): L =>
    labelled ? { ...labels, account: account ?? fallback } : labels;

  const apiRequests = new Counter({
    name: METRIC_NAMES.apiRequestsTotal,
    help: 'API attempts by action and outcome.',
    labelNames: ['action', 'outcome', ...acc],
    registers,
  });
  const apiDuration = new Histogram({
    name: METRIC_NAMES.apiRequestDurationSeconds,
    help: 'Duration of API attempts in seconds.',
    labelNames: ['action', ...acc],
    buckets: API_DURATION_BUCKETS,
    registers,
  });
  const batches = new Gauge({
    name: METRIC_NAMES.batches,
    help: 'Batches by ledger state.',
    labelNames: ['state', ...acc],
    registers,
  });
  const throttled = new Counter({
    name: METRIC_NAMES.throttledTotal,
    help: 'Throttling answers from the API, by action.',
    labelNames: ['action', ...acc],
    registers,
  });
  const rateLimit = new Gauge({
    name: METRIC_NAMES.rateLimitQps,
    help: 'Current adaptive request rate per action (requests per second).',
    labelNames: ['action', ...acc],
    registers,
  });
  const sinkDeliveries = new Counter({
    name: METRIC_NAMES.sinkDeliveriesTotal,
    help: 'Event delivery attempts by sink and outcome.',
    labelNames: ['sink', 'outcome', ...acc],
    registers,
  });
  const settleSeconds = new Histogram({
    name: METRIC_NAMES.batchSettleSeconds,
    help: 'Time from first sight of a batch to its settlement, in seconds.',
    labelNames: [...acc, 'outcome'],
    buckets: SETTLE_BUCKETS,
    registers,
  });
  const configReloads = new Counter({
    name: METRIC_NAMES.configReloadsTotal,
    help: 'Configuration reloads by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });

  // Ownership of accounts (DESIGN.md §12): the gauge always carries the account, even without `accounts` (`default`).
  const accountOwned = new Gauge({
    name: METRIC_NAMES.accountOwned,
    help: 'Whether this process owns the account (1) or not (0): it holds the state directory (file backend), or its lease is confirmed (PostgreSQL).',
    labelNames: ['account'] as const,
    registers,
  });
  const leaseChanges = new Counter({
    name: METRIC_NAMES.leaseChangesTotal,
    help: 'Changes of account ownership seen by this replica, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of LEASE_CHANGE_REASONS) leaseChanges.inc({ reason }, 0);

  for (const outcome of CONFIG_RELOAD_OUTCOMES) configReloads.inc({ outcome }, 0);
  /** Reported states per account (the key is '' without account labels). */
  const reportedStates = new Map<string, Set<string>>();
  const zero = (account: string | undefined): void => {
    const key = labelled ? (account ?? fallback) : '';
    if (reportedStates.has(key)) return;
    reportedStates.set(key, new Set<string>(BATCH_STATES));
    for (const state of BATCH_STATES) batches.set(withAccount({ state }, account), 0);
    for (const action of BUDGETED_ACTIONS) throttled.inc(withAccount({ action }, account), 0);
    for (const outcome of OUTCOMES) settleSeconds.zero(labelled ? { account: account ?? fallback, outcome } : { outcome });
    // NOTE: a counter that first appears at 1 has no increase() in Prometheus, so the first dead letter (or the first
    // retry of a sink that never failed before) would be invisible to the alerts without these zeros.
    for (const sink of SINK_NAMES) for (const outcome of DELIVERY_OUTCOMES) sinkDeliveries.inc(withAccount({ sink, outcome }, account), 0);
  };
  if (labelled) for (const account of initial) zero(account);
  else zero(undefined);

  if (options.collectDefault ?? true) {
    // NOTE: prom-client samples event-loop delay with a 10 ms timer by default: 100 wake-ups a second, the whole
    // cost of an idle daemon (docs/benchmarks.md, profile finding 2). One sample a second is plenty for a lag gauge.
    collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }

  const provisionDevices = new Gauge({
    name: METRIC_NAMES.provisionDevices,
    help: 'Devices of each provisioning job by state: requested, created, rejected (locally or by Alibaba), pending',
    labelNames: ['job', 'state', ...acc],
    registers,
  });

  return {
    registry,
    labelled,
    setProvisionDevices(job, counts, account) {
      for (const [state, n] of Object.entries(counts)) provisionDevices.set(withAccount({ job, state }, account), n);
    },
    addAccount(account) {
      if (labelled) zero(account);
    },
    removeAccount(account) {
      if (!labelled) return;
      for (const state of reportedStates.get(account) ?? []) batches.remove({ state, account });
      reportedStates.delete(account);
      for (const action of BUDGETED_ACTIONS) rateLimit.remove({ action, account });
      accountOwned.remove({ account });
    },
    recordApiAttempt({ action, outcome, durationMs, account }) {
      apiRequests.inc(withAccount({ action, outcome }, account));
      if (Number.isFinite(durationMs) && durationMs >= 0) apiDuration.observe(withAccount({ action }, account), durationMs / 1000);
    },
    setBatchCounts(counts, account) {
      zero(account);
      const reported = reportedStates.get(labelled ? (account ?? fallback) : '')!;
      for (const state of reported) {
        if (!Object.hasOwn(counts, state)) batches.set(withAccount({ state }, account), 0);
      }
      for (const [state, count] of Object.entries(counts)) {
        reported.add(state);
        batches.set(withAccount({ state }, account), count);
      }
    },
    setRateLimit(action, qps, account) {
      rateLimit.set(withAccount({ action }, account), qps);
    },
    recordThrottle(action, account) {
      throttled.inc(withAccount({ action }, account));
    },
    recordSinkDelivery(sink, outcome, account) {
      sinkDeliveries.inc(withAccount({ sink, outcome }, account));
    },
    recordSettled(outcome, seconds, account) {
      if (Number.isFinite(seconds) && seconds >= 0) settleSeconds.observe(labelled ? { account: account ?? fallback, outcome } : { outcome }, seconds);
    },
    recordConfigReload(outcome) {
      configReloads.inc({ outcome });
    },
    setAccountOwned(account, owned) {
      accountOwned.set({ account }, owned ? 1 : 0);
    },
    recordLeaseChange({ account, reason, owned }) {
      accountOwned.set({ account }, owned ? 1 : 0);
      leaseChanges.inc({ reason });
    },
    render() {
      return registry.metrics();
    },
    get contentType() {
      return registry.contentType;
    },
  };
}
