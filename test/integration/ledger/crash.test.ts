/**
 * kill -9 at random moments (DESIGN.md §5): a child appends and compacts in a loop and reports each append
 * after it resolved; it is killed with SIGKILL after a seeded number of acknowledgements. After every kill the
 * ledger must load (read-only and as the writer, taking over the stale lock), hold every acknowledged record,
 * and honour every acknowledged forget.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createSeededRandom } from '../../../src/core/clock.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { readLedgerReadOnly } from '../../../src/ledger/read-ledger.js';
import { captureLogger, plain, tempDir } from '../../unit/ledger/helpers.js';
import { crashKey, forgottenBy } from './fixtures/crash-records.js';

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.ts', import.meta.url));
const TSX = createRequire(import.meta.url).resolve('tsx');
const RUNS = 7;

interface RunResult {
  acked: Set<number>;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  stderr: string;
}

/** Starts the child, waits for `killAfter` acknowledgements, SIGKILLs it and collects what it reported. */
function runChild(dir: string, run: number, killAfter: number, extraDelayMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, CHILD, dir, String(run)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Set<number>();
    let stderr = '';
    let killed = false;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^ok (\d+)$/.exec(line);
      if (m) acked.add(Number(m[1]));
      if (!killed && acked.size >= killAfter) {
        killed = true;
        setTimeout(() => child.kill('SIGKILL'), extraDelayMs);
      }
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ acked, exit: { code, signal }, stderr });
    });
  });
}

describe('file ledger survives kill -9', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir('ibw-crash-')));
  afterAll(async () => cleanup());

  it(`loses no acknowledged record over ${RUNS} seeded kills`, async () => {
    const random = createSeededRandom(0x1eda);
    const ackedByRun = new Map<number, Set<number>>();
    let tornTails = 0;
    let compacted = 0;
    let leftovers = 0;
    for (let run = 1; run <= RUNS; run += 1) {
      const killAfter = 20 + Math.floor(random.float() * 280);
      const result = await runChild(dir, run, killAfter, Math.floor(random.float() * 15));
      expect(result.stderr).toBe('');
      expect(result.exit.signal).toBe('SIGKILL');
      expect(result.acked.size).toBeGreaterThanOrEqual(killAfter);
      ackedByRun.set(run, result.acked);

      // The dead child's LOCK is still there; status-style reads do not care.
      expect(Number((await readFile(join(dir, 'LOCK'), 'utf8')).split('\n')[0])).toBeGreaterThan(0);
      const readOnly = await readLedgerReadOnly(dir);

      const { logger, warnings, lines } = captureLogger();
      const ledger = await openFileLedger({ dir, logger });
      const state = await ledger.load();
      if (ledger.stats().snapshotSeq > 0) compacted += 1;
      await ledger.close();
      tornTails += warnings().filter((w) => w.msg === 'truncated the torn tail of the ledger journal').length;
      leftovers += lines.filter((l) => /leftover of an interrupted ledger compaction/.test(l.msg)).length;
      expect(warnings().some((w) => /stale ledger lock/.test(w.msg))).toBe(true);
      expect(plain(readOnly)).toEqual(plain(state));

      for (const [r, acked] of ackedByRun) {
        for (const n of acked) {
          const forgetStep = n + 5;
          const forgotten = forgottenBy(forgetStep) === n && acked.has(forgetStep);
          const rec = state.batches.get(crashKey(r, n));
          if (forgotten) {
            expect(rec, `run ${r} step ${n} was forgotten by an acknowledged step`).toBeUndefined();
          } else if (forgottenBy(forgetStep) !== n) {
            expect(rec?.polls, `run ${r} step ${n} acknowledged but missing`).toBe(n);
          }
        }
      }
    }
    console.log(`crash test: ${tornTails} torn tails, ${leftovers} compaction leftovers, ${compacted} runs after a compaction`);
    // The kills must have happened after compactions too, not only on a plain journal.
    expect(compacted).toBeGreaterThan(0);
  });
});
