/**
 * Fault injection by script and by rate. Scripted rules are checked first; the rate roll uses its own
 * seeded PRNG and draws exactly one number per request whether or not a script fired, so the same seed
 * and the same request sequence always give the same faults.
 */
import { createSeededRandom, type Random } from '../core/clock.js';
import type { FaultKind, FaultOptions, FaultRates, ScriptedFault } from './options.js';

interface Rule {
  spec: ScriptedFault;
  seen: number;
}

export class FaultInjector {
  private readonly rules: Rule[];
  private readonly random: Random;
  private readonly rates: FaultRates;

  constructor(options: FaultOptions, defaultSeed: number) {
    this.rates = { ...(options.rates ?? {}) };
    this.random = createSeededRandom(options.seed ?? defaultSeed);
    this.rules = (options.script ?? []).map((spec) => ({ spec, seen: 0 }));
    const total = rateKinds.reduce((sum, k) => sum + (this.rates[k] ?? 0), 0);
    if (total > 1 + 1e-9) throw new RangeError(`Expected fault rates to sum to at most 1, got ${total}`);
    for (const k of rateKinds) {
      const r = this.rates[k];
      if (r !== undefined && !(r >= 0 && r <= 1)) throw new RangeError(`Expected \`faults.rates.${k}\` to be in [0, 1], got \`${String(r)}\``);
    }
  }

  /** Delay of a slow reply in simulated ms. */
  get slowMs(): number {
    return this.rates.slowMs ?? 5000;
  }

  /** The fault for this request, or null. */
  pick(action: string, applyId: string | null): FaultKind | null {
    const roll = this.random.float();
    const flip = this.random.float();
    // NOTE: every matching rule counts the request, even when an earlier rule already fired, so each rule's
    // `nth` refers to its own matching requests regardless of the others.
    let scripted: FaultKind | null = null;
    for (const rule of this.rules) {
      const { spec } = rule;
      if (spec.action !== undefined && spec.action !== action) continue;
      if (spec.applyId !== undefined && spec.applyId !== applyId) continue;
      rule.seen += 1;
      const first = spec.nth ?? 1;
      const times = spec.times ?? 1;
      if (scripted === null && rule.seen >= first && rule.seen < first + times) scripted = spec.fault;
    }
    if (scripted !== null) return scripted;
    let acc = 0;
    for (const kind of rateKinds) {
      acc += this.rates[kind] ?? 0;
      if (roll < acc) {
        if (kind === 'serverError') return flip < 0.5 ? 'serviceUnavailable' : 'internalError';
        return kind;
      }
    }
    return null;
  }
}

const rateKinds = ['serverError', 'systemException', 'throttle', 'slow', 'reset', 'malformed', 'truncated'] as const;
