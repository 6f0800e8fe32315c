/**
 * The daemon: the composition root over one {@link AccountRuntime} per account (DESIGN.md §11). Each runtime owns
 * its account's credentials, API budget and clients, state backend, store, outbox and watcher; the daemon keeps
 * what is process-wide: the configuration and its reload, the logger, the sinks (log, emitter, events file,
 * webhook), metrics, the ops HTTP server and housekeeping. This is the only module (with account-runtime.ts) that
 * knows the concrete classes. It reads no environment and installs no signal handlers itself: `main.ts` does that
 * for the CLI, and library users call `start()`/`stop()`.
 *
 * Without `accounts` there is exactly one runtime, `default`, built from `alibaba` and `rateLimit`, as before
 * accounts. With several accounts, a process-fatal API error of one parks that account and the others go on; with
 * one, the daemon ends (exit 1) as DESIGN.md §3 says.
 *
 * Lifecycle: created ──start()──► running ──stop()──► stopped. Readiness (`/readyz`) is true from the end of
 * start() (config and ledgers loaded) until stop() begins, while every account runs with a writable state or
 * stands by, connected, for another replica's account.
 */
import { join } from 'node:path';

import { type AccountClaims, AccountRuntime, type AccountRuntimeOptions } from './account-runtime.js';
import { provisionConfigIssues } from './provision/daemon-provisioning.js';
import type { CredentialsProvider } from './alibaba/credentials.js';
import { accountCredentialIssues } from './config/env-overrides.js';
import type { AccountConfig, CompiledConfig } from './config/types.js';
import { systemClock, systemRandom, type Clock, type Random } from './core/clock.js';
import type { EventSink, LedgerStore, ResultWriter } from './core/ports.js';
import { DEFAULT_ACCOUNT } from './core/record.js';
import type { StatusRow } from './core/status-row.js';
import type { RunResult, Watcher } from './core/watcher.js';
import { ConfigError, DaemonError, coerceError } from './errors.js';
import { accountStateDir } from './ledger/open-state.js';
import { type Replicas, startProcessReplicas } from './ledger/replicas.js';
import { startHousekeeping, watchConfigFile, type ConfigFileWatch, type CronScheduler, type Housekeeping } from './ops/housekeeping.js';
import { resolveOpsAuth, startOpsServer, type OpsServer } from './ops/http-server.js';
import type { Logger } from './ops/logger.js';
import { createMetrics, type Metrics } from './ops/metrics.js';
import { createEmitterSink, type EmitterSink } from './sinks/emitter.js';
import { createEventsFileSink, type EventsFileSink } from './sinks/events-file.js';
import { createLogSink } from './sinks/log-sink.js';
import { createResultWriter } from './sinks/result-writer.js';
import { createWebhookSink } from './sinks/webhook.js';
import { SECRET_ENV_CODES, readEnvSecret } from './secret-env.js';

/** Something given per account: one value for every account, or a function of the account's name. */
export type PerAccount<T> = T | ((account: string) => T);

export interface DaemonOptions {
  config: CompiledConfig;
  logger: Logger;
  /** Environment for credentials and the webhook secret. */
  env: Readonly<Record<string, string | undefined>>;
  clock?: Clock;
  random?: Random;
  /** @default per account: its env variables or the official chain (`alibaba.credentials` without `accounts`) */
  credentials?: PerAccount<CredentialsProvider>;
  /** @default per account: a file ledger in its state directory, or its PostgreSQL rows */
  ledger?: PerAccount<LedgerStore>;
  /** @default result files in `config.output.resultsDir` */
  results?: PerAccount<ResultWriter>;
  /** Re-reads the configuration for hot reload (SIGHUP, file change, cron). @default none: reload is a no-op */
  loadConfig?: () => Promise<CompiledConfig>;
  /** Start the ops HTTP server when `config.http.listen` is set. @default true */
  http?: boolean;
  /** Run node-cron housekeeping and watch the config file. @default true */
  housekeeping?: boolean;
  /** Injected cron scheduler (tests). @default node-cron in UTC */
  cronScheduler?: CronScheduler;
  /** Debounce of config file changes. @default 500 */
  watchDebounceMs?: number;
  /** Grace period for requests in flight on stop. @default 5000 */
  shutdownGraceMs?: number;
  /** Each account's wake-up tick (`AccountRuntimeOptions.dispatchTickMs`). @default DISPATCH_TICK_MS */
  dispatchTickMs?: number;
  /** How long stop() waits for the sinks to drain. @default 3000 */
  sinkFlushMs?: number;
  /** How long a reload that removes an account waits for its cancelled batches to settle. @default 30000 */
  removeAccountDrainMs?: number;
  /** Who may own which account (several replicas, issue #16). @default every account, at any time */
  claims?: AccountClaims;
  /** Extra API client options (tests: short retry delays). */
  rpc?: { retryBaseDelayMs?: number; retryMaxDelayMs?: number; maxAttempts?: number; connectTimeoutMs?: number };
  /** Sink retry delays. */
  outbox?: { retryInitialMs?: number; retryMaxMs?: number };
  /** Run the configuration's `provision` entries (DESIGN.md §13). @default true */
  provision?: boolean;
}

