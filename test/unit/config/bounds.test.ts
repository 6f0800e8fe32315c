import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadConfigFile, parseConfigText } from '../../../src/config/load.js';
import { DEFAULT_MAX_CONFIG_BYTES, maxConfigBytes, readConfigFile } from '../../../src/config/read-file.js';
import { MAX_TEXT_LENGTH } from '../../../src/config/schema.js';
import { ConfigError } from '../../../src/errors.js';

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.file}:${i.line}:${i.col}: ${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error('no ConfigError');
}

async function rejection(p: Promise<unknown>): Promise<string[]> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.file}:${i.line}:${i.col}: ${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error('no ConfigError');
}

describe('length caps on names and labels', () => {
  const long = 'n'.repeat(MAX_TEXT_LENGTH + 1);
  const ok = 'n'.repeat(MAX_TEXT_LENGTH);
  const file = (name: string, labels: string) =>
    `alibaba: { regionId: cn-shanghai }\nbatches:\n  - applyId: "1"\n    productKey: p\n    name: ${name}\n    labels:\n${labels}`;

  it(`accepts ${MAX_TEXT_LENGTH} characters`, () => {
    const c = parseConfigText(file(ok, `      ${ok}: ${ok}\n`), 'w.yaml', { env: {}, cwd: '/' });
    expect(c.batches[0]?.name).toHaveLength(MAX_TEXT_LENGTH);
  });

  it('refuses a longer name, label name and label value with file:line:col, without echoing them whole', () => {
    const issues = issuesOf(() => parseConfigText(file(long, `      ${long}: v\n      k: ${long}\n`), 'w.yaml', { env: {}, cwd: '/' }));
    expect(issues).toHaveLength(3);
    expect(issues[0]).toMatch(/^w\.yaml:5:11: batches\[0\]\.name: expected a non-empty string of at most 256 characters, got `"n{60}…"` \(string\)$/);
    expect(issues[1]).toMatch(/^w\.yaml:7:7: batches\[0\]\.labels\["n{60}…"\]: expected a non-empty label name of at most 256 characters/);
    expect(issues[2]).toMatch(/^w\.yaml:8:10: batches\[0\]\.labels\.k: expected a string of at most 256 characters/);
    for (const issue of issues) expect(issue.length).toBeLessThan(400);
  });
});

describe('bounded reads of the config file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibw-bounds-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a file above the limit before reading it (a sparse 100 MB file)', async () => {
    const big = join(dir, 'big.yaml');
    const handle = await open(big, 'w');
    await handle.truncate(100 * 1024 * 1024);
    await handle.close();
    const issues = await rejection(loadConfigFile(big, { env: {} }));
    expect(issues).toEqual([
      `${big}:0:0: : the file is 100.0 MiB, more than the limit of 64.0 MiB (${DEFAULT_MAX_CONFIG_BYTES} bytes; IBW_CONFIG_MAX_BYTES raises it)`,
    ]);
  });

  it('IBW_CONFIG_MAX_BYTES sets the limit; a bad value is an env error', async () => {
    const small = join(dir, 'small.yaml');
    await writeFile(small, 'alibaba: { regionId: cn-shanghai }\n');
    expect((await rejection(loadConfigFile(small, { env: { IBW_CONFIG_MAX_BYTES: '10' } })))[0]).toMatch(/more than the limit of 0\.0 MiB \(10 bytes/);
    await expect(loadConfigFile(small, { env: { IBW_CONFIG_MAX_BYTES: '35' } })).resolves.toBeDefined();
    expect(issuesOf(() => maxConfigBytes({ IBW_CONFIG_MAX_BYTES: '64MB' }))).toEqual([
      'env:0:0: IBW_CONFIG_MAX_BYTES: expected a positive number of bytes, got `"64MB"`',
    ]);
  });

  it('refuses a FIFO without hanging', async () => {
    const fifo = join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    expect(await rejection(readConfigFile(fifo))).toEqual([`${fifo}:0:0: : expected a regular file, got a FIFO (named pipe)`]);
  });

  it('refuses a character device (/dev/urandom) and a directory', async () => {
    expect(await rejection(readConfigFile('/dev/urandom'))).toEqual(['/dev/urandom:0:0: : expected a regular file, got a character device']);
    expect((await rejection(readConfigFile(dir)))[0]).toMatch(/expected a regular file, got a directory|it is a directory/);
  });

  it('hashes what it read: same bytes, same hash; different bytes, different hash', async () => {
    const f = join(dir, 'h.yaml');
    await writeFile(f, 'a: 1\n');
    const a = await readConfigFile(f);
    const b = await readConfigFile(f);
    await writeFile(f, 'a: 2\n');
    const c = await readConfigFile(f);
    expect(a.hash).toBe(b.hash);
    expect(c.hash).not.toBe(a.hash);
    expect(c.text).toBe('a: 2\n');
    expect(c.size).toBe(5);
  });
});
