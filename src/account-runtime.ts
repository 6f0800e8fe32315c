/**
 * One Alibaba Cloud account as a unit of the daemon (DESIGN.md §11): its credentials, its API budget (token
 * buckets and adaptive rate), its two API clients and their action health, its state backend (ledger and result
 * store), its StateStore, its Outbox (to the process's shared sinks) and its Watcher. The daemon
 * (src/daemon.ts) keeps what is process-wide and holds one runtime per account, so a throttle, a bad key or a
 * busy scheduler of one account never touches another.
 *
 * Lifecycle (`AccountRuntimeState`):
 *
 *   created ──start()──► standby ──(ledger opened: lease taken)──► running ──stop()──► stopped
 *                          ▲  └──(another replica owns it; or claims.mayClaim() says no: wait lease/3, retry)
 *                          └──────────────release()──────────────────┘ │
 *                                                                       └──(process-fatal API error, parkOnFatal)──► parked
 *
 * - `standby` waits for the account (postgres backend: another replica holds its lease). It is ready to take
 *   over, so it counts as ready (isReady).
 * - `parked`: with several accounts, a process-fatal API error of this account (bad AccessKey, signature mismatch)
 *   parks its open batches durably with the reason (src/core/account-parking.ts), logs one fatal line, and stops
 *   calling the API; the other accounts go on. The batches are re-armed at the account's next start.
 * - Without `parkOnFatal` (one account) a process-fatal error ends the runtime: `onEnded` hears it and the daemon
 *   exits 1 as DESIGN.md §3 says.
 */
import { setMaxListeners } from 'node:events';

import { createChainCredentials, createEnvCredentials, type CredentialsProvider } from './alibaba/credentials.js';
import { createIotApi } from './alibaba/iot-api.js';
import { createRpcClient, type AttemptInfo, type RpcClient } from './alibaba/rpc-client.js';
import type { AccountConfig, CompiledConfig, RateLimitConfig } from './config/types.js';
import { isParkable, parkForAccount } from './core/account-parking.js';
import { ActionHealth } from './core/action-health.js';
import { type ApiBudget, createApiBudget } from './core/api-budget.js';
import type { Clock, Random } from './core/clock.js';
import type { EventSink, IotApi, LedgerStore, ResultWriter } from './core/ports.js';
import type { BatchRecord } from './core/record.js';
import { DISPATCH_TICK_MS } from './core/scheduler.js';
import { StateStore } from './core/state-store.js';
import type { StatusRow } from './core/status-row.js';
import { type RunResult, Watcher } from './core/watcher.js';
import { AbortedError, DaemonError, coerceError } from './errors.js';
import { accountStateDir, openStateBackend, type StateBackend } from './ledger/open-state.js';
import { CachedStatusRows, readPostgresJobs, readPostgresStatusRows } from './ledger/postgres-status.js';
import type { LeaseChange } from './ledger/postgres-lease.js';
import type { Logger } from './ops/logger.js';
import type { Metrics } from './ops/metrics.js';
import type { DaemonProvisioner } from './provision/daemon-provisioner.js';
import { LEASE_UNCONFIRMED } from './provision/chunk-submitter.js';
import { createDaemonProvisioner } from './provision/daemon-provisioning.js';
import { type ProvisionStatusRow, provisionStatusRow } from './provision/job-state.js';
import { Outbox } from './sinks/outbox.js';
import { createResultWriter } from './sinks/result-writer.js';

/** How old a standby's rows read from the database may get before a request starts a new read. */
const STANDBY_ROWS_MAX_AGE_MS = 2000;

export type AccountRuntimeState = 'created' | 'standby' | 'running' | 'parked' | 'stopped';

/**
 * Who may own which account (issue #16: a fair spread over replicas). Consulted before every attempt to acquire
 * the account's ledger; false keeps the runtime in standby (it asks again after a third of the lease).
 */
export interface AccountClaims {
  mayClaim(account: string): boolean;
}

