/**
 * `status --watch` in a real terminal: tmux runs the CLI in a 100×45 pane, the test reads the screen.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { CLI, type Child, runCli, SIM_ENV, TSX_LOADER } from '../helpers/child.js';

const SOCKET = `ibw-test-${process.pid}`;

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Polls the pane until `ok(screen)` holds; returns the screen (or the last one, for the failure message). */
async function screenUntil(pane: string, ok: (screen: string) => boolean, timeoutMs = 60_000, escapes = false): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let screen = '';
  while (Date.now() < deadline) {
    screen = tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', pane);
    if (ok(screen)) return screen;
    await new Promise((r) => setTimeout(r, 250));
  }
  return screen;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

describe('status --watch in tmux', () => {
  let dir: string;
  let sim: SimulatorHandle;
  let daemon: Child;
  let configFile: string;

  beforeAll(async () => {
    try {
      execFileSync('tmux', ['-V']);
    } catch {
      throw new Error('tmux is required for test:tmux (Debian: apt-get install -y tmux)');
    }
    dir = await mkdtemp(join(tmpdir(), 'ibw-tmux-'));
    sim = await startSimulator({ port: 0, timeScale: 20 });
    sim.control.addBatch({ applyId: '7100001', productKey: 'a1SimProduct1', mode: 'random', count: 40, outcome: 'success' });
    sim.control.addBatch({ applyId: '7100002', productKey: 'a1SimProduct1', mode: 'random', count: 5, outcome: 'never' });
    sim.control.addBatch({ applyId: '7100003', productKey: 'a1SimProduct2', mode: 'random', count: 3, outcome: 'never' });
    const port = await freePort();
    configFile = join(dir, 'w.yaml');
    await writeFile(
      configFile,
      [
        `alibaba: { regionId: cn-shanghai, endpoint: "${sim.url}" }`,
        `state: { dir: ${join(dir, 'state')} }`,
        `output: { resultsDir: ${join(dir, 'results')} }`,
        `http: { listen: "127.0.0.1:${port}" }`,
        'polling: { initialDelay: 200ms, maxDelay: 1s }',
        'batches:',
        '  - { applyId: "7100001", productKey: a1SimProduct1, name: fleet-a }',
        '  - { applyId: "7100002", productKey: a1SimProduct1, name: "evil\\e[2J\\u202ename" }',
        '  - { applyId: "7100003", productKey: a1SimProduct2, name: slow-one }',
        '  - { applyId: "7100004", productKey: a1NoSuchProd, name: wrong-product }',
        '',
      ].join('\n'),
    );
    daemon = runCli(['run', '--config', configFile], SIM_ENV, dir);
    await daemon.waitFor(/iot-batch-watcher running/, 40_000);
  });

  afterAll(async () => {
    try {
      tmux('kill-server');
    } catch {
      // no server left
    }
    daemon?.proc.kill('SIGTERM');
    await daemon?.exited;
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows totals, devices, the budget from /metrics, the oldest pending and what fails, within 100 columns', async () => {
    const command = [
      'env', 'NO_COLOR=1', `PATH=${process.env.PATH ?? ''}`, `HOME=${process.env.HOME ?? '/tmp'}`,
      process.execPath, '--import', TSX_LOADER, CLI, 'status', '--config', configFile, '--watch', '--interval', '500ms',
    ].map(shellQuote).join(' ');
    tmux('new-session', '-d', '-x', '100', '-y', '45', '-s', 'watch', command);
    const screen = await screenUntil('watch', (s) => /settled 1\b/.test(s) && /parked 1\b/.test(s) && /status \d+(\.\d+)?\/s of 5/.test(s));
    const lines = screen.split('\n');
    expect(screen, screen).toMatch(/^iot-batch-watcher status --watch {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}every 500ms/);
    expect(screen).toMatch(/Batches 4 {3}pending 2 {3}fetching 0 {3}settled 1 {3}parked 1 {3}failing 1/);
    expect(screen).toMatch(/Outcomes created 1 {2}rejected 1/);
    expect(screen).toContain('Devices created 40');
    expect(screen).toMatch(/metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/);
    expect(screen).toMatch(/Budget {2}status \d+(\.\d+)?\/s of 5 {3}pages \d+(\.\d+)?\/s of 5/);
    expect(screen).toMatch(/default +4 +2 +1 +1 +1 +40/);
    // The oldest pending, with the hostile name shown escaped (the screen was not cleared, nothing reversed).
    expect(screen).toMatch(/Oldest pending\n +applyId +productKey +name +status +age +polls/);
    expect(screen).toContain('evil\\x1b[2J\\u202ename');
    expect(screen).toContain('slow-one');
    expect(screen).toMatch(/Failing \(1\)\n +7100004 +a1NoSuchProd +parked +.*NotExistedProduct/);
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(100);
    // It redraws in place: a later capture still starts with the header, and the clock moves.
    const first = /\d\d:\d\d:\d\dZ/.exec(screen)?.[0];
    const later = await screenUntil('watch', (s) => /\d\d:\d\d:\d\dZ/.exec(s)?.[0] !== first, 10_000);
    expect(later.split('\n')[0]).toMatch(/^iot-batch-watcher status --watch/);
    expect(/\d\d:\d\d:\d\dZ/.exec(later)?.[0]).not.toBe(first);
    console.log(`captured screen:\n${screen}`);
    // Ctrl-C ends it cleanly (the shell's exit status is printed by the wrapper below).
    tmux('send-keys', '-t', 'watch', 'C-c');
  });

  it('colours on a terminal without NO_COLOR, and --state filters the totals', async () => {
    const command = [
      'env', `PATH=${process.env.PATH ?? ''}`, `HOME=${process.env.HOME ?? '/tmp'}`, 'TERM=xterm-256color',
      process.execPath, '--import', TSX_LOADER, CLI, 'status', '--config', configFile, '--watch', '--interval', '500ms', '--state', 'parked',
    ].map(shellQuote).join(' ');
    tmux('new-session', '-d', '-x', '100', '-y', '45', '-s', 'colour', command);
    const screen = await screenUntil('colour', (s) => s.includes('Batches 1 '), 60_000, true);
    expect(screen).toContain('state=parked');
    // eslint-disable-next-line no-control-regex
    expect(screen).toMatch(/\u001b\[1m/);
    expect(screen).toMatch(/Batches 1 {3}pending 0 {3}fetching 0 {3}settled 0 {3}parked 1/);
  });

  it('without a terminal it prints one summary line per interval', async () => {
    const child = runCli(['status', '--config', configFile, '--watch', '--interval', '300ms'], {}, dir);
    await child.waitFor(/batches=4 .*\n?/, 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    child.proc.kill('SIGINT');
    expect((await child.exited).code).toBe(0);
    expect(child.stdout.length).toBeGreaterThanOrEqual(2);
    for (const line of child.stdout) {
      expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z batches=4 pending=\d+ fetching=\d+ settled=\d+ parked=1 failing=\d+ devices=\d+ status_qps=\S+\/5 pages_qps=\S+\/5/);
      // eslint-disable-next-line no-control-regex
      expect(line).not.toMatch(/\u001b/);
    }
  });
});
