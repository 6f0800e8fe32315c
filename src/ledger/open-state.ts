/**
 * Opens the configured state backend (DESIGN.md §5/§12) of one account: the file ledger in its directory
 * ({@link accountStateDir}), or the PostgreSQL ledger holding that account's rows and lease, each with its result
 * store. The postgres modules import `pg` only when this chooses them.
 *
 * File layout with accounts (DESIGN.md §11): the account named `default` keeps `state.dir` itself (so a state
 * directory from before accounts, or a file that adds `accounts` with a first account `default`, keeps its state);
 * every other account has `<state.dir>/accounts/<name>/`. The ledger of `state.dir` reads only its own journal and
 * snapshot files and locks only its own `LOCK`, so the `accounts/` subdirectory never confuses it.
 */
import { join } from 'node:path';

import type { Logger } from 'pino';

import type { CompiledConfig } from '../config/types.js';
import type { Clock } from '../core/clock.js';
import type { LedgerStore, ResultWriter } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import type { ListableJobStore } from '../provision/daemon-provisioner.js';
import { createResultWriter } from '../sinks/result-writer.js';
import { openFileLedger } from './file-ledger.js';
import type { PgSsl } from './postgres-connection.js';
import { connectionStringFromEnv, pgSslOptions, withoutUrlSsl } from './postgres-connection.js';
import type { LeaseChange } from './postgres-lease.js';
import type { PostgresLedger } from './postgres-ledger.js';
import { openPostgresLedger } from './postgres-ledger.js';
import { createPostgresJobStore } from './postgres-jobs.js';
import { createPostgresResultStore } from './postgres-results.js';

/** `state.postgres` with its defaults, for hand-built configs that leave it out. */
export const DEFAULT_STATE_POSTGRES = { urlEnv: 'IBW_DATABASE_URL', schema: 'iot_batch_watcher', leaseMs: 15_000 } as const;

/** The subdirectory of `state.dir` that holds the ledgers of accounts other than `default`. */
export const ACCOUNTS_SUBDIR = 'accounts';

/** The account whose file ledger is `state.dir` itself. */
const DIR_ACCOUNT = 'default';

/** The file ledger directory of `account`: `state.dir` for `default`, `<state.dir>/accounts/<account>` else. */
export function accountStateDir(stateDir: string, account: string): string {
  return account === DIR_ACCOUNT ? stateDir : join(stateDir, ACCOUNTS_SUBDIR, account);
}

/** An open state backend. */
export interface StateBackend {
  backend: 'file' | 'postgres';
  ledger: LedgerStore;
  results: ResultWriter;
  /** The postgres ledger (lease, trust window), or null for the file backend. */
  postgres: PostgresLedger | null;
  /**
   * The store of provisioning job state (DESIGN.md §13) on the postgres backend: the account's `provision_jobs`
   * rows, fenced like the ledger. Absent on the file backend, whose jobs live in the account's state directory.
   */
  jobs?: ListableJobStore;
}

/** Dependencies of {@link openStateBackend}. */
export interface OpenStateDeps {
  env: Readonly<Record<string, string | undefined>>;
  logger?: Logger;
  clock?: Clock;
  /**
   * The ledger's lease was taken over by another process: it writes nothing more. File backend: the directory's
   * lock; postgres: the account's lease (a renewal or a fenced write found another epoch).
   */
  onLeaseLost?: (error: DaemonError) => void;
  /** Every change of account ownership (postgres backend; metrics, the fair-share policy). */
  onLeaseChange?: (change: LeaseChange) => void;
  /** This replica's id as the lease owner (postgres; one per process, so the fair share counts processes). */
  owner?: string;
  /**
   * The account to open: its file ledger directory ({@link accountStateDir}) or its PostgreSQL rows and lease.
   * @default without `accounts`, `default` in `state.dir`; with `accounts`, the first account
   */
  account?: string;
}

/**
 * The connection string for `state.postgres.urlEnv`. Throws a config error when neither the variable, its
 * `_FILE`, nor `PGHOST` says where the database is.
 */
