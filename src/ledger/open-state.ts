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
import { connectionStringFromEnv } from './postgres-connection.js';
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

/** Opens the ledger and result store `config.state.backend` names. */
export async function openStateBackend(config: CompiledConfig, deps: OpenStateDeps): Promise<StateBackend> {
  const files = createResultWriter({
        resultsDir: config.output.resultsDir,
        includeSecrets: config.devices.includeSecrets,
        layout: config.output.resultsLayout ?? 'product',
      });
  if ((config.state.backend ?? 'file') === 'file') {
    const ledger = await openFileLedger({ dir: config.state.dir, ...(deps.logger ? { logger: deps.logger } : {}) });
    return { backend: 'file', ledger, results: files, postgres: null };
  }
  const pgConfig = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  const connectionString = databaseUrlFromConfig(config, deps.env);
  const ledger = await openPostgresLedger({
    ...(connectionString === undefined ? {} : { connectionString }),
    schema: pgConfig.schema,
    leaseMs: pgConfig.leaseMs,
    env: deps.env,
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  const results = createPostgresResultStore(ledger.handle, { includeSecrets: config.devices.includeSecrets, files });
  return { backend: 'postgres', ledger, results, postgres: ledger };
}
