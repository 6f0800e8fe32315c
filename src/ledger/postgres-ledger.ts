/**
 * The PostgreSQL {@link LedgerStore} (DESIGN.md §12), for `state.backend: postgres`.
 *
 * Tables (postgres-migrations.ts), all keyed by account: `journal` (records after the snapshot), `batches` and
 * `outbox` (the compacted state, each row with an `ord` that keeps the file ledger's Map order), `snapshots`
 * (the journal seq the compacted state covers), `leases` (ownership and fencing), `results`.
 *
 * - `append`: records get their seq at call time; appends arriving within `groupCommitMs`, and all appends
 *   arriving while a write is in flight, go in one statement (one transaction): a multi-row
 *   `INSERT ... SELECT FROM json_array_elements(...)` fenced by the lease (owner and epoch checked in the same statement).
 *   Its cost does not depend on the number of batches.
 * - `compact(state)`: captures, at call time, the entries of `state` for the keys the journal touched up to the
 *   last seq assigned (N), waits until those appends are durable, then in its own transaction upserts those
 *   rows into `batches`/`outbox`, deletes the removed ones, records N and deletes journal rows ≤ N. Appends go
 *   on meanwhile (they only insert rows > N). Cost is proportional to the journal, not to the state. A key the
 *   journal never touched is not rewritten: the port's callers keep `state` equal to the applied records.
 * - `load()`: waits for queued writes, then reads snapshot + journal in one REPEATABLE READ transaction.
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
import { applyJournalRecord, emptySnapshot } from '../core/ledger-state.js';
import type { JournalRecord, LedgerSnapshot, LedgerStore } from '../core/ports.js';
import type { BatchRecord, OutboxEntry } from '../core/record.js';
import { DaemonError } from '../errors.js';
import { checkJournalRecord } from './journal-format.js';
import { databaseError, loadPg, quoteSchema, redactor, secretsOf } from './postgres-connection.js';
import type { Fence } from './postgres-lease.js';
import { AccountLease, fenceSql } from './postgres-lease.js';
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
   * Writes `state` as the account's whole compacted state (the migrate command). Refuses (`LedgerNotEmpty`)
   * when the account already has state in the database.
   */
  importState(state: LedgerSnapshot): Promise<void>;
  /** True when the account has no snapshot, no batch, no event and no journal row. */
  isEmpty(): Promise<boolean>;
  stats(): PostgresLedgerStats;
}

const DEFAULT_GROUP_COMMIT_MS = 2;
const MAX_GROUP_RECORDS = 2000;

interface AppendItem {
  rows: { seq: number; json: string }[];
  resolve: () => void;
  reject: (err: Error) => void;
}

/** What compaction needs to know of one journal record. */
interface RecordMeta {
  seq: number;
  t: JournalRecord['t'];
  /** Batch key for batch/forget, event id for event/ack/done. */
  key: string;
}

function metaOf(seq: number, record: JournalRecord): RecordMeta {
  switch (record.t) {
    case 'batch':
      return { seq, t: record.t, key: record.rec.key };
    case 'forget':
      return { seq, t: record.t, key: record.key };
    case 'event':
      return { seq, t: record.t, key: record.entry.event.id };
    case 'ack':
    case 'done':
      return { seq, t: record.t, key: record.id };
  }
}

