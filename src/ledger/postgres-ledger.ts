/**
 * The PostgreSQL {@link LedgerStore} (DESIGN.md §12), for `state.backend: postgres`: opening it, and the store
 * that ties its parts together.
 *
 * Tables (postgres-migrations.ts), all keyed by account: `journal` (records after the snapshot), `batches` and
 * `outbox` (the compacted state, each row with an `ord` that keeps the file ledger's Map order), `snapshots`
 * (the journal seq the compacted state covers), `leases` (ownership and fencing), `results`.
 *
 * - `append`: group commit, fenced by the lease (postgres-journal-writer.ts). Its cost does not depend on the
 *   number of batches.
 * - `compact(state)`: folds the journal up to the last seq assigned into the compacted tables without blocking
 *   appends; `importState` writes a whole state (postgres-compaction.ts).
 * - `load()`: waits for queued writes, then reads snapshot + journal in one REPEATABLE READ transaction
 *   (postgres-load.ts).
 * - Ownership: the ledger owns one account (`default` until several accounts exist). `open` acquires its lease
 *   (or fails with `LedgerLocked` naming the holder) unless `acquire: false`; the lease is renewed every
 *   `renewEveryMs`; `close()` releases it. A write refused by the fence rejects with `LeaseLost` and nothing of
 *   it is stored.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import type pg from 'pg';
import type { Logger } from 'pino';

import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import type { JournalRecord, LedgerSnapshot, LedgerStore } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import type { FencedLocation } from './postgres-compaction.js';
import { captureTouched, compactJournal, importLedgerState, isLedgerEmpty } from './postgres-compaction.js';
import { createPool, databaseError, quoteSchema, redactor, secretsOf } from './postgres-connection.js';
import { JournalWriter } from './postgres-journal-writer.js';
import type { Fence, LeaseChange } from './postgres-lease.js';
import { AccountLease, keepRenewing } from './postgres-lease.js';
import { loadLedgerState, readJournalPosition } from './postgres-load.js';
import { migrate } from './postgres-migrations.js';

/** The account used until several accounts exist (#15). */
export const DEFAULT_ACCOUNT = 'default';

/** Options of {@link openPostgresLedger}. */
export interface PostgresLedgerOptions {
  /** Connection URL (from `state.postgres.urlEnv`); `PG*` variables fill what it leaves out. */
  connectionString?: string;
  /** TLS options passed to pg (RDS: `{ ca, rejectUnauthorized: true }`); the URL's `sslmode` works too. */
  ssl?: pg.ClientConfig['ssl'];
  /** `state.postgres.schema`; created and migrated on open. */
  schema: string;
  /** @default 'default' */
  account?: string;
  /** This replica's id in the lease table. @default `<hostname>:<pid>:<random>` */
  owner?: string;
  /** `state.postgres.lease`. */
  leaseMs: number;
  /** Local trust window, shorter than the lease. @default two thirds of leaseMs */
  trustMs?: number;
  /** How often the held lease is renewed; 0 = never (tests). @default a third of leaseMs */
  renewEveryMs?: number;
  /** Acquire the account's lease on open (else start as a standby: appends are refused). @default true */
  acquire?: boolean;
  /** How long the first append of a group waits for others. @default 2 */
  groupCommitMs?: number;
  /** How long a new connection may take. @default 10000 */
  connectTimeoutMs?: number;
  /** Pool size. @default 4 (appends, compaction, lease renewal and reads each get a connection) */
  poolSize?: number;
  /** Environment whose PGPASSWORD is redacted from messages too. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  logger?: Logger;
  clock?: Clock;
  /** Hears every change of ownership (metrics `ibw_account_owned`, `ibw_lease_changes_total`). */
  onLeaseChange?: (change: LeaseChange) => void;
  /**
   * Another replica took the account over (a renewal or a fenced write found another epoch): this replica must
   * stop acting for it. The ledger refuses every write from then on until {@link PostgresLedger.acquireLease}
   * succeeds again.
   */
  onLeaseLost?: (error: DaemonError) => void;
}

/** Counters of a {@link PostgresLedger}. */
export interface PostgresLedgerStats {
  account: string;
  owner: string;
  epoch: number | null;
  /** Last seq assigned. */
  seq: number;
  /** Journal records after the last compaction (what a compaction would fold). */
  journalRecords: number;
  appendedRecords: number;
  /** Statements that wrote a group of appends (one transaction each). */
  groupWrites: number;
  failedWrites: number;
  compactions: number;
}