/** Options of {@link AccountRuntime}. */
export interface AccountRuntimeOptions {
  /** The account this runtime serves. */
  account: AccountConfig;
  /**
   * The process configuration. The runtime watches the batches of its own account only; without `accounts`
   * (`output.resultsLayout` not `account`) it watches every batch with `alibaba` and `rateLimit`, exactly as before
   * accounts.
   */
  config: CompiledConfig;
  /** The process logger; with `accounts` every line of the runtime carries `account`. */
  logger: Logger;
  /** Environment for the credential variables and the database URL. */
  env: Readonly<Record<string, string | undefined>>;
  clock: Clock;
  random: Random;
  /** The process's sinks (log, emitter, events file, webhook): shared by every runtime's outbox, closed by the daemon. */
  sinks: readonly EventSink[];
  /** The process's metrics; the runtime records with its account (labelled only with `accounts`). */
  metrics: Metrics;
  /**
   * Park this account on a process-fatal API error and go on (several accounts), instead of ending with it. A
   * function is asked when the error comes (a reload may have added or removed accounts meanwhile).
   * @default false
   */
  parkOnFatal?: boolean | (() => boolean);
  /** @default from the account: its env variables (each also `_FILE`) or the official chain */
  credentials?: CredentialsProvider;
  /** @default the configured backend: a file ledger in {@link accountStateDir}, or PostgreSQL */
  ledger?: LedgerStore;
  /** @default the backend's result store (result files; the database table on postgres) */
  results?: ResultWriter;
  /** @default every account may be claimed at any time */
  claims?: AccountClaims;
  /** This replica's id as the owner of the account's lease (postgres; one per process). @default one per ledger */
  owner?: string;
  /** Every change of the account's ownership (postgres), after the metrics heard it: the fair-share policy. */
  onLeaseChange?(change: LeaseChange): void;
  /**
   * The watcher ended on its own with an error this runtime does not park (one account's process-fatal error, or a
   * file ledger taken over by another process). The daemon ends (exit 1).
   */
  onEnded?(result: RunResult): void;
  /** Grace period for requests in flight on stop. @default 5000 */
  shutdownGraceMs?: number;
  /**
   * The watcher's wake-up tick, and its budget's (`SchedulerOptions.wakeTickMs`): polls due within one tick leave in
   * one wake-up. 0 turns it off (one wake-up per poll). @default {@link DISPATCH_TICK_MS}
   */
  dispatchTickMs?: number;
  /** How long stop() and release() wait for the outbox to drain. @default 3000 */
  sinkFlushMs?: number;
  /** Extra API client options (tests: short retry delays). */
  rpc?: { retryBaseDelayMs?: number; retryMaxDelayMs?: number; maxAttempts?: number; connectTimeoutMs?: number };
  /** Sink retry delays. */
  outbox?: { retryInitialMs?: number; retryMaxMs?: number };
  /** Run the account's `provision` entries (DESIGN.md §13; file backend only). @default true */
  provision?: boolean;
}

/** What {@link AccountRuntime.stop} reports. */
export interface AccountStopResult extends RunResult {
  /** Set when the ledger could not be compacted or closed: the shutdown of this account was not clean. */
  flushError: DaemonError | null;
}

/** What the runtime holds while it owns its account (from the ledger's open to its close). */
interface Owned {
  backend: StateBackend | null;
  store: StateStore;
  outbox: Outbox;
  watcher: Watcher;
  /** Runs the account's provisioning jobs (src/provision/daemon-provisioner.ts), when enabled. */
  provisioner: DaemonProvisioner | null;
}

/** See the module comment. */
export class AccountRuntime {
  readonly #o: AccountRuntimeOptions;
  readonly #log: Logger;
  #account: AccountConfig;
  #config: CompiledConfig;
  #state: AccountRuntimeState = 'created';
  readonly #budget: ApiBudget;
  readonly #rpcs: RpcClient[];
  readonly #apis: { statusApi: IotApi; api: IotApi };
  /** Provisioning submits: one attempt each (the job runs retry under the budget). */
  readonly #submitApi: ReturnType<typeof createIotApi>;
  /** Watcher reloads one after another (the daemon's and the provisioner's). */
  #reloads: Promise<unknown> = Promise.resolve();
  /** Stops the action-health timer. */
  readonly #healthStop = new AbortController();
  /** Aborted by stop(): ends a standby's wait. */
  readonly #stopAbort = new AbortController();
  #owned: Owned | null = null;
  /** What the runtime owned when it stopped: its rows stay readable (the image of a closed store). */
  #final: Owned | null = null;
  /** The postgres ledger while owned: its lease gates every API call. */
  #owner: StateBackend['postgres'] = null;
  /** Waiting for the account (another replica holds it, or the claim policy said no). */
  #waiting = false;
  /** A standby that cannot reach the database: not ready to take over. */
  #unreachable = false;
  /** Why the account is parked, while it is. */
  #parkError: DaemonError | null = null;
  /** The watcher ended on its own (a fatal error not parked). */
  #ended: RunResult | null = null;
  #stopping: Promise<AccountStopResult> | null = null;
  #releasing: Promise<void> | null = null;
  /** The account was owned once (a later open that cannot reach the database stands by instead of failing). */
  #everOwned = false;
  /** Resolves the first time the runtime runs or stands by (see {@link AccountRuntime.whenPlaced}). */
  readonly #placed = deferred();
  /** Resolves the first time the runtime runs. */
  readonly #running = deferred();
  /** The start, or the taking back after a release, in progress. */
  #claiming: Promise<void> | null = null;
  #clientsClosed = false;
  /** The parking being recorded (the state turns `parked` once it is durable). */
  #parking: Promise<void> | null = null;
  /** Resolves once the current watcher ended and its end was handled (parked, or reported to onEnded). */
  #watchEnd: Promise<void> | null = null;
  /** Who is waiting for the open batches to settle (removal of the account). */
  #drainWaiters: (() => void)[] = [];
  /** A standby's rows of its account, read from the database (postgres backend). */
  #standbyRows: CachedStatusRows | null = null;
  /** The lease check of every API call (null: go on; an error: the lease cannot be trusted now). */
  readonly #gate: () => DaemonError | null;
  /** A standby's provisioning jobs of its account, read from the database the same way. */
  #standbyJobs: CachedStatusRows<ProvisionStatusRow> | null = null;

