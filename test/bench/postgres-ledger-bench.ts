/**
 * Appends per second: the PostgreSQL ledger (group commit) against the file ledger, on this machine.
 * Standalone (not part of `npm run bench` yet): `npx tsx test/bench/postgres-ledger-bench.ts [appends] [concurrency]`.
 *
 * Both run durable (fsync on; PostgreSQL with fsync and synchronous_commit on), with `concurrency` appends of
 * one batch record each in flight, as many batches produce them. Two rounds over a growing state show that the
 * cost per append does not depend on the number of batches already stored. Then a compaction and a cold load.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { LedgerStore } from '../../src/core/ports.js';
import { openFileLedger } from '../../src/ledger/file-ledger.js';
import { openPostgresLedger } from '../../src/ledger/postgres-ledger.js';
import { startTestPostgres } from '../helpers/postgres-server.js';
import { makeBatch } from '../unit/ledger/helpers.js';

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

async function run(name: string, open: () => Promise<LedgerStore & { stats(): { groupWrites: number } }>, appends: number, concurrency: number) {
  const ledger = await open();
  const first = await appendRound(ledger, 0, appends, concurrency);
  const second = await appendRound(ledger, appends, appends, concurrency);
  const groups = ledger.stats().groupWrites;
  const state = await ledger.load();
  let t = performance.now();
  await ledger.compact(state);
  const compactMs = performance.now() - t;
  await ledger.close();
  t = performance.now();
  const reopened = await open();
  const loaded = await reopened.load();
  const loadMs = performance.now() - t;
  await reopened.close();
  console.log(
    `${name.padEnd(10)} appends/s: ${first.toFixed(0).padStart(6)} (0→${appends} batches)  ${second.toFixed(0).padStart(6)} (${appends}→${2 * appends})` +
      `  records/group: ${((2 * appends) / groups).toFixed(1)}  compact: ${compactMs.toFixed(0)} ms  open+load ${loaded.batches.size}: ${loadMs.toFixed(0)} ms`,
  );
}

const appends = Number(process.argv[2] ?? 5000);
const concurrency = Number(process.argv[3] ?? 64);
const server = await startTestPostgres({ durable: true });
const base = await mkdtemp(join(tmpdir(), 'ibw-pg-bench-'));
try {
  console.log(`PostgreSQL 15 (durable) started in ${server.startMs.toFixed(0)} ms; ${appends} appends per round, ${concurrency} in flight`);
  await run('file', () => openFileLedger({ dir: join(base, 'state') }), appends, concurrency);
  await run('postgres', () => openPostgresLedger({ connectionString: server.url, schema: 'bench', leaseMs: 15_000 }), appends, concurrency);
} finally {
  await rm(base, { recursive: true, force: true });
  await server.stop();
}
