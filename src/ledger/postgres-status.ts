/**
 * `status` on the postgres backend (DESIGN.md §12: "`status`, `/v1/batches` and `/metrics` work on every
 * replica"): the rows of every account in `state.postgres.schema`, read from the database as `status` reads a
 * file ledger without its lock.
 *
 * Read-only by construction: the session is `default_transaction_read_only`, every read runs in a `READ ONLY`
 * transaction, nothing is migrated or created (a schema that does not exist yet has no rows), and the lease
 * table is not read or written, so a running owner's lease, epoch and fenced appends are untouched. Each
 * account's state is its snapshot tables with its journal applied on top, in one REPEATABLE READ transaction
 * (postgres-load.ts), exactly what the owner's `load()` sees.
 *
 * A standby replica answers `/v1/batches` for the accounts it does not own from the same reader, through
 * {@link CachedStatusRows} (read in the background, at most every few seconds).
 */
import type pg from 'pg';

import type { CompiledConfig } from '../config/types.js';
import type { Clock } from '../core/clock.js';
import type { BatchRecord } from '../core/record.js';
import { toStatusRows } from '../core/status-row.js';
import { DaemonError } from '../errors.js';
import type { ViewRow } from '../ops/status-view.js';
import { createPool, databaseError, quoteSchema, redactor, secretsOf } from './postgres-connection.js';
import { type StoredJob, readPostgresJobStates } from './postgres-jobs.js';
import { loadLedgerState } from './postgres-load.js';
import { SCHEMA_VERSION } from './postgres-migrations.js';
import { DEFAULT_STATE_POSTGRES, postgresConnectSettings } from './open-state.js';

/** Where the status rows are read: a pool (any: the reader's own, or a standby ledger's) and the schema. */
export interface StatusSource {
  pool: pg.Pool;
  /** The unquoted schema name (for messages). */
  schema: string;
  quoted: string;
  redact: (text: string) => string;
}

/** Options of {@link readPostgresStatusRows}. */
export interface PostgresStatusOptions {
  /** Read only these accounts (`status --account`); null or absent: every account in the schema. */
  accounts?: ReadonlySet<string> | null;
  /** How long connecting may take before the read fails. @default 5000 */
  connectTimeoutMs?: number;
}

/** `postgres:<schema>`: where the rows come from, for the watch view's header (no host, no credentials). */
export function postgresStatusLocation(config: CompiledConfig): string {
  return `postgres:${(config.state.postgres ?? DEFAULT_STATE_POSTGRES).schema}`;
}

/**
 * The accounts with state in the schema (a snapshot, compacted batches or journal rows), by name, or null when
 * the schema has no ledger tables yet. Refuses a schema newer than this code (it could misread it).
 */
