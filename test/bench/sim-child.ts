/**
 * The simulator as a separate process for the client-throughput benchmark, so its CPU is not charged to the
 * client being measured. Started by {@link startSimulatorChild}; not meant to be run by hand.
 *
 * It starts the simulator on 127.0.0.1 with a free port, every per-action QPS limit off, a tiny request log
 * (the benchmark does not read it, and a large one costs the simulator CPU), and one batch that never settles,
 * then prints one JSON line `{"url": ..., "applyId": ..., "productKey": ...}` on stdout. It stops on SIGTERM
 * or when stdin closes (so it never outlives the benchmark).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { SIMULATOR_ACTIONS, type SimulatorAction } from '../../src/simulator/options.js';
import { startSimulator } from '../../src/simulator/server.js';

/** What the child prints when ready. */
export interface SimChildInfo {
  url: string;
  applyId: string;
  productKey: string;
}

/** A running simulator child. */
export interface SimChild {
  info: SimChildInfo;
  proc: ChildProcess;
  /** Sends SIGTERM and waits for the exit. */
  stop(): Promise<void>;
}

const REPO = resolve(import.meta.dirname, '../..');
const TSX_LOADER = pathToFileURL(resolve(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
const SELF = resolve(import.meta.dirname, 'sim-child.ts');

/** Spawns this file as a child process and resolves with its ready line. */
export async function startSimulatorChild(timeoutMs = 30_000): Promise<SimChild> {
  const proc = spawn(process.execPath, ['--import', TSX_LOADER, SELF, '--child'], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'silent' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = once(proc, 'exit');
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const info = await new Promise<SimChildInfo>((resolveInfo, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`simulator child not ready after ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try {
        resolveInfo(JSON.parse(buf.slice(0, nl)) as SimChildInfo);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`simulator child exited with ${String(code)}: ${stderr}`));
    });
  });
  return {
    info,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}

async function childMain(): Promise<void> {
  const qps: Partial<Record<SimulatorAction, number>> = {};
  for (const action of SIMULATOR_ACTIONS) qps[action] = 0;
  const sim = await startSimulator({ port: 0, host: '127.0.0.1', qps, requestLogLimit: 1, seed: 7 });
  const productKey = 'a1SimProduct1';
  const applyId = sim.control.addBatch({ productKey, mode: 'random', count: 1, outcome: 'never' });
  process.stdout.write(`${JSON.stringify({ url: sim.url, applyId, productKey } satisfies SimChildInfo)}\n`);
  const stop = async (): Promise<void> => {
    await sim.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
}

if (process.argv.includes('--child')) await childMain();
