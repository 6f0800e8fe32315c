/**
 * The daemon: wires the watcher core to its adapters (API client, ledger, sinks, metrics, HTTP, housekeeping).
 * This is the only module that knows the concrete classes. It reads no environment and installs no signal
 * handlers itself: `main.ts` does that for the CLI, and library users call `start()`/`stop()`.
 *
 * Lifecycle: created ──start()──► running ──stop()──► stopped. Readiness (`/readyz`) is true from the end of
 * start() (config and ledger loaded) until stop() begins, and while the ledger can be written.
 */
import { setMaxListeners } from 'node:events';
import { join } from 'node:path';

import { createChainCredentials, createEnvCredentials, type CredentialsProvider } from './alibaba/credentials.js';
import { createIotApi } from './alibaba/iot-api.js';
import { createRpcClient, type AttemptInfo, type RpcClient } from './alibaba/rpc-client.js';
import { accountCredentialIssues } from './config/env-overrides.js';
import type { CompiledConfig } from './config/types.js';
import { type ApiBudget, createApiBudget } from './core/api-budget.js';
import { ActionHealth } from './core/action-health.js';
import { systemClock, systemRandom, type Clock, type Random } from './core/clock.js';
import type { EventSink, IotApi, LedgerStore, ResultWriter } from './core/ports.js';
import { StateStore } from './core/state-store.js';
import { type RunResult, Watcher } from './core/watcher.js';
import { AbortedError, ConfigError, DaemonError, coerceError } from './errors.js';
import { openStateBackend, type StateBackend } from './ledger/open-state.js';
import type { LeaseChange } from './ledger/postgres-lease.js';
import { startHousekeeping, watchConfigFile, type ConfigFileWatch, type CronScheduler, type Housekeeping } from './ops/housekeeping.js';
import { resolveOpsAuth, startOpsServer, type OpsServer } from './ops/http-server.js';
import type { Logger } from './ops/logger.js';
import { createMetrics, type Metrics } from './ops/metrics.js';
import { createEmitterSink, type EmitterSink } from './sinks/emitter.js';
import { createEventsFileSink, type EventsFileSink } from './sinks/events-file.js';
import { createLogSink } from './sinks/log-sink.js';
import { Outbox } from './sinks/outbox.js';
import { createResultWriter } from './sinks/result-writer.js';
import { createWebhookSink } from './sinks/webhook.js';
import { SECRET_ENV_CODES, readEnvSecret } from './secret-env.js';

export interface DaemonOptions {
  config: CompiledConfig;
  logger: Logger;
  /** Environment for credentials and the webhook secret. */
  env: Readonly<Record<string, string | undefined>>;
  clock?: Clock;
  random?: Random;
  /** @default from `config.alibaba.credentials`: env variables or the official chain */
  credentials?: CredentialsProvider;
  /** @default a file ledger in `config.state.dir` */
  ledger?: LedgerStore;
  /** @default result files in `config.output.resultsDir` */
  results?: ResultWriter;
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
  /** How long stop() waits for the sinks to drain. @default 3000 */
  sinkFlushMs?: number;
  /** Extra API client options (tests: short retry delays). */
  rpc?: { retryBaseDelayMs?: number; retryMaxDelayMs?: number; maxAttempts?: number; connectTimeoutMs?: number };
  /** Sink retry delays. */
  outbox?: { retryInitialMs?: number; retryMaxMs?: number };
}

export type DaemonState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

/** What stop() reports: why the loop ended, and whether the state was flushed for the next start. */
export interface StopResult extends RunResult {
  /** Set when the ledger could not be compacted or closed at shutdown: the shutdown was not clean. */
  flushError: DaemonError | null;
}

/** The one account of a configuration without `accounts` (DESIGN.md §11). */
const DEFAULT_ACCOUNT = 'default';