export type DaemonState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

/** What stop() reports: why the loop ended, and whether the state was flushed for the next start. */
export interface StopResult extends RunResult {
  /** Set when the ledger could not be compacted or closed at shutdown: the shutdown was not clean. */
  flushError: DaemonError | null;
}

/** The fields of an account whose change restarts its runtime (everything but where it is written in the file). */
function accountFingerprint(a: AccountConfig): string {
  const { source: _source, ...rest } = a;
  return JSON.stringify(rest);
}

/** The one account of a configuration without `accounts` (hand-built configurations may leave `accounts` out). */
function implicitAccount(config: CompiledConfig): AccountConfig {
  const found = (config.accounts as AccountConfig[] | undefined)?.find((a) => a.name === DEFAULT_ACCOUNT) ?? config.accounts?.[0];
  if (found) return found;
  const { alibaba, rateLimit } = config;
  return {
    name: DEFAULT_ACCOUNT,
    regionId: alibaba.regionId,
    endpoint: alibaba.endpoint,
    iotInstanceId: alibaba.iotInstanceId,
    signatureVersion: alibaba.signatureVersion,
    requestTimeoutMs: alibaba.requestTimeoutMs,
    credentials: { mode: 'chain' },
    rateLimit: { ...rateLimit, submitQps: 5 },
    quota: { statusQps: rateLimit.statusQps, pageQps: rateLimit.pageQps, submitQps: 5 },
    reserve: 0,
    source: null,
  };
}

/** `config` with the `provision` entries of `next` (absent when `next` has none). */
function withProvision(config: CompiledConfig, next: CompiledConfig): CompiledConfig {
  const { provision: _running, ...rest } = config;
  return next.provision === undefined ? rest : { ...rest, provision: next.provision };
}

function perAccount<T>(value: PerAccount<T> | undefined, account: string): T | undefined {
  return typeof value === 'function' ? (value as (account: string) => T)(account) : value;
}

export class Daemon {
  readonly emitter: EmitterSink;
  readonly metrics: Metrics;
  #state: DaemonState = 'created';
  #config: CompiledConfig;
  readonly #o: DaemonOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #log: Logger;
  /** One runtime per account, in file order. */
  readonly #runtimes = new Map<string, AccountRuntime>();
  /** PostgreSQL: this process's heartbeat and fair-share claims, shared by every runtime (§12). */
  #replicas: Replicas | null = null;
  #sinks: EventSink[] = [];
  #eventsFile: EventsFileSink | null = null;
  #http: OpsServer | null = null;
  #housekeeping: Housekeeping | null = null;
  #fileWatch: ConfigFileWatch | null = null;
  #reloading: Promise<string> | null = null;
  #starting: Promise<void> | null = null;
  /** The problems of the last rejected reload (logged once). */
  #lastRejected: string | null = null;
  #stopping: Promise<StopResult> | null = null;
  /** Resolves done(): a runtime ended on its own (fatal, not parked), or stop() finished. */
  #resolveDone: ((result: RunResult) => void) | null = null;
  readonly #done: Promise<RunResult>;

