/**
 * Ownership of one account (DESIGN.md §12): a row in `leases` with an owner, a fencing `epoch` and an
 * `expires_at` set and compared on the server's clock, so replicas' clock skew does not matter.
 *
 * - `acquire()` takes the row when it is free, released, or expired, and bumps the epoch; it never takes a live
 *   lease of another owner.
 * - `renew()` extends it while owner and epoch still match; a renewal that finds another epoch means the lease
 *   was lost.
 * - `release()` gives it up at once (SIGTERM hands over without waiting for the expiry).
 * - `trusted()` is the local view: true only within `trustMs` (shorter than the lease) after the moment the last
 *   successful acquire/renew was *sent*. The server set the expiry after that moment, so a caller that stops
 *   acting when `trusted()` turns false stops before any other replica can acquire — provided the two clocks
 *   run at about the same rate, which `lease - trust` leaves room for.
 *
 * Every write of the owner carries `owner` and `epoch` and is checked inside its own transaction
 * ({@link fenceSql}); that, not `trusted()`, is what refuses a late write of a paused replica.
 *
 * `onChange` hears every change of ownership as this replica sees it ({@link LeaseChangeReason}): the metrics
 * `ibw_account_owned` / `ibw_lease_changes_total` and the runtime's switch back to standby listen to it.
 */
import type pg from 'pg';

import type { Logger } from 'pino';

import type { Clock } from '../core/clock.js';

/** Who holds the lease now, as the database says. */
export interface LeaseHolder {
  owner: string | null;
  epoch: number;
  /** Milliseconds until it expires on the server's clock (negative when expired). */
  remainingMs: number;
}

/** What a fenced write must prove. */
export interface Fence {
  owner: string;
  epoch: number;
}

/**
 * The CTE that fences one statement: `WITH fence AS (...) <statement> WHERE EXISTS (SELECT 1 FROM fence)`.
 * `FOR SHARE` locks the lease row until the statement's transaction ends, so a takeover (an UPDATE of that row)
 * waits for the write to commit and cannot slip between the check and the write. Parameters: $1 account,
 * $2 owner, $3 epoch.
 */
export function fenceSql(quoted: string): string {
  return `fence AS (SELECT 1 FROM ${quoted}.leases WHERE account = $1 AND owner = $2 AND epoch = $3 FOR SHARE)`;
}

/**
 * Why the lease changed, as this replica sees it:
 * - `acquired`: it took the lease (a new epoch);
 * - `released`: it gave the lease up (SIGTERM, a fair-share hand-over);
 * - `lost`: another replica holds it now (a renewal or a fenced write found another epoch);
 * - `renew_failed`: the first renewal of a failing streak could not reach the database (the lease is still
 *   ours on the server until it lapses, but it cannot be confirmed);
 * - `renew_recovered`: a renewal succeeded again after `renew_failed`, with the epoch unchanged.
 */
export type LeaseChangeReason = 'acquired' | 'released' | 'lost' | 'renew_failed' | 'renew_recovered';

/** Every {@link LeaseChangeReason}, for metrics that start at 0. */
export const LEASE_CHANGE_REASONS: readonly LeaseChangeReason[] = ['acquired', 'released', 'lost', 'renew_failed', 'renew_recovered'];

/** One change of ownership of one account. */
export interface LeaseChange {
  account: string;
  owner: string;
  reason: LeaseChangeReason;
  /** The epoch acquired, held, released or lost. */
  epoch: number;
  /** Whether this replica may act for the account after the change (acquired, renew_recovered). */
  owned: boolean;
}

/** Options of {@link AccountLease}. */
export interface AccountLeaseOptions {
  pool: pg.Pool;
  quoted: string;
  account: string;
  owner: string;
  leaseMs: number;
  /** @default two thirds of leaseMs */
  trustMs?: number;
  clock: Clock;
  /** Hears every change of ownership; must not throw (a throw is ignored). */
  onChange?: (change: LeaseChange) => void;
}

/** The lease of one account as seen by one owner. */
export class AccountLease {
  readonly account: string;
  readonly owner: string;
  readonly leaseMs: number;
  readonly trustMs: number;
  private readonly pool: pg.Pool;
  private readonly quoted: string;
  private readonly clock: Clock;
  private readonly onChange: ((change: LeaseChange) => void) | undefined;
  private heldEpoch: number | null = null;
  private trustedUntil = Number.NEGATIVE_INFINITY;
  /** A renewal failed (database unreachable) and none succeeded since. */
  private renewFailing = false;

  constructor(options: AccountLeaseOptions) {
    this.pool = options.pool;
    this.quoted = options.quoted;
    this.account = options.account;
    this.owner = options.owner;
    this.leaseMs = options.leaseMs;
    this.trustMs = options.trustMs ?? Math.floor((options.leaseMs * 2) / 3);
    this.clock = options.clock;
    this.onChange = options.onChange;
    if (!(this.trustMs > 0 && this.trustMs < this.leaseMs)) {
      throw new RangeError(`trustMs (${this.trustMs}) must be > 0 and shorter than the lease (${this.leaseMs})`);
    }
  }

  /** The epoch we hold, or null. */
  get epoch(): number | null {
    return this.heldEpoch;
  }

  /** Owner and epoch for a fenced write, or null when we do not hold the lease. */
  fence(): Fence | null {
    return this.heldEpoch === null ? null : { owner: this.owner, epoch: this.heldEpoch };
  }

