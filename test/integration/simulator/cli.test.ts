/**
 * `iot-batch-watcher simulator`: documented defaults, one URL line on stdout, clean stop on a signal.
 */
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { parseSimulatorArgs, runSimulatorCli, SIMULATOR_DEFAULTS, SimulatorUsageError, startSimulator } from '../../../src/simulator/index.js';
import { rawCall } from './helpers.js';

const DEMO = fileURLToPath(new URL('../../../config/demo-scenario.yaml', import.meta.url));
const URL_LINE = /^simulator listening on (http:\/\/127\.0\.0\.1:(\d+))\n$/;

function capture(): { write(s: string): boolean; text(): string; waitFor(re: RegExp): Promise<RegExpExecArray> } {
  let buf = '';
  const waiters: (() => void)[] = [];
  return {
    write(s: string) {
      buf += s;
      for (const w of waiters.splice(0)) w();
      return true;
    },
    text: () => buf,
    async waitFor(re) {
      for (;;) {
        const m = re.exec(buf);
        if (m) return m;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

describe('parseSimulatorArgs', () => {
  it('applies the documented defaults (DESIGN.md §9)', () => {
    const p = parseSimulatorArgs([]);
    expect(p.options).toMatchObject({
      host: '127.0.0.1',
      port: 8787,
      accessKeyId: 'SimAccessKeyId',
      accessKeySecret: 'SimAccessKeySecret',
      productKeys: ['a1SimProduct1', 'a1SimProduct2'],
      iotInstanceId: null,
      timeScale: 1,
    });
    expect(p.scenarioPath).toBeNull();
    expect(SIMULATOR_DEFAULTS.port).toBe(8787);
  });

  it('parses every option, repeatable ones included', () => {
    const p = parseSimulatorArgs(
      [
        '--port', '9000', '--host', '0.0.0.0', '--scenario', 'x.yaml', '--access-key-id', 'AK', '--access-key-secret', 'SK',
        '--product-key', 'a1A', '--product-key', 'a1B', '--iot-instance-id', 'iot-1', '--time-scale', '50', '--seed', '7',
        '--check-ms', '100', '--qps', 'QueryPageByApplyId=5', '--fault-rate', 'serverError=0.1', '--fault-rate', 'reset=0.05',
        '--big-apply-ids',
      ],
      { LOG_LEVEL: 'debug' },
    );
    expect(p.options).toMatchObject({
      port: 9000, host: '0.0.0.0', accessKeyId: 'AK', accessKeySecret: 'SK', productKeys: ['a1A', 'a1B'], iotInstanceId: 'iot-1',
      timeScale: 50, seed: 7, checkMs: 100, qps: { QueryPageByApplyId: 5 }, bigApplyIds: true,
      faults: { seed: 7, rates: { serverError: 0.1, reset: 0.05 } },
    });
    expect(p.scenarioPath).toBe('x.yaml');
    expect(p.logLevel).toBe('debug');
  });

  it.each([
    [['--port', '70000'], /--port: expected an integer/],
    [['--time-scale', '0'], /--time-scale/],
    [['--fault-rate', 'bogus=0.1'], /--fault-rate: expected one of/],
    [['--fault-rate', 'reset=0.7', '--fault-rate', 'slow=0.5'], /sum to at most 1/],
    [['--qps', 'Nope=1'], /--qps/],
    [['--frobnicate'], /frobnicate/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseSimulatorArgs(argv)).toThrow(SimulatorUsageError);
    expect(() => parseSimulatorArgs(argv)).toThrow(message);
  });
});

describe('runSimulatorCli', () => {
  it('prints one URL line, serves the scenario, and stops with 0 when the signal aborts', async () => {
    const stdout = capture();
    const stderr = capture();
    const stop = new AbortController();
    const run = runSimulatorCli(['--port', '0', '--scenario', DEMO, '--time-scale', '1000'], { stdout, stderr, env: { LOG_LEVEL: 'silent' }, signal: stop.signal });
    const m = await stdout.waitFor(URL_LINE);
    const port = Number(m[2]);
    const r = await rawCall(port, { action: 'QueryBatchRegisterDeviceStatus', params: { ProductKey: 'a1SimProduct1', ApplyId: '1300001' } });
    expect(r.json.Success).toBe(true);
    stop.abort();
    await expect(run).resolves.toBe(0);
    expect(stdout.text()).toMatch(URL_LINE);
    const after = await rawCall(port, { action: 'QueryPageByApplyId', params: { ApplyId: '1300001' } });
    expect(after.status).toBe(0);
  });

  it('stops cleanly on SIGTERM when no signal is given, and removes its handlers', async () => {
    const before = process.listenerCount('SIGTERM');
    const beforeInt = process.listenerCount('SIGINT');
    const stdout = capture();
    const run = runSimulatorCli(['--port', '0'], { stdout, stderr: capture(), env: { LOG_LEVEL: 'silent' } });
    await stdout.waitFor(URL_LINE);
    expect(process.listenerCount('SIGTERM')).toBe(before + 1);
    process.emit('SIGTERM', 'SIGTERM');
    await expect(run).resolves.toBe(0);
    expect(process.listenerCount('SIGTERM')).toBe(before);
    expect(process.listenerCount('SIGINT')).toBe(beforeInt);
  });

  it('exits 2 on bad usage or an invalid scenario, and 1 when the port is taken', async () => {
    const stderr = capture();
    expect(await runSimulatorCli(['--port', 'abc'], { stdout: capture(), stderr, env: {} })).toBe(2);
    expect(stderr.text()).toMatch(/--port/);
    expect(stderr.text()).toMatch(/Usage: iot-batch-watcher simulator/);
    const stderr2 = capture();
    expect(await runSimulatorCli(['--port', '0', '--scenario', '/nonexistent/scenario.yaml'], { stdout: capture(), stderr: stderr2, env: { LOG_LEVEL: 'silent' } })).toBe(2);
    expect(stderr2.text()).toMatch(/scenario/);
    const busy = await startSimulator({ port: 0 });
    try {
      const out = capture();
      const code = await runSimulatorCli(['--port', String(busy.port)], { stdout: out, stderr: capture(), env: { LOG_LEVEL: 'silent' } });
      expect(code).toBe(1);
      expect(out.text()).toBe('');
    } finally {
      await busy.close();
    }
  });
});