export function databaseUrlFromConfig(config: CompiledConfig, env: Readonly<Record<string, string | undefined>>): string | undefined {
  const { urlEnv } = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  const url = connectionStringFromEnv(env, urlEnv);
  if (url === undefined && (env.PGHOST ?? '') === '') {
    throw new DaemonError(
      `state.backend is postgres but neither ${urlEnv}, ${urlEnv}_FILE nor PGHOST is set: set ${urlEnv} to the connection URL`,
      { kind: 'config', scope: 'process', code: 'DatabaseUrlMissing' },
    );
  }
  return url;
}

/** Where and how to connect: the URL and pg's TLS option. */
export interface PostgresConnectSettings {
  connectionString?: string;
  ssl?: PgSsl;
}

/**
 * The connection settings for `state.postgres`: the URL from `urlEnv` ({@link databaseUrlFromConfig}) and,
 * when `state.postgres.ssl` is set, pg's TLS option from it. `state.postgres.ssl` wins: the URL's own TLS
 * parameters (`sslmode`, `sslrootcert`, ...) are dropped (logged once at info), and pg ignores PGSSLMODE when
 * an explicit option is given. Without `state.postgres.ssl`, the URL's `sslmode`/`sslrootcert`, else
 * PGSSLMODE, decide, as pg reads them.
 */
export async function postgresConnectSettings(
  config: CompiledConfig,
  env: Readonly<Record<string, string | undefined>>,
  logger?: Logger,
): Promise<PostgresConnectSettings> {
  const url = databaseUrlFromConfig(config, env);
  const sslConfig = config.state.postgres?.ssl;
  if (sslConfig === undefined) return url === undefined ? {} : { connectionString: url };
  const ssl = await pgSslOptions(sslConfig);
  if (url === undefined) return { ssl };
  const { url: stripped, removed } = withoutUrlSsl(url);
  if (removed.length > 0) {
    logger?.info({ ignored: removed, mode: sslConfig.mode }, 'state.postgres.ssl is set: ignoring the TLS parameters of the connection URL');
  }
  return { connectionString: stripped, ssl };
}

/** Opens the ledger and result store `config.state.backend` names. */
export async function openStateBackend(config: CompiledConfig, deps: OpenStateDeps): Promise<StateBackend> {
  const files = createResultWriter({
        resultsDir: config.output.resultsDir,
        includeSecrets: config.devices.includeSecrets,
        layout: config.output.resultsLayout ?? 'product',
      });
  const account = deps.account ?? (config.output.resultsLayout === 'account' ? config.accounts[0]!.name : null);
  if ((config.state.backend ?? 'file') === 'file') {
    const ledger = await openFileLedger({
      dir: account === null ? config.state.dir : accountStateDir(config.state.dir, account),
      ...(deps.logger ? { logger: deps.logger } : {}),
      ...(deps.onLeaseLost ? { onLeaseLost: deps.onLeaseLost } : {}),
    });
    return { backend: 'file', ledger, results: files, postgres: null };
  }
  const pgConfig = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  const ledger = await openPostgresLedger({
    ...(await postgresConnectSettings(config, deps.env, deps.logger)),
    schema: pgConfig.schema,
    leaseMs: pgConfig.leaseMs,
    // One ledger per account: it owns that account's rows and lease, so several accounts (in one process or in
    // several) share one schema; without `accounts`, `default` as before.
    ...(account === null ? {} : { account }),
    env: deps.env,
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.onLeaseChange ? { onLeaseChange: deps.onLeaseChange } : {}),
    ...(deps.owner ? { owner: deps.owner } : {}),
    ...(deps.onLeaseLost ? { onLeaseLost: deps.onLeaseLost } : {}),
  });
  const results = createPostgresResultStore(ledger.handle, { includeSecrets: config.devices.includeSecrets, files });
  return { backend: 'postgres', ledger, results, postgres: ledger, jobs: createPostgresJobStore(ledger.handle) };
}
