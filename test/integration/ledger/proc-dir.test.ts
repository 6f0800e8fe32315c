/**
 * `state.dir` under /proc through the CLI: Node's `mkdir -p` used to spin there at 100 % CPU for ever while the
 * ops endpoints answered 200. Now the daemon refuses to start, naming the directory and the errno.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { runCli, SIM_ENV } from '../../helpers/child.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ibw-proc-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.runIf(process.platform === 'linux')('a state.dir under /proc', () => {
  it('stops the daemon at start-up with a fatal line naming the directory and the errno', async () => {
    const configFile = join(dir, 'watcher.yaml');
    await writeFile(
      configFile,
      [
        'alibaba: { regionId: cn-shanghai, endpoint: "http://127.0.0.1:1" }',
        'state: { dir: /proc/ibw-state/ledger }',
        `output: { resultsDir: ${JSON.stringify(join(dir, 'results'))} }`,
        'http: { listen: "127.0.0.1:0" }',
        'batches: []',
        '',
      ].join('\n'),
    );
    const child = runCli(['run', '--config', configFile], SIM_ENV);
    const { code } = await child.exited;
    expect(code).not.toBe(0);
    const lines = child.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
    const fatal = lines.find((l) => l.level === 60);
    expect(fatal?.msg).toContain('cannot create state.dir /proc/ibw-state/ledger: mkdir /proc/ibw-state failed (ENOENT');
  });
});
