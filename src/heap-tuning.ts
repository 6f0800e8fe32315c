/**
 * V8 heap tuning for the daemon, applied by cli.ts before anything else is loaded.
 *
 * V8 lets the old generation grow up to about four times what its last full collection kept before it collects
 * again, and the process's RSS follows that headroom, not the live set: at 100,000 batches from YAML the live heap
 * is about 100 MB and RSS was 345–380 MB at ready and up to 480 MB through reloads (docs/benchmarks.md §6). A growing
 * factor of 1.15 keeps RSS under 300 MB there at ready and after reloads, for about 2.5 s more start-up at that
 * size. A daemon with a few hundred batches has a heap of a few MB, where V8's minimum growing step still applies
 * (one run of the poll benchmark with it was within the range of the runs without it). A `--heap-growing-percent`
 * given to node itself wins.
 *
 * NOTE: the young generation's size (`--max-semi-space-size`) is fixed when node starts (setFlagsFromString has no
 * effect on it), so the container image sets it through NODE_OPTIONS instead (Dockerfile; docs/benchmarks.md §6).
 */
import { setFlagsFromString } from 'node:v8';

/** The old generation grows to (1 + this / 100) × the live size before the next full collection. */
export const HEAP_GROWING_PERCENT = 15;

if (!process.execArgv.some((a) => a.startsWith('--heap-growing-percent') || a.startsWith('--heap_growing_percent'))) {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
