/**
 * Bad input, configuration: fast-check feeds `validate` (validateCommand, in-process) random YAML text and random
 * mutations of config/watcher.yaml. It must never throw or leave an unhandled rejection; it always exits 0 or 2,
 * and exit 2 always comes with at least one `file:line:col: path: message` line.
 */
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { validateCommand } from '../../src/config/validate-command.js';
import { REPO } from '../helpers/child.js';
import { profile, tempDir, writeReport } from './helpers.js';

const RUNS = profile(300, 3000);
const EXAMPLE = readFileSync(join(REPO, 'config/watcher.yaml'), 'utf8');
const EXAMPLE_LINES = EXAMPLE.split('\n');
/** `file:line:col: path: message` with line and col numbers. */
const ISSUE_LINE = /^.+:\d+:\d+: .+: .+$/;
/** A problem line whose path is blank (a key made of spaces): well-formed, but hard to read. */
const BLANK_PATH = /^.+:\d+:\d+: \s+: /;

interface Tally {
  cases: number;
  ok: number;
  invalid: number;
}

const WEIRD_SCALARS = [
  '',
  '~',
  'null',
  'true',
  'no',
  '0',
  '-1',
  '1e309',
  '.nan',
  '-.inf',
  '9007199254740993',
  '99999999999999999999999',
  '"9007199254740993"',
  '0x1F',
  '0o17',
  '[]',
  '{}',
  '[1, 2',
  '{a: 1',
  '"unterminated',
  "'",
  '*nope',
  '&a x',
  '!!binary AAAA',
  '!!js/function x',
  '2s',
  '-5m',
  '1h30m',
  '10000000000000d',
  '999999ms',
  '"*/1 * * * *"',
  '"61 * * * *"',
  'off',
  '0.0.0.0:99999',
  '127.0.0.1:0',
  'http://iot.example.com',
  'https://user:pw@x.example.com/path?q',
  '|\n  block',
  '>-\n  folded',
  '"\\u0000"',
  '\t',
  '💥',
  'a'.repeat(5000),
];

/** A mutation of the example file, applied line-wise. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof<fc.Arbitrary<Mutation>[]>(
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('swap' as const), at: fc.nat(), to: fc.nat() }),
  fc.record({ op: fc.constant('scalar' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...WEIRD_SCALARS), fc.string({ maxLength: 20 })) }),
  fc.record({ op: fc.constant('indent' as const), at: fc.nat(), by: fc.integer({ min: -4, max: 4 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('unknownKey: 1', '  - applyId: 1', '- x', ': :', '? complex', '---', '...', 'batches: []', '<<: *a')) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
);

interface Mutation {
  op: 'delete' | 'duplicate' | 'swap' | 'scalar' | 'indent' | 'insert' | 'truncate';
  at: number;
  to?: number;
  value?: string;
  by?: number;
  text?: string;
}

function mutate(lines: string[], m: Mutation): string[] {
  const out = [...lines];
  if (out.length === 0) return out;
  const i = m.at % out.length;
  switch (m.op) {
    case 'delete':
      out.splice(i, 1);
      break;
    case 'duplicate':
      out.splice(i, 0, out[i]!);
      break;
    case 'swap': {
      const j = (m.to ?? 0) % out.length;
      [out[i], out[j]] = [out[j]!, out[i]!];
      break;
    }
    case 'scalar': {
      const line = out[i]!;
      const colon = line.indexOf(': ');
      if (colon !== -1) out[i] = `${line.slice(0, colon + 2)}${m.value ?? ''}`;
      else out[i] = `${line}${m.value ?? ''}`;
      break;
    }
    case 'indent': {
      const by = m.by ?? 0;
      out[i] = by >= 0 ? `${' '.repeat(by)}${out[i]!}` : out[i]!.replace(new RegExp(`^ {0,${-by}}`), '');
      break;
    }
    case 'insert':
      out.splice(i, 0, m.text ?? '');
      break;
    case 'truncate':
      out.length = Math.max(1, i);
      break;
  }
  return out;
}

/** Values of plausible and implausible types for known keys. */
const anyValue = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('2s', '0ms', '-1s', '5m', 'v1', 'v3', 'env', 'chain', 'off', '127.0.0.1:0', 'https://iot.example.com', 'created', 'checked'),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.bigInt({ min: 0n, max: 2n ** 64n }),
);
const section = (keys: string[]) => fc.dictionary(fc.constantFrom(...keys, 'typo'), anyValue, { maxKeys: keys.length + 1 });
const batch = fc.dictionary(
  fc.constantFrom('applyId', 'productKey', 'name', 'until', 'register', 'iotInstanceId', 'regionId', 'labels', 'polling', 'extra'),
  fc.oneof(anyValue, fc.dictionary(fc.string({ maxLength: 6 }), anyValue, { maxKeys: 3 })),
  { maxKeys: 8 },
);
/** A structured random config: known sections with random contents, so validation goes deep. */
const structured = fc.record(
  {
    alibaba: fc.oneof(section(['regionId', 'endpoint', 'iotInstanceId', 'signatureVersion', 'requestTimeout', 'credentials']), anyValue),
    polling: fc.oneof(section(['initialDelay', 'maxDelay', 'multiplier', 'stalledAfter', 'timeout', 'awaitingRegistrationDelay']), anyValue),
    rateLimit: section(['statusQps', 'pageQps', 'concurrency']),
    devices: section(['fetch', 'includeSecrets']),
    state: section(['dir']),
    output: fc.oneof(section(['resultsDir', 'eventsFile']), fc.record({ webhook: section(['url', 'secretEnv', 'timeout']) })),
    http: section(['listen']),
    housekeeping: section(['reloadConfig', 'summary', 'prune', 'retention']),
    batches: fc.oneof(fc.array(batch, { maxLength: 4 }), anyValue),
  },
  { requiredKeys: [] },
);

