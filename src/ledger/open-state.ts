/**
 * Opens the configured state backend (DESIGN.md §5/§12): the file ledger in `state.dir`, or the PostgreSQL
 * ledger, each with its result store. The postgres modules import `pg` only when this chooses them.
 */
import type { Logger } from 'pino';

import type { CompiledConfig } from '../config/types.js';
import type { Clock } from '../core/clock.js';
import type { LedgerStore, ResultWriter } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import { createResultWriter } from '../sinks/result-writer.js';
import { openFileLedger } from './file-ledger.js';
import type { PgSsl } from './postgres-connection.js';
import { connectionStringFromEnv, pgSslOptions, withoutUrlSsl } from './postgres-connection.js';
import type { LeaseChange } from './postgres-lease.js';
import type { PostgresLedger } from './postgres-ledger.js';
import { openPostgresLedger } from './postgres-ledger.js';
import { createPostgresResultStore } from './postgres-results.js';

/** `state.postgres` with its defaults, for hand-built configs that leave it out. */
export const DEFAULT_STATE_POSTGRES = { urlEnv: 'IBW_DATABASE_URL', schema: 'iot_batch_watcher', leaseMs: 15_000 } as const;

/** An open state backend. */
export interface StateBackend {
  backend: 'file' | 'postgres';
  ledger: LedgerStore;
  results: ResultWriter;
  /** The postgres ledger (lease, trust window), or null for the file backend. */
  postgres: PostgresLedger | null;
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
  /** Every change of account ownership (postgres backend; metrics). */
  onLeaseChange?: (change: LeaseChange) => void;
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
  if ((config.state.backend ?? 'file') === 'file') {
    const ledger = await openFileLedger({
      dir: config.state.dir,
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
    // With `accounts` (one per process in this build) the process owns that account's rows and lease, so processes
    // of different accounts share one schema; without it, `default` as before.
    ...(config.output.resultsLayout === 'account' ? { account: config.accounts[0]!.name } : {}),
    env: deps.env,
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.onLeaseChange ? { onLeaseChange: deps.onLeaseChange } : {}),
    ...(deps.onLeaseLost ? { onLeaseLost: deps.onLeaseLost } : {}),
  });
  const results = createPostgresResultStore(ledger.handle, { includeSecrets: config.devices.includeSecrets, files });
  return { backend: 'postgres', ledger, results, postgres: ledger };
}