/** What the result store and the migrate command need of an open ledger. */
export interface PostgresLedgerHandle {
  readonly pool: pg.Pool;
  /** The quoted schema name. */
  readonly quoted: string;
  readonly account: string;
  /** Owner and epoch for a fenced write; throws `LeaseNotHeld` when the lease is not held. */
  requireFence(): Fence;
  /** Turns a driver error into a redacted store error. */
  dbError(action: string, err: unknown): DaemonError;
  /** Reports a refused fenced write (the lease was lost). */
  fenceRefused(what: string): DaemonError;
}

/** A {@link LedgerStore} over PostgreSQL, with its lease. */
export interface PostgresLedger extends LedgerStore {
  readonly schema: string;
  readonly lease: AccountLease;
  readonly handle: PostgresLedgerHandle;
  /** Takes the lease when free or expired (a standby taking over); then `load()` the state. */
  acquireLease(): Promise<boolean>;
  /** True while the lease can be trusted locally: stop calling the API for the account when false. */
  leaseTrusted(): boolean;
  /**
   * Gives the lease up and stays open as a standby (a fair-share hand-over): waits for writes in flight, then
   * releases the row so another replica can take the account at once. `acquireLease()` may take it again.
   */
  releaseLease(): Promise<void>;
  /**
   * Writes `state` as the account's whole compacted state (the migrate command). Refuses (`LedgerNotEmpty`)
   * when the account already has state in the database.
   */
  importState(state: LedgerSnapshot): Promise<void>;
  /** True when the account has no snapshot, no batch, no event and no journal row. */
  isEmpty(): Promise<boolean>;
  stats(): PostgresLedgerStats;
}

const DEFAULT_GROUP_COMMIT_MS = 2;

function closedError(): DaemonError {
  return new DaemonError('the ledger is closed', { kind: 'internal', scope: 'process', code: 'LedgerClosed' });
}

function leaseLostError(account: string, owner: string): DaemonError {
  return new DaemonError(`replica ${owner} lost the lease of account ${account} to another owner`, {
    kind: 'store',
    scope: 'process',
    code: 'LeaseLost',
    advice: 'another replica owns the account now; this one stops acting for it (restarted, it stands by)',
  });
}

function defaultOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Connects, migrates the schema, acquires the account's lease (unless `acquire: false`) and reads where the
 * journal stands. Throws `LedgerLocked` when another live owner holds the lease, a redacted store error when
 * the database cannot be reached.
 */
export async function openPostgresLedger(options: PostgresLedgerOptions): Promise<PostgresLedger> {
  const quoted = quoteSchema(options.schema);
  const account = options.account ?? DEFAULT_ACCOUNT;
  if (!(Number.isFinite(options.leaseMs) && options.leaseMs >= 100)) {
    throw new DaemonError(`lease must be at least 100ms, got ${String(options.leaseMs)}`, {
      kind: 'config',
      scope: 'process',
      code: 'InvalidOption',
    });
  }
  const redact = redactor(secretsOf(options.connectionString, options.env ?? process.env));
  const pool = await createPool(options, redact);
  // An idle connection that breaks must not crash the process; the next query reports it. Every pooled connection
  // breaks at once when the database goes: one line for them all, until the lease is confirmed again.
  let connectionLossLogged = false;
  pool.on('error', (err) => {
    if (connectionLossLogged) return;
    connectionLossLogged = true;
    options.logger?.warn({ error: redact(err.message) }, 'PostgreSQL connection lost');
  });
  const clock = options.clock ?? systemClock;
  const lease = new AccountLease({
    pool,
    quoted,
    account,
    owner: options.owner ?? defaultOwner(),
    leaseMs: options.leaseMs,
    ...(options.trustMs === undefined ? {} : { trustMs: options.trustMs }),
    clock,
    onChange: (change) => {
      if (change.owned) connectionLossLogged = false;
      options.onLeaseChange?.(change);
      if (change.reason === 'lost') options.onLeaseLost?.(leaseLostError(account, change.owner));
    },
  });
  try {
    let applied: number[];
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw databaseError('connect', err, redact);
    }
    try {
      applied = await migrate(client, options.schema, quoted).catch((err: unknown) => {
        throw databaseError(`migrate schema ${options.schema}`, err, redact);
      });
    } finally {
      client.release();
    }
    const ledger = new PostgresLedgerImpl({ options, pool, quoted, account, lease, clock, redact });
    await ledger.syncJournal();
    if (options.acquire ?? true) {
      const epoch = await lease.acquire().catch((err: unknown) => {
        throw databaseError('acquire the lease', err, redact);
      });
      if (epoch === null) {
        const holder = await lease.holder().catch(() => null);
        throw new DaemonError(
          `account ${account} in schema ${options.schema} is owned by ${holder?.owner ?? 'another replica'}` +
            ` (lease expires in ${Math.max(0, holder?.remainingMs ?? 0)}ms): another iot-batch-watcher is using it`,
          { kind: 'store', scope: 'process', code: 'LedgerLocked' },
        );
      }
      await ledger.syncJournal();
      ledger.startRenewing();
    }
    options.logger?.info(
      { schema: options.schema, account, owner: lease.owner, epoch: lease.epoch, migrationsApplied: applied },
      'opened the PostgreSQL ledger',
    );
    return ledger;
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}

