import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir, chmod, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { BatchResult } from '../../../src/core/ports.js';
import { DaemonError } from '../../../src/errors.js';
import { createResultWriter, toResultJson } from '../../../src/sinks/result-writer.js';

function makeResult(overrides: Partial<BatchResult> = {}): BatchResult {
  return {
    applyId: '1295006',
    productKey: 'a1BwAGVxxxx',
    name: 'line-3-sensors',
    labels: { site: 'shanghai', line: '3' },
    outcome: 'created',
    status: 'CREATE_SUCCESS',
    firstSeenAt: '2026-11-28T10:00:00.000Z',
    settledAt: '2026-11-28T10:04:12.345Z',
    polls: 9,
    validNames: ['dev1', 'dev2'],
    invalidNames: [],
    invalidDetails: [],
    devices: [
      { deviceName: 'dev1', iotId: 'iot-1', deviceSecret: 'S3cr3t-dev1' },
      { deviceName: 'dev2', iotId: 'iot-2', deviceSecret: 'S3cr3t-dev2' },
    ],
    deviceCount: 2,
    history: [
      { status: 'CREATE', at: '2026-11-28T10:00:00.000Z' },
      { status: 'CREATE_SUCCESS', at: '2026-11-28T10:04:12.345Z' },
    ],
    ...overrides,
  };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ibw-results-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const modeOf = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;

describe('toResultJson', () => {
  it('uses the contract key order, sorted labels, 2-space indentation and a trailing newline', () => {
    const json = toResultJson(makeResult({ reason: undefined }));
    expect(json.endsWith('}\n')).toBe(true);
    expect(json.startsWith('{\n  "applyId": "1295006",\n')).toBe(true);
    const parsed = JSON.parse(json);
    expect(Object.keys(parsed)).toEqual([
      'applyId', 'productKey', 'name', 'labels', 'outcome', 'status', 'firstSeenAt', 'settledAt', 'polls',
      'validNames', 'invalidNames', 'invalidDetails', 'devices', 'deviceCount', 'history', 'reason',
    ]);
    expect(Object.keys(parsed.labels)).toEqual(['line', 'site']);
    expect(parsed.reason).toBeNull();
    expect(Object.keys(parsed.devices[0])).toEqual(['deviceName', 'iotId', 'deviceSecret']);
  });

  it('does not depend on the key order of its input', () => {
    const a = makeResult();
    const b = Object.fromEntries(Object.entries(a).reverse()) as unknown as BatchResult;
    b.labels = { site: 'shanghai', line: '3' };
    a.labels = { line: '3', site: 'shanghai' };
    expect(toResultJson(b)).toBe(toResultJson(a));
  });

  it('normalises invalidDetails entries to deviceName, errors, nickName', () => {
    const json = toResultJson(
      makeResult({
        outcome: 'create_failed',
        invalidNames: ['x'],
        invalidDetails: [{ nickName: null, errors: ['too short'], deviceName: 'x' }],
      }),
    );
    expect(json).toContain('"invalidDetails": [\n    {\n      "deviceName": "x",\n      "errors": [\n        "too short"\n      ],\n      "nickName": null');
  });
});

describe('createResultWriter', () => {
  it('writes <resultsDir>/<productKey>/<applyId>.json with the contract content', async () => {
    const writer = createResultWriter({ resultsDir: path.join(dir, 'results'), includeSecrets: true });
    const result = makeResult();
    const file = await writer.write(result);
    expect(file).toBe(path.join(dir, 'results', 'a1BwAGVxxxx', '1295006.json'));
    const text = await readFile(file, 'utf8');
    expect(text).toBe(toResultJson(result));
    expect(JSON.parse(text).devices[1]).toEqual({ deviceName: 'dev2', iotId: 'iot-2', deviceSecret: 'S3cr3t-dev2' });
  });

  it('makes files with secrets 0600 and directories 0700, whatever the umask', async () => {
    const old = process.umask(0o000);
    try {
      const writer = createResultWriter({ resultsDir: path.join(dir, 'results'), includeSecrets: true });
      const file = await writer.write(makeResult());
      expect(await modeOf(file)).toBe(0o600);
      expect(await modeOf(path.dirname(file))).toBe(0o700);
      expect(await modeOf(path.join(dir, 'results'))).toBe(0o700);
    } finally {
      process.umask(old);
    }
  });

  it('tightens an existing product directory to 0700', async () => {
    const productDir = path.join(dir, 'a1BwAGVxxxx');
    await mkdir(productDir);
    await chmod(productDir, 0o755);
    const writer = createResultWriter({ resultsDir: dir, includeSecrets: true });
    await writer.write(makeResult());
    expect(await modeOf(productDir)).toBe(0o700);
  });

  it('strips deviceSecret when includeSecrets is false and writes 0644', async () => {
    const writer = createResultWriter({ resultsDir: dir, includeSecrets: false });
    const file = await writer.write(makeResult());
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain('deviceSecret');
    expect(text).not.toContain('S3cr3t');
    expect(JSON.parse(text).devices).toEqual([
      { deviceName: 'dev1', iotId: 'iot-1' },
      { deviceName: 'dev2', iotId: 'iot-2' },
    ]);
    expect(JSON.parse(text).deviceCount).toBe(2);
    expect(await modeOf(file)).toBe(0o644);
  });

  it('replaces a pre-existing file atomically and leaves no temp files', async () => {
    const writer = createResultWriter({ resultsDir: dir, includeSecrets: true });
    const productDir = path.join(dir, 'a1BwAGVxxxx');
    await mkdir(productDir, { recursive: true });
    const target = path.join(productDir, '1295006.json');
    await writeFile(target, '{"torn": tr', { mode: 0o644 });
    await writer.write(makeResult());
    expect(JSON.parse(await readFile(target, 'utf8')).outcome).toBe('created');
    expect(await modeOf(target)).toBe(0o600);
    expect(await readdir(productDir)).toEqual(['1295006.json']);
  });

  it('is idempotent: rewriting the same result gives the same bytes', async () => {
    const writer = createResultWriter({ resultsDir: dir, includeSecrets: true, fsyncDir: false });
    const file = await writer.write(makeResult());
    const first = await readFile(file);
    await writer.write(makeResult());
    // A fresh writer (a restarted process) produces the same bytes too.
    await createResultWriter({ resultsDir: dir, includeSecrets: true }).write(makeResult());
    expect((await readFile(file)).equals(first)).toBe(true);
    expect(await readdir(path.dirname(file))).toEqual(['1295006.json']);
  });

  it('serialises concurrent writes of the same target (last one wins, nothing torn)', async () => {
    const writer = createResultWriter({ resultsDir: dir, includeSecrets: true });
    const results = Array.from({ length: 8 }, (_, i) => makeResult({ polls: i }));
    const files = await Promise.all(results.map((r) => writer.write(r)));
    expect(new Set(files).size).toBe(1);
    expect(JSON.parse(await readFile(files[0]!, 'utf8')).polls).toBe(7);
    expect(await readdir(path.dirname(files[0]!))).toEqual(['1295006.json']);
  });

  it.each([
    ['applyId', '../etc'],
    ['applyId', '..'],
    ['applyId', 'a/b'],
    ['applyId', 'a\\b'],
    ['applyId', 'a\0b'],
    ['applyId', ''],
    ['productKey', '..'],
    ['productKey', '/abs'],
  ])('rejects an unsafe %s %j without writing anything', async (field, value) => {
    const writer = createResultWriter({ resultsDir: path.join(dir, 'results'), includeSecrets: true });
    const err = await writer.write(makeResult({ [field]: value })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).code).toBe('UnsafePathSegment');
    expect(await readdir(dir)).toEqual([]);
  });

  it('accepts ApplyIds beyond 2^53 as strings, unchanged', async () => {
    const writer = createResultWriter({ resultsDir: dir, includeSecrets: false });
    const file = await writer.write(makeResult({ applyId: '9007199254740993' }));
    expect(path.basename(file)).toBe('9007199254740993.json');
    expect(await readFile(file, 'utf8')).toContain('"applyId": "9007199254740993"');
  });

  it('refuses a symlinked product directory inside resultsDir: no secret written anywhere, no mode changed', async () => {
    const resultsDir = path.join(dir, 'results');
    const outside = path.join(dir, 'outside');
    await mkdir(resultsDir);
    await mkdir(outside);
    await chmod(outside, 0o755);
    await symlink(outside, path.join(resultsDir, 'a1BwAGVxxxx'));
    const writer = createResultWriter({ resultsDir, includeSecrets: true });
    const err = await writer.write(makeResult()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect((err as DaemonError).code).toBe('UnsafePath');
    expect((err as DaemonError).kind).toBe('store');
    expect((err as DaemonError).message).toContain(`refusing ${path.join(resultsDir, 'a1BwAGVxxxx')}: it is a symbolic link`);
    expect(await modeOf(outside)).toBe(0o755);
    // The DeviceSecrets are nowhere: not in the link's target, not in a temp file, not anywhere under the test dir.
    expect(await readdir(outside)).toEqual([]);
    expect(await filesContaining(dir, 'S3cr3t')).toEqual([]);
  });

  it('writes through a resultsDir that is itself a symlink the operator chose', async () => {
    await mkdir(path.join(dir, 'real'));
    await symlink(path.join(dir, 'real'), path.join(dir, 'results'));
    const writer = createResultWriter({ resultsDir: path.join(dir, 'results'), includeSecrets: true });
    const file = await writer.write(makeResult());
    expect(file).toBe(path.join(dir, 'results', 'a1BwAGVxxxx', '1295006.json'));
    expect(await readFile(path.join(dir, 'real', 'a1BwAGVxxxx', '1295006.json'), 'utf8')).toBe(toResultJson(makeResult()));
  });

  it('recreates resultsDir when it is removed after the first write', async () => {
    const resultsDir = path.join(dir, 'results');
    const writer = createResultWriter({ resultsDir, includeSecrets: true });
    await writer.write(makeResult());
    await rm(resultsDir, { recursive: true });
    const file = await writer.write(makeResult());
    expect(JSON.parse(await readFile(file, 'utf8')).applyId).toBe('1295006');
  });

  it('fails fast with the path and errno for a resultsDir under /proc, at prepare() and at write()', { timeout: 2000 }, async () => {
    const writer = createResultWriter({ resultsDir: '/proc/ibw-results/x', includeSecrets: true });
    const atPrepare = await writer.prepare().catch((e: unknown) => e);
    expect(atPrepare).toBeInstanceOf(DaemonError);
    expect((atPrepare as DaemonError).code).toBe('ENOENT');
    expect((atPrepare as DaemonError).message).toContain('output.resultsDir /proc/ibw-results/x');
    const atWrite = await writer.write(makeResult()).catch((e: unknown) => e);
    expect(atWrite).toBeInstanceOf(DaemonError);
    expect((atWrite as DaemonError).message).toContain('mkdir /proc/ibw-results failed');
  });
});

/** Paths of the files under `root` (recursively, symlinks not followed) whose bytes contain `needle`. */
async function filesContaining(root: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    if ((await readFile(file, 'utf8')).includes(needle)) found.push(file);
  }
  return found;
}
