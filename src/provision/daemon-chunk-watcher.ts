/**
 * Watches chunk ApplyIds with the daemon's own watcher: each ApplyId becomes a batch of the daemon's
 * configuration (`register: true` for names chunks with until: created), added through the daemon's reload
 * path, and its result (with the devices and their secrets, from QueryPageByApplyId) comes back through the
 * result writer, which this module wraps. No polling logic of its own.
 */

import { compileSingleBatch } from '../config/compile.js';
import type { BatchConfig, CompiledConfig } from '../config/types.js';
import type { BatchResult, ResultWriter } from '../core/ports.js';
import type { ChunkBatchOutcome } from './chunk-transitions.js';
import type { ChunkWatcher } from './job-runner.js';

const OUTCOMES = new Set(['checked', 'check_failed', 'created', 'create_failed', 'timed_out', 'rejected', 'cancelled']);

/** Maps a batch result to a chunk outcome. */
export function toChunkOutcome(result: BatchResult): ChunkBatchOutcome {
  const invalid = new Map<string, string>();
  for (const d of result.invalidDetails) invalid.set(d.deviceName, d.errors.join('; ') || `refused (${result.status ?? result.outcome})`);
  for (const name of result.invalidNames) if (!invalid.has(name)) invalid.set(name, `refused (${result.status ?? result.outcome})`);
  return {
    outcome: (OUTCOMES.has(result.outcome) ? result.outcome : 'rejected') as ChunkBatchOutcome['outcome'],
    invalid: [...invalid].map(([deviceName, reason]) => ({ deviceName, reason })),
    devices: result.devices.filter((d) => typeof d.deviceSecret === 'string').map((d) => ({ deviceName: d.deviceName, iotId: d.iotId, deviceSecret: d.deviceSecret ?? '' })),
    reason: result.reason ?? null,
  };
}

/** The pieces to hand to the Daemon (`results`, `loadConfig`) and the ChunkWatcher for the runner. */
export interface DaemonChunkWatcher {
  watcher: ChunkWatcher;
  /** Pass as DaemonOptions.results: resolves chunk watches, then writes through to `inner`. */
  results: ResultWriter;
  /** Pass as DaemonOptions.loadConfig: the base configuration with one batch per watched chunk. */
  loadConfig(): Promise<CompiledConfig>;
  /** The configuration to start the daemon with. */
  config(): CompiledConfig;
  /** Connects the daemon's reload (after it is created). */
  attach(reload: (reason: string) => Promise<string>): void;
}

/** Creates the adapter over `base` (alibaba, polling, …; its own batches are dropped). */
export function createDaemonChunkWatcher(base: CompiledConfig, inner: ResultWriter): DaemonChunkWatcher {
  const batches = new Map<string, BatchConfig>();
  const waiters = new Map<string, (result: BatchResult) => void>();
  let reload: ((reason: string) => Promise<string>) | null = null;
  const config = (): CompiledConfig => ({ ...base, batches: [...batches.values()] });
  return {
    config,
    loadConfig: () => Promise.resolve(config()),
    attach(fn) {
      reload = fn;
    },
    results: {
      async write(result) {
        const written = await inner.write(result);
        waiters.get(`${result.productKey}/${result.applyId}`)?.(result);
        return written;
      },
    },
    watcher: {
      async watch(req) {
        const compiled = compileSingleBatch(
          {
            applyId: req.applyId,
            productKey: req.spec.productKey,
            name: `${req.spec.name}#${req.chunk}`,
            until: req.until,
            register: req.register,
            labels: { ...req.spec.labels, provisionJob: req.spec.name, provisionChunk: String(req.chunk) },
          },
          { regionId: base.alibaba.regionId, iotInstanceId: base.alibaba.iotInstanceId, endpoint: base.alibaba.endpoint, polling: base.polling },
        );
        if (!compiled.ok) throw new Error(`chunk ${req.chunk}: ${compiled.issues.map((i) => i.message).join('; ')}`);
        const key = compiled.batch.key;
        const settled = new Promise<BatchResult>((resolve) => waiters.set(key, resolve));
        batches.set(key, compiled.batch);
        if (reload === null) throw new Error('DaemonChunkWatcher: attach() the daemon first');
        await reload(`provision ${req.spec.name} chunk ${req.chunk}`);
        const result = await settled;
        waiters.delete(key);
        return toChunkOutcome(result);
      },
    },
  };
}
