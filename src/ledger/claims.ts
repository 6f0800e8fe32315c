/**
 * Fair spread of accounts over live replicas (DESIGN.md §12): which accounts this replica may claim, and which
 * one it should hand over. Pure (no database, no clock of its own): the replica heartbeat
 * (src/ledger/replicas.ts) feeds it a {@link ReplicaView} of the live replicas and the accounts' owners, and the
 * account runtimes ask {@link FairClaims.mayClaim} before taking a lease and report what they hold through
 * {@link FairClaims.noteOwned}.
 *
 * The rules, with `share = ceil(accounts / live replicas)`:
 * - a replica never claims while it owns `share` or more;
 * - of the replicas that could claim a free account, only the least loaded ones do (so two accounts over three
 *   replicas end 1/1/0, not 2/0/1) — unless the account has been free for `freeGraceMs`, when any replica below
 *   its share may (a least-loaded replica that cannot claim, e.g. one cut off from the database, must not leave
 *   an account unwatched);
 * - a replica that owns more than `share`, or at least two more than another live replica, hands one account over
 *   (only the most loaded replica with the first id among equals does, so two replicas do not release at once).
 *
 * Leases, not this policy, decide who owns an account: two replicas that both may claim race on the lease row and
 * one wins. The policy only keeps the spread fair and moves accounts when replicas join or leave.
 */

/** What the heartbeat saw in the database, at `at` (this replica's clock, ms). */
export interface ReplicaView {
  /** Ids of the replicas whose heartbeat has not expired (this one included). */
  live: readonly string[];
  /** Account → owner id, for every account whose lease is held and not expired. */
  owners: ReadonlyMap<string, string>;
  at: number;
}

/** `ceil(accounts / live)`: the most accounts one replica may own (every account when there is no other replica). */
export function fairShare(accounts: number, liveReplicas: number): number {
  if (accounts <= 0) return 0;
  return Math.ceil(accounts / Math.max(1, liveReplicas));
}

/** Options of {@link FairClaims}. */
export interface FairClaimsOptions {
  /** This replica's id (its lease owner id and heartbeat row). */
  self: string;
  /** Every account the configuration declares (each replica runs the same configuration). */
  accounts: readonly string[];
  /** How long a free account waits for a least-loaded replica before any replica below its share may claim it. */
  freeGraceMs: number;
  /** This replica's clock (ms), for how long an account has been free. */
  now: () => number;
}

/** The claims policy of one replica: one per process, shared by its account runtimes. */
export class FairClaims {
  readonly self: string;
  private accounts: readonly string[];
  private readonly freeGraceMs: number;
  private readonly now: () => number;
  /** Accounts this replica holds (from its own leases: authoritative for itself). */
  private readonly owned = new Set<string>();
  private view: ReplicaView | null = null;
  /** Account → when it was first seen free (this replica's clock). */
  private readonly freeSince = new Map<string, number>();
  /** Set by {@link FairClaims.leave}: claims nothing more (SIGTERM). */
  private leaving = false;

  constructor(options: FairClaimsOptions) {
    this.self = options.self;
    this.accounts = [...options.accounts];
    this.freeGraceMs = options.freeGraceMs;
    this.now = options.now;
  }

  /** The accounts of a reloaded configuration. */
  setAccounts(accounts: readonly string[]): void {
    this.accounts = [...accounts];
  }

  /** A new view from the heartbeat. */
  update(view: ReplicaView): void {
    this.view = view;
    for (const account of this.accounts) {
      const free = !view.owners.has(account) && !this.owned.has(account);
      if (!free) this.freeSince.delete(account);
      else if (!this.freeSince.has(account)) this.freeSince.set(account, view.at);
    }
  }

  /** This replica now holds (or no longer holds) the lease of `account`. */
  noteOwned(account: string, owned: boolean): void {
    if (owned) {
      this.owned.add(account);
      this.freeSince.delete(account);
    } else {
      this.owned.delete(account);
    }
  }

  /**
   * The same from a lease change (postgres-lease.ts): held after `acquired`, `renew_failed` (the row is still ours
   * until it lapses or another epoch shows) and `renew_recovered`; not after `released` or `lost`.
   */
  noteLeaseChange(change: { account: string; reason: string }): void {
    this.noteOwned(change.account, change.reason !== 'released' && change.reason !== 'lost');
  }

  /** From now on nothing is claimed (the process is leaving). */
  leave(): void {
    this.leaving = true;
  }

  /** The live replicas (this one always counts) and how many accounts each owns. */
  loads(): Map<string, number> {
    const loads = new Map<string, number>([[this.self, this.owned.size]]);
    for (const id of this.view?.live ?? []) if (!loads.has(id)) loads.set(id, 0);
    for (const [account, owner] of this.view?.owners ?? []) {
      if (owner === this.self || !this.accounts.includes(account) || !loads.has(owner)) continue;
      loads.set(owner, (loads.get(owner) ?? 0) + 1);
    }
    return loads;
  }

  /** The fair share with the current view. */
  share(): number {
    return fairShare(this.accounts.length, this.loads().size);
  }

  /** Whether this replica may try to take `account`'s lease now. */
  mayClaim(account: string): boolean {
    if (this.owned.has(account)) return true;
    // Before the first heartbeat this replica does not know who else is alive: it would take every account.
    if (this.leaving || this.view === null || !this.accounts.includes(account)) return false;
    // An account another replica holds is not refused here: the lease row refuses it (and the standby says whose
    // it is), and a replica below its share should be the one to take it when that owner goes.
    const loads = this.loads();
    const mine = this.owned.size;
    if (mine >= fairShare(this.accounts.length, loads.size)) return false;
    const least = Math.min(...loads.values());
    if (mine <= least || this.view.owners.has(account)) return true;
    const since = this.freeSince.get(account);
    return since !== undefined && this.now() - since >= this.freeGraceMs;
  }

  /**
   * The account to hand over now, or null: when this replica owns more than its share, or two more than another
   * live replica, and it is the most loaded one (the first id among equals). The last in configuration order goes.
   */
  toRelease(): string | null {
    if (this.owned.size === 0) return null;
    const loads = this.loads();
    const mine = this.owned.size;
    const least = Math.min(...loads.values());
    if (!(mine > fairShare(this.accounts.length, loads.size) || mine >= least + 2)) return null;
    const most = Math.max(...loads.values());
    const first = [...loads].filter(([, n]) => n === most).map(([id]) => id).sort()[0];
    if (first !== this.self) return null;
    const ordered = this.accounts.filter((a) => this.owned.has(a));
    return ordered[ordered.length - 1] ?? [...this.owned].sort().pop() ?? null;
  }
}