  constructor(options: AccountRuntimeOptions) {
    this.#o = options;
    this.#account = options.account;
    this.#config = options.config;
    this.#log = this.labelled ? options.logger.child({ account: options.account.name }) : options.logger;
    const credentials = options.credentials ?? accountCredentials(options.account, options.config, options.env);
    // NOTE: on the postgres backend no call runs while this replica cannot confirm it owns the account (its lease
    // was last renewed too long ago): it must not act on ownership another replica may take over (DESIGN.md §12).
    this.#gate = (): DaemonError | null =>
      this.#owner && !this.#owner.leaseTrusted()
        ? new DaemonError(`the lease of account "${this.name}" could not be confirmed (PostgreSQL unreachable?); no API calls until it is`, {
            kind: 'store',
            scope: 'attempt',
            code: LEASE_UNCONFIRMED,
          })
        : null;
    this.#budget = createApiBudget(this.#rates(), { clock: options.clock, log: this.#log.child({ component: 'budget' }), gate: this.#gate, tickMs: this.#tickMs() });
    const { rpcs, apis, submitApi } = this.#createApis(credentials);
    this.#rpcs = rpcs;
    this.#apis = apis;
    this.#submitApi = submitApi;
  }

  /** The account's name (`default` without `accounts`). */
  get name(): string {
    return this.#account.name;
  }

  /** The account as configured (the last applied configuration). */
  get account(): AccountConfig {
    return this.#account;
  }

  get state(): AccountRuntimeState {
    return this.#state;
  }

  /** Why the account is parked (state `parked`), else null. */
  get parkError(): DaemonError | null {
    return this.#parkError;
  }

  /** The configuration has `accounts`: metrics and log lines carry the account. */
  get labelled(): boolean {
    return this.#o.config.output.resultsLayout === 'account';
  }

  /** The account's API budget. */
  get budget(): ApiBudget {
    return this.#budget;
  }

  /** The watcher while the account is owned (running or parked), and the last one after stop(); else null. */
  get watcher(): Watcher | null {
    return this.#shown()?.watcher ?? null;
  }

