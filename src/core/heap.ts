/**
 * An indexed binary min-heap of due times, keyed by batch key: the watcher loop's only schedule
 * (one heap instead of one timer per batch).
 *
 * Invariants:
 * - Every key appears at most once; `push` on a present key moves it (an update, not a duplicate).
 * - Order is by `dueAt`, then by insertion sequence: among equal due times the entry pushed first
 *   comes out first (FIFO), so no batch starves behind others due at the same instant. An update
 *   counts as a fresh insertion for this tiebreak.
 * - `push`, `pop`, `remove` are O(log n); `peek`, `has`, `dueAt`, `size` are O(1).
 *
 * Storage is three parallel arrays plus a `Map<key, index>`, so 100k entries cost a few MB and no
 * per-entry object churn on updates.
 */

/** One scheduled entry as returned by {@link DueHeap.peek} and {@link DueHeap.pop}. */
export interface DueEntry {
  key: string;
  /** Absolute time (ms since the epoch, or whatever clock the caller uses). */
  dueAt: number;
}

/** An indexed min-heap of `(key, dueAt)` with FIFO tiebreak among equal due times. */
export class DueHeap {
  private readonly keys: string[] = [];
  private readonly due: number[] = [];
  private readonly seqs: number[] = [];
  private readonly index = new Map<string, number>();
  private nextSeq = 0;

  /** Number of scheduled keys. */
  get size(): number {
    return this.keys.length;
  }

  /** Schedules `key` at `dueAt`, or moves it there if it is already scheduled. */
  push(key: string, dueAt: number): void {
    if (Number.isNaN(dueAt)) throw new RangeError(`Expected \`dueAt\` to be a number, got \`NaN\` for key ${key}`);
    const seq = this.nextSeq;
    this.nextSeq += 1;
    const at = this.index.get(key);
    if (at === undefined) {
      const i = this.keys.length;
      this.keys.push(key);
      this.due.push(dueAt);
      this.seqs.push(seq);
      this.index.set(key, i);
      this.siftUp(i);
      return;
    }
    this.due[at] = dueAt;
    this.seqs[at] = seq;
    // NOTE: the new (dueAt, seq) may be smaller or larger than before; one of the two sifts is a no-op.
    this.siftDown(this.siftUp(at));
  }

  /** The earliest entry without removing it. */
  peek(): DueEntry | undefined {
    const key = this.keys[0];
    const dueAt = this.due[0];
    return key === undefined || dueAt === undefined ? undefined : { key, dueAt };
  }

  /** Removes and returns the earliest entry. */
  pop(): DueEntry | undefined {
    const top = this.peek();
    if (top !== undefined) this.removeAt(0);
    return top;
  }

  /** Unschedules `key`; returns whether it was scheduled. */
  remove(key: string): boolean {
    const at = this.index.get(key);
    if (at === undefined) return false;
    this.removeAt(at);
    return true;
  }

  /** Whether `key` is scheduled. */
  has(key: string): boolean {
    return this.index.has(key);
  }

  /** The due time of `key`, or `undefined` when it is not scheduled. */
  dueAt(key: string): number | undefined {
    const at = this.index.get(key);
    return at === undefined ? undefined : this.due[at];
  }

  /** Unschedules everything. */
  clear(): void {
    this.keys.length = 0;
    this.due.length = 0;
    this.seqs.length = 0;
    this.index.clear();
  }

  /** Every scheduled entry, in no particular order (for status views and snapshots). */
  *entries(): IterableIterator<DueEntry> {
    for (let i = 0; i < this.keys.length; i += 1) {
      yield { key: this.keys[i] as string, dueAt: this.due[i] as number };
    }
  }

  private removeAt(i: number): void {
    const last = this.keys.length - 1;
    const key = this.keys[i] as string;
    this.index.delete(key);
    if (i !== last) {
      this.move(last, i);
      this.keys.pop();
      this.due.pop();
      this.seqs.pop();
      this.siftDown(this.siftUp(i));
    } else {
      this.keys.pop();
      this.due.pop();
      this.seqs.pop();
    }
  }

  /** Copies slot `from` into slot `to` and updates the index. */
  private move(from: number, to: number): void {
    const key = this.keys[from] as string;
    this.keys[to] = key;
    this.due[to] = this.due[from] as number;
    this.seqs[to] = this.seqs[from] as number;
    this.index.set(key, to);
  }

  private less(a: number, b: number): boolean {
    const da = this.due[a] as number;
    const db = this.due[b] as number;
    return da < db || (da === db && (this.seqs[a] as number) < (this.seqs[b] as number));
  }

  private swap(a: number, b: number): void {
    const ka = this.keys[a] as string;
    const kb = this.keys[b] as string;
    this.keys[a] = kb;
    this.keys[b] = ka;
    const d = this.due[a] as number;
    this.due[a] = this.due[b] as number;
    this.due[b] = d;
    const s = this.seqs[a] as number;
    this.seqs[a] = this.seqs[b] as number;
    this.seqs[b] = s;
    this.index.set(kb, a);
    this.index.set(ka, b);
  }

  /** Returns the final position. */
  private siftUp(start: number): number {
    let i = start;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
    return i;
  }

  private siftDown(start: number): void {
    const n = this.keys.length;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const child = r < n && this.less(r, l) ? r : l;
      if (!this.less(child, i)) return;
      this.swap(i, child);
      i = child;
    }
  }
}
