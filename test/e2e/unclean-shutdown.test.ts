import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

describe('a state that cannot be flushed at shutdown', () => {
  let sim: SimulatorHandle | null = null;
  let dir = '';
  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exits 1 with one error line instead of "stopped cleanly"', async () => {
    sim = await startSimulator({ port: 0, seed: 5 });
    sim.control.addBatch({ applyId: '8100001', productKey: 'a1SimProduct1', mode: 'random', count: 1, outcome: 'never' });
    dir = await mkdtemp(join(tmpdir(), 'ibw-unclean-'));
    const stateDir = join(dir, 'state');
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        'polling: { initialDelay: 100ms, maxDelay: 300ms }',
        `state: { dir: ${stateDir} }`,
        `output: { resultsDir: ${join(dir, 'results')} }`,
        'http: { listen: "off" }',
        'batches:',
        '  - { applyId: "8100001", productKey: a1SimProduct1 }',
        '',
      ].join('\n'),
    );
    const child = runCli(['run', '--config', configFile], SIM_ENV);
    await child.waitFor(/iot-batch-watcher running/);
    // The snapshot's place is taken by a non-empty directory: the last compaction cannot rename over it (even as root).
    await rm(join(stateDir, 'snapshot.json'), { recursive: true, force: true });
    await mkdir(join(stateDir, 'snapshot.json', 'blocker'), { recursive: true });
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    expect(exit.code).toBe(1);
    expect(child.stdout.some((l) => l.includes('stopped cleanly'))).toBe(false);
    const errors = child.stdout.filter((l) => l.includes('the state could not be flushed'));
    expect(errors).toHaveLength(1);
    // The ledger's own error code (EISDIR here) names the cause.
    expect(JSON.parse(errors[0]!)).toMatchObject({ level: 50, code: 'EISDIR' });
  }, 60_000);
});