export class Daemon {
  readonly emitter: EmitterSink;
  readonly metrics: Metrics;
  #state: DaemonState = 'created';
  #config: CompiledConfig;
  readonly #o: DaemonOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #log: Logger;
  #watcher: Watcher | null = null;
  #store: StateStore | null = null;
  #outbox: Outbox | null = null;
  #sinks: EventSink[] = [];
  #eventsFile: EventsFileSink | null = null;
  #rpcs: RpcClient[] = [];
  /** Stops the action-health timer (one warn line per failing API action, one per recovery). */
  readonly #healthStop = new AbortController();
  #budget: ApiBudget | null = null;
  #http: OpsServer | null = null;
  #housekeeping: Housekeeping | null = null;
  #fileWatch: ConfigFileWatch | null = null;
  #reloading: Promise<string> | null = null;
  /** Waiting for another replica's lease on the account (postgres backend). */
  #standby = false;
  /** A standby that cannot reach the database: not ready to take over (/readyz 503). */
  #standbyUnreachable = false;
  /** The postgres ledger once this replica owns the account (null on the file backend). */
  #owner: StateBackend['postgres'] = null;
  /** Aborted by stop() during start() (a standby waiting for the lease). */
  readonly #startAbort = new AbortController();
  #starting: Promise<void> | null = null;
  /** The problems of the last rejected reload (logged once). */
  #lastRejected: string | null = null;
  #stopping: Promise<StopResult> | null = null;

  constructor(options: DaemonOptions) {
    this.#o = options;
    this.#config = options.config;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? systemRandom;
    this.#log = options.logger;
    this.emitter = createEmitterSink({
      onListenerError: (err, event) => this.#log.warn({ err: coerceError(err), eventId: event.id }, 'event listener threw'),
    });
    // With `accounts` (one per process in this build) every series is labelled with the account.
    this.metrics = createMetrics(options.config.output.resultsLayout === 'account' ? { account: options.config.accounts[0]!.name } : {});
  }

  get state(): DaemonState {
    return this.#state;
  }

  get config(): CompiledConfig {
    return this.#config;
  }

