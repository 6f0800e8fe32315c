/** Small statistics helpers shared by the benchmarks. */

/** The `q` quantile (0..1) of an ascending-sorted array, nearest-rank; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return sorted[rank] as number;
}

/** Arithmetic mean; NaN when empty. */
export function mean(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) return Number.NaN;
  let s = 0;
  for (let i = 0; i < n; i += 1) s += values[i] as number;
  return s / n;
}

/**
 * The largest number of events in any window `(t − windowMs, t]` (equivalently, any half-open window of length
 * `windowMs`) in an ascending-sorted array of
 * event times (ms).
 */
export function peakInWindow(sortedTimes: ArrayLike<number>, windowMs = 1000): number {
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sortedTimes.length; hi += 1) {
    const t = sortedTimes[hi] as number;
    while ((sortedTimes[lo] as number) <= t - windowMs) lo += 1;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

/** A growable Float64 buffer (poll times of hundreds of thousands of simulated calls). */
export class FloatBuffer {
  private data = new Float64Array(1024);
  length = 0;

  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length] = v;
    this.length += 1;
  }

  /** A sorted copy of the values. */
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}
