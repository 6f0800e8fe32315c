/**
 * Per-action QPS limits over a sliding 1-second window, as the gateway answers `Throttling.User`.
 * A request is accepted when fewer than `limit` requests were accepted in the last 1000 ms of clock time
 * (`(now - 1000, now]`); rejected requests do not count. So no 1-second window ever holds more than
 * `limit` accepted requests, and under steady overload every window holds about `limit`.
 */
import { isQpsLimited, type SimulatorAction } from './options.js';

export const THROTTLE_WINDOW_MS = 1000;

export class ActionThrottle {
  private readonly accepted = new Map<string, number[]>();
  private readonly limits = new Map<string, number>();

  constructor(limits: Readonly<Partial<Record<SimulatorAction, number>>>) {
    this.setLimits(limits);
  }

  /** Replaces the limits of the given actions (0 or Infinity = no limit). */
  setLimits(limits: Readonly<Partial<Record<SimulatorAction, number>>>): void {
    for (const [action, qps] of Object.entries(limits)) {
      if (isQpsLimited(qps)) this.limits.set(action, Math.floor(qps));
      else this.limits.delete(action);
    }
  }

  limitOf(action: string): number | null {
    return this.limits.get(action) ?? null;
  }

  /** True when the request may proceed (and is counted); false means `Throttling.User`. */
  tryAcquire(action: string, now: number): boolean {
    const limit = this.limits.get(action);
    if (limit === undefined) return true;
    let times = this.accepted.get(action);
    if (times === undefined) {
      times = [];
      this.accepted.set(action, times);
    }
    let drop = 0;
    while (drop < times.length && (times[drop] ?? 0) <= now - THROTTLE_WINDOW_MS) drop += 1;
    if (drop > 0) times.splice(0, drop);
    if (times.length >= limit) return false;
    times.push(now);
    return true;
  }
}