async function accountsInSchema(at: StatusSource): Promise<string[] | null> {
  let client: pg.PoolClient;
  try {
    client = await at.pool.connect();
  } catch (err) {
    throw databaseError('connect', err, at.redact);
  }
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const tables = await client.query<{ journal: string | null; migrations: string | null }>(
      'SELECT to_regclass($1) AS journal, to_regclass($2) AS migrations',
      [`${at.quoted}.journal`, `${at.quoted}.migrations`],
    );
    const found = tables.rows[0];
    if (found?.journal == null || found.migrations == null) {
      await client.query('COMMIT');
      return null;
    }
    const version = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${at.quoted}.migrations`);
    const newest = Number(version.rows[0]?.v ?? 0);
    if (newest > SCHEMA_VERSION) {
      throw new DaemonError(
        `schema ${at.schema} is at version ${newest}, newer than this iot-batch-watcher knows (${SCHEMA_VERSION}): upgrade it`,
        { kind: 'store', scope: 'process', code: 'SchemaTooNew' },
      );
    }
    const { rows } = await client.query<{ account: string }>(
      `SELECT account FROM ${at.quoted}.snapshots
       UNION SELECT account FROM ${at.quoted}.batches
       UNION SELECT account FROM ${at.quoted}.journal
       ORDER BY account`,
    );
    await client.query('COMMIT');
    return rows.map((r) => r.account);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw databaseError(`read the accounts of schema ${at.schema}`, err, at.redact);
  } finally {
    client.release();
  }
}

/**
 * The status rows of the accounts in `source` (all, or those in `accounts`), built as the file path builds them
 * ({@link toStatusRows}); a record from before accounts carries the account its rows are stored under. An empty
 * list when the schema has no ledger yet.
 */
export async function readStatusRowsFrom(source: StatusSource, accounts: ReadonlySet<string> | null = null): Promise<ViewRow[]> {
  const present = await accountsInSchema(source);
  if (present === null) return [];
  const records: BatchRecord[] = [];
  for (const account of present) {
    if (accounts !== null && !accounts.has(account)) continue;
    const state = await loadLedgerState({ ...source, account });
    for (const rec of state.batches.values()) {
      records.push(rec.account === undefined && account !== 'default' ? { ...rec, account } : rec);
    }
  }
  return toStatusRows(records);
}

/**
 * A pool of one connection for reading `config`'s schema, every session of it `default_transaction_read_only`,
 * with the redaction of its connection's secrets. The caller ends the pool.
 */
export async function openStatusSource(
  config: CompiledConfig,
  env: Readonly<Record<string, string | undefined>>,
  connectTimeoutMs = 5000,
): Promise<StatusSource> {
  const pgConfig = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  const quoted = quoteSchema(pgConfig.schema);
  const settings = await postgresConnectSettings(config, env);
  const redact = redactor(secretsOf(settings.connectionString, env));
  const pool = await createPool({ ...settings, poolSize: 1, connectTimeoutMs }, redact);
  // An idle connection that breaks must not crash the command; the read in flight reports it.
  pool.on('error', () => undefined);
  // NOTE: every read is in a READ ONLY transaction already; the session default makes a write that a later
  // change might add fail in the database rather than touch the owner's rows. pg queues this before any query
  // of the caller on the new connection.
  pool.on('connect', (client) => {
    client.query('SET default_transaction_read_only = on').catch(() => undefined);
  });
  return { pool, schema: pgConfig.schema, quoted, redact };
}

/**
 * Reads the rows of `config`'s PostgreSQL schema through a pool of one connection of its own
 * ({@link openStatusSource}), closed before this resolves. Throws a redacted store error (no password in it)
 * when the database cannot be reached, a config error when no connection URL is configured.
 */
export async function readPostgresStatusRows(
  config: CompiledConfig,
  env: Readonly<Record<string, string | undefined>>,
  options: PostgresStatusOptions = {},
): Promise<ViewRow[]> {
  const source = await openStatusSource(config, env, options.connectTimeoutMs);
  try {
    return await readStatusRowsFrom(source, options.accounts ?? null);
  } finally {
    await source.pool.end().catch(() => undefined);
  }
}

/** Options of {@link CachedStatusRows}. */
export interface CachedStatusRowsOptions<T = ViewRow> {
  /** Reads the rows (e.g. {@link readPostgresStatusRows} for one account). */
  read: () => Promise<T[]>;
  clock: Pick<Clock, 'now'>;
  /** A read starts at most this often, successful or not. */
  maxAgeMs: number;
  /** The first failure of a run of failures (not one per retry). */
  onError?: (err: unknown) => void;
}

/**
 * The rows of an account this replica does not own (a standby's `/v1/batches`), read from the database in the
 * background: {@link rows} answers at once with the last rows read and starts a new read when they are older
 * than `maxAgeMs`, so requests never wait on the database and never read it more often than that. The same for
 * its provisioning jobs (`/v1/jobs`).
 */
export class CachedStatusRows<T = ViewRow> {
  readonly #o: CachedStatusRowsOptions<T>;
  #rows: T[] | null = null;
  #startedAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<void> | null = null;
  #failing = false;

  constructor(options: CachedStatusRowsOptions<T>) {
    this.#o = options;
  }

  /** The last rows read (null until a read succeeded); starts a read when they are stale. */
  rows(): T[] | null {
    void this.refresh();
    return this.#rows;
  }

  /** Starts a read when the last one started `maxAgeMs` ago or more; resolves when the read in flight ends. */
  refresh(): Promise<void> {
    if (this.#reading) return this.#reading;
    const now = this.#o.clock.now();
    if (now - this.#startedAt < this.#o.maxAgeMs) return Promise.resolve();
    this.#startedAt = now;
    this.#reading = this.#o
      .read()
      .then(
        (rows) => {
          this.#rows = rows;
          this.#failing = false;
        },
        (err: unknown) => {
          if (!this.#failing) this.#o.onError?.(err);
          this.#failing = true;
        },
      )
      .finally(() => {
        this.#reading = null;
      });
    return this.#reading;
  }
}

/**
 * The provisioning jobs stored in `config`'s schema (`status --jobs`, `results --provision`; DESIGN.md §12/§13):
 * every account's, or those of `accounts`, and only the job `name` when given. Read-only like the status rows,
 * through a pool of its own that is closed before this resolves.
 */
export async function readPostgresJobs(
  config: CompiledConfig,
  env: Readonly<Record<string, string | undefined>>,
  options: PostgresStatusOptions & {
    name?: string;
    /**
     * No rows (rather than an error) when the role may not read `provision_jobs`: the plain `status` table, whose
     * documented grants are those of the ledger tables alone (the rows hold DeviceSecrets).
     */
    skipUnreadable?: boolean;
  } = {},
): Promise<StoredJob[]> {
  const source = await openStatusSource(config, env, options.connectTimeoutMs);
  try {
    let client: pg.PoolClient;
    try {
      client = await source.pool.connect();
    } catch (err) {
      throw databaseError('connect', err, source.redact);
    }
    try {
      await client.query('BEGIN READ ONLY');
      if (options.skipUnreadable === true) {
        const { rows } = await client.query<{ readable: boolean | null }>(
          "SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE has_table_privilege(to_regclass($1), 'SELECT') END AS readable",
          [`${source.quoted}.provision_jobs`],
        );
        if (rows[0]?.readable === false) {
          await client.query('COMMIT');
          return [];
        }
      }
      // One account (a standby's /v1/jobs, `status --account A`): only its rows leave the database.
      const accounts = options.accounts ?? null;
      const only = accounts !== null && accounts.size === 1 ? [...accounts][0]! : undefined;
      const jobs = await readPostgresJobStates(client, source.quoted, {
        ...(options.name === undefined ? {} : { name: options.name }),
        ...(only === undefined ? {} : { account: only }),
      });
      await client.query('COMMIT');
      return accounts === null ? jobs : jobs.filter((j) => accounts.has(j.account));
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (err instanceof DaemonError) throw err;
      throw databaseError(`read the provisioning jobs of schema ${source.schema}`, err, source.redact);
    } finally {
      client.release();
    }
  } finally {
    await source.pool.end().catch(() => undefined);
  }
}
