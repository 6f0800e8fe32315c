/**
 * The incremental loader (src/config/incremental-load.ts) against the whole-file loader: for every text it must give
 * exactly what parseConfigText gives (including each batch's position), or throw the same issues, while reusing the
 * entries whose text did not change and yielding between chunks.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ENTRY_CHUNK, createIncrementalLoader, parseConfigSections, splitBatchEntries } from '../../../src/config/incremental-load.js';
import { parseConfigText } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const cwd = '/srv/ibw';
const FILE = 'watcher.yaml';

const HEAD = ['alibaba:', '  regionId: cn-shanghai', 'polling:', '  maxDelay: 30s', 'state:', '  dir: ./state'];

function entry(i: number, extra = ''): string[] {
  return [`  - applyId: "${1_000_000 + i}"`, '    productKey: a1BwAGVxxxx', `    name: line-${i}${extra}`];
}

function file(n: number, options: { head?: string[]; tail?: string[]; entry?: (i: number) => string[] } = {}): string {
  const lines = [...(options.head ?? HEAD), 'batches:'];
  for (let i = 0; i < n; i += 1) lines.push(...(options.entry ?? entry)(i));
  lines.push(...(options.tail ?? ['http:', '  listen: "off"']));
  return `${lines.join('\n')}\n`;
}

function outcome(run: () => unknown): unknown {
  try {
    return { ok: run() };
  } catch (err) {
    if (err instanceof ConfigError) return { issues: err.issues };
    throw err;
  }
}

async function outcomeAsync(run: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await run() };
  } catch (err) {
    if (err instanceof ConfigError) return { issues: err.issues };
    throw err;
  }
}

describe('createIncrementalLoader', () => {
  it('compiles what parseConfigText compiles, and on the next text compiles only the entries that changed', async () => {
    let yields = 0;
    const loader = createIncrementalLoader({
      cwd,
      yieldToLoop: () => {
        yields += 1;
        return Promise.resolve();
      },
    });
    const n = ENTRY_CHUNK * 2 + 5;
    const first = file(n);
    expect(await loader.compile(first, FILE)).toEqual(parseConfigText(first, FILE, { cwd }));
    // The first load is one whole-file pass (nothing else runs yet); it keeps its batches for the next one.
    expect(loader.last).toEqual({ path: 'whole' });
    expect(yields).toBe(0);

    // One batch added at the top: every other entry moves down three lines but is reused at its new position.
    const added = file(n + 1, { entry: (i) => entry(i === 0 ? 99_999 : i - 1) });
    const got = await loader.compile(added, FILE);
    expect(got).toEqual(parseConfigText(added, FILE, { cwd }));
    expect(loader.last).toEqual({ path: 'incremental', compiled: 1, reused: n });
    expect(yields).toBe(2);
    expect(got.batches[1]?.source).toEqual({ file: FILE, line: HEAD.length + 5, col: 5 });

    // One entry changed in place, one removed at the end.
    const changed = file(n - 1, { entry: (i) => entry(i, i === 7 ? '-b' : '') });
    expect(await loader.compile(changed, FILE)).toEqual(parseConfigText(changed, FILE, { cwd }));
    expect(loader.last).toEqual({ path: 'incremental', compiled: 1, reused: n - 2 });

    // A section changed: every entry inherits from it, so every entry is compiled again.
    const slower = file(n - 1, { head: [...HEAD.slice(0, 3), '  maxDelay: 5m', ...HEAD.slice(4)], entry: (i) => entry(i, i === 7 ? '-b' : '') });
    const recompiled = await loader.compile(slower, FILE);
    expect(recompiled).toEqual(parseConfigText(slower, FILE, { cwd }));
    expect(recompiled.batches[0]?.polling.maxDelayMs).toBe(300_000);
    expect(loader.last).toEqual({ path: 'incremental', compiled: n - 1, reused: 0 });
    expect(Object.isFrozen(recompiled.batches[3])).toBe(true);
  });

  it('gives the same issues as parseConfigText for an invalid file, and goes on incrementally once it is fixed', async () => {
    const loader = createIncrementalLoader({ cwd, yieldToLoop: () => Promise.resolve() });
    const good = file(30);
    await loader.compile(good, FILE);
    const bad = [
      file(30, { entry: (i) => (i === 4 ? ['  - applyId: "abc"', '    productKey: a1BwAGVxxxx'] : entry(i)) }),
      file(30, { entry: (i) => entry(i === 9 ? 3 : i) }), // a duplicate
      file(30, { entry: (i) => (i === 2 ? [...entry(i), '    polling: { initialDelay: 2m, maxDelay: 1m }'] : entry(i)) }),
      file(30, { entry: (i) => (i === 2 ? [...entry(i), '    until: checked', '    register: true'] : entry(i)) }),
      file(30, { entry: (i) => (i === 2 ? [...entry(i), '    colour: blue'] : entry(i)) }),
      file(30, { head: [...HEAD, 'unknownSection: 1'] }),
    ];
    for (const text of bad) {
      const want = outcome(() => parseConfigText(text, FILE, { cwd }));
      expect(want).toHaveProperty('issues');
      expect(await outcomeAsync(() => loader.compile(text, FILE))).toEqual(want);
    }
    const fixed = file(31);
    expect(await loader.compile(fixed, FILE)).toEqual(parseConfigText(fixed, FILE, { cwd }));
  });

  it('takes the whole-file path for layouts it does not cut, with the same result', async () => {
    const loader = createIncrementalLoader({ cwd, yieldToLoop: () => Promise.resolve() });
    const texts = [
      file(3, { entry: (i) => [`  - { applyId: "${10 + i}", productKey: a1BwAGVxxxx }`] }), // flow entries: cut fine
      `${HEAD.join('\n')}\nbatches: [{ applyId: "1", productKey: a1BwAGVxxxx }]\n`,
      `${HEAD.join('\n')}\nbatches:\n- applyId: "1"\n  productKey: a1BwAGVxxxx\n- applyId: "2"\n  productKey: a1BwAGVxxxx\n`,
      `${HEAD.join('\n')}\nbatches:\n  -\n    applyId: "1"\n    productKey: a1BwAGVxxxx\n  - applyId: "2" # two\n    productKey: a1BwAGVxxxx\n\n# done\n`,
      `${HEAD.join('\n')}\nbatches:\n  - &a { applyId: "1", productKey: a1BwAGVxxxx }\n`,
      `batches:\n  - applyId: "1"\n    productKey: a1BwAGVxxxx\n${HEAD.join('\n')}\n`,
      `${HEAD.join('\n')}\nbatches: []\n`,
      `${HEAD.join('\n')}\n`,
      readFileSync(path.join(root, 'config/watcher.yaml'), 'utf8'),
      readFileSync(path.join(root, 'config/demo.yaml'), 'utf8'),
      ...readdirSync(path.join(root, 'test/fixtures/config/bad')).map((f) => readFileSync(path.join(root, 'test/fixtures/config/bad', f), 'utf8')),
    ];
    for (const text of texts) {
      const want = outcome(() => parseConfigText(text, FILE, { cwd }));
      // Twice: the second load may reuse what the first kept.
      expect(await outcomeAsync(() => loader.compile(text, FILE))).toEqual(want);
      expect(await outcomeAsync(() => loader.compile(text, FILE))).toEqual(want);
    }
  });
});

describe('splitBatchEntries', () => {
  it('cuts the top-level batches block into entries with their first lines, and keeps the rest as the sections', () => {
    const text = file(2);
    const layout = splitBatchEntries(text);
    expect(layout?.entries).toEqual([
      { text: `${entry(0).join('\n')}\n`, line: HEAD.length + 2 },
      { text: `${entry(1).join('\n')}\n`, line: HEAD.length + 5 },
    ]);
    expect(layout?.sections).toBe(`${[...HEAD, 'batches:', 'http:', '  listen: "off"'].join('\n')}\n`);
    expect(splitBatchEntries(text.replace('batches:', 'batches: []'))).toBeNull();
    expect(splitBatchEntries(text.replace(/\n/g, '\r\n'))).toBeNull();
  });
});

describe('parseConfigSections', () => {
  it('compiles the sections without the entries, and reports a problem after the block at its own line', () => {
    const text = file(50, { entry: (i) => (i === 3 ? ['  - applyId: "abc"', '    productKey: a1BwAGVxxxx'] : entry(i)) });
    const whole = outcome(() => parseConfigText(text, FILE, { cwd }));
    expect(whole).toHaveProperty('issues');
    const sections = parseConfigSections(text, FILE, { cwd });
    const valid = parseConfigText(file(50), FILE, { cwd });
    expect(sections).toEqual({ ...valid, batches: [] });
    const bad = file(50, { tail: ['http:', '  listen: 12'] });
    const want = outcome(() => parseConfigText(bad, FILE, { cwd }));
    expect(want).toHaveProperty('issues');
    expect(outcome(() => parseConfigSections(bad, FILE, { cwd }))).toEqual(want);
  });
});

