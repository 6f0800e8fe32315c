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
   * The account this process serves (DESIGN.md §11): every series gets an `account` label with this value. Set when
   * the configuration has `accounts` (one per process in this build); absent, series have no `account` label, as
   * before accounts.
   */
  account?: string;
}

/** What one API attempt looked like, for {@link Metrics.recordApiAttempt}. */
export interface ApiAttemptInfo {
  /** The API action, e.g. `QueryBatchRegisterDeviceStatus`. */
  action: string;
  /** `ok`, `throttled`, or the error code / kind. */
  outcome: string;
  /** Wall time of the attempt in milliseconds. */
  durationMs: number;
}

/** The daemon's metrics: typed recorders over one private registry. */
export interface Metrics {
  /** The registry holding every series (private unless one was passed in). */
  readonly registry: Registry;
  /** Counts one API attempt and observes its duration. */
  recordApiAttempt(info: ApiAttemptInfo): void;
  /** Sets `ibw_batches{state}`; states missing from `counts` that were reported before drop to 0. */
  setBatchCounts(counts: Record<string, number>): void;
  /** Sets the current adaptive rate of an action. */
  setRateLimit(action: string, qps: number): void;
  /** Counts one throttling answer. */
  recordThrottle(action: string): void;
  /** Counts one delivery attempt to a sink (`outcome`: ok, retry, dead_letter, ...). */
  recordSinkDelivery(sink: string, outcome: string): void;
  /** Observes the time from first sight to settlement of one batch. */
  recordSettled(outcome: string, seconds: number): void;
  /** Counts one configuration reload. */
  recordConfigReload(outcome: ConfigReloadOutcome): void;
  /** A change of account ownership (postgres backend): sets `ibw_account_owned`, counts `ibw_lease_changes_total`. */
  recordLeaseChange(change: Pick<LeaseChange, 'account' | 'reason' | 'owned'>): void;
  /** The Prometheus text exposition of every series. */
  render(): Promise<string>;
  /** The content type that goes with {@link Metrics.render}'s output. */
  readonly contentType: string;
}

/** Creates the daemon's metrics in a private registry (or the one given). */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = options.registry ?? new Registry();
  if (options.account !== undefined) registry.setDefaultLabels({ account: options.account });
  const registers = [registry];

  const apiRequests = new Counter({
    name: METRIC_NAMES.apiRequestsTotal,
    help: 'API attempts by action and outcome.',
    labelNames: ['action', 'outcome'] as const,
    registers,
  });
  const apiDuration = new Histogram({
    name: METRIC_NAMES.apiRequestDurationSeconds,
    help: 'Duration of API attempts in seconds.',
    labelNames: ['action'] as const,
    buckets: API_DURATION_BUCKETS,
    registers,
  });
  const batches = new Gauge({
    name: METRIC_NAMES.batches,
    help: 'Batches by ledger state.',
    labelNames: ['state'] as const,
    registers,
  });
  const throttled = new Counter({
    name: METRIC_NAMES.throttledTotal,
    help: 'Throttling answers from the API, by action.',
    labelNames: ['action'] as const,
    registers,
  });
  const rateLimit = new Gauge({
    name: METRIC_NAMES.rateLimitQps,
    help: 'Current adaptive request rate per action (requests per second).',
    labelNames: ['action'] as const,
    registers,
  });
  const sinkDeliveries = new Counter({
    name: METRIC_NAMES.sinkDeliveriesTotal,
    help: 'Event delivery attempts by sink and outcome.',
    labelNames: ['sink', 'outcome'] as const,
    registers,
  });
  const settleSeconds = new Histogram({
    name: METRIC_NAMES.batchSettleSeconds,
    help: 'Time from first sight of a batch to its settlement, in seconds.',
    labelNames: ['outcome'] as const,
    buckets: SETTLE_BUCKETS,
    registers,
  });
  const configReloads = new Counter({
    name: METRIC_NAMES.configReloadsTotal,
    help: 'Configuration reloads by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });

  // Ownership of accounts (DESIGN.md §12). The gauge's own `account` label wins over the registry's default one.
  const accountOwned = new Gauge({
    name: METRIC_NAMES.accountOwned,
    help: 'Whether this replica owns the account and can confirm its lease (1) or not (0).',
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
  for (const state of BATCH_STATES) batches.set({ state }, 0);
  for (const action of BUDGETED_ACTIONS) throttled.inc({ action }, 0);
  for (const outcome of OUTCOMES) settleSeconds.zero({ outcome });
  // NOTE: a counter that first appears at 1 has no increase() in Prometheus, so the first dead letter (or the first
  // retry of a sink that never failed before) would be invisible to the alerts without these zeros.
  for (const sink of SINK_NAMES) for (const outcome of DELIVERY_OUTCOMES) sinkDeliveries.inc({ sink, outcome }, 0);

  if (options.collectDefault ?? true) {
    // NOTE: prom-client samples event-loop delay with a 10 ms timer by default: 100 wake-ups a second, the whole
    // cost of an idle daemon (docs/benchmarks.md, profile finding 2). One sample a second is plenty for a lag gauge.
    collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }

  const reportedStates = new Set<string>(BATCH_STATES);

  return {
    registry,
    recordApiAttempt({ action, outcome, durationMs }) {
      apiRequests.inc({ action, outcome });
      if (Number.isFinite(durationMs) && durationMs >= 0) apiDuration.observe({ action }, durationMs / 1000);
    },
    setBatchCounts(counts) {
      for (const state of reportedStates) {
        if (!Object.hasOwn(counts, state)) batches.set({ state }, 0);
      }
      for (const [state, count] of Object.entries(counts)) {
        reportedStates.add(state);
        batches.set({ state }, count);
      }
    },
    setRateLimit(action, qps) {
      rateLimit.set({ action }, qps);
    },
    recordThrottle(action) {
      throttled.inc({ action });
    },
    recordSinkDelivery(sink, outcome) {
      sinkDeliveries.inc({ sink, outcome });
    },
    recordSettled(outcome, seconds) {
      if (Number.isFinite(seconds) && seconds >= 0) settleSeconds.observe({ outcome }, seconds);
    },
    recordConfigReload(outcome) {
      configReloads.inc({ outcome });
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