interface ImplInit {
  options: PostgresLedgerOptions;
  pool: pg.Pool;
  quoted: string;
  account: string;
  lease: AccountLease;
  clock: Clock;
  redact: (text: string) => string;
}

class PostgresLedgerImpl implements PostgresLedger {
  readonly schema: string;
  readonly lease: AccountLease;
  readonly handle: PostgresLedgerHandle;
  private readonly pool: pg.Pool;
  private readonly account: string;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly redact: (text: string) => string;
  private readonly renewEveryMs: number;
  /** Where the load/compaction/import functions read and write. */
  private readonly at: FencedLocation;
  private readonly writer: JournalWriter;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private compacting: Promise<void> = Promise.resolve();
  private compactions = 0;
  /** Aborts the running renewal loop (one per holding of the lease). */
  private renewAbort: AbortController | null = null;
  private renewLoop: Promise<void> = Promise.resolve();
  private closing: Promise<void> = Promise.resolve();

  constructor(init: ImplInit) {
    this.schema = init.options.schema;
    this.pool = init.pool;
    this.account = init.account;
    this.lease = init.lease;
    this.clock = init.clock;
    this.logger = init.options.logger;
    this.redact = init.redact;
    this.renewEveryMs = init.options.renewEveryMs ?? Math.floor(init.options.leaseMs / 3);
    this.at = {
      pool: init.pool,
      schema: init.options.schema,
      quoted: init.quoted,
      account: init.account,
      redact: init.redact,
      fenceRefused: (what) => this.fenceRefused(what),
    };
    this.writer = new JournalWriter({
      pool: init.pool,
      quoted: init.quoted,
      account: init.account,
      clock: init.clock,
      redact: init.redact,
      groupCommitMs: init.options.groupCommitMs ?? DEFAULT_GROUP_COMMIT_MS,
      fence: () => this.lease.fence(),
      notHeld: () => this.notHeld(),
      fenceRefused: (what) => this.fenceRefused(what),
    });
    this.handle = {
      pool: this.pool,
      quoted: init.quoted,
      account: this.account,
      requireFence: () => this.requireFence(),
      dbError: (action, err) => databaseError(action, err, this.redact),
      fenceRefused: (what) => this.fenceRefused(what),
    };
  }

  leaseTrusted(): boolean {
    return this.state === 'open' && this.lease.trusted();
  }

  async acquireLease(): Promise<boolean> {
    if (this.state !== 'open') throw closedError();
    const epoch = await this.lease.acquire().catch((err: unknown) => {
      throw databaseError('acquire the lease', err, this.redact);
    });
    if (epoch === null) return false;
    await this.syncJournal();
    this.logger?.info({ account: this.account, owner: this.lease.owner, epoch }, 'acquired the account lease');
    this.startRenewing();
    return true;
  }

