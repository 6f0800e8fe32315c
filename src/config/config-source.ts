/**
 * The configuration as the daemon sees it over time: a reload that a writer in progress cannot fool (issue #13.2).
 *
 * Rules (README "Reloading the configuration", docs/operations.md):
 * 1. **Stable first.** A read takes effect only once the file is stable: its modification time is at least
 *    `settleMs` old, or its content (sha256) stayed the same across `settleMs`. Until then the source sleeps and
 *    reads again; a file that keeps changing for `maxWaitMs` is left alone (the running configuration stays).
 * 2. **Unchanged is free.** A stable read whose hash equals the last applied one is not parsed again: the
 *    running configuration objects are returned as they are.
 * 3. **Removals need two stable reads.** A batch that a stable read lacks is kept in the effective
 *    configuration (with its last entry) until a second, later stable read (at least `settleMs` after the
 *    first, with no stable read in between that had it) lacks it too. A half-written file therefore never
 *    cancels a batch that the finished file still has. The scheduled reload (every minute by default) or
 *    SIGHUP is what usually brings the confirming read.
 *
 * The source owns no timer and installs no watch: the daemon calls {@link ConfigSource.load} on SIGHUP, on a
 * file change and on its cron schedule, one call at a time.
 */

import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { ConfigError } from '../errors.js';
import { type ConfigFileContent, readConfigFile } from './read-file.js';
import type { BatchConfig, CompiledConfig } from './types.js';

/** The default settle window: a file must have been unchanged this long before it is used. */
export const DEFAULT_SETTLE_MS = 2000;
/** The default longest wait for a file that keeps changing. */
export const DEFAULT_MAX_WAIT_MS = 20_000;

/** The few logger methods the source uses (pino's signature). */
export interface ConfigSourceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What the last {@link ConfigSource.load} did. */
export type ConfigSourceOutcome =
  /** A new stable content was parsed and applied. */
  | 'loaded'
  /** The stable content was the one already applied: nothing parsed, the same objects returned. */
  | 'unchanged'
  /** The same content, and it confirmed removals that an earlier stable read had seen. */
  | 'removals-confirmed'
  /** The file kept changing for `maxWaitMs`: the running configuration was returned. */
  | 'unstable';

/** Options of {@link createConfigSource}. */
export interface ConfigSourceOptions {
  /** The configuration file as the user gave it (shown in messages). */
  file: string;
  /** Base of a relative `file`. */
  cwd: string;
  /**
   * Parses, validates and compiles one content (throws or rejects with ConfigError). `main.ts` adds the env overrides
   * here, and compiles incrementally (src/config/incremental-load.ts) so a reload leaves the event loop free.
   */
  compile(text: string, file: string): CompiledConfig | Promise<CompiledConfig>;
  /**
   * Reads the file once.
   * @default readConfigFile(file, { cwd, maxBytes })
   */
  read?: () => Promise<ConfigFileContent>;
  /** Size limit of the default reader. @default DEFAULT_MAX_CONFIG_BYTES */
  maxBytes?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default DEFAULT_SETTLE_MS */
  settleMs?: number;
  /** @default DEFAULT_MAX_WAIT_MS */
  maxWaitMs?: number;
  /** Lines about kept and confirmed removals and unstable files. @default none */
  logger?: ConfigSourceLogger;
}

/** A configuration file read over time. */
export interface ConfigSource {
  /**
   * Reads the file (waiting until it is stable) and returns the effective configuration: the file's batches plus
   * those kept because only one stable read has lacked them. Returns the very same object as before when nothing
   * changed. Calls must not overlap.
   *
   * @throws ConfigError when the stable content is invalid (the running configuration stays in effect), or when
   *   the first load finds a file that keeps changing.
   */
  load(): Promise<CompiledConfig>;
  /** What the last load did, or null before the first. */
  readonly lastOutcome: ConfigSourceOutcome | null;
  /** Keys (`productKey/applyId`) of batches missing from the file but kept until a second stable read. */
  keptKeys(): string[];
}

interface Applied {
  hash: string;
  /** The file's own configuration, without kept batches. */
  compiled: CompiledConfig;
}

/**
 * How many of `previous` are, in order, the first batches of `next` (same keys): those are all still in the file.
 * NOTE: the usual reload (an entry changed or added at the end) matches all of them, so the removal check needs no
 * set of 100,000 keys and no pass over it (a stall of tens of ms on every reload at 100,000 batches, issue #14).
 */
function inOrderPrefix(previous: readonly BatchConfig[], next: readonly BatchConfig[]): number {
  const n = Math.min(previous.length, next.length);
  let i = 0;
  while (i < n && (previous[i] === next[i] || previous[i]!.key === next[i]!.key)) i += 1;
  return i;
}

