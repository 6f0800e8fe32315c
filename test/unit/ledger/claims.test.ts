/**
 * The fair-share policy (src/ledger/claims.ts), pure: a small model of N replicas over shared lease rows, where
 * each round every replica sees the same view, releases what the policy says, then claims free accounts in turn
 * (the lease row lets only the first claimant win).
 */
import { describe, expect, it } from 'vitest';

import { FairClaims, fairShare, type ReplicaView } from '../../../src/ledger/claims.js';

describe('fairShare', () => {
  it('is ceil(accounts / live), every account for one replica, 0 without accounts', () => {
    expect(fairShare(2, 3)).toBe(1);
    expect(fairShare(3, 2)).toBe(2);
    expect(fairShare(4, 3)).toBe(2);
    expect(fairShare(5, 1)).toBe(5);
    expect(fairShare(5, 0)).toBe(5);
    expect(fairShare(0, 3)).toBe(0);
  });
});

/** Lease rows and replicas sharing them. */
class Model {
  now = 0;
  readonly owners = new Map<string, string>();
  readonly replicas = new Map<string, FairClaims>();
  constructor(readonly accounts: string[], readonly graceMs = 1000) {}

  join(id: string): FairClaims {
    const c = new FairClaims({ self: id, accounts: this.accounts, freeGraceMs: this.graceMs, now: () => this.now });
    this.replicas.set(id, c);
    return c;
  }

  /** A replica dies: its row and leases lapse (the survivors see that at their next view). */
  kill(id: string): void {
    this.replicas.delete(id);
    for (const [a, o] of this.owners) if (o === id) this.owners.delete(a);
  }

  view(): ReplicaView {
    return { live: [...this.replicas.keys()].sort(), owners: new Map(this.owners), at: this.now };
  }

  /** One heartbeat round: every replica sees the view, releases per the policy, then tries the free accounts. */
  round(order = [...this.replicas.keys()]): void {
    this.now += 100;
    for (const id of order) {
      const c = this.replicas.get(id)!;
      c.update(this.view());
      const release = c.toRelease();
      if (release !== null) {
        this.owners.delete(release);
        c.noteOwned(release, false);
      }
    }
    for (const id of order) {
      const c = this.replicas.get(id)!;
      for (const a of this.accounts) {
        if (this.owners.has(a) || !c.mayClaim(a)) continue;
        this.owners.set(a, id); // the lease row: first claimant wins
        c.noteOwned(a, true);
      }
    }
  }

  spread(): number[] {
    return [...this.replicas.keys()].sort().map((id) => [...this.owners.values()].filter((o) => o === id).length);
  }
}