  /** What the queries read: the owned state, or after stop() the last one. */
  #shown(): Owned | null {
    return this.#owned ?? this.#final;
  }

  /** Running with a writable state, or waiting as a standby (ready to take over). */
  isReady(): boolean {
    if (this.#state === 'standby') return this.#waiting && !this.#unreachable;
    if (this.#state === 'parked') return true;
    // An owner that cannot confirm its lease makes no API calls (the budget's gate): not ready either (§12).
    return this.#state === 'running' && (this.#owned?.store.healthy ?? false) && (this.#owner?.leaseTrusted() ?? true);
  }

  /**
   * Acquires the account (standing by while another replica owns it or the claim policy says no), loads its state,
   * reconciles its batches and starts watching. Resolves once running; rejects when the state cannot be opened or
   * stop() ended the wait (the runtime is then stopped, everything it opened closed).
   */
  async start(): Promise<void> {
    if (this.#state !== 'created') throw new Error(`AccountRuntime.start() called in state ${this.#state}`);
    this.#state = 'standby';
    this.#claiming = this.#claimAndRun();
    try {
      await this.#claiming;
    } catch (err) {
      await this.#closeOwned();
      await this.#closeClients();
      this.#state = 'stopped';
      throw err;
    }
  }

  /**
   * Resolves the first time the runtime owns its account and runs, or stands by for it (another replica owns it, or
   * the claim policy leaves it to one): the daemon's start waits for every account to be placed, not for every one
   * to be owned here (with several replicas some never are). Never rejects: a failed start rejects `start()`.
   */
  whenPlaced(): Promise<void> {
    return this.#placed.promise;
  }

  /** Resolves the first time the runtime owns its account and runs. Never rejects. */
  whenRunning(): Promise<void> {
    return this.#running.promise;
  }

  /**
   * Gives the account up and goes back to standby (the claim policy moves it to another replica): stops the
   * watcher (requests in flight finish within the grace), drains the outbox (≤ sinkFlushMs; the rest stays in
   * the ledger), closes the ledger (releasing the lease), then waits to acquire it again. Resolves once released.
   */
  release(): Promise<void> {
    if (this.#state !== 'running' && this.#state !== 'parked') return this.#releasing ?? Promise.resolve();
    this.#releasing ??= this.#release().finally(() => {
      this.#releasing = null;
    });
    return this.#releasing;
  }

  async #release(): Promise<void> {
    await this.#standBy(true);
  }

  /** Stops the owned account's work, closes its state (releasing a held lease), then waits to acquire it again. */
  async #standBy(drain: boolean): Promise<void> {
    this.#state = 'standby';
    this.#parkError = null;
    const owned = this.#owned;
    if (owned) {
      await this.#stopProvisioning(owned);
      await owned.watcher.stop();
      if (drain) await this.#drainOutbox(owned.outbox);
    }
    const flushError = await this.#closeOwned();
    if (!drain) this.#log.info({}, 'stopped work on the account: standing by');
    else if (flushError) this.#log.warn({ err: flushError }, 'released the account, but its state could not be flushed');
    else this.#log.info({}, 'released the account: standing by');
    this.#claiming = this.#claimAndRun();
    void this.#claiming.catch(async (err: unknown) => {
      if (this.#stopAbort.signal.aborted) return;
      const error = coerceDaemonError(err);
      this.#log.error({ err: error }, 'could not take the account back after releasing it');
      await this.#closeOwned();
      this.#ended = { reason: 'fatal', error };
      this.#o.onEnded?.(this.#ended);
    });
  }

  /**
   * Another replica took the account over while this one owned it (its lease was lost: a renewal or a fenced write
   * found the new epoch). Stops acting at once, without a drain (the new owner delivers what is left: the outbox
   * is in the database) and without releasing (the lease is not ours), then stands by again. Resolves once stopped.
   */
  #lost(error: DaemonError): Promise<void> {
    if (this.#state !== 'running' && this.#state !== 'parked') return this.#releasing ?? Promise.resolve();
    this.#releasing ??= (async () => {
      this.#log.warn({ code: error.code }, 'another replica owns the account now: stopping work on it and standing by');
      await this.#standBy(false);
    })().finally(() => {
      this.#releasing = null;
    });
    return this.#releasing;
  }

  /**
   * Applies a new configuration: the batches of this account are routed to its watcher (added ones start, removed
   * ones are cancelled). The account itself (credentials, endpoint, rate limit) is fixed for the runtime's life:
   * the daemon restarts a runtime whose account changed. A standby or parked runtime only keeps the configuration
   * for when it runs again.
   */
  async reload(config: CompiledConfig): Promise<{ added: number; cancelled: number; rearmed: number }> {
    this.#config = config;
    const watcher = this.#owned?.watcher;
    if (this.#state !== 'running' || !watcher || watcher.state !== 'running') return { added: 0, cancelled: 0, rearmed: 0 };
    // The provisioning entries apply first; their chunk batches join the file's.
    const withChunks = (await this.#owned?.provisioner?.apply(config)) ?? config;
    return this.#reloadWatcher(watcher, withChunks);
  }

  /** One watcher reload after another, so each sees the batches added before it. */
  #reloadWatcher(watcher: Watcher, config: CompiledConfig): Promise<{ added: number; cancelled: number; rearmed: number }> {
    const next = this.#reloads.then(() => watcher.reload(this.#view(config)));
    this.#reloads = next.catch(() => undefined);
    return next;
  }

  /**
   * For a reload whose file is unchanged: the provisioning jobs still look again (appended names in a device file,
   * a job `provision resolve` changed). Only when a chunk batch was added does the watcher reload.
   */
  async refreshProvisioning(config: CompiledConfig): Promise<void> {
    const owned = this.#owned;
    if (!owned?.provisioner || this.#state !== 'running' || owned.watcher.state !== 'running') return;
    const before = owned.provisioner.withBatches(config).batches;
    const after = await owned.provisioner.apply(config);
    if (after.batches !== before) await this.#reloadWatcher(owned.watcher, after);
  }

  /**
   * A row per provisioning job of this account (chunks settled / total, devices created / requested). A standby on
   * PostgreSQL shows them as the database holds them, read like {@link list}'s rows.
   */
  jobs(): ProvisionStatusRow[] {
    if (this.#state === 'standby' && this.#config.state.backend === 'postgres' && !this.#o.ledger) {
      this.#standbyJobs ??= new CachedStatusRows({
        read: async () => (await readPostgresJobs(this.#config, this.#o.env, { accounts: new Set([this.name]) })).map((j) => provisionStatusRow(j.state)),
        clock: this.#o.clock,
        maxAgeMs: STANDBY_ROWS_MAX_AGE_MS,
        onError: (err) => this.#log.warn({ err }, 'standby: cannot read the account\'s provisioning jobs from the database (/v1/jobs shows the last ones read)'),
      });
      const rows = this.#standbyJobs.rows();
      if (rows !== null) return rows;
    }
    return this.#shown()?.provisioner?.rows() ?? [];
  }

  /**
   * Resolves once no batch of this account is open (pending or fetching), the watching ended, or `timeoutMs`
   * passed; true when nothing is open. For the removal of an account: its pending batches are cancelled first.
   */
  async whenDrained(timeoutMs: number): Promise<boolean> {
    if (this.#openCount() === 0 || this.#state !== 'running') return this.#openCount() === 0;
    const abort = new AbortController();
    const drained = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    const ended = this.#owned!.watcher.done().then(() => undefined);
    await Promise.race([drained, ended, this.#o.clock.sleep(timeoutMs, abort.signal).catch(() => undefined)]);
    abort.abort();
    return this.#openCount() === 0;
  }

  /** Resolves once every configured batch of this account has settled (or is parked), or its watching ended. */
  async whenAllSettled(): Promise<void> {
    const watcher = this.#owned?.watcher;
    if (!watcher) return;
    await watcher.whenAllSettled();
    // A watcher that ended for the account's fatal error: its batches count as settled once parked durably.
    if (watcher.state === 'stopped') await this.#watchEnd;
  }

  /**
   * Rows for `status` and `/v1/batches`. A standby on PostgreSQL shows its account's rows as the database holds
   * them (read in the background, at most every 2 s, read-only, no lease: src/ledger/postgres-status.ts); until
   * the first read answers, what it showed before.
   */
  list(): StatusRow[] {
    if (this.#state === 'standby' && this.#config.state.backend === 'postgres' && !this.#o.ledger) {
      this.#standbyRows ??= new CachedStatusRows({
        read: () => readPostgresStatusRows(this.#config, this.#o.env, { accounts: new Set([this.name]) }),
        clock: this.#o.clock,
        maxAgeMs: STANDBY_ROWS_MAX_AGE_MS,
        onError: (err) => this.#log.warn({ err }, 'standby: cannot read the account\'s batches from the database (/v1/batches shows the last ones read)'),
      });
      const rows = this.#standbyRows.rows();
      if (rows !== null) return rows;
    }
    return this.#shown()?.store.list() ?? [];
  }

  /** Batch records per state (for `ibw_batches{state}`). */
  counts(): Record<string, number> {
    return this.#shown()?.store.counts() ?? {};
  }

  /** Outcome counts of settled batches (for the summary line). */
  outcomes(): Record<string, number> {
    return this.#shown()?.store.outcomes() ?? {};
  }

  /** One record by key. */
  record(key: string): BatchRecord | undefined {
    return this.#shown()?.store.record(key);
  }

  /** Events not yet acknowledged by every sink. */
  pendingDeliveries(): number {
    return this.#owned?.outbox.pending() ?? 0;
  }

  /** Waits until every event so far reached every sink (or the timeout passed). */
  async flushSinks(timeoutMs: number): Promise<boolean> {
    return this.#owned ? this.#owned.outbox.flush(timeoutMs) : true;
  }

  /** Drops settled batches older than the retention that are no longer in the configuration. */
  async prune(): Promise<number> {
    const watcher = this.#owned?.watcher;
    return watcher && watcher.state === 'running' ? watcher.prune() : 0;
  }

  /** Updates the rate and batch gauges of this account (on every scrape). */
  refreshMetrics(): void {
    const account = this.name;
    if (this.#owned) this.#o.metrics.setBatchCounts(this.#owned.store.counts(), account);
    for (const { job, counts } of this.#owned?.provisioner?.deviceCounts() ?? []) this.#o.metrics.setProvisionDevices(job, counts, account);
    for (const { action, qps } of this.#budget.rates()) this.#o.metrics.setRateLimit(action, qps, account);
    // NOTE: on the file backend this process owns the account while it runs it (it holds the state directory's
    // lock); on PostgreSQL the lease changes set the gauge (recordLeaseChange).
    if ((this.#config.state.backend ?? 'file') === 'file') this.#o.metrics.setAccountOwned(account, this.#state === 'running');
  }

  /**
   * Graceful stop: a standby stops waiting; the watcher stops (requests in flight finish within the grace), the
   * outbox drains (≤ sinkFlushMs; undelivered events stay in the ledger), the ledger is flushed and closed, the
   * clients and budget closed. Resolves with why the watching ended and whether the state was flushed.
   */
  stop(): Promise<AccountStopResult> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<AccountStopResult> {
    this.#stopAbort.abort(new AbortedError('stopped'));
    await this.#releasing?.catch(() => undefined);
    // A start (or a taking back) in progress ends first: aborted while standing by, or it finishes opening.
    await this.#claiming?.catch(() => undefined);
    await this.#parking;
    const owned = this.#owned;
    let result: RunResult = this.#ended ?? { reason: 'stopped', error: null };
    if (owned) {
      const wasParked = this.#state === 'parked';
      await this.#stopProvisioning(owned);
      const r = await owned.watcher.stop();
      // A parked account ended with its fatal error, which was handled: it stops like any other.
      if (!wasParked && !this.#ended) result = r;
      await this.#drainOutbox(owned.outbox);
    }
    const flushError = await this.#closeOwned();
    this.#final = owned;
    await this.#closeClients();
    this.#state = 'stopped';
    return { ...result, flushError };
  }

  // ---------------------------------------------------------------------------------------------------------

  /** The configuration the watcher sees: this account's batches, budget and state directory. */
  #view(config: CompiledConfig): CompiledConfig {
    if (!this.labelled) return config;
    const a = this.#account;
    return {
      ...config,
      batches: config.batches.filter((b) => b.account === a.name),
      rateLimit: this.#rates(),
      state: { ...config.state, dir: accountStateDir(config.state.dir, a.name) },
    };
  }

  /** The wake-up tick of the watcher and its budget. */
  #tickMs(): number {
    return this.#o.dispatchTickMs ?? DISPATCH_TICK_MS;
  }

  /** The budget: `rateLimit` without `accounts`; with it, the account's own (after `reserve`). */
  #rates(): RateLimitConfig & { submitQps: number } {
    // NOTE: the implicit account carries the default submitQps; `rateLimit` itself has no submit budget.
    const { statusQps, pageQps, concurrency, submitQps } = this.#account.rateLimit;
    if (!this.labelled) return { ...this.#o.config.rateLimit, submitQps };
    return { statusQps, pageQps, concurrency, submitQps };
  }

  /** No new submission; the ones in flight finish (a count chunk cut off would be parked as unknown). */
  async #stopProvisioning(owned: Owned): Promise<void> {
    await owned.provisioner?.stop().catch((err: unknown) => this.#log.warn({ err: coerceError(err) }, 'error while stopping provisioning'));
  }

  async #claimAndRun(): Promise<void> {
    const backend = await this.#acquire();
    if (this.#stopAbort.signal.aborted) {
      await backend?.ledger.close().catch(() => undefined);
      throw new AbortedError('stopped during start');
    }
    try {
      await this.#run(backend);
    } catch (err) {
      // A start that failed before it owned what it built (e.g. a provisioning job it must not run): close the
      // backend here, or its lease would stay held (and renewed) by a runtime that does nothing.
      if (this.#owned?.backend !== backend) await backend?.ledger.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Opens the account's state backend. On PostgreSQL, while another replica owns the account (or the claim policy
   * keeps it for another) this one stands by and tries again every third of the lease, until stop().
   */
  async #acquire(): Promise<StateBackend | null> {
    const config = this.#config;
    const log = this.#log;
    const waitMs = Math.max(100, Math.floor((config.state.postgres?.leaseMs ?? 15_000) / 3));
    const deps = {
      env: this.#o.env,
      logger: log.child({ component: 'ledger' }),
      clock: this.#o.clock,
      account: this.name,
      ...(this.#o.owner ? { owner: this.#o.owner } : {}),
      onLeaseChange: (change: LeaseChange) => {
        this.#o.metrics.recordLeaseChange(change);
        this.#o.onLeaseChange?.(change);
      },
      // Another process took the ledger over. File: it writes nothing more, so stop as a fatal error (exit 1).
      // PostgreSQL: another replica owns the account now; stop acting for it and stand by again (§12).
      onLeaseLost: (error: DaemonError) => {
        if (config.state.backend === 'postgres') void this.#lost(error);
        else this.#owned?.watcher.fail(error);
      },
    };
    // NOTE: a standby whose database goes away keeps standing by (one line when it goes, one when it is back); only
    // the first open of the runtime fails on an unreachable database.
    let opened = this.#state === 'standby' && this.#everOwned;
    for (;;) {
      this.#stopAbort.signal.throwIfAborted();
      if (this.#o.claims && !this.#o.claims.mayClaim(this.name)) {
        if (!this.#waiting) log.info({}, 'standing by: the claim policy leaves the account to another replica');
        this.#waiting = true;
        this.#placed.resolve();
        await this.#o.clock.sleep(waitMs, this.#stopAbort.signal);
        continue;
      }
      if (this.#o.ledger) {
        this.#waiting = false;
        return null;
      }
      try {
        const backend = await openStateBackend(config, deps);
        if (this.#unreachable) log.info({}, 'PostgreSQL reachable again');
        this.#unreachable = false;
        if (this.#waiting) log.info({}, 'took over the account: this replica owns it now');
        this.#waiting = false;
        this.#everOwned = true;
        return backend;
      } catch (err) {
        const locked = config.state.backend === 'postgres' && err instanceof DaemonError && err.code === 'LedgerLocked';
        const down = config.state.backend === 'postgres' && (opened || this.#waiting) && err instanceof DaemonError && err.kind === 'store' && err.scope === 'attempt';
        if (!locked && !down) throw err;
        opened = true;
        if (down && !this.#unreachable) log.error({ err }, 'standing by, but PostgreSQL cannot be reached; retrying');
        if (!down && this.#unreachable) log.info({}, 'PostgreSQL reachable again');
        this.#unreachable = down;
        if (locked && !this.#waiting) log.info({ reason: err.message }, 'standing by: another replica owns the account');
        this.#waiting = true;
        this.#placed.resolve();
        await this.#o.clock.sleep(waitMs, this.#stopAbort.signal);
      }
    }
  }

  /** Builds the store, outbox and watcher over an open backend and starts watching. */
  async #run(backend: StateBackend | null): Promise<void> {
    const config = this.#config;
    const log = this.#log;
    const o = this.#o;
    this.#owner = backend?.postgres ?? null;
    const ledger = o.ledger ?? backend!.ledger;
    const view = this.#view(config);
    const store = new StateStore({
      ledger,
      log,
      now: () => o.clock.now(),
      clock: o.clock,
      onHealth: (healthy, source, error) => {
        if (healthy) log.info({}, 'state and results writable again; ready');
        else if (source === 'results') log.error({ err: error ?? undefined, dir: config.output.resultsDir }, 'cannot write result files; not ready until it recovers');
        else log.error({ err: error ?? undefined, dir: view.state.dir }, 'cannot write the state directory; not ready until it recovers');
      },
    });
    const outbox = new Outbox({
      sinks: [...o.sinks],
      ledger: store,
      clock: o.clock,
      random: o.random,
      logger: log,
      onDelivery: (info) => o.metrics.recordSinkDelivery(info.sink, info.outcome, this.name),
      ...(o.outbox ?? {}),
    });
    store.publishTo(outbox);
    const writerOptions = { resultsDir: config.output.resultsDir, includeSecrets: config.devices.includeSecrets, layout: config.output.resultsLayout ?? 'product' };
    const results = o.results ?? backend?.results ?? createResultWriter(writerOptions);
    // Provisioning (DESIGN.md §13): the chunks' ApplyIds are batches of this watcher from its first reconcile on.
    let provisioner: DaemonProvisioner | null = null;
    let watched = view;
    if (o.provision !== false) {
      provisioner = createDaemonProvisioner({
        config,
        account: this.name,
        stateDir: view.state.dir,
        ...(backend?.jobs ? { jobs: backend.jobs } : {}),
        submitApi: this.#submitApi,
        // NOTE: checked again right before sending: the intent's fenced save may have waited on the database, or
        // the process may have been paused, since the budget's gate let the submission's token go.
        beforeSend: () => {
          const refused = this.#gate();
          return refused === null ? Promise.resolve() : Promise.reject(refused);
        },
        budget: this.#budget,
        store,
        outbox,
        results,
        reload: async () => {
          const owned = this.#owned;
          if (owned?.provisioner && owned.watcher.state === 'running') await this.#reloadWatcher(owned.watcher, owned.provisioner.withBatches(this.#config));
        },
        knows: (key) => this.#owned?.watcher.record(key) !== undefined,
        clock: o.clock,
        log: log.child({ component: 'provision' }),
      });
      await provisioner.prepare(config);
      watched = this.#view(provisioner.withBatches(config));
    }
    const watcher = new Watcher({
      config: watched,
      store,
      budget: this.#budget,
      ...this.#apis,
      results: provisioner?.results ?? results,
      clock: o.clock,
      random: o.random,
      log,
      shutdownGraceMs: o.shutdownGraceMs ?? 5000,
      wakeTickMs: this.#tickMs(),
      hooks: {
        onSettled: (rec) => {
          if (rec.outcome && rec.settledAt !== null) o.metrics.recordSettled(rec.outcome, Math.max(0, rec.settledAt - rec.firstSeenAt) / 1000, this.name);
          this.#notifyDrained();
        },
      },
    });
    this.#owned = { backend, store, outbox, watcher, provisioner };
    // NOTE: every request in flight listens on this one signal; more than 10 is normal, not a leak.
    setMaxListeners(view.rateLimit.concurrency * 4 + 16, watcher.requestSignal);
    await watcher.start();
    outbox.start();
    this.#state = 'running';
    provisioner?.start();
    this.#placed.resolve();
    this.#running.resolve();
    this.#watchEnd = watcher.done().then((result) => this.#onWatcherEnd(watcher, result));
  }

  /** The watcher ended: on its own (a fatal error) it parks the account or ends the runtime. */
  async #onWatcherEnd(watcher: Watcher, result: RunResult): Promise<void> {
    this.#notifyDrained();
    if (this.#owned?.watcher !== watcher || this.#state !== 'running' || this.#stopping || this.#releasing) return;
    if (result.reason !== 'fatal' || !result.error) return;
    // NOTE: a ledger another process took over cannot record a parking, and is not the account's fault: end.
    const park = typeof this.#o.parkOnFatal === 'function' ? this.#o.parkOnFatal() : (this.#o.parkOnFatal ?? false);
    if (park && result.error.kind !== 'store') {
      this.#parking = this.#park(result.error);
      await this.#parking;
      return;
    }
    this.#ended = result;
    this.#o.onEnded?.(result);
  }

  /** Parks every open batch of the account with the reason, durably (see the module comment). */
  async #park(error: DaemonError): Promise<void> {
    const owned = this.#owned!;
    this.#parkError = error;
    const now = this.#o.clock.now();
    const steps = [...owned.store.records()].filter(isParkable).map((rec) => parkForAccount(rec, error, now));
    this.#log.fatal(
      { account: this.name, code: error.code, kind: error.kind, batches: steps.length },
      `account ${this.name} parked: ${error.message}; no more API calls for it until the next start (fix its credentials, then restart or reload); the other accounts go on`,
    );
    for (let i = 0; i < steps.length; i += 1000) {
      if (!(await owned.store.commit(steps.slice(i, i + 1000)))) {
        this.#log.error({ batches: steps.length - i }, 'could not record the parking of some batches; they show their last state until the next start');
        break;
      }
    }
    this.#state = 'parked';
  }

  #openCount(): number {
    const counts = this.#owned?.store.counts() ?? {};
    return (counts.pending ?? 0) + (counts.fetching ?? 0);
  }

  #notifyDrained(): void {
    if (this.#drainWaiters.length === 0 || (this.#openCount() > 0 && this.#owned?.watcher.state === 'running')) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  async #drainOutbox(outbox: Outbox): Promise<void> {
    const drained = await outbox.flush(this.#o.sinkFlushMs ?? 3000);
    if (!drained) this.#log.warn({ pending: outbox.pending() }, 'some deliveries are still pending; they resume at the next start');
  }

  /** Closes the outbox and the ledger of the owned account; resolves with the error when the state could not be flushed. */
  async #closeOwned(): Promise<DaemonError | null> {
    const owned = this.#owned;
    this.#owned = null;
    this.#owner = null;
    if (!owned) return null;
    let flushError: DaemonError | null = null;
    try {
      await owned.outbox.stop();
    } catch (err) {
      this.#log.warn({ err: coerceError(err), step: 'outbox' }, 'error while shutting down');
    }
    try {
      flushError = await owned.store.close();
    } catch (err) {
      this.#log.warn({ err: coerceError(err), step: 'state' }, 'error while shutting down');
    }
    return flushError;
  }

  async #closeClients(): Promise<void> {
    if (this.#clientsClosed) return;
    this.#clientsClosed = true;
    this.#healthStop.abort();
    try {
      this.#budget.close();
      await Promise.all(this.#rpcs.map((r) => r.close()));
    } catch (err) {
      this.#log.warn({ err: coerceError(err), step: 'api' }, 'error while shutting down');
    }
  }

  /**
   * The two API clients. Status polls: one attempt each; the watcher takes the token from the budget right before
   * each poll and the batch's backoff does the retrying. Paging and registration: retries inside, each attempt
   * takes its token in `beforeAttempt`. Every attempt's outcome feeds the budget (throttling slows it down).
   */
  #createApis(credentials: CredentialsProvider): { rpcs: RpcClient[]; apis: { statusApi: IotApi; api: IotApi }; submitApi: ReturnType<typeof createIotApi> } {
    const o = this.#o;
    const config = o.config;
    const settings = this.labelled ? this.#account : config.alibaba;
    const budget = this.#budget;
    const account = this.name;
    const health = new ActionHealth({ failureWarnAfterMs: config.alibaba.failureWarnAfterMs ?? 60_000, clock: o.clock, log: this.#log.child({ component: 'api' }) });
    void health.run(this.#healthStop.signal);
    const onAttempt = (info: AttemptInfo): void => {
      health.record(info);
      o.metrics.recordApiAttempt({ action: info.action, outcome: info.outcome, durationMs: info.durationMs, account });
      if (info.outcome === 'throttled') o.metrics.recordThrottle(info.action, account);
      budget.feedback(info.action, info.outcome);
    };
    const common = {
      endpoint: settings.endpoint,
      credentials,
      signatureVersion: settings.signatureVersion,
      requestTimeoutMs: settings.requestTimeoutMs,
      clock: o.clock,
      random: o.random,
      logger: this.#log.child({ component: 'api' }),
      onAttempt,
      ...(o.rpc?.connectTimeoutMs !== undefined ? { connectTimeoutMs: o.rpc.connectTimeoutMs } : {}),
      ...(o.rpc?.retryBaseDelayMs !== undefined ? { retryBaseDelayMs: o.rpc.retryBaseDelayMs } : {}),
      ...(o.rpc?.retryMaxDelayMs !== undefined ? { retryMaxDelayMs: o.rpc.retryMaxDelayMs } : {}),
    };
    const statusRpc = createRpcClient({ ...common, maxAttempts: 1 });
    const retryRpc = createRpcClient({
      ...common,
      maxAttempts: o.rpc?.maxAttempts ?? 4,
      beforeAttempt: (action, signal) => budget.acquire(action, signal),
    });
    // Provisioning submits: one attempt each, the token taken by the job run before its intent is recorded.
    const submitRpc = createRpcClient({ ...common, maxAttempts: 1 });
    return {
      rpcs: [statusRpc, retryRpc, submitRpc],
      apis: {
        statusApi: createIotApi({ rpc: statusRpc, defaultIotInstanceId: settings.iotInstanceId }),
        api: createIotApi({ rpc: retryRpc, defaultIotInstanceId: settings.iotInstanceId }),
      },
      submitApi: createIotApi({ rpc: submitRpc, defaultIotInstanceId: settings.iotInstanceId }),
    };
  }
}

/** The credentials of an account: `alibaba.credentials` without `accounts`; with it, the account's own. */
export function accountCredentials(account: AccountConfig, config: CompiledConfig, env: Readonly<Record<string, string | undefined>>): CredentialsProvider {
  if (config.output.resultsLayout !== 'account') return config.alibaba.credentials === 'chain' ? createChainCredentials() : createEnvCredentials(env);
  const c = account.credentials;
  return c.mode === 'chain'
    ? createChainCredentials()
    : createEnvCredentials(env, {
        names: { accessKeyId: c.accessKeyIdEnv, accessKeySecret: c.accessKeySecretEnv, securityToken: c.securityTokenEnv },
        account: account.name,
      });
}

function coerceDaemonError(err: unknown): DaemonError {
  if (err instanceof DaemonError) return err;
  const e = coerceError(err);
  return new DaemonError(e.message, { kind: 'internal', scope: 'process', code: 'Internal', cause: e });
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
