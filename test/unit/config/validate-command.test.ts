import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { validateCommand } from '../../../src/config/validate-command.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// validate checks the environment as run needs it (issue #13.6): the examples need credentials to be OK.
const CREDS = { ALIBABA_CLOUD_ACCESS_KEY_ID: 'id', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'secret' };

async function run(argv: string[], env: Record<string, string | undefined> = CREDS, cwd = root) {
  let stdout = '';
  let stderr = '';
  const code = await validateCommand(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    cwd,
  });
  return { code, stdout, stderr };
}

describe('validate command', () => {
  it('exits 0 and prints the batch count for the example and the demo config', async () => {
    expect(await run(['--config', 'config/watcher.yaml'])).toEqual({ code: 0, stdout: 'config OK: 2 batches\n', stderr: '' });
    expect(await run(['--config=config/demo.yaml'])).toEqual({ code: 0, stdout: 'config OK: 5 batches\n', stderr: '' });
  });

  it('reads IBW_CONFIG, and config/watcher.yaml by default', async () => {
    expect((await run([], { ...CREDS, IBW_CONFIG: 'config/demo.yaml' })).stdout).toBe('config OK: 5 batches\n');
    expect((await run([])).stdout).toBe('config OK: 2 batches\n');
  });

  it('exits 2 and prints every problem on stdout, one per line, the count on stderr', async () => {
    const result = await run(['--config', 'test/fixtures/config/bad/qps-limit.yaml']);
    expect(result.code).toBe(2);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^test\/fixtures\/config\/bad\/qps-limit\.yaml:4:14: rateLimit\.statusQps: expected /);
    expect(lines[1]).toMatch(/^test\/fixtures\/config\/bad\/qps-limit\.yaml:5:12: rateLimit\.pageQps: expected /);
    expect(result.stderr).toBe('test/fixtures/config/bad/qps-limit.yaml: 2 problems\n');
  });

  it('exits 2 for a missing file', async () => {
    const result = await run(['--config', 'nope.yaml']);
    expect(result).toEqual({
      code: 2,
      stdout: 'nope.yaml:0:0: (root): expected a readable YAML file, got an error: no such file\n',
      stderr: 'nope.yaml: 1 problem\n',
    });
  });

  it('exits 2 on bad usage and 0 on --help', async () => {
    expect(await run(['--verbose'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'unknown argument "--verbose"\nusage: iot-batch-watcher validate [--config FILE] [--no-env]\n',
    });
    expect((await run(['--config'])).code).toBe(2);
    expect(await run(['--help'])).toEqual({ code: 0, stdout: 'usage: iot-batch-watcher validate [--config FILE] [--no-env]\n', stderr: '' });
  });

  it('resolves a relative --config against io.cwd and says "1 batch"', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ibw-validate-'));
    writeFileSync(path.join(dir, 'w.yaml'), 'alibaba: { regionId: cn-shanghai }\nbatches:\n  - { applyId: 1, productKey: p }\n');
    expect(await run(['--config', 'w.yaml'], CREDS, dir)).toEqual({ code: 0, stdout: 'config OK: 1 batch\n', stderr: '' });
  });

  it('fails when run would fail for the environment, and --no-env checks the file alone', async () => {
    const env = { LOG_LEVEL: 'bogus', IBW_HTTP_LISTEN: '999.1.1.1:99999' };
    const result = await run(['--config', 'config/watcher.yaml'], env);
    expect(result.code).toBe(2);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(/^env:0:0: LOG_LEVEL: expected one of trace/),
      expect.stringMatching(/^env:0:0: IBW_HTTP_LISTEN: expected "host:port"/),
      expect.stringMatching(/^env:0:0: ALIBABA_CLOUD_ACCESS_KEY_\*: Alibaba Cloud credentials missing/),
    ]);
    expect(result.stderr).toBe('config/watcher.yaml: 3 problems\n');
    expect(await run(['--config', 'config/watcher.yaml', '--no-env'], env)).toEqual({ code: 0, stdout: 'config OK: 2 batches\n', stderr: '' });
  });
});