describe('FairClaims', () => {
  it('claims nothing before its first view, everything when it is alone', () => {
    const m = new Model(['a', 'b']);
    const r1 = m.join('r1');
    expect(r1.mayClaim('a')).toBe(false);
    m.round();
    expect(m.spread()).toEqual([2]);
  });

  it('two accounts over three replicas end 1/1/0; the spread holds round after round', () => {
    const m = new Model(['a', 'b']);
    m.join('r1');
    m.round(); // r1 alone takes both
    m.join('r2');
    m.join('r3');
    for (let i = 0; i < 5; i++) m.round();
    expect(m.spread().sort()).toEqual([0, 1, 1]);
    const before = new Map(m.owners);
    for (let i = 0; i < 10; i++) m.round();
    expect(m.owners).toEqual(before); // stable: no back and forth
  });

  it('an owner dies: its account moves to the replica without one, the other owner keeps its own', () => {
    const m = new Model(['a', 'b']);
    for (const id of ['r1', 'r2', 'r3']) m.join(id);
    for (let i = 0; i < 5; i++) m.round();
    const idle = [...m.replicas.keys()].find((id) => ![...m.owners.values()].includes(id))!;
    const [deadAccount, dead] = [...m.owners][0]!;
    const [keptAccount, keeper] = [...m.owners][1]!;
    m.kill(dead);
    m.round();
    expect(m.owners.get(deadAccount)).toBe(idle);
    expect(m.owners.get(keptAccount)).toBe(keeper);
  });

  it('three accounts over two replicas: 2/1; a third joins: 1/1/1', () => {
    const m = new Model(['a', 'b', 'c']);
    m.join('r1');
    m.round();
    m.join('r2');
    for (let i = 0; i < 4; i++) m.round();
    expect(m.spread().sort()).toEqual([1, 2]);
    m.join('r3');
    for (let i = 0; i < 6; i++) m.round();
    expect(m.spread()).toEqual([1, 1, 1]);
  });

  it('no replica owns more than its share while another has fewer, for 1..6 accounts over 1..4 replicas', () => {
    for (let accounts = 1; accounts <= 6; accounts++) {
      for (let live = 1; live <= 4; live++) {
        const m = new Model(Array.from({ length: accounts }, (_, i) => `acc${i}`));
        m.join('r0');
        m.round();
        for (let i = 1; i < live; i++) m.join(`r${i}`);
        for (let i = 0; i < 3 * accounts + 3; i++) m.round();
        const spread = m.spread();
        expect(spread.reduce((x, y) => x + y, 0), `${accounts}/${live} all owned`).toBe(accounts);
        expect(Math.max(...spread) - Math.min(...spread), `${accounts}/${live}: ${spread.join('/')}`).toBeLessThanOrEqual(1);
        expect(Math.max(...spread)).toBeLessThanOrEqual(fairShare(accounts, live));
      }
    }
  });

  it('only the most loaded replica with the first id releases, one account at a time', () => {
    const r1 = new FairClaims({ self: 'r1', accounts: ['a', 'b', 'c', 'd'], freeGraceMs: 1000, now: () => 0 });
    const r2 = new FairClaims({ self: 'r2', accounts: ['a', 'b', 'c', 'd'], freeGraceMs: 1000, now: () => 0 });
    const owners = new Map([['a', 'r1'], ['b', 'r1'], ['c', 'r2'], ['d', 'r2']]);
    for (const c of [r1, r2]) {
      c.update({ live: ['r1', 'r2', 'r3'], owners, at: 0 });
      for (const [a, o] of owners) if (o === c.self) c.noteOwned(a, true);
    }
    // 2/2/0 over three live replicas: share 2, but r3 has two fewer: r1 (first id among the most loaded) hands one over.
    expect(r1.toRelease()).toBe('b');
    expect(r2.toRelease()).toBeNull();
  });

  it('a free account waits for a least-loaded replica, then after the grace any replica below its share takes it', () => {
    let now = 0;
    const r1 = new FairClaims({ self: 'r1', accounts: ['a', 'b', 'c'], freeGraceMs: 1000, now: () => now });
    r1.noteOwned('a', true);
    // r2 is alive, owns nothing, yet does not claim (say it cannot reach the database).
    r1.update({ live: ['r1', 'r2'], owners: new Map([['a', 'r1']]), at: now });
    expect(r1.share()).toBe(2);
    expect(r1.mayClaim('b')).toBe(false);
    now = 999;
    expect(r1.mayClaim('b')).toBe(false);
    now = 1000;
    expect(r1.mayClaim('b')).toBe(true);
    r1.noteOwned('b', true);
    expect(r1.mayClaim('c')).toBe(false); // at its share
    expect(r1.mayClaim('a')).toBe(true); // its own: keep renewing it
  });

  it('an account another replica holds may be tried below the share (its lease row refuses); after leave() nothing is', () => {
    const r1 = new FairClaims({ self: 'r1', accounts: ['a', 'b'], freeGraceMs: 0, now: () => 0 });
    r1.update({ live: ['r1', 'r2'], owners: new Map([['a', 'r2']]), at: 0 });
    expect(r1.mayClaim('a')).toBe(true);
    expect(r1.mayClaim('b')).toBe(true);
    r1.noteOwned('b', true);
    expect(r1.mayClaim('a')).toBe(false); // at its share (1 of 2 accounts over 2 replicas)
    expect(r1.mayClaim('unknown')).toBe(false);
    r1.noteOwned('b', false);
    expect(r1.mayClaim('a')).toBe(true);
    r1.leave();
    expect(r1.mayClaim('a')).toBe(false);
  });
});

describe('FairClaims.noteLeaseChange', () => {
  it('holds after acquired, renew_failed and renew_recovered; not after released or lost', () => {
    const c = new FairClaims({ self: 'r1', accounts: ['a', 'b'], freeGraceMs: 0, now: () => 0 });
    c.update({ live: ['r1', 'r2'], owners: new Map(), at: 0 });
    const owns = (): number => c.loads().get('r1')!;
    c.noteLeaseChange({ account: 'a', reason: 'acquired' });
    expect(owns()).toBe(1);
    c.noteLeaseChange({ account: 'a', reason: 'renew_failed' });
    expect(owns()).toBe(1);
    c.noteLeaseChange({ account: 'a', reason: 'renew_recovered' });
    expect(owns()).toBe(1);
    c.noteLeaseChange({ account: 'a', reason: 'lost' });
    expect(owns()).toBe(0);
    c.noteLeaseChange({ account: 'b', reason: 'acquired' });
    c.noteLeaseChange({ account: 'b', reason: 'released' });
    expect(owns()).toBe(0);
  });
});