describe('fuzz: the configuration loader through validate', () => {
  let dir = '';
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  const tallies: Record<string, Tally> = {};
  beforeAll(async () => {
    dir = await tempDir('fuzz-config');
    process.on('unhandledRejection', onUnhandled);
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    if (dir) await rm(dir, { recursive: true, force: true });
    const total = Object.values(tallies).reduce((a, t) => a + t.cases, 0);
    writeReport('fuzz-config', { cases: total, byGenerator: tallies, unhandledRejections: unhandled.length, problemLinesWithBlankPath: blankPaths });
  });

  let n = 0;
  let blankPaths = 0;
  async function check(text: string, kind: string): Promise<void> {
    n += 1;
    const file = join(dir, `case-${n}.yaml`);
    await writeFile(file, text);
    const out: string[] = [];
    const err: string[] = [];
    let code: number;
    try {
      // --no-env: this suite is about the file; validate's environment checks (issue #13.6) are tested elsewhere.
      code = await validateCommand(['--config', file, '--no-env'], {
        stdout: { write: (s: string) => out.push(s) },
        stderr: { write: (s: string) => err.push(s) },
        env: {},
        cwd: dir,
      });
    } catch (e) {
      throw new Error(`validate threw on ${kind} input:\n${text.slice(0, 2000)}`, { cause: e });
    } finally {
      await rm(file, { force: true });
    }
    const t = (tallies[kind] ??= { cases: 0, ok: 0, invalid: 0 });
    t.cases += 1;
    if (code === 0) {
      t.ok += 1;
      expect(out.join('')).toMatch(/^config OK: \d+ batch/);
      return;
    }
    t.invalid += 1;
    expect(code, `exit code for:\n${text.slice(0, 500)}`).toBe(2);
    const lines = out.join('').split('\n').filter((l) => l !== '');
    expect(lines.length, `no problem line for:\n${text.slice(0, 500)}`).toBeGreaterThan(0);
    for (const l of lines) expect(l, `not file:line:col: path: message`).toMatch(ISSUE_LINE);
    blankPaths += lines.filter((l) => BLANK_PATH.test(l)).length;
    expect(lines.every((l) => l.startsWith(file))).toBe(true);
  }

  it('the example file itself is valid (the mutations start from a good file)', async () => {
    await check(EXAMPLE, 'example');
    expect(tallies.example?.ok).toBe(1);
  });

  it(`random YAML text (${RUNS} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc.anything().map((v) => {
            try {
              return stringify(v) ?? '';
            } catch {
              return String(v);
            }
          }),
        ),
        async (text) => check(text, 'random-text'),
      ),
      { numRuns: RUNS, seed: 1001 },
    );
  });

  it(`random structured configurations (${RUNS} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(structured, async (raw) => {
        const text = stringify(raw) ?? '';
        await check(text, 'structured');
      }),
      { numRuns: RUNS, seed: 1002 },
    );
  });

  it(`random mutations of config/watcher.yaml (${RUNS} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 5 }), async (ms) => {
        let lines = EXAMPLE_LINES;
        for (const m of ms) lines = mutate(lines, m);
        await check(lines.join('\n'), 'mutation');
      }),
      { numRuns: RUNS, seed: 1003 },
    );
    // Let any stray promise surface before the check.
    await new Promise((r) => setTimeout(r, 50));
    expect(unhandled).toEqual([]);
  });
});