  constructor(options: DaemonOptions) {
    this.#o = options;
    this.#config = options.config;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? systemRandom;
    this.#log = options.logger;
    this.emitter = createEmitterSink({
      onListenerError: (err, event) => this.#log.warn({ err: coerceError(err), eventId: event.id }, 'event listener threw'),
    });
    // With `accounts` every per-account series is labelled with its account; without, no label (as before accounts).
    this.metrics = createMetrics(this.#labelled(options.config) ? { accounts: options.config.accounts.map((a) => a.name) } : {});
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  get state(): DaemonState {
    return this.#state;
  }

  get config(): CompiledConfig {
    return this.#config;
  }

  /** The runtimes, one per account, in file order. */
  get runtimes(): readonly AccountRuntime[] {
    return [...this.#runtimes.values()];
  }

  /** The runtime of one account, if the daemon serves it. */
  runtime(account: string): AccountRuntime | undefined {
    return this.#runtimes.get(account);
  }

  /**
   * The watcher of the first account (the only one without `accounts`), once it runs. With several accounts use
   * {@link Daemon.list}, {@link Daemon.record} or {@link Daemon.runtime}.
   */
  get watcher(): Watcher {
    const watcher = this.runtimes[0]?.watcher;
    if (!watcher) throw new Error('daemon not started');
    return watcher;
  }

  /** The ops server's URL, when it runs. */
  get httpUrl(): string | null {
    return this.#http?.url ?? null;
  }

  isReady(): boolean {
    if (this.#state !== 'running' && this.#state !== 'starting') return false;
    const runtimes = this.runtimes;
    if (runtimes.length === 0) return false;
    // A connected standby is ready too: ready to take over (DESIGN.md §12). While starting, only standbys and
    // accounts already running count; a parked account is not ready (it serves status, not its batches).
    return runtimes.every((r) => (r.state === 'running' || r.state === 'standby') && r.isReady());
  }

  /** Rows of every account for `status` and `/v1/batches`, sorted by account, productKey, applyId. */
  list(): StatusRow[] {
    const runtimes = [...this.#runtimes.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return runtimes.flatMap((r) => r.list());
  }

  /** Batch records per state, summed over the accounts. */
  counts(): Record<string, number> {
    return sumCounts(this.runtimes.map((r) => r.counts()));
  }

  /** Outcome counts of settled batches, summed over the accounts. */
  outcomes(): Record<string, number> {
    return sumCounts(this.runtimes.map((r) => r.outcomes()));
  }

  /** One batch record by key (any account). */
  record(key: string): ReturnType<AccountRuntime['record']> {
    for (const r of this.#runtimes.values()) {
      const rec = r.record(key);
      if (rec) return rec;
    }
    return undefined;
  }

  /** The configuration has `accounts` (results per account, labelled metrics, one runtime per account). */
  #labelled(config: CompiledConfig): boolean {
    return config.output.resultsLayout === 'account';
  }

  /**
   * With an `accounts` section every account's variables are checked first, so a missing one is reported at its
   * account's line before anything starts (DESIGN.md §11).
   */
  #checkCredentials(config: CompiledConfig, accounts: readonly AccountConfig[]): void {
    if (!this.#labelled(config) || this.#o.credentials) return;
    const issues = accounts.flatMap((account) => accountCredentialIssues(account, config.accounts.indexOf(account), this.#o.env));
    if (issues.length > 0) throw new ConfigError(issues);
  }

  /** The runtime of one account over the process's sinks and metrics. */
  #createRuntime(account: AccountConfig, config: CompiledConfig): AccountRuntime {
    const o = this.#o;
    const credentials = perAccount(o.credentials, account.name);
    const ledger = perAccount(o.ledger, account.name);
    const results = perAccount(o.results, account.name);
    const options: AccountRuntimeOptions = {
      account,
      config,
      logger: this.#log,
      env: o.env,
      clock: this.#clock,
      random: this.#random,
      sinks: this.#sinks,
      metrics: this.metrics,
      // With several accounts (now: a reload may add or remove some) one account's fatal error parks it only.
      parkOnFatal: () => this.#labelled(this.#config) && this.#config.accounts.length > 1,
      ...(credentials ? { credentials } : {}),
      ...(ledger ? { ledger } : {}),
      ...(results ? { results } : {}),
      ...(o.claims ? { claims: o.claims } : {}),
      ...(this.#replicas && !o.claims ? this.#replicaOptions(this.#replicas) : {}),
      onEnded: (result) => this.#resolveDone?.(result),
      ...(o.shutdownGraceMs !== undefined ? { shutdownGraceMs: o.shutdownGraceMs } : {}),
      ...(o.dispatchTickMs !== undefined ? { dispatchTickMs: o.dispatchTickMs } : {}),
      ...(o.sinkFlushMs !== undefined ? { sinkFlushMs: o.sinkFlushMs } : {}),
      ...(o.rpc ? { rpc: o.rpc } : {}),
      ...(o.outbox ? { outbox: o.outbox } : {}),
      ...(o.provision === false ? { provision: false } : {}),
    };
    return new AccountRuntime(options);
  }

  /** What every runtime gets of the process's replica policy: the claims, the lease owner id, the lease changes. */
  #replicaOptions(replicas: Replicas): Pick<AccountRuntimeOptions, 'claims' | 'owner' | 'onLeaseChange'> {
    return { claims: replicas.claims, owner: replicas.id, onLeaseChange: (change) => replicas.claims.noteLeaseChange(change) };
  }

  start(): Promise<void> {
    if (this.#state !== 'created') return Promise.reject(new Error(`Daemon.start() called in state ${this.#state}`));
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    this.#state = 'starting';
    const config = this.#config;
    const log = this.#log;
    try {
      const accounts = this.#labelled(config) ? config.accounts : [implicitAccount(config)];
      if (accounts.length > 1 && this.#o.ledger !== undefined && typeof this.#o.ledger !== 'function') {
        // NOTE: one ledger holds one account's state; sharing it would mix the accounts' records and leases.
        throw new DaemonError('DaemonOptions.ledger is one ledger but the configuration has several accounts: pass a function of the account', {
          kind: 'internal',
          scope: 'process',
          code: 'InvalidOption',
        });
      }
      const provisionIssues = this.#o.provision === false ? [] : provisionConfigIssues(config);
      if (provisionIssues.length > 0) throw new ConfigError(provisionIssues);
      this.#checkCredentials(config, accounts);
      const webhookSecret = config.output.webhook ? readEnvSecret(this.#o.env, config.output.webhook.secretEnv, { codes: SECRET_ENV_CODES.webhook }) : undefined;
      if (config.output.webhook && !webhookSecret) {
        const name = config.output.webhook.secretEnv;
        throw new DaemonError(`output.webhook is set but neither ${name} nor ${name}_FILE (output.webhook.secretEnv) holds a secret`, {
          kind: 'config',
          scope: 'process',
          code: 'WebhookSecretMissing',
        });
      }
      // /healthz answers while the ledgers load; /readyz stays 503 until everything is up.
      if (this.#o.http !== false && config.http.listen) {
        this.#http = await startOpsServer({
          host: config.http.listen.host,
          port: config.http.listen.port,
          metrics: this.#liveMetrics(),
          isReady: () => this.isReady(),
          listBatches: () => this.list(),
          listJobs: () => this.runtimes.flatMap((r) => r.jobs()),
          logger: log.child({ component: 'http' }),
          auth: resolveOpsAuth(config.http.auth, this.#o.env),
        });
        log.info({ url: this.#http.url }, 'ops endpoints listening');
      }
      // A bad resultsDir or events file is reported at start, not at the first settle.
      if (!this.#o.results) {
        await createResultWriter({ resultsDir: config.output.resultsDir, includeSecrets: config.devices.includeSecrets, layout: config.output.resultsLayout ?? 'product' }).prepare();
      }
      this.#sinks = this.#createSinks(webhookSecret);
      await this.#eventsFile?.prepare();

      // Several replicas on PostgreSQL: one heartbeat and claims policy per process spreads the accounts (§12); an
      // account the policy hands over is released (the next replica takes it at once).
      if (config.state.backend === 'postgres' && !this.#o.ledger && !this.#o.claims) {
        this.#replicas = await startProcessReplicas(config, {
          env: this.#o.env,
          clock: this.#clock,
          logger: log.child({ component: 'replicas' }),
          accounts: accounts.map((a) => a.name),
          onRelease: (account) => this.#runtimes.get(account)?.release(),
        });
      }
      for (const account of accounts) this.#runtimes.set(account.name, this.#createRuntime(account, config));
      await this.#startRuntimes(this.runtimes);

      if (this.#o.housekeeping !== false) this.#startHousekeeping();
      this.#state = 'running';
      this.#logRunning();
    } catch (err) {
      this.#state = 'stopping';
      this.#replicas?.claims.leave();
      await Promise.allSettled(this.runtimes.map((r) => r.stop()));
      await this.#replicas?.stop();
      await this.#closeAll();
      this.#state = 'stopped';
      throw err;
    }
  }

  /** Starts runtimes together; the first failure stops the others (ending any standby's wait) and is thrown. */
  async #startRuntimes(runtimes: readonly AccountRuntime[]): Promise<void> {
    const starts = runtimes.map((r) => r.start());
    const all = Promise.all(starts);
    // NOTE: a start that fails before every account is placed is handled through `starts` below; `all` would
    // otherwise reject unobserved (an unhandled rejection beside the start's own error).
    void all.catch(() => undefined);
    try {
      // NOTE: with several replicas (§12) some accounts stand by here for good: the start waits until every account
      // runs or stands by, and at least one runs (a replica that owns nothing stays a starting standby, as before).
      await Promise.all(runtimes.map((r, i) => Promise.race([r.whenPlaced(), starts[i]])));
      await Promise.race([all, ...runtimes.map((r) => r.whenRunning())]);
    } catch (err) {
      await Promise.allSettled(runtimes.map((r) => r.stop()));
      await Promise.allSettled(starts);
      throw err;
    }
    // An account that stood by at start and fails when it takes over later ends the daemon (exit 1), as at start.
    for (const [i, started] of starts.entries()) {
      started.catch((err: unknown) => {
        if (this.#state !== 'running' || this.#runtimes.get(runtimes[i]!.name) !== runtimes[i]) return;
        const error = err instanceof DaemonError ? err : new DaemonError(coerceError(err).message, { kind: 'internal', scope: 'process', code: 'Internal' });
        this.#log.error({ account: runtimes[i]!.name, err: error }, 'could not take the account over');
        this.#resolveDone?.({ reason: 'fatal', error });
      });
    }
  }

  /** The start line: exactly as before accounts without them; one line per account, then the process's, with. */
  #logRunning(): void {
    const config = this.#config;
    if (!this.#labelled(config)) {
      const { statusQps, pageQps, concurrency } = config.rateLimit;
      this.#log.info(
        {
          account: DEFAULT_ACCOUNT,
          regionId: config.alibaba.regionId,
          endpoint: config.alibaba.endpoint,
          signatureVersion: config.alibaba.signatureVersion,
          budget: { statusQps, pageQps, concurrency },
          stateDir: config.state.dir,
          resultsDir: config.output.resultsDir,
          batches: config.batches.length,
          ...this.counts(),
        },
        'iot-batch-watcher running',
      );
      return;
    }
    for (const r of this.runtimes) this.#logAccount(r, r.state === 'standby' ? 'account standing by: another replica owns it' : 'account running');
    this.#log.info(
      { accounts: this.runtimes.map((r) => r.name), stateDir: config.state.dir, resultsDir: config.output.resultsDir, batches: config.batches.length, ...this.counts() },
      'iot-batch-watcher running',
    );
  }

  #logAccount(r: AccountRuntime, message: string): void {
    const a = r.account;
    const { statusQps, pageQps, concurrency } = a.rateLimit;
    this.#log.info(
      {
        account: a.name,
        state: r.state,
        regionId: a.regionId,
        endpoint: a.endpoint,
        signatureVersion: a.signatureVersion,
        budget: { statusQps, pageQps, concurrency },
        ...((this.#config.state.backend ?? 'file') === 'file' ? { stateDir: accountStateDir(this.#config.state.dir, a.name) } : {}),
        batches: this.#config.batches.filter((b) => b.account === a.name).length,
        ...r.counts(),
      },
      message,
    );
  }

  /** Log and emitter always; the events file and the webhook when configured. */
  #createSinks(webhookSecret: string | undefined): EventSink[] {
    const config = this.#config;
    const log = this.#log;
    const sinks: EventSink[] = [createLogSink(log), this.emitter];
    if (config.output.eventsFile) {
      this.#eventsFile = createEventsFileSink({ file: config.output.eventsFile });
      sinks.push(this.#eventsFile);
    }
    if (config.output.webhook && webhookSecret) {
      sinks.push(
        createWebhookSink({
          url: config.output.webhook.url,
          secret: webhookSecret,
          timeoutMs: config.output.webhook.timeoutMs,
          deadLetterFile: join(config.state.dir, 'dead-letter.jsonl'),
          clock: this.#clock,
          random: this.#random,
          logger: log.child({ component: 'webhook' }),
        }),
      );
    }
    return sinks;
  }

  /** node-cron housekeeping (reload, summary, prune) and the config file watch. */
  #startHousekeeping(): void {
    const config = this.#config;
    const log = this.#log;
    this.#housekeeping = startHousekeeping({
      schedules: {
        reloadConfig: config.housekeeping.reloadConfig,
        summary: config.housekeeping.summary,
        prune: config.housekeeping.prune,
      },
      tasks: {
        reloadConfig: async () => {
          await this.reload('cron');
        },
        summary: () => this.logSummary(),
        prune: async () => {
          let pruned = 0;
          for (const r of this.runtimes) pruned += await r.prune();
          log.info({ pruned }, 'ledger pruned by retention');
        },
      },
      logger: log.child({ component: 'housekeeping' }),
      ...(this.#o.cronScheduler ? { scheduler: this.#o.cronScheduler } : {}),
      clock: this.#clock,
    });
    if (config.file && this.#o.loadConfig) {
      this.#fileWatch = watchConfigFile({
        file: config.file,
        debounceMs: this.#o.watchDebounceMs ?? 500,
        onChange: () => {
          void this.reload('file change');
        },
        logger: log.child({ component: 'config-watch' }),
        clock: this.#clock,
      });
    }
  }

