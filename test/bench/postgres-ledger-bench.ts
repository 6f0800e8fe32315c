/**
 * The PostgreSQL ledger against the file ledger, in the same run (issue #16): appends per second (group
 * commit), compaction, and restart time (open + load) at a given number of batches.
 *
 *   npm run bench -- --only=postgres                 (100k batches; `--smoke`: 5k)
 *   npx tsx test/bench/postgres-ledger-bench.ts [batches] [appends] [concurrency]
 *
 * Both run durable: the file ledger fsyncs, PostgreSQL 15 (a throwaway server on 127.0.0.1, started here) runs
 * with fsync and synchronous_commit on. Appends: `concurrency` appends of one batch record each in flight, as
 * many batches produce them, in two rounds over a growing state (the cost per append must not depend on the
 * number of batches already stored). Restart: a ledger seeded with `batches` batch records, compacted, plus a
 * journal tail of `tail` records; then open + load, the median of three.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import type { LedgerStore } from '../../src/core/ports.js';
import { openFileLedger } from '../../src/ledger/file-ledger.js';
import { openPostgresLedger } from '../../src/ledger/postgres-ledger.js';
import { startTestPostgres } from '../helpers/postgres-server.js';
import { makeBatch } from '../unit/ledger/helpers.js';
import { formatTable } from './table.js';

/** Options of {@link benchPostgresLedger}. */
export interface PostgresLedgerBenchOptions {
  /** Batches in the ledger for the restart measure. @default 100000 */
  batches?: number;
  /** Appends per round for the appends/s measure. @default 5000 */
  appends?: number;
  /** Appends in flight. @default 64 */
  concurrency?: number;
  /** Journal records after the snapshot for the restart measure. @default 1000 */
  tail?: number;
}

/** Figures of one backend. */
export interface BackendFigures {
  backend: 'file' | 'postgres';
  /** Appends per second, 0 → appends batches, then appends → 2 × appends. */
  appendsPerSec: [number, number];
  /** Records per group write (postgres), or per fsync'd write (file), when the ledger says. */
  recordsPerGroup: number | null;
  /** Compaction of the seeded ledger. */
  compactMs: number;
  /** open + load of the seeded ledger: median, and every run. */
  restartMs: number;
  restartRunsMs: number[];
  loadedBatches: number;
}

/** Result of {@link benchPostgresLedger}. */
export interface PostgresLedgerBenchResult {
  batches: number;
  appends: number;
  concurrency: number;
  tail: number;
  serverStartMs: number;
  file: BackendFigures;
  postgres: BackendFigures;
}

type Opener = () => Promise<LedgerStore & { stats(): { groupWrites?: number } }>;

async function appendRound(ledger: LedgerStore, from: number, count: number, concurrency: number): Promise<number> {
  let next = from;
  const end = from + count;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < end) {
      const n = next;
      next += 1;
      await ledger.append([{ t: 'batch', rec: makeBatch(n) }]);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - started) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(backend: BackendFigures['backend'], openAppends: Opener, openSeeded: Opener, o: Required<PostgresLedgerBenchOptions>): Promise<BackendFigures> {
  // Appends per second.
  const ledger = await openAppends();
  const first = await appendRound(ledger, 0, o.appends, o.concurrency);
  const second = await appendRound(ledger, o.appends, o.appends, o.concurrency);
  const groups = ledger.stats().groupWrites;
  await ledger.close();

  // Seed `batches` (1000 records per append), compact, add the tail, close.
  const seeded = await openSeeded();
  for (let i = 0; i < o.batches; i += 1000) {
    await seeded.append(Array.from({ length: Math.min(1000, o.batches - i) }, (_, k) => ({ t: 'batch' as const, rec: makeBatch(i + k) })));
  }
  const state = await seeded.load();
  const t = performance.now();
  await seeded.compact(state);
  const compactMs = performance.now() - t;
  for (let i = 0; i < o.tail; i += 100) {
    await seeded.append(Array.from({ length: Math.min(100, o.tail - i) }, (_, k) => ({ t: 'batch' as const, rec: makeBatch(i + k, { polls: 9 }) })));
  }
  await seeded.close();

  // Restart: open + load, three times.
  const runs: number[] = [];
  let loadedBatches = 0;
  for (let r = 0; r < 3; r += 1) {
    const t0 = performance.now();
    const reopened = await openSeeded();
    const loaded = await reopened.load();
    runs.push(performance.now() - t0);
    loadedBatches = loaded.batches.size;
    await reopened.close();
  }
  return {
    backend,
    appendsPerSec: [first, second],
    recordsPerGroup: groups === undefined || groups === 0 ? null : (2 * o.appends) / groups,
    compactMs,
    restartMs: median(runs),
    restartRunsMs: runs,
    loadedBatches,
  };
}

/** Runs the comparison; starts and stops its own PostgreSQL server. */
export async function benchPostgresLedger(options: PostgresLedgerBenchOptions = {}): Promise<PostgresLedgerBenchResult> {
  const o: Required<PostgresLedgerBenchOptions> = {
    batches: options.batches ?? 100_000,
    appends: options.appends ?? 5000,
    concurrency: options.concurrency ?? 64,
    tail: options.tail ?? 1000,
  };
  const server = await startTestPostgres({ durable: true });
  const base = await mkdtemp(join(tmpdir(), 'ibw-pg-bench-'));
  try {
    const pg = (schema: string): Opener => () => openPostgresLedger({ connectionString: server.url, schema, leaseMs: 15_000 });
    const file = await measure(
      'file',
      () => openFileLedger({ dir: join(base, 'appends') }),
      () => openFileLedger({ dir: join(base, 'seeded') }),
      o,
    );
    const postgres = await measure('postgres', pg('bench_appends'), pg('bench_seeded'), o);
    return { ...o, serverStartMs: server.startMs, file, postgres };
  } finally {
    await rm(base, { recursive: true, force: true });
    await server.stop();
  }
}

/** Prints the comparison as a table. */
export function printPostgresLedger(r: PostgresLedgerBenchResult): void {
  const f = (n: number, digits = 0): string => n.toFixed(digits);
  console.log(
    `\n5. Ledger backends: file vs PostgreSQL 15 (local, durable; server started in ${f(r.serverStartMs)} ms), ` +
      `${r.concurrency} appends in flight, restart at ${r.batches} batches + ${r.tail} journal records`,
  );
  const rows = [r.file, r.postgres].map((x) => [
    x.backend,
    f(x.appendsPerSec[0]),
    f(x.appendsPerSec[1]),
    x.recordsPerGroup === null ? '-' : f(x.recordsPerGroup, 1),
    f(x.compactMs),
    `${f(x.restartMs)} (${x.restartRunsMs.map((v) => f(v)).join(', ')})`,
    String(x.loadedBatches),
  ]);
  console.log(
    formatTable(
      ['backend', `appends/s 0→${r.appends}`, `appends/s ${r.appends}→${2 * r.appends}`, 'records/group', 'compact ms', 'open+load ms, median (runs)', 'batches loaded'],
      rows,
    ),
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [batches, appends, concurrency] = process.argv.slice(2).map(Number);
  const result = await benchPostgresLedger({
    ...(batches ? { batches } : {}),
    ...(appends ? { appends } : {}),
    ...(concurrency ? { concurrency } : {}),
  });
  printPostgresLedger(result);
}
