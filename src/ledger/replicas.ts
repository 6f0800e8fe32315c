/**
 * Replica heartbeats (DESIGN.md §12): each process keeps one row in `<schema>.replicas` alive (expiring on the
 * server's clock, like leases), and reads which replicas are alive and who owns which account. That view feeds the
 * fair-share policy (src/ledger/claims.ts): the daemon creates one {@link ReplicaHeartbeat} and one
 * {@link FairClaims} per process and hands the claims to every account runtime.
 *
 * - `beat()`: one upsert of this replica's row and one read of the live rows and held leases; returns the view.
 * - `run()`: beats every `everyMs` until aborted; one error line when beats start failing, one when they work
 *   again; after each beat, `onView` (e.g. release an account the policy says to hand over).
 * - `leave()`: deletes the row (SIGTERM), so the others count one replica fewer at their next beat.
 *
 * The row expires `ttlMs` after the last beat (default two thirds of the lease): a killed replica drops out of
 * the count before its leases lapse, so the survivors are ready to take its accounts when the leases do.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import type pg from 'pg';
import type { Logger } from 'pino';

import type { CompiledConfig } from '../config/types.js';
import type { Clock } from '../core/clock.js';
import { FairClaims, type ReplicaView } from './claims.js';
import { createPool, databaseError, quoteSchema, redactor, secretsOf } from './postgres-connection.js';
import { migrate } from './postgres-migrations.js';
import { DEFAULT_STATE_POSTGRES, postgresConnectSettings } from './open-state.js';

/** Options of {@link ReplicaHeartbeat}. */
export interface ReplicaHeartbeatOptions {
  pool: pg.Pool;
  /** The quoted schema name. */
  quoted: string;
  /** This replica's id (the owner id of its leases). */
  id: string;
  /** How long the row lives after a beat. */
  ttlMs: number;
  /** How often `run()` beats. @default a third of ttlMs */
  everyMs?: number;
  clock: Clock;
  logger?: Logger;
  /** Turns a driver error into a redacted message. */
  describeError: (err: unknown) => string;
}

/** Expired rows older than this are deleted by any replica's heartbeat (kept a while for the DBA). */
const PURGE_AFTER_MS = 24 * 3600_000;

/** One replica's heartbeat row and its view of the others. */
export class ReplicaHeartbeat {
  readonly id: string;
  readonly ttlMs: number;
  readonly everyMs: number;
  private readonly o: ReplicaHeartbeatOptions;
  private failing = false;

  constructor(options: ReplicaHeartbeatOptions) {
    if (!(options.ttlMs >= 100)) throw new RangeError(`ttlMs must be at least 100, got ${options.ttlMs}`);
    this.o = options;
    this.id = options.id;
    this.ttlMs = options.ttlMs;
    this.everyMs = options.everyMs ?? Math.max(50, Math.floor(options.ttlMs / 3));
  }

  /** Renews this replica's row and reads the live replicas and the held leases. */
  async beat(): Promise<ReplicaView> {
    const q = this.o.quoted;
    const at = this.o.clock.now();
    await this.o.pool.query(
      `INSERT INTO ${q}.replicas AS r (id, host, pid, started_at, heartbeat_at, expires_at)
       VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp(), clock_timestamp() + $4 * interval '1 millisecond')
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at`,
      [this.id, hostname(), process.pid, this.ttlMs],
    );
    const { rows } = await this.o.pool.query<{ kind: 'replica' | 'lease'; id: string; owner: string | null }>(
      `SELECT 'replica' AS kind, id, NULL AS owner FROM ${q}.replicas WHERE expires_at > clock_timestamp()
       UNION ALL
       SELECT 'lease', account, owner FROM ${q}.leases WHERE owner IS NOT NULL AND expires_at > clock_timestamp()`,
    );
    const live = new Set<string>([this.id]);
    const owners = new Map<string, string>();
    for (const row of rows) {
      if (row.kind === 'replica') live.add(row.id);
      else if (row.owner !== null) owners.set(row.id, row.owner);
    }
    return { live: [...live].sort(), owners, at };
  }

  /** Deletes this replica's row (it leaves: the others count one fewer at once). */
  async leave(): Promise<void> {
    await this.o.pool.query(`DELETE FROM ${this.o.quoted}.replicas WHERE id = $1`, [this.id]);
  }

  /** Deletes rows that expired long ago (dead replicas). */
  async purge(): Promise<number> {
    const { rowCount } = await this.o.pool.query(
      `DELETE FROM ${this.o.quoted}.replicas WHERE expires_at < clock_timestamp() - $1 * interval '1 millisecond'`,
      [PURGE_AFTER_MS],
    );
    return rowCount ?? 0;
  }

  /**
   * Beats at once and then every `everyMs` until `signal` aborts, handing each view to `onView`. A database that
   * cannot be reached logs one error line when beats start failing and one info line when they work again.
   */
  async run(signal: AbortSignal, onView: (view: ReplicaView) => void | Promise<void>, options: { sleepFirst?: boolean } = {}): Promise<void> {
    const { logger } = this.o;
    let beats = 0;
    if (options.sleepFirst) {
      try {
        await this.o.clock.sleep(this.everyMs, signal);
      } catch {
        return;
      }
    }
    while (!signal.aborted) {
      let view: ReplicaView | null = null;
      try {
        view = await this.beat();
        if (beats % 1000 === 0) await this.purge();
        beats += 1;
        if (this.failing) {
          this.failing = false;
          logger?.info({ replica: this.id }, 'PostgreSQL reachable again: replica heartbeat renewed');
        }
      } catch (err) {
        if (!this.failing) {
          this.failing = true;
          logger?.error({ replica: this.id, error: this.o.describeError(err) }, 'cannot renew the replica heartbeat');
        }
      }
      if (view !== null) {
        try {
          await onView(view);
        } catch (err) {
          logger?.warn({ replica: this.id, error: this.o.describeError(err) }, 'acting on the replica view failed; next beat retries');
        }
      }
      try {
        await this.o.clock.sleep(this.everyMs, signal);
      } catch {
        return;
      }
    }
  }
}