  /** Metrics whose batch and rate gauges are refreshed on every scrape. */
  #liveMetrics(): Metrics {
    const base = this.metrics;
    const refresh = (): void => {
      for (const r of this.#runtimes.values()) r.refreshMetrics();
    };
    return Object.assign(Object.create(base) as Metrics, {
      render: async () => {
        refresh();
        return base.render();
      },
    });
  }

  /** One info line with counts per state and outcome (and, with several accounts, which are parked). */
  logSummary(): void {
    if (this.runtimes.length === 0) return;
    const pendingDeliveries = this.runtimes.reduce((n, r) => n + r.pendingDeliveries(), 0);
    const parked = this.runtimes.filter((r) => r.state === 'parked').map((r) => r.name);
    this.#log.info(
      { counts: this.counts(), outcomes: this.outcomes(), pendingDeliveries, ...(parked.length > 0 ? { parkedAccounts: parked } : {}) },
      'summary',
    );
  }

  /**
   * Re-reads the configuration. An invalid file keeps the running config and logs every problem.
   * Resolves with the outcome counted by `ibw_config_reloads_total`.
   */
  reload(reason: string): Promise<string> {
    if (this.#reloading) return this.#reloading;
    this.#reloading = this.#reload(reason).finally(() => {
      this.#reloading = null;
    });
    return this.#reloading;
  }

  async #reload(reason: string): Promise<string> {
    const loader = this.#o.loadConfig;
    if (!loader || this.#state !== 'running' || this.#runtimes.size === 0) return 'skipped';
    let next: CompiledConfig;
    try {
      next = await loader();
      this.#lastRejected = null;
      const refused = this.#o.provision === false ? [] : provisionConfigIssues(next);
      if (refused.length > 0) throw new ConfigError(refused);
    } catch (err) {
      if (err instanceof ConfigError) return this.#rejected(err, reason);
      this.#log.error({ err: coerceError(err), reason }, 'config reload failed; keeping the running one');
      this.metrics.recordConfigReload('error');
      return 'error';
    }
    // The config source hands back the running objects when the file is unchanged or not yet stable: nothing to apply.
    if (next.batches === this.#config.batches && next.polling === this.#config.polling) {
      // Provisioning jobs look again all the same: their device files are not this file.
      for (const r of this.runtimes) await r.refreshProvisioning(this.#config);
      if (reason !== 'cron') this.#log.info({ reason }, 'configuration unchanged');
      this.metrics.recordConfigReload('ok');
      return 'unchanged';
    }
    const live = this.#labelled(this.#config) && this.#labelled(next);
    try {
      if (live) this.#checkCredentials(next, this.#accountChanges(next).startNew);
    } catch (err) {
      if (err instanceof ConfigError) return this.#rejected(err, reason);
      throw err;
    }
    try {
      // With `accounts` before and after, accounts (and the `alibaba`/`rateLimit` defaults they inherit) apply now.
      const liveSections = live ? ['alibaba', 'accounts', 'rateLimit'] : [];
      const restartOnly = (['alibaba', 'accounts', 'rateLimit', 'state', 'output', 'http', 'housekeeping', 'devices'] as const).filter(
        (k) => !liveSections.includes(k) && JSON.stringify(next[k]) !== JSON.stringify(this.#config[k]),
      );
      if (restartOnly.length > 0) {
        this.#log.warn({ sections: restartOnly }, 'changes to these sections take effect after a restart; batches and polling apply now');
      }
      const stats = live ? await this.#applyAccounts(next, reason) : await this.#applyBatchesOnly(next);
      this.metrics.recordConfigReload('ok');
      if (stats.added + stats.cancelled + stats.rearmed > 0 || reason !== 'cron') {
        this.#log.info({ reason, ...stats, batches: next.batches.length }, 'configuration reloaded');
      }
      return 'ok';
    } catch (err) {
      this.#log.error({ err: coerceError(err), reason }, 'config reload failed; keeping the running one');
      this.metrics.recordConfigReload('error');
      return 'error';
    }
  }

  /** A reload rejected for config problems: logged once per distinct set of problems. */
  #rejected(err: ConfigError, reason: string): string {
    // NOTE: a bad edit reaches us more than once (the file change, then SIGHUP or the schedule): its problems
    // are logged the first time only, until the file changes again.
    const problems = JSON.stringify(err.issues);
    this.metrics.recordConfigReload('invalid');
    if (problems === this.#lastRejected) {
      this.#log.debug({ reason }, 'configuration still invalid (the same problems as the last reload)');
      return 'invalid';
    }
    this.#lastRejected = problems;
    for (const issue of err.issues) this.#log.warn({ issue }, `config reload rejected: ${issue.file}:${issue.line}:${issue.col}: ${issue.path}: ${issue.message}`);
    this.#log.error({ reason, problems: err.issues.length }, 'new configuration is invalid; keeping the running one');
    return 'invalid';
  }

  /**
   * Without `accounts` on both sides (or when the section is added or removed, which needs a restart: the result
   * layout changes): batches and polling apply; a batch of an account the process does not run waits for a restart
   * instead of going out with another account's key.
   */
  async #applyBatchesOnly(next: CompiledConfig): Promise<Stats> {
    const running = new Set(this.#runtimes.keys());
    const filtered = next.batches.filter((b) => running.has(this.#labelled(this.#config) ? b.account : DEFAULT_ACCOUNT));
    // NOTE: the same array when nothing waits: the config source hands it back while the file is unchanged.
    const batches = filtered.length === next.batches.length ? next.batches : filtered;
    if (batches !== next.batches) {
      const waiting = [...new Set(next.batches.filter((b) => !filtered.includes(b)).map((b) => b.account))];
      this.#log.warn({ accounts: waiting, batches: next.batches.length - batches.length }, 'batches of accounts added to the file start after a restart');
    }
    const applied = { ...withProvision(this.#config, next), polling: next.polling, batches };
    const stats = zeroStats();
    for (const r of this.runtimes) addStats(stats, await r.reload(applied));
    this.#config = applied;
    return stats;
  }

  /** Which accounts a new configuration removes, adds and changes. */
  #accountChanges(next: CompiledConfig): { removed: string[]; added: AccountConfig[]; changed: AccountConfig[]; startNew: AccountConfig[] } {
    const current = new Map(this.#config.accounts.map((a) => [a.name, a] as const));
    const names = new Set(next.accounts.map((a) => a.name));
    const removed = [...current.keys()].filter((n) => !names.has(n) && this.#runtimes.has(n));
    const added = next.accounts.filter((a) => !this.#runtimes.has(a.name));
    const changed = next.accounts.filter((a) => this.#runtimes.has(a.name) && accountFingerprint(a) !== accountFingerprint(this.#runtimes.get(a.name)!.account));
    return { removed, added, changed, startNew: [...added, ...changed] };
  }

  /**
   * With `accounts` on both sides: a removed account cancels its pending batches (its runtime reconciles with
   * none, then stops); a changed one (credentials, endpoint, budget, ...) restarts (stop, then start with the new
   * settings: re-arming batches its error had parked); an added one starts; every other runtime gets its batches.
   */
  async #applyAccounts(next: CompiledConfig, reason: string): Promise<Stats> {
    const { removed, added, changed } = this.#accountChanges(next);
    const applied: CompiledConfig = { ...withProvision(this.#config, next), polling: next.polling, batches: next.batches, accounts: next.accounts, alibaba: next.alibaba, rateLimit: next.rateLimit };
    const stats = zeroStats();
    const fresh = new Set([...added, ...changed].map((a) => a.name));
    for (const r of this.runtimes) {
      if (removed.includes(r.name) || fresh.has(r.name)) continue;
      addStats(stats, await r.reload(applied));
    }
    for (const name of removed) {
      const r = this.#runtimes.get(name)!;
      if (r.state !== 'running') {
        // Parked (or standing by for another replica): nothing to cancel here; its ledger keeps its batches.
        const state = r.state;
        await r.stop();
        this.#runtimes.delete(name);
        this.metrics.removeAccount(name);
        this.#log.info({ account: name, reason, state }, 'account removed from the configuration; stopped (it was not running: its batches stay as recorded)');
        continue;
      }
      const s = await r.reload(applied);
      addStats(stats, s);
      const drained = await r.whenDrained(this.#o.removeAccountDrainMs ?? 30_000);
      const result = await r.stop();
      this.#runtimes.delete(name);
      this.metrics.removeAccount(name);
      this.#log.info(
        { account: name, reason, cancelled: s.cancelled, drained, flushError: result.flushError?.message ?? null },
        drained ? 'account removed from the configuration: its pending batches were cancelled; stopped' : 'account removed from the configuration; stopped before every cancelled batch settled (they settle at its next start)',
      );
    }
    const starting: AccountRuntime[] = [];
    for (const account of changed) {
      const old = this.#runtimes.get(account.name)!;
      const wasParked = old.state === 'parked';
      this.#log.info({ account: account.name, reason, parked: wasParked }, 'account changed (credentials, endpoint, budget or settings): restarting it');
      await old.stop();
      const r = this.#createRuntime(account, applied);
      this.#runtimes.set(account.name, r);
      starting.push(r);
    }
    for (const account of added) {
      this.metrics.addAccount(account.name);
      const r = this.#createRuntime(account, applied);
      this.#runtimes.set(account.name, r);
      this.#log.info({ account: account.name, reason }, 'account added to the configuration: starting it');
      starting.push(r);
    }
    // Keep file order, like at start.
    this.#replicas?.claims.setAccounts(next.accounts.map((a) => a.name));
    const order = new Map(next.accounts.map((a, i) => [a.name, i] as const));
    const sorted = [...this.#runtimes.entries()].sort((a, b) => (order.get(a[0]) ?? 0) - (order.get(b[0]) ?? 0));
    this.#runtimes.clear();
    for (const [name, r] of sorted) this.#runtimes.set(name, r);
    this.#config = applied;
    for (const r of starting) {
      const started = r.start().then(
        () => this.#logAccount(r, 'account running'),
        (err: unknown) => {
          if (this.#runtimes.get(r.name) === r && this.#state === 'running') {
            this.#log.error({ account: r.name, err: coerceError(err) }, 'could not start the account; its batches wait for the next reload or restart');
          }
        },
      );
      // NOTE: a postgres account may stand by for another replica for a long time: the reload does not wait for it.
      if (next.state.backend !== 'postgres') await started;
    }
    return stats;
  }

  /** Resolves when the daemon ends on its own (a process-fatal error of an account it does not park) or after stop(). */
  done(): Promise<RunResult> {
    return this.#done;
  }

  /** Whether every configured batch of every account has settled (or is parked). */
  async whenAllSettled(): Promise<void> {
    await Promise.all(this.runtimes.map((r) => r.whenAllSettled()));
  }

  /** Waits until every event so far reached every sink (or the timeout passed). */
  async flushSinks(timeoutMs: number): Promise<boolean> {
    const results = await Promise.all(this.runtimes.map((r) => r.flushSinks(timeoutMs)));
    return results.every(Boolean);
  }

  /**
   * Graceful stop: readiness off, scheduling stops, requests in flight finish (≤ grace), sinks drain
   * (≤ sinkFlushMs; undelivered events stay in the ledger for the next start), ledgers flushed and closed.
   */
  stop(): Promise<StopResult> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<StopResult> {
    if (this.#state === 'created') {
      this.#state = 'stopped';
      const result = { reason: 'stopped' as const, error: null, flushError: null };
      this.#resolveDone?.(result);
      return result;
    }
    // Leaving (SIGTERM): claim nothing more; each runtime's stop releases its lease at once.
    this.#replicas?.claims.leave();
    if (this.#state === 'starting') {
      // A standby waiting for its account, or a start in progress: end it; start() closes what it opened.
      await Promise.allSettled(this.runtimes.map((r) => r.stop()));
      await this.#starting?.catch(() => undefined);
      if ((this.#state as DaemonState) === 'stopped') {
        const result = { reason: 'stopped' as const, error: null, flushError: null };
        this.#resolveDone?.(result);
        return result;
      }
    }
    this.#state = 'stopping';
    this.#fileWatch?.close();
    await this.#housekeeping?.stop().catch(() => undefined);
    await this.#reloading?.catch(() => undefined);
    const results = await Promise.all(this.runtimes.map((r) => r.stop()));
    await this.#replicas?.stop();
    const ended = results.find((r) => r.reason === 'fatal');
    const result: StopResult = {
      reason: ended ? 'fatal' : 'stopped',
      error: ended?.error ?? null,
      flushError: results.find((r) => r.flushError)?.flushError ?? null,
    };
    await this.#closeAll();
    this.#state = 'stopped';
    this.#resolveDone?.(result);
    return result;
  }

  /** Closes what is process-wide: the sinks, then the ops server. */
  async #closeAll(): Promise<void> {
    const steps: [string, () => Promise<unknown>][] = [
      ['sinks', async () => Promise.all(this.#sinks.map((s) => s.close()))],
      ['http', async () => this.#http?.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.warn({ err: coerceError(err), step: name }, 'error while shutting down');
      }
    }
  }
}

interface Stats {
  added: number;
  cancelled: number;
  rearmed: number;
}

function zeroStats(): Stats {
  return { added: 0, cancelled: 0, rearmed: 0 };
}

function addStats(into: Stats, s: Stats): void {
  into.added += s.added;
  into.cancelled += s.cancelled;
  into.rearmed += s.rearmed;
}

function sumCounts(all: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of all) for (const [k, v] of Object.entries(counts)) out[k] = (out[k] ?? 0) + v;
  return out;
}
