/**
 * Disk: the state directory becomes full (ENOSPC, with short writes that leave half a line behind) and then
 * read-only (EROFS, truncation refused too) in the middle of a run. The daemon runs in-process with a file
 * ledger whose write layer is injected (tests run as root, so permissions cannot simulate this portably).
 * Expect a clear error log naming the errno, readiness false (/readyz 503) while it lasts, /healthz still 200,
 * recovery once space returns (readiness true, batches settle), and no corruption: the ledger loads afterwards
 * with every batch, without a torn tail to repair.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../src/config/compile.js';
import { createSeededRandom } from '../../src/core/clock.js';
import { Daemon } from '../../src/daemon.js';
import { openFileLedger } from '../../src/ledger/file-ledger.js';
import { type LedgerFs, nodeLedgerFs } from '../../src/ledger/ledger-fs.js';
import { readLedgerReadOnly } from '../../src/ledger/read-ledger.js';
import { createLogger } from '../../src/ops/logger.js';
import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { httpGet, sleep, tempDir, waitUntil, writeReport } from './helpers.js';

const BATCHES = 40;
const FAIL_MS = 3000;

type Failure = 'ENOSPC' | 'EROFS' | null;

function errno(code: string): Error {
  return Object.assign(new Error(`${code}: injected by the disk test`), { code });
}

describe('disk full and read-only state directory', () => {
  let sim: SimulatorHandle | null = null;
  let daemon: Daemon | null = null;
  let dir = '';
  afterAll(async () => {
    await daemon?.stop();
    await sim?.close();
    if (dir && !process.env.CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('a clear error, readiness false, no corruption, and recovery once space returns', async () => {
    sim = await startSimulator({ port: 0, seed: 23 });
    dir = await tempDir('disk');
    const stateDir = join(dir, 'state');
    const resultsDir = join(dir, 'results');
    const random = createSeededRandom(23);
    const batches: Record<string, unknown>[] = [];
    for (let i = 0; i < BATCHES; i += 1) {
      const applyId = String(9_400_000 + i);
      // Spread over the whole run so transitions keep coming while the disk misbehaves.
      sim.control.addBatch({
        applyId,
        productKey: 'a1SimProduct1',
        mode: 'custom',
        deviceNames: [`disk${i}-a`, `disk${i}-b`],
        registered: true,
        checkMs: 500 + Math.floor(random.float() * 9000),
        createMs: 500 + Math.floor(random.float() * 3000),
      });
      batches.push({ applyId, productKey: 'a1SimProduct1' });
    }

    let failure: Failure = null;
    const injected: Record<string, number> = {};
    const count = (op: string): void => {
      injected[`${failure}:${op}`] = (injected[`${failure}:${op}`] ?? 0) + 1;
    };
    const fs: Partial<LedgerFs> = {
      async open(path, flags, mode) {
        if (failure !== null && flags !== 'r' && flags !== 'r+') {
          count('open');
          throw errno(failure);
        }
        return nodeLedgerFs.open(path, flags, mode);
      },
      async write(handle, data) {
        if (failure === 'ENOSPC') {
          // A full disk takes part of the write, then fails: the ledger must cut the half line back off.
          count('write');
          if (data.length > 1) await nodeLedgerFs.write(handle, data.subarray(0, Math.floor(data.length / 2)));
          throw errno('ENOSPC');
        }
        if (failure === 'EROFS') {
          count('write');
          throw errno('EROFS');
        }
        return nodeLedgerFs.write(handle, data);
      },
      async truncate(handle, size) {
        if (failure === 'EROFS') {
          count('truncate');
          throw errno('EROFS');
        }
        return nodeLedgerFs.truncate(handle, size);
      },
      async rename(from, to) {
        if (failure !== null) {
          count('rename');
          throw errno(failure);
        }
        return nodeLedgerFs.rename(from, to);
      },
    };

    const logLines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.trim() === '') continue;
          try {
            logLines.push(JSON.parse(line) as Record<string, unknown>);
          } catch {
            // not JSON
          }
        }
        done();
      },
    });
    const logger = createLogger({ level: 'info', destination });
    const config = compileConfigObject(
      {
        alibaba: { regionId: 'cn-shanghai', endpoint: sim.url },
        polling: { initialDelay: '200ms', maxDelay: '1s' },
        rateLimit: { statusQps: 20, pageQps: 20, concurrency: 8 },
        state: { dir: stateDir },
        output: { resultsDir },
        http: { listen: '127.0.0.1:0' },
        batches,
      },
      { cwd: dir },
    );
    const ledger = await openFileLedger({ dir: stateDir, fs, logger: logger.child({ component: 'ledger' }) });
    daemon = new Daemon({
      config,
      logger,
      env: {},
      ledger,
      housekeeping: false,
      credentials: { get: async () => ({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }) },
    });
    await daemon.start();
    const base = daemon.httpUrl!;
    expect((await httpGet(`${base}/readyz`)).status).toBe(200);
    await sleep(1000);

    const phases: Record<string, unknown>[] = [];
    for (const code of ['ENOSPC', 'EROFS'] as const) {
      const settledBefore = daemon.watcher.counts().settled ?? 0;
      const since = logLines.length;
      failure = code;
      const t0 = Date.now();
      const notReadyAfterMs = await waitUntil(
        async () => ((await httpGet(`${base}/readyz`)).status === 503 ? Date.now() - t0 : 0),
        10_000,
        `/readyz 503 under ${code}`,
        50,
      );
      expect(daemon.isReady()).toBe(false);
      const health: number[] = [];
      while (Date.now() - t0 < FAIL_MS) {
        health.push((await httpGet(`${base}/healthz`)).status);
        expect((await httpGet(`${base}/readyz`)).status).toBe(503);
        await sleep(250);
      }
      const during = logLines.slice(since);
      const errors = during.filter((l) => (l.level as number) >= 50);
      const clear = errors.find((l) => /cannot write the state directory/.test(String(l.msg)));
      failure = null;
      const t1 = Date.now();
      const readyAfterMs = await waitUntil(
        async () => ((await httpGet(`${base}/readyz`)).status === 200 ? Date.now() - t1 : 0),
        20_000,
        `/readyz 200 after ${code} cleared`,
        50,
      );
      expect(health.every((s) => s === 200)).toBe(true);
      expect(clear, `no clear error line under ${code}: ${JSON.stringify(errors.slice(0, 3))}`).toBeDefined();
      expect(JSON.stringify(clear)).toContain(code);
      expect(logLines.slice(since).some((l) => /writable again/.test(String(l.msg)))).toBe(true);
      phases.push({
        code,
        failedForMs: FAIL_MS,
        notReadyAfterMs,
        readyAgainAfterMs: readyAfterMs,
        errorLines: errors.length,
        clearErrorLine: String(clear?.msg),
        settledBefore,
      });
      await sleep(1000);
    }

    await waitUntil(() => daemon!.watcher.allSettled(), 60_000, 'every batch settled after the disk recovered');
    await daemon.flushSinks(5000);
    const stopped = await daemon.stop();
    expect(stopped.reason).toBe('stopped');

    // No corruption: the files load with every batch, and the next writer finds no torn tail to repair.
    const snapshot = await readLedgerReadOnly(stateDir);
    expect(snapshot.batches.size).toBe(BATCHES);
    const repairs: Record<string, unknown>[] = [];
    const repairLog = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _e, done) {
          for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) repairs.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    });
    const reopened = await openFileLedger({ dir: stateDir, logger: repairLog });
    const loaded = await reopened.load();
    await reopened.close();
    expect(loaded.batches.size).toBe(BATCHES);
    const wrong = [...loaded.batches.values()].filter((b) => b.state !== 'settled' || b.outcome !== 'created');
    expect(wrong.map((b) => `${b.applyId} ${b.state} ${b.outcome}`)).toEqual([]);
    for (const b of batches) expect(existsSync(join(resultsDir, 'a1SimProduct1', `${String(b.applyId)}.json`))).toBe(true);
    expect(repairs.filter((l) => /torn tail/.test(String(l.msg)))).toEqual([]);

    writeReport('disk', {
      batches: BATCHES,
      phases,
      injectedFailures: injected,
      ledgerFailedWrites: ledger.stats().failedWrites,
      batchesAfterReopen: loaded.batches.size,
      tornTailsRepairedOnReopen: repairs.filter((l) => /torn tail/.test(String(l.msg))).length,
      lost: BATCHES - loaded.batches.size,
    });
    expect(Object.keys(injected).length).toBeGreaterThan(1);
  });
});