function closedError(): DaemonError {
  return new DaemonError('the ledger is closed', { kind: 'internal', scope: 'process', code: 'LedgerClosed' });
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
  const { Pool } = await loadPg();
  let pool: pg.Pool;
  try {
    // pg parses the URL only when it connects, and throws from inside the pool: check it first.
    if (options.connectionString !== undefined && /^postgres(ql)?:/i.test(options.connectionString)) {
      new URL(options.connectionString);
    }
    pool = new Pool({
      ...(options.connectionString === undefined ? {} : { connectionString: options.connectionString }),
      ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
      max: options.poolSize ?? 4,
      application_name: 'iot-batch-watcher',
      // A database that does not answer must fail a call, not hang it (the caller retries); keepalive notices a
      // dead peer after a partition.
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      keepAlive: true,
    });
  } catch (err) {
    throw new DaemonError(redact(`the PostgreSQL connection URL is not valid: ${err instanceof Error ? err.message : String(err)}`), {
      kind: 'config',
      scope: 'process',
      code: 'InvalidDatabaseUrl',
    });
  }
  // An idle connection that breaks must not crash the process; the next query reports it.
  pool.on('error', (err) => options.logger?.warn({ error: redact(err.message) }, 'PostgreSQL connection lost'));
  const clock = options.clock ?? systemClock;
  const lease = new AccountLease({
    pool,
    quoted,
    account,
    owner: options.owner ?? defaultOwner(),
    leaseMs: options.leaseMs,
    ...(options.trustMs === undefined ? {} : { trustMs: options.trustMs }),
    clock,
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
  private readonly quoted: string;
  private readonly account: string;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly redact: (text: string) => string;
  private readonly groupCommitMs: number;
  private readonly renewEveryMs: number;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private nextSeq = 1;
  /** Records after the last compaction, in seq order (assigned at call time; failed ones removed). */
  private journal: RecordMeta[] = [];
  private queue: AppendItem[] = [];
  private flushing: Promise<void> | null = null;
  private compacting: Promise<void> = Promise.resolve();
  private readonly renewAbort = new AbortController();
  private renewLoop: Promise<void> = Promise.resolve();
  private renewFailing = false;
  private counters = { appendedRecords: 0, groupWrites: 0, failedWrites: 0, compactions: 0 };

  constructor(init: ImplInit) {
    this.schema = init.options.schema;
    this.pool = init.pool;
    this.quoted = init.quoted;
    this.account = init.account;
    this.lease = init.lease;
    this.clock = init.clock;
    this.logger = init.options.logger;
    this.redact = init.redact;
    this.groupCommitMs = init.options.groupCommitMs ?? DEFAULT_GROUP_COMMIT_MS;
    this.renewEveryMs = init.options.renewEveryMs ?? Math.floor(init.options.leaseMs / 3);
    this.handle = {
      pool: this.pool,
      quoted: this.quoted,
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

  // ---- append (group commit) ----

  append(records: JournalRecord[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    let rows: { seq: number; json: string }[];
    let metas: RecordMeta[];
    try {
      const checked = records.map((r) => checkJournalRecord(r));
      const jsons = checked.map((r) => JSON.stringify(r));
      if (checked.length === 0) return Promise.resolve();
      if (!this.lease.fence()) return Promise.reject(this.notHeld());
      rows = jsons.map((json) => ({ seq: this.nextSeq++, json }));
      metas = checked.map((r, i) => metaOf(rows[i]!.seq, r));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.journal.push(...metas);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Writes queued groups one after the other until the queue is empty. */
  private async flushLoop(): Promise<void> {
    try {
      if (this.groupCommitMs > 0) await this.clock.sleep(this.groupCommitMs).catch(() => undefined);
      while (this.queue.length > 0) {
        // At most MAX_GROUP_RECORDS per statement: a huge group would hold the lease row's share lock (and
        // so delay a renewal) for as long as it takes to write.
        let count = 0;
        let take = 0;
        while (take < this.queue.length && (take === 0 || count + this.queue[take]!.rows.length <= MAX_GROUP_RECORDS)) {
          count += this.queue[take]!.rows.length;
          take += 1;
        }
        const group = this.queue.splice(0, take);
        await this.writeGroup(group);
      }
    } finally {
      this.flushing = null;
    }
  }

  private async writeGroup(group: AppendItem[]): Promise<void> {
    const rows = group.flatMap((item) => item.rows);
    const fence = this.lease.fence();
    let error: Error | null = null;
    if (fence === null) {
      error = this.notHeld();
    } else {
      try {
        const { rowCount } = await this.pool.query(
          `WITH ${fenceSql(this.quoted)}
           INSERT INTO ${this.quoted}.journal (account, seq, rec)
           SELECT $1, (e->>0)::bigint, e->1 FROM json_array_elements($4::json) AS e
            WHERE EXISTS (SELECT 1 FROM fence)`,
          [this.account, fence.owner, fence.epoch, jsonRows(rows.map((r) => [r.seq, r.json]))],
        );
        if (rowCount !== rows.length) error = this.fenceRefused('append');
      } catch (err) {
        error = databaseError('append to the journal', err, this.redact);
      }
    }
    if (error === null) {
      this.counters.groupWrites += 1;
      this.counters.appendedRecords += rows.length;
      for (const item of group) item.resolve();
      return;
    }
    this.counters.failedWrites += 1;
    const failed = new Set(rows.map((r) => r.seq));
    this.journal = this.journal.filter((m) => !failed.has(m.seq));
    for (const item of group) item.reject(error);
  }

  /** Resolves when every append assigned so far has settled. */
  private async drained(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
  }

  // ---- compaction ----

  compact(state: LedgerSnapshot): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    const upTo = this.nextSeq - 1;
    // Capture, now, the entries of `state` for every key the journal touched (later edits must not leak in).
    const batchValues = new Map<string, string | undefined>();
    const outboxValues = new Map<string, string | undefined>();
    for (const m of this.journal) {
      if (m.t === 'batch' || m.t === 'forget') {
        if (!batchValues.has(m.key)) {
          const rec = state.batches.get(m.key);
          batchValues.set(m.key, rec === undefined ? undefined : JSON.stringify(rec));
        }
      } else if (!outboxValues.has(m.key)) {
        const entry: OutboxEntry | undefined = state.outbox.get(m.key);
        outboxValues.set(m.key, entry === undefined ? undefined : JSON.stringify(entry));
      }
    }
    const run = this.compacting.then(() => this.compactUpTo(upTo, batchValues, outboxValues));
    this.compacting = run.catch(() => undefined);
    return run;
  }

  private async compactUpTo(
    upTo: number,
    batchValues: Map<string, string | undefined>,
    outboxValues: Map<string, string | undefined>,
  ): Promise<void> {
    await this.drained();
    const window = this.journal.filter((m) => m.seq <= upTo);
    const fence = this.requireFence();
    const batches = foldWindow(window, 'batch', 'forget', batchValues, upTo);
    const outbox = foldWindow(window, 'event', 'done', outboxValues, upTo);
    const client = await this.pool.connect().catch((err: unknown) => {
      throw databaseError('connect', err, this.redact);
    });
    try {
      await client.query('BEGIN');
      const q = this.quoted;
      await this.applyFold(client, `${q}.batches`, 'key', 'rec', batches);
      await this.applyFold(client, `${q}.outbox`, 'id', 'entry', outbox);
      await client.query(
        `INSERT INTO ${q}.snapshots (account, snapshot_seq) VALUES ($1, $2)
         ON CONFLICT (account) DO UPDATE SET snapshot_seq = GREATEST(${q}.snapshots.snapshot_seq, EXCLUDED.snapshot_seq),
           compacted_at = now()`,
        [this.account, upTo],
      );
      await client.query(`DELETE FROM ${q}.journal WHERE account = $1 AND seq <= $2`, [this.account, upTo]);
      await this.checkFenceBeforeCommit(client, fence, 'compact');
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (err instanceof DaemonError) throw err;
      throw databaseError('compact the ledger', err, this.redact);
    } finally {
      client.release();
    }
    this.journal = this.journal.filter((m) => m.seq > upTo);
    this.counters.compactions += 1;
  }

  /**
   * The fence of a long transaction (compaction, import), checked last: its `FOR SHARE` lock on the lease row
   * is then held only until the COMMIT right after, so lease renewals never wait behind a long compaction,
   * while a takeover still cannot commit between this check and our commit.
   */
  private async checkFenceBeforeCommit(client: pg.PoolClient, fence: Fence, what: string): Promise<void> {
    const held = await client.query(`WITH ${fenceSql(this.quoted)} SELECT 1 FROM fence`, [this.account, fence.owner, fence.epoch]);
    if (held.rowCount !== 1) throw this.fenceRefused(what);
  }

  private async applyFold(client: pg.PoolClient, table: string, keyCol: string, valueCol: string, fold: Fold): Promise<void> {
    if (fold.remove.length > 0) {
      await client.query(
        `DELETE FROM ${table} WHERE account = $1 AND ${keyCol} IN (SELECT json_array_elements_text($2::json))`,
        [this.account, JSON.stringify(fold.remove)],
      );
    }
    if (fold.upsert.length > 0) {
      await client.query(
        `INSERT INTO ${table} (account, ${keyCol}, ord, ${valueCol})
         SELECT $1, e->>0, (e->>1)::bigint, e->2 FROM json_array_elements($2::json) AS e
         ON CONFLICT (account, ${keyCol}) DO UPDATE SET ${valueCol} = EXCLUDED.${valueCol}`,
        [this.account, jsonRows(fold.upsert.map((u) => [JSON.stringify(u.key), u.ord, u.value]))],
      );
    }
  }

  // ---- load ----

  async load(): Promise<LedgerSnapshot> {
    if (this.state !== 'open') throw closedError();
    await this.drained();
    const client = await this.pool.connect().catch((err: unknown) => {
      throw databaseError('connect', err, this.redact);
    });
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const q = this.quoted;
      const snap = await client.query<{ s: string }>(`SELECT snapshot_seq AS s FROM ${q}.snapshots WHERE account = $1`, [this.account]);
      const snapshotSeq = Number(snap.rows[0]?.s ?? 0);
      const batches = await client.query<{ rec: string }>(
        `SELECT rec::text AS rec FROM ${q}.batches WHERE account = $1 ORDER BY ord, key`,
        [this.account],
      );
      const outbox = await client.query<{ entry: string }>(
        `SELECT entry::text AS entry FROM ${q}.outbox WHERE account = $1 ORDER BY ord, id`,
        [this.account],
      );
      const journal = await client.query<{ seq: string; rec: string }>(
        `SELECT seq, rec::text AS rec FROM ${q}.journal WHERE account = $1 AND seq > $2 ORDER BY seq`,
        [this.account, snapshotSeq],
      );
      await client.query('COMMIT');
      const state = emptySnapshot();
      for (const row of batches.rows) {
        const rec = JSON.parse(row.rec) as BatchRecord;
        state.batches.set(rec.key, rec);
      }
      for (const row of outbox.rows) {
        const entry = JSON.parse(row.entry) as OutboxEntry;
        state.outbox.set(entry.event.id, entry);
      }
      for (const row of journal.rows) applyJournalRecord(state, this.parseJournalRow(row.seq, row.rec));
      return state;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (err instanceof DaemonError) throw err;
      throw databaseError('load the ledger', err, this.redact);
    } finally {
      client.release();
    }
  }

  private parseJournalRow(seq: string, text: string): JournalRecord {
    try {
      return checkJournalRecord(JSON.parse(text));
    } catch (err) {
      throw new DaemonError(
        `ledger journal row ${this.schema}.journal account=${this.account} seq=${seq} is not a valid record: ${
          err instanceof Error ? err.message : String(err)
        }`,
        { kind: 'store', scope: 'process', code: 'LedgerCorrupt' },
      );
    }
  }

  /** Reads where the journal stands (after open and after acquiring the lease from another owner). */
  async syncJournal(): Promise<void> {
    await this.drained();
    try {
      const q = this.quoted;
      const snap = await this.pool.query<{ s: string }>(`SELECT snapshot_seq AS s FROM ${q}.snapshots WHERE account = $1`, [this.account]);
      const snapshotSeq = Number(snap.rows[0]?.s ?? 0);
      const { rows } = await this.pool.query<{ seq: string; rec: string }>(
        `SELECT seq, rec::text AS rec FROM ${q}.journal WHERE account = $1 AND seq > $2 ORDER BY seq`,
        [this.account, snapshotSeq],
      );
      const metas = rows.map((row) => metaOf(Number(row.seq), this.parseJournalRow(row.seq, row.rec)));
      const last = metas.length > 0 ? metas[metas.length - 1]!.seq : snapshotSeq;
      const pending = this.journal.filter((m) => m.seq > last);
      this.journal = [...metas, ...pending];
      this.nextSeq = Math.max(this.nextSeq, last + 1);
    } catch (err) {
      if (err instanceof DaemonError) throw err;
      throw databaseError('read the journal', err, this.redact);
    }
  }

  // ---- import (migrate --from-file) ----

  async isEmpty(): Promise<boolean> {
    const q = this.quoted;
    try {
      const { rows } = await this.pool.query<{ n: string }>(
        `SELECT (SELECT count(*) FROM ${q}.snapshots WHERE account = $1) + (SELECT count(*) FROM ${q}.batches WHERE account = $1)
              + (SELECT count(*) FROM ${q}.outbox WHERE account = $1) + (SELECT count(*) FROM ${q}.journal WHERE account = $1) AS n`,
        [this.account],
      );
      return Number(rows[0]?.n ?? 0) === 0;
    } catch (err) {
      throw databaseError('read the ledger', err, this.redact);
    }
  }

  async importState(state: LedgerSnapshot): Promise<void> {
    if (this.state !== 'open') throw closedError();
    await this.drained();
    const fence = this.requireFence();
    const batches = [...state.batches.values()].map((rec, i) => ({ key: rec.key, ord: i + 1, value: JSON.stringify(rec) }));
    const outbox = [...state.outbox.values()].map((entry, i) => ({
      key: entry.event.id,
      ord: batches.length + i + 1,
      value: JSON.stringify(entry),
    }));
    const upTo = Math.max(this.nextSeq - 1, batches.length + outbox.length);
    const client = await this.pool.connect().catch((err: unknown) => {
      throw databaseError('connect', err, this.redact);
    });
    const q = this.quoted;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ n: string }>(
        `SELECT (SELECT count(*) FROM ${q}.snapshots WHERE account = $1) + (SELECT count(*) FROM ${q}.journal WHERE account = $1) AS n`,
        [this.account],
      );
      if (Number(rows[0]?.n ?? 0) > 0) {
        throw new DaemonError(`account ${this.account} in schema ${this.schema} already has a ledger`, {
          kind: 'store',
          scope: 'process',
          code: 'LedgerNotEmpty',
        });
      }
      const chunk = 5000;
      for (let i = 0; i < batches.length; i += chunk) {
        await this.applyFold(client, `${q}.batches`, 'key', 'rec', { remove: [], upsert: batches.slice(i, i + chunk) });
      }
      for (let i = 0; i < outbox.length; i += chunk) {
        await this.applyFold(client, `${q}.outbox`, 'id', 'entry', { remove: [], upsert: outbox.slice(i, i + chunk) });
      }
      await client.query(`INSERT INTO ${q}.snapshots (account, snapshot_seq) VALUES ($1, $2)`, [this.account, upTo]);
      await this.checkFenceBeforeCommit(client, fence, 'import');
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (err instanceof DaemonError) throw err;
      throw databaseError('import the ledger', err, this.redact);
    } finally {
      client.release();
    }
    this.nextSeq = Math.max(this.nextSeq, upTo + 1);
  }

  // ---- lease ----

  startRenewing(): void {
    if (this.renewEveryMs <= 0) return;
    const signal = this.renewAbort.signal;
    this.renewLoop = (async () => {
      while (!signal.aborted && this.lease.epoch !== null) {
        try {
          await this.clock.sleep(this.renewEveryMs, signal);
        } catch {
          return;
        }
        if (signal.aborted) return;
        try {
          const ok = await this.lease.renew();
          if (this.renewFailing) {
            this.renewFailing = false;
            this.logger?.info({ account: this.account }, 'PostgreSQL reachable again: lease renewed');
          }
          if (!ok) {
            this.logger?.warn({ account: this.account, owner: this.lease.owner }, 'lost the account lease to another replica');
            return;
          }
        } catch (err) {
          if (!this.renewFailing) {
            this.renewFailing = true;
            this.logger?.error(
              { account: this.account, error: databaseError('renew the lease', err, this.redact).message },
              'cannot renew the account lease',
            );
          }
        }
      }
    })();
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
    this.lease.lost();
    this.logger?.warn({ account: this.account, owner: this.lease.owner }, `the fence refused a ${what}: the account lease was lost`);
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

  private closing: Promise<void> = Promise.resolve();

  private async finishClose(): Promise<void> {
    try {
      await this.drained();
      await this.compacting;
      this.renewAbort.abort();
      await this.renewLoop;
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
      seq: this.nextSeq - 1,
      journalRecords: this.journal.length,
      ...this.counters,
    };
  }
}

/**
 * Rows as one JSON array parameter: `[[a, b, <json>], ...]` from pre-serialised cells. pg's own array
 * serialisation is far slower (about 1 s for 10,000 records here), and `->` on a `json` value keeps the record's
 * text exactly as written.
 */
function jsonRows(rows: readonly (readonly (string | number)[])[]): string {
  return `[${rows.map((cells) => `[${cells.join(',')}]`).join(',')}]`;
}

interface Fold {
  remove: string[];
  upsert: { key: string; ord: number; value: string }[];
}

/**
 * Folds the journal window for one table: which keys to delete first (removed, or removed and re-added, or
 * gone from `state`) and which to upsert, with the `ord` a new row gets (the seq of its first insertion after
 * its last removal: the position a Map would give it).
 */
function foldWindow(
  window: RecordMeta[],
  insertType: JournalRecord['t'],
  removeType: JournalRecord['t'],
  values: Map<string, string | undefined>,
  upTo: number,
): Fold {
  const keys = new Map<string, { reset: boolean; firstInsert: number | null }>();
  for (const m of window) {
    const touchesThis = insertType === 'batch' ? m.t === 'batch' || m.t === 'forget' : m.t !== 'batch' && m.t !== 'forget';
    if (!touchesThis) continue;
    const k = keys.get(m.key) ?? { reset: false, firstInsert: null };
    if (m.t === removeType) {
      k.reset = true;
      k.firstInsert = null;
    } else if (m.t === insertType && k.firstInsert === null) {
      k.firstInsert = m.seq;
    }
    keys.set(m.key, k);
  }
  const fold: Fold = { remove: [], upsert: [] };
  for (const [key, k] of keys) {
    const value = values.get(key);
    if (k.reset || value === undefined) fold.remove.push(key);
    if (value !== undefined) fold.upsert.push({ key, ord: k.firstInsert ?? upTo, value });
  }
  return fold;
}
