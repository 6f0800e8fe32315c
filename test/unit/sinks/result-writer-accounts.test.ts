/**
 * The result layout with `accounts` (DESIGN.md §11): `<resultsDir>/<account>/<productKey>/<applyId>.json`, JSON
 * starting with `account`; a symlinked account directory is refused like a symlinked product directory. Without
 * the layout, a result that names its account keeps the old path and bytes.
 */
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { BatchResult } from '../../../src/core/ports.js';
import { DaemonError } from '../../../src/errors.js';
import { createResultWriter, toResultJson } from '../../../src/sinks/result-writer.js';

function result(account: string): BatchResult {
  return {
    account,
    applyId: '1295006',
    productKey: 'a1BwAGVxxxx',
    name: null,
    labels: {},
    outcome: 'created',
    status: 'CREATE_SUCCESS',
    firstSeenAt: '2026-11-28T10:00:00.000Z',
    settledAt: '2026-11-28T10:04:12.345Z',
    polls: 3,
    validNames: [],
    invalidNames: [],
    invalidDetails: [],
    devices: [{ deviceName: 'dev1', iotId: 'iot-1', deviceSecret: 'S3cr3t-dev1' }],
    deviceCount: 1,
    history: [],
  };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-results-acc-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('result files per account', () => {
  it('writes <resultsDir>/<account>/<productKey>/<applyId>.json with account first, directories 0700', async () => {
    const resultsDir = path.join(dir, 'results');
    const writer = createResultWriter({ resultsDir, includeSecrets: true, layout: 'account' });
    const a = await writer.write(result('fleet-a'));
    const b = await writer.write(result('fleet-b'));
    expect(a).toBe(path.join(resultsDir, 'fleet-a', 'a1BwAGVxxxx', '1295006.json'));
    expect(b).toBe(path.join(resultsDir, 'fleet-b', 'a1BwAGVxxxx', '1295006.json'));
    const text = await readFile(a, 'utf8');
    expect(text).toBe(toResultJson(result('fleet-a'), true));
    expect(Object.keys(JSON.parse(text) as object)[0]).toBe('account');
    expect((await lstat(path.join(resultsDir, 'fleet-a'))).mode & 0o777).toBe(0o700);
    expect((await lstat(a)).mode & 0o777).toBe(0o600);
  });

  it('keeps the old path and bytes without the account layout', async () => {
    const resultsDir = path.join(dir, 'results');
    const writer = createResultWriter({ resultsDir, includeSecrets: true });
    const file = await writer.write(result('default'));
    expect(file).toBe(path.join(resultsDir, 'a1BwAGVxxxx', '1295006.json'));
    const { account: _omitted, ...withoutAccount } = result('default');
    expect(await readFile(file, 'utf8')).toBe(toResultJson(withoutAccount));
  });

  it('refuses a symlinked account directory: nothing written through it', async () => {
    const resultsDir = path.join(dir, 'results');
    const outside = path.join(dir, 'outside');
    await mkdir(resultsDir);
    await mkdir(outside);
    await chmod(outside, 0o755);
    await symlink(outside, path.join(resultsDir, 'fleet-a'));
    const writer = createResultWriter({ resultsDir, includeSecrets: true, layout: 'account' });
    const err = await writer.write(result('fleet-a')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).code).toBe('UnsafePath');
    expect(await readdir(outside)).toEqual([]);
    expect((await lstat(outside)).mode & 0o777).toBe(0o755);
  });
});