/** Creates a {@link ConfigSource}. */
export function createConfigSource(options: ConfigSourceOptions): ConfigSource {
  const clock = options.clock ?? systemClock;
  const settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const read =
    options.read ??
    (() => readConfigFile(options.file, { cwd: options.cwd, ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }) }));
  const log = options.logger;

  let applied: Applied | null = null;
  let effective: CompiledConfig | null = null;
  /** Batches kept although the last stable read lacked them, with the time of that read. */
  let kept = new Map<string, { batch: BatchConfig; missingSince: number }>();
  /** The last invalid content, so an unchanged bad file is not parsed (and its issues rebuilt) again. */
  let invalid: { hash: string; error: ConfigError } | null = null;
  let lastOutcome: ConfigSourceOutcome | null = null;

  /** Reads until the content is stable; null when it kept changing for maxWaitMs. */
  async function readStable(): Promise<ConfigFileContent | null> {
    const startedAt = clock.now();
    let current = await read();
    let sameSince = clock.now();
    for (;;) {
      const now = clock.now();
      const mtimeAge = now - current.mtimeMs;
      if (mtimeAge >= settleMs || now - sameSince >= settleMs) return current;
      if (now - startedAt >= maxWaitMs) return null;
      // Sleep until one of the two rules can hold; a modification time in the future only allows the hash rule.
      const untilMtime = mtimeAge >= 0 ? settleMs - mtimeAge : Infinity;
      const untilHash = settleMs - (now - sameSince);
      await clock.sleep(Math.max(1, Math.min(untilMtime, untilHash, maxWaitMs - (now - startedAt))));
      const next = await read();
      if (next.hash !== current.hash) sameSince = clock.now();
      current = next;
    }
  }

  function withKept(compiled: CompiledConfig, now: number, previous: readonly BatchConfig[]): CompiledConfig {
    const matched = inOrderPrefix(previous, compiled.batches);
    if (matched === previous.length && kept.size === 0) return compiled;
    const inFile = new Set<string>();
    for (const b of compiled.batches) inFile.add(b.key);
    const nextKept = new Map<string, { batch: BatchConfig; missingSince: number }>();
    const confirmed: string[] = [];
    const newlyKept: string[] = [];
    for (let i = matched; i < previous.length; i += 1) {
      const batch = previous[i]!;
      if (inFile.has(batch.key)) continue;
      const earlier = kept.get(batch.key);
      if (earlier !== undefined && now - earlier.missingSince >= settleMs) {
        confirmed.push(batch.key);
        continue;
      }
      if (earlier === undefined) newlyKept.push(batch.key);
      nextKept.set(batch.key, earlier ?? { batch, missingSince: now });
    }
    kept = nextKept;
    if (confirmed.length > 0) {
      log?.info({ removed: confirmed.length, keys: confirmed.slice(0, 10) }, 'batches missing from two stable reads of the config file: removing them');
    }
    if (newlyKept.length > 0) {
      log?.info(
        { kept: newlyKept.length, keys: newlyKept.slice(0, 10) },
        'batches missing from the config file are kept until a second stable read confirms their removal',
      );
    }
    if (nextKept.size === 0) return compiled;
    return Object.freeze({ ...compiled, batches: Object.freeze([...compiled.batches, ...[...nextKept.values()].map((k) => k.batch)]) as BatchConfig[] });
  }

  return {
    get lastOutcome() {
      return lastOutcome;
    },
    keptKeys: () => [...kept.keys()],
    async load() {
      const content = await readStable();
      if (content === null) {
        if (effective === null) {
          throw new ConfigError([
            { file: options.file, line: 0, col: 0, path: '', message: `the file kept changing for ${maxWaitMs} ms; not loading a file that is still being written` },
          ]);
        }
        log?.warn({ file: options.file, waitedMs: maxWaitMs }, 'config file still changing; keeping the running configuration until it is stable');
        lastOutcome = 'unstable';
        return effective;
      }
      const now = clock.now();
      if (applied !== null && effective !== null && content.hash === applied.hash) {
        if (kept.size === 0) {
          lastOutcome = 'unchanged';
          return effective;
        }
        const before = kept.size;
        const next = withKept(applied.compiled, now, effective.batches);
        if (kept.size === before) {
          lastOutcome = 'unchanged';
          return effective;
        }
        effective = next;
        lastOutcome = 'removals-confirmed';
        return effective;
      }
      if (invalid !== null && invalid.hash === content.hash) throw invalid.error;
      let compiled: CompiledConfig;
      try {
        compiled = await options.compile(content.text, options.file);
      } catch (err) {
        if (err instanceof ConfigError) invalid = { hash: content.hash, error: err };
        throw err;
      }
      invalid = null;
      effective = withKept(compiled, now, effective?.batches ?? []);
      applied = { hash: content.hash, compiled };
      lastOutcome = 'loaded';
      return effective;
    },
  };
}