/** Options of {@link startReplicas}. */
export interface StartReplicasOptions {
  connectionString?: string;
  ssl?: pg.ClientConfig['ssl'];
  schema: string;
  /** This replica's id: the owner id its account leases use. */
  id: string;
  /** `state.postgres.lease`: the heartbeat lives two thirds of it, the free-account grace is a third. */
  leaseMs: number;
  /** Every account the configuration declares. */
  accounts: readonly string[];
  clock: Clock;
  logger?: Logger;
  env?: Readonly<Record<string, string | undefined>>;
  /** An account the policy says to hand over (the daemon releases that account's runtime). */
  onRelease: (account: string) => void | Promise<void>;
}

/** The running heartbeat and policy of one process. */
export interface Replicas {
  /** This replica's id (the owner id of its leases). */
  readonly id: string;
  readonly claims: FairClaims;
  readonly heartbeat: ReplicaHeartbeat;
  /** The last view, or null before the first beat. */
  view(): ReplicaView | null;
  /** Claims nothing more, stops beating and deletes this replica's row (SIGTERM), then closes its connection. */
  stop(): Promise<void>;
}

/**
 * Connects (one connection of its own), migrates the schema (idempotent; the ledgers do it too), and starts
 * beating; after each beat the policy may name an account to hand over, which `onRelease` receives.
 */
export async function startReplicas(options: StartReplicasOptions): Promise<Replicas> {
  const redact = redactor(secretsOf(options.connectionString, options.env ?? process.env));
  const quoted = quoteSchema(options.schema);
  const pool = await createPool({ ...options, poolSize: 1 }, redact);
  pool.on('error', () => undefined); // a broken idle connection: the next beat reports it
  const describeError = (err: unknown): string => databaseError('renew the replica heartbeat', err, redact).message;
  try {
    const client = await pool.connect().catch((err: unknown) => {
      throw databaseError('connect', err, redact);
    });
    try {
      await migrate(client, options.schema, quoted).catch((err: unknown) => {
        throw databaseError(`migrate schema ${options.schema}`, err, redact);
      });
    } finally {
      client.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  const ttlMs = Math.max(100, Math.floor((options.leaseMs * 2) / 3));
  const heartbeat = new ReplicaHeartbeat({
    pool,
    quoted,
    id: options.id,
    ttlMs,
    everyMs: Math.max(50, Math.floor(options.leaseMs / 3)),
    clock: options.clock,
    ...(options.logger ? { logger: options.logger } : {}),
    describeError,
  });
  const claims = new FairClaims({
    self: options.id,
    accounts: options.accounts,
    freeGraceMs: Math.floor(options.leaseMs / 3),
    now: () => options.clock.now(),
  });
  let last: ReplicaView | null = null;
  // The first view before anything claims: without it a replica does not know who else is alive.
  try {
    last = await heartbeat.beat();
    claims.update(last);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw databaseError('register the replica', err, redact);
  }
  const abort = new AbortController();
  const loop = heartbeat.run(abort.signal, async (view) => {
    last = view;
    claims.update(view);
    const account = claims.toRelease();
    if (account !== null) {
      options.logger?.info({ account, replica: options.id, share: claims.share() }, 'handing an account over: this replica owns more than its fair share');
      await options.onRelease(account);
    }
  }, { sleepFirst: true });
  let stopping: Promise<void> | null = null;
  return {
    id: options.id,
    claims,
    heartbeat,
    view: () => last,
    stop() {
      stopping ??= (async () => {
        claims.leave();
        abort.abort();
        await loop;
        await heartbeat.leave().catch((err: unknown) => {
          options.logger?.warn({ error: describeError(err) }, 'could not delete the replica row; it expires by itself');
        });
        await pool.end().catch(() => undefined);
      })();
      return stopping;
    },
  };
}

/** A replica id for this process: `<hostname>:<pid>:<random>`, the owner id of all its account leases. */
export function processReplicaId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** Dependencies of {@link startProcessReplicas}. */
export interface ProcessReplicasDeps {
  env: Readonly<Record<string, string | undefined>>;
  clock: Clock;
  logger?: Logger;
  /** The accounts of the configuration. */
  accounts: readonly string[];
  onRelease: (account: string) => void | Promise<void>;
}

/**
 * The daemon's heartbeat and claims policy for `state.backend: postgres` (one per process): connects with the
 * configuration's `state.postgres` settings (the same URL, TLS and schema as the ledgers).
 */
export async function startProcessReplicas(config: CompiledConfig, deps: ProcessReplicasDeps): Promise<Replicas> {
  const pgConfig = config.state.postgres ?? DEFAULT_STATE_POSTGRES;
  return startReplicas({
    ...(await postgresConnectSettings(config, deps.env, deps.logger)),
    schema: pgConfig.schema,
    id: processReplicaId(),
    leaseMs: pgConfig.leaseMs,
    accounts: deps.accounts,
    clock: deps.clock,
    env: deps.env,
    ...(deps.logger ? { logger: deps.logger } : {}),
    onRelease: deps.onRelease,
  });
}
