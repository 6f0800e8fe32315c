import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type SimulatorHandle, startSimulator } from '../../src/simulator/server.js';
import { runCli, SIM_ENV } from '../helpers/child.js';

/** validate's environment checks (#13.6), wait's errors in the user's words (#18) and its endpoint line (#13.3). */
describe('validate and wait through the CLI', () => {
  let sim: SimulatorHandle;
  let dir: string;
  beforeAll(async () => {
    sim = await startSimulator({ port: 0, timeScale: 10 });
    dir = await mkdtemp(join(tmpdir(), 'ibw-cfg-cli-'));
  });
  afterAll(async () => {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('validate exits 2 when run would, for the environment; --no-env checks the file alone', async () => {
    const file = join(dir, 'w.yaml');
    await writeFile(file, 'alibaba: { regionId: cn-shanghai }\noutput: { webhook: { url: "https://hooks.example.com/x" } }\n');
    const bad = runCli(['validate', '--config', file], { LOG_LEVEL: 'bogus', IBW_HTTP_LISTEN: '999.1.1.1:99999' }, dir);
    expect((await bad.exited).code).toBe(2);
    const out = bad.stdout.join('\n');
    expect(out).toContain('env:0:0: LOG_LEVEL: expected one of trace');
    expect(out).toContain('env:0:0: IBW_HTTP_LISTEN: expected "host:port"');
    expect(out).toContain('Alibaba Cloud credentials missing');
    expect(out).toContain('env:0:0: IBW_WEBHOOK_SECRET: output.webhook is set but neither IBW_WEBHOOK_SECRET nor IBW_WEBHOOK_SECRET_FILE');
    const run = runCli(['run', '--config', file], { IBW_HTTP_LISTEN: '999.1.1.1:99999', ...SIM_ENV }, dir);
    expect((await run.exited).code).toBe(2); // what validate predicted
    const ok = runCli(['validate', '--config', file, '--no-env'], { LOG_LEVEL: 'info' }, dir);
    expect((await ok.exited).code).toBe(0);
    expect(ok.stdout.join('\n')).toBe('config OK: 0 batches');
    const good = runCli(['validate', '--config', file], { ...SIM_ENV, IBW_WEBHOOK_SECRET: 'whsec' }, dir);
    expect((await good.exited).code).toBe(0);
  }, 60_000);

  it('wait names bad flags as flags, and logs the endpoint it uses', async () => {
    const bad = runCli(['wait', '--product-key', 'a1SimProduct1', '--apply-id', 'x1', '--timeout', 'soon', '--endpoint', sim.url], SIM_ENV, dir);
    expect((await bad.exited).code).toBe(2);
    const err = bad.stderr.join('');
    expect(err).toMatch(/^--apply-id: expected an ApplyId: a positive integer, or a string of digits without leading zeros, got `"x1"` \(string\)$/m);
    expect(err).toMatch(/^--timeout: expected a duration > 0 like "30s", "5m" or milliseconds, got `"soon"` \(string\)$/m);
    expect(err).not.toContain('<object>');
    expect(err).not.toContain('batches[0]');

    sim.control.addBatch({ applyId: '6200001', productKey: 'a1SimProduct1', mode: 'random', count: 1 });
    const ok = runCli(['wait', '--product-key', 'a1SimProduct1', '--apply-id', '6200001', '--endpoint', sim.url], SIM_ENV, dir);
    expect((await ok.exited).code, ok.stderr.join('')).toBe(0);
    const line = ok.stderr.join('').split('\n').find((l) => l.includes('wait: watching'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ endpoint: sim.url, msg: `wait: watching a1SimProduct1/6200001 at ${sim.url}` });
  }, 60_000);
});