  /** The watcher (after start). */
  get watcher(): Watcher {
    if (!this.#watcher) throw new Error('daemon not started');
    return this.#watcher;
  }

  /** The ops server's URL, when it runs. */
  get httpUrl(): string | null {
    return this.#http?.url ?? null;
  }

  isReady(): boolean {
    // A connected standby is ready too: ready to take over (DESIGN.md §12).
    if (this.#state === 'starting' && this.#standby) return !this.#standbyUnreachable;
    // An owner that cannot confirm its lease makes no API calls (the budget's gate): not ready either.
    return this.#state === 'running' && (this.#store?.healthy ?? false) && (this.#owner?.leaseTrusted() ?? true);
  }

  /**
   * The credentials of the configuration's account. With an `accounts` section every account's variables are
   * checked first, so a missing one is reported at its account's line before anything starts (DESIGN.md §11).
   */
  #accountCredentials(config: CompiledConfig): CredentialsProvider {
    if (config.output.resultsLayout !== 'account') {
      return config.alibaba.credentials === 'chain' ? createChainCredentials() : createEnvCredentials(this.#o.env);
    }
    const issues = config.accounts.flatMap((account, index) => accountCredentialIssues(account, index, this.#o.env));
    if (issues.length > 0) throw new ConfigError(issues);
    if (config.accounts.length > 1) {
      // NOTE: one client and one budget serve the whole process until the per-account runtime lands (issue #15);
      // running several accounts through one of them would mix their quotas, so refuse instead.
      throw new DaemonError(
        `this build runs one account per process; the file declares ${config.accounts.length} (${config.accounts.map((a) => a.name).join(', ')})`,
        { kind: 'config', scope: 'process', code: 'AccountsUnsupported' },
      );
    }
    const account = config.accounts[0]!;
    const c = account.credentials;
    return c.mode === 'chain'
      ? createChainCredentials()
      : createEnvCredentials(this.#o.env, {
          names: { accessKeyId: c.accessKeyIdEnv, accessKeySecret: c.accessKeySecretEnv, securityToken: c.securityTokenEnv },
          account: account.name,
        });
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
      const credentials = this.#o.credentials ?? this.#accountCredentials(config);
      const webhookSecret = config.output.webhook ? readEnvSecret(this.#o.env, config.output.webhook.secretEnv, { codes: SECRET_ENV_CODES.webhook }) : undefined;
      if (config.output.webhook && !webhookSecret) {
        const name = config.output.webhook.secretEnv;
        throw new DaemonError(`output.webhook is set but neither ${name} nor ${name}_FILE (output.webhook.secretEnv) holds a secret`, {
          kind: 'config',
          scope: 'process',
          code: 'WebhookSecretMissing',
        });
      }
      // /healthz answers while the ledger loads; /readyz stays 503 until everything is up.
      if (this.#o.http !== false && config.http.listen) {
        this.#http = await startOpsServer({
          host: config.http.listen.host,
          port: config.http.listen.port,
          metrics: this.#liveMetrics(),
          isReady: () => this.isReady(),
          listBatches: () => this.#watcher?.list() ?? [],
          logger: log.child({ component: 'http' }),
          auth: resolveOpsAuth(config.http.auth, this.#o.env),
        });
        log.info({ url: this.#http.url }, 'ops endpoints listening');
      }

      // NOTE: on the postgres backend no call runs while this replica cannot confirm it owns the account (its lease
      // was last renewed too long ago): it must not act on ownership another replica may take over (DESIGN.md §12).
      let owner: StateBackend['postgres'] = null;
      const gate = (): DaemonError | null =>
        owner && !owner.leaseTrusted()
          ? new DaemonError('the account lease could not be confirmed (PostgreSQL unreachable?); no API calls until it is', {
              kind: 'store',
              scope: 'attempt',
              code: 'LeaseUnconfirmed',
            })
          : null;
      // The one account's budget: `rateLimit` without `accounts`; with it, the account's own (after `reserve`).
      const rateLimit = config.output.resultsLayout === 'account' ? config.accounts[0]!.rateLimit : config.rateLimit;
      const budget = createApiBudget(rateLimit, { clock: this.#clock, log: log.child({ component: 'budget' }), gate });
      this.#budget = budget;
      const { statusApi, api } = this.#createApis(credentials, budget);

      // The state backend (DESIGN.md §12): the file ledger in state.dir, or PostgreSQL (pg is loaded only then).
      const backend = this.#o.ledger ? null : await this.#openBackend();
      owner = backend?.postgres ?? null;
      this.#owner = owner;
      const ledger = this.#o.ledger ?? backend!.ledger;
      const store = new StateStore({
        ledger,
        log,
        now: () => this.#clock.now(),
        clock: this.#clock,
        onHealth: (healthy, source, error) => {
          if (healthy) log.info({}, 'state and results writable again; ready');
          else if (source === 'results') log.error({ err: error ?? undefined, dir: config.output.resultsDir }, 'cannot write result files; not ready until it recovers');
          else log.error({ err: error ?? undefined, dir: config.state.dir }, 'cannot write the state directory; not ready until it recovers');
        },
      });
      this.#store = store;
      const writerOptions = {
        resultsDir: config.output.resultsDir,
        includeSecrets: config.devices.includeSecrets,
        layout: config.output.resultsLayout ?? 'product',
      };
      const results = this.#o.results ?? backend?.results ?? createResultWriter(writerOptions);
      // A bad resultsDir or events file is reported at start, not at the first settle.
      if (!this.#o.results) await createResultWriter(writerOptions).prepare();

      const sinks = this.#createSinks(webhookSecret);
      this.#sinks = sinks;
      await this.#eventsFile?.prepare();
      const outbox = new Outbox({
        sinks,
        ledger: store,
        clock: this.#clock,
        random: this.#random,
        logger: log,
        onDelivery: (info) => this.metrics.recordSinkDelivery(info.sink, info.outcome),
        ...(this.#o.outbox ?? {}),
      });
      this.#outbox = outbox;
      store.publishTo(outbox);
      const watcher = new Watcher({
        config,
        store,
        budget,
        statusApi,
        api,
        results,
        clock: this.#clock,
        random: this.#random,
        log: log,
        shutdownGraceMs: this.#o.shutdownGraceMs ?? 5000,
        hooks: {
          onSettled: (rec) => {
            if (rec.outcome && rec.settledAt !== null) this.metrics.recordSettled(rec.outcome, Math.max(0, rec.settledAt - rec.firstSeenAt) / 1000);
          },
        },
      });
      this.#watcher = watcher;
      // NOTE: every request in flight listens on this one signal; more than 10 is normal, not a leak.
      setMaxListeners(config.rateLimit.concurrency * 4 + 16, watcher.requestSignal);
      await watcher.start();
      outbox.start();

      if (this.#o.housekeeping !== false) this.#startHousekeeping(watcher);
      this.#state = 'running';
      const { statusQps, pageQps, concurrency } = config.rateLimit;
      log.info(
        {
          account: DEFAULT_ACCOUNT,
          regionId: config.alibaba.regionId,
          endpoint: config.alibaba.endpoint,
          signatureVersion: config.alibaba.signatureVersion,
          budget: { statusQps, pageQps, concurrency },
          stateDir: config.state.dir,
          resultsDir: config.output.resultsDir,
          batches: config.batches.length,
          ...watcher.counts(),
        },
        'iot-batch-watcher running',
      );
    } catch (err) {
      this.#state = 'stopping';
      await this.#closeAll();
      this.#state = 'stopped';
      throw err;
    }
  }

  /**
   * Opens the state backend. On PostgreSQL, while another replica owns the account this one stands by (ready, see
   * isReady) and tries again every third of the lease, until the owner's lease lapses or it leaves (SIGTERM
   * releases it at once), or until stop().
   */
  async #openBackend(): Promise<StateBackend> {
    const config = this.#config;
    const log = this.#log;
    const deps = {
      env: this.#o.env,
      logger: log.child({ component: 'ledger' }),
      clock: this.#clock,
      // Another process took the ledger over (the file lock, or the account's lease on PostgreSQL): it writes nothing
      // more, so stop as a fatal error (exit 1); a restarted replica stands by.
      onLeaseLost: (error: DaemonError) => this.#watcher?.fail(error),
      onLeaseChange: (change: LeaseChange) => this.metrics.recordLeaseChange(change),
    };
    // A standby whose database goes away keeps standing by (one line when it goes, one when it is back): only the
    // first open fails on an unreachable database.
    let unreachable = false;
    for (;;) {
      try {
        const backend = await openStateBackend(config, deps);
        if (unreachable) log.info({}, 'PostgreSQL reachable again');
        this.#standbyUnreachable = false;
        if (this.#standby) log.info({}, 'took over the account: this replica owns it now');
        this.#standby = false;
        return backend;
      } catch (err) {
        const locked = config.state.backend === 'postgres' && err instanceof DaemonError && err.code === 'LedgerLocked';
        const down = this.#standby && err instanceof DaemonError && err.kind === 'store' && err.scope === 'attempt';
        if (!locked && !down) throw err;
        if (down && !unreachable) log.error({ err }, 'standing by, but PostgreSQL cannot be reached; retrying');
        if (!down && unreachable) log.info({}, 'PostgreSQL reachable again');
        unreachable = down;
        this.#standbyUnreachable = down;
        if (locked && !this.#standby) log.info({ reason: err.message }, 'standing by: another replica owns the account');
        this.#standby = true;
        await this.#clock.sleep(Math.max(100, Math.floor((config.state.postgres?.leaseMs ?? 15_000) / 3)), this.#startAbort.signal);
      }
    }
  }

  /**
   * The two API clients. Status polls: one attempt each; the watcher takes the token from the budget right before
   * each poll and the batch's backoff does the retrying. Paging and registration: retries inside, each attempt
   * takes its token in `beforeAttempt`. Every attempt's outcome feeds the budget (throttling slows it down).
   */
  #createApis(credentials: CredentialsProvider, budget: ApiBudget): { statusApi: IotApi; api: IotApi } {
    const config = this.#config;
    const health = new ActionHealth({ failureWarnAfterMs: config.alibaba.failureWarnAfterMs ?? 60_000, clock: this.#clock, log: this.#log.child({ component: 'api' }) });
    void health.run(this.#healthStop.signal);
    const onAttempt = (info: AttemptInfo): void => {
      health.record(info);
      this.metrics.recordApiAttempt({ action: info.action, outcome: info.outcome, durationMs: info.durationMs });
      if (info.outcome === 'throttled') this.metrics.recordThrottle(info.action);
      budget.feedback(info.action, info.outcome);
    };
    const common = {
      endpoint: config.alibaba.endpoint,
      credentials,
      signatureVersion: config.alibaba.signatureVersion,
      requestTimeoutMs: config.alibaba.requestTimeoutMs,
      clock: this.#clock,
      random: this.#random,
      logger: this.#log.child({ component: 'api' }),
      onAttempt,
      ...(this.#o.rpc?.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.#o.rpc.connectTimeoutMs } : {}),
      ...(this.#o.rpc?.retryBaseDelayMs !== undefined ? { retryBaseDelayMs: this.#o.rpc.retryBaseDelayMs } : {}),
      ...(this.#o.rpc?.retryMaxDelayMs !== undefined ? { retryMaxDelayMs: this.#o.rpc.retryMaxDelayMs } : {}),
    };
    const statusRpc = createRpcClient({ ...common, maxAttempts: 1 });
    const retryRpc = createRpcClient({
      ...common,
      maxAttempts: this.#o.rpc?.maxAttempts ?? 4,
      beforeAttempt: (action, signal) => budget.acquire(action, signal),
    });
    this.#rpcs = [statusRpc, retryRpc];
    return {
      statusApi: createIotApi({ rpc: statusRpc, defaultIotInstanceId: config.alibaba.iotInstanceId }),
      api: createIotApi({ rpc: retryRpc, defaultIotInstanceId: config.alibaba.iotInstanceId }),
    };
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
  #startHousekeeping(watcher: Watcher): void {
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
          const pruned = await watcher.prune();
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
      if (this.#watcher) base.setBatchCounts(this.#watcher.counts());
      for (const { action, qps } of this.#budget?.rates() ?? []) base.setRateLimit(action, qps);
    };
    return Object.assign(Object.create(base) as Metrics, {
      render: async () => {
        refresh();
        return base.render();
      },
    });
  }

  /** One info line with counts per state and outcome. */
  logSummary(): void {
    if (!this.#watcher) return;
    this.#log.info(
      { counts: this.#watcher.counts(), outcomes: this.#watcher.outcomes(), pendingDeliveries: this.#outbox?.pending() ?? 0 },
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
    if (!loader || this.#state !== 'running' || !this.#watcher) return 'skipped';
    let next: CompiledConfig;
    try {
      next = await loader();
      this.#lastRejected = null;
    } catch (err) {
      if (err instanceof ConfigError) {
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
      this.#log.error({ err: coerceError(err), reason }, 'config reload failed; keeping the running one');
      this.metrics.recordConfigReload('error');
      return 'error';
    }
    // The config source hands back the running objects when the file is unchanged or not yet stable: nothing to apply.
    if (next.batches === this.#config.batches && next.polling === this.#config.polling) {
      if (reason !== 'cron') this.#log.info({ reason }, 'configuration unchanged');
      this.metrics.recordConfigReload('ok');
      return 'unchanged';
    }
    try {
      const restartOnly = (['alibaba', 'accounts', 'rateLimit', 'state', 'output', 'http', 'housekeeping', 'devices'] as const).filter(
        (k) => JSON.stringify(next[k]) !== JSON.stringify(this.#config[k]),
      );
      if (restartOnly.length > 0) {
        this.#log.warn({ sections: restartOnly }, 'changes to these sections take effect after a restart; batches and polling apply now');
      }
      // NOTE: accounts apply after a restart (their clients and budgets are built at start); a batch of an account
      // the running process does not have waits for that restart instead of going out with another account's key.
      const running = new Set(this.#config.accounts.map((a) => a.name));
      // NOTE: the same array when nothing waits: the config source hands it back while the file is unchanged.
      const filtered = next.batches.filter((b) => running.has(b.account));
      const batches = filtered.length === next.batches.length ? next.batches : filtered;
      if (batches !== next.batches) {
        const waiting = [...new Set(next.batches.filter((b) => !running.has(b.account)).map((b) => b.account))];
        this.#log.warn({ accounts: waiting, batches: next.batches.length - batches.length }, 'batches of accounts added to the file start after a restart');
      }
      const applied = { ...this.#config, polling: next.polling, batches };
      const stats = await this.#watcher.reload(applied);
      this.#config = applied;
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

  /** Resolves when the watcher loop ends on its own (a process-fatal error) or after stop(). */
  done(): Promise<RunResult> {
    return this.watcher.done();
  }

  /** Whether every configured batch has settled. */
  whenAllSettled(): Promise<void> {
    return this.watcher.whenAllSettled();
  }

  /** Waits until every event so far reached every sink (or the timeout passed). */
  async flushSinks(timeoutMs: number): Promise<boolean> {
    return this.#outbox ? this.#outbox.flush(timeoutMs) : true;
  }

  /**
   * Graceful stop: readiness off, scheduling stops, requests in flight finish (≤ grace), sinks drain
   * (≤ sinkFlushMs; undelivered events stay in the ledger for the next start), ledger flushed and closed.
   */
  stop(): Promise<StopResult> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<StopResult> {
    if (this.#state === 'created') {
      this.#state = 'stopped';
      return { reason: 'stopped', error: null, flushError: null };
    }
    if (this.#state === 'starting') {
      // A standby waiting for the account, or a start in progress: end it; start() closes what it opened.
      this.#startAbort.abort(new AbortedError('stopped during start'));
      await this.#starting?.catch(() => undefined);
      if ((this.#state as DaemonState) === 'stopped') return { reason: 'stopped', error: null, flushError: null };
    }
    this.#state = 'stopping';
    this.#fileWatch?.close();
    await this.#housekeeping?.stop().catch(() => undefined);
    const result = this.#watcher ? await this.#watcher.stop() : { reason: 'stopped' as const, error: null };
    if (this.#outbox) {
      const drained = await this.#outbox.flush(this.#o.sinkFlushMs ?? 3000);
      if (!drained) this.#log.warn({ pending: this.#outbox.pending() }, 'some deliveries are still pending; they resume at the next start');
    }
    const flushError = await this.#closeAll();
    this.#state = 'stopped';
    return { ...result, flushError };
  }

  /** Closes everything in order; resolves with the error when the state could not be flushed (else null). */
  async #closeAll(): Promise<DaemonError | null> {
    this.#healthStop.abort();
    let flushError: DaemonError | null = null;
    const steps: [string, () => Promise<unknown>][] = [
      ['outbox', async () => this.#outbox?.stop()],
      ['sinks', async () => Promise.all(this.#sinks.map((s) => s.close()))],
      ['budget', () => Promise.resolve(this.#budget?.close())],
      [
        'state',
        async () => {
          flushError = (await this.#store?.close()) ?? null;
        },
      ],
      ['http', async () => this.#http?.close()],
      ['api', async () => Promise.all(this.#rpcs.map((r) => r.close()))],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.warn({ err: coerceError(err), step: name }, 'error while shutting down');
      }
    }
    return flushError;
  }
}