  /** True while the lease can be trusted locally (see the file comment). */
  trusted(): boolean {
    return this.heldEpoch !== null && this.clock.now() < this.trustedUntil;
  }

  /** Milliseconds of local trust left (0 when none). */
  trustRemainingMs(): number {
    return this.heldEpoch === null ? 0 : Math.max(0, this.trustedUntil - this.clock.now());
  }

  /** Takes the lease when free or expired; resolves with the new epoch, or null when another owner holds it. */
  async acquire(): Promise<number | null> {
    if (this.heldEpoch !== null && (await this.renew())) return this.heldEpoch;
    const sentAt = this.clock.now();
    const { rows } = await this.pool.query<{ epoch: string }>(
      `INSERT INTO ${this.quoted}.leases AS l (account, owner, epoch, expires_at, acquired_at, renewed_at)
       VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond', clock_timestamp(), clock_timestamp())
       ON CONFLICT (account) DO UPDATE
         SET owner = EXCLUDED.owner, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at,
             acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at
         WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp()
       RETURNING epoch`,
      [this.account, this.owner, this.leaseMs],
    );
    const row = rows[0];
    if (row === undefined) return null;
    this.heldEpoch = Number(row.epoch);
    this.trustedUntil = sentAt + this.trustMs;
    this.renewFailing = false;
    this.emit('acquired', this.heldEpoch);
    return this.heldEpoch;
  }

  /** Extends the lease. False (and no longer held) when another owner took it over. */
  async renew(): Promise<boolean> {
    const epoch = this.heldEpoch;
    if (epoch === null) return false;
    const sentAt = this.clock.now();
    let rowCount: number | null;
    try {
      ({ rowCount } = await this.pool.query(
        `UPDATE ${this.quoted}.leases
            SET expires_at = clock_timestamp() + $4 * interval '1 millisecond', renewed_at = clock_timestamp()
          WHERE account = $1 AND owner = $2 AND epoch = $3`,
        [this.account, this.owner, epoch, this.leaseMs],
      ));
    } catch (err) {
      if (!this.renewFailing && this.heldEpoch === epoch) {
        this.renewFailing = true;
        this.emit('renew_failed', epoch);
      }
      throw err;
    }
    if (rowCount === 1) {
      if (this.heldEpoch === epoch) {
        this.trustedUntil = sentAt + this.trustMs;
        if (this.renewFailing) {
          this.renewFailing = false;
          this.emit('renew_recovered', epoch);
        }
      }
      return true;
    }
    this.lost();
    return false;
  }

  /** Gives the lease up (the next acquirer need not wait for the expiry). */
  async release(): Promise<void> {
    const epoch = this.forget();
    if (epoch === null) return;
    this.emit('released', epoch);
    await this.pool.query(
      `UPDATE ${this.quoted}.leases SET owner = NULL, expires_at = clock_timestamp()
        WHERE account = $1 AND owner = $2 AND epoch = $3`,
      [this.account, this.owner, epoch],
    );
  }

  /** Forget the lease locally: another owner holds it (a fenced write was refused, a renewal found another epoch). */
  lost(): void {
    const epoch = this.forget();
    if (epoch !== null) this.emit('lost', epoch);
  }

  private forget(): number | null {
    const epoch = this.heldEpoch;
    this.heldEpoch = null;
    this.trustedUntil = Number.NEGATIVE_INFINITY;
    this.renewFailing = false;
    return epoch;
  }

  private emit(reason: LeaseChangeReason, epoch: number): void {
    if (!this.onChange) return;
    const owned = reason === 'acquired' || reason === 'renew_recovered';
    try {
      this.onChange({ account: this.account, owner: this.owner, reason, epoch, owned });
    } catch {
      // A listener's bug must not break the lease.
    }
  }

  /** The current holder, as the database says (for messages and status). */
  async holder(): Promise<LeaseHolder | null> {
    const { rows } = await this.pool.query<{ owner: string | null; epoch: string; remaining_ms: string }>(
      `SELECT owner, epoch, (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint AS remaining_ms
         FROM ${this.quoted}.leases WHERE account = $1`,
      [this.account],
    );
    const row = rows[0];
    return row === undefined ? null : { owner: row.owner, epoch: Number(row.epoch), remainingMs: Number(row.remaining_ms) };
  }
}

/** Options of {@link keepRenewing}. */
export interface RenewOptions {
  everyMs: number;
  clock: Clock;
  signal: AbortSignal;
  /** A redacted message for a failed renewal. */
  describeError: (err: unknown) => string;
  logger?: Logger;
}

/**
 * Renews `lease` every `everyMs` until `signal` aborts or the lease is lost. A database that cannot be reached
 * logs one error when renewals start failing and one info line when they succeed again (not one per retry).
 */
export async function keepRenewing(lease: AccountLease, options: RenewOptions): Promise<void> {
  const { signal, logger } = options;
  let failing = false;
  while (!signal.aborted && lease.epoch !== null) {
    try {
      await options.clock.sleep(options.everyMs, signal);
    } catch {
      return;
    }
    if (signal.aborted) return;
    try {
      const ok = await lease.renew();
      if (failing) {
        failing = false;
        logger?.info({ account: lease.account }, 'PostgreSQL reachable again: lease renewed');
      }
      if (!ok) {
        logger?.warn({ account: lease.account, owner: lease.owner }, 'lost the account lease to another replica');
        return;
      }
    } catch (err) {
      if (!failing) {
        failing = true;
        logger?.error({ account: lease.account, error: options.describeError(err) }, 'cannot renew the account lease');
      }
    }
  }
}