  append(records: JournalRecord[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    return this.writer.append(records);
  }

  compact(state: LedgerSnapshot): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    const upTo = this.writer.lastSeq();
    const values = captureTouched(this.writer.journal, state);
    const run = this.compacting.then(async () => {
      await this.writer.drained();
      const window = this.writer.journal.filter((m) => m.seq <= upTo);
      await compactJournal(this.at, this.requireFence(), window, upTo, values);
      this.writer.folded(upTo);
      this.compactions += 1;
    });
    this.compacting = run.catch(() => undefined);
    return run;
  }

  async load(): Promise<LedgerSnapshot> {
    if (this.state !== 'open') throw closedError();
    await this.writer.drained();
    return loadLedgerState(this.at);
  }

  /** Reads where the journal stands (after open and after acquiring the lease from another owner). */
  async syncJournal(): Promise<void> {
    await this.writer.drained();
    const { snapshotSeq, stored } = await readJournalPosition(this.at);
    this.writer.resync(stored, snapshotSeq);
  }

  isEmpty(): Promise<boolean> {
    return isLedgerEmpty(this.at);
  }

  async importState(state: LedgerSnapshot): Promise<void> {
    if (this.state !== 'open') throw closedError();
    await this.writer.drained();
    const upTo = await importLedgerState(this.at, this.requireFence(), state, this.writer.lastSeq());
    this.writer.advanceTo(upTo + 1);
  }

  // ---- lease ----

  /** Starts the renewal loop unless one runs already (it ends by itself when the lease is lost). */
  startRenewing(): void {
    if (this.renewEveryMs <= 0 || this.renewAbort !== null) return;
    const abort = new AbortController();
    this.renewAbort = abort;
    this.renewLoop = keepRenewing(this.lease, {
      everyMs: this.renewEveryMs,
      clock: this.clock,
      signal: abort.signal,
      describeError: (err) => databaseError('renew the lease', err, this.redact).message,
      ...(this.logger ? { logger: this.logger } : {}),
    }).finally(() => {
      if (this.renewAbort === abort) this.renewAbort = null;
    });
  }

  private async stopRenewing(): Promise<void> {
    this.renewAbort?.abort();
    await this.renewLoop;
  }

  async releaseLease(): Promise<void> {
    if (this.state !== 'open') return;
    // Writes in flight commit under the lease first, so the next owner reads them.
    await this.writer.drained();
    await this.compacting;
    await this.stopRenewing();
    try {
      await this.lease.release();
    } catch (err) {
      // Released locally; on the server the lease lapses by itself.
      this.logger?.warn({ error: databaseError('release the lease', err, this.redact).message }, 'could not release the lease');
    }
  }

  private requireFence(): Fence {
    const fence = this.lease.fence();
    if (fence === null) throw this.notHeld();
    return fence;
  }

  private notHeld(): DaemonError {
    return new DaemonError(`this replica does not hold the lease of account ${this.account}`, {
      kind: 'store',
      scope: 'process',
      code: 'LeaseNotHeld',
    });
  }

  private fenceRefused(what: string): DaemonError {
    const held = this.lease.epoch !== null;
    this.lease.lost();
    // One line when the lease goes (groups in flight may be refused after it).
    if (held) this.logger?.warn({ account: this.account, owner: this.lease.owner }, `the fence refused a ${what}: the account lease was lost`);
    return new DaemonError(`${what} refused: this replica lost the lease of account ${this.account} to another owner`, {
      kind: 'store',
      scope: 'process',
      code: 'LeaseLost',
    });
  }

  // ---- close ----

  async close(): Promise<void> {
    if (this.state !== 'open') {
      if (this.state === 'closing') await this.closing;
      return;
    }
    this.state = 'closing';
    this.closing = this.finishClose();
    await this.closing;
  }

  private async finishClose(): Promise<void> {
    try {
      await this.writer.drained();
      await this.compacting;
      await this.stopRenewing();
      await this.lease.release().catch((err: unknown) => {
        this.logger?.warn({ error: databaseError('release the lease', err, this.redact).message }, 'could not release the lease');
      });
    } finally {
      await this.pool.end().catch(() => undefined);
      this.state = 'closed';
    }
  }

  stats(): PostgresLedgerStats {
    return {
      account: this.account,
      owner: this.lease.owner,
      epoch: this.lease.epoch,
      seq: this.writer.lastSeq(),
      journalRecords: this.writer.journal.length,
      ...this.writer.counters,
      compactions: this.compactions,
    };
  }
}
