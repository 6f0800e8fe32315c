/**
 * The fast YAML path (src/config/fast-yaml.ts) against the `yaml` package: whenever the fast reader accepts a
 * text, it must give exactly what `yaml` gives (core schema, integers as bigints, safe ones back to numbers), and it
 * must give up on every text that `yaml` reports an error or a warning for. Whole configurations must compile to
 * the same CompiledConfig (including each batch's position) on both paths.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';

import { fastParseYaml } from '../../../src/config/fast-yaml.js';
import { parseConfigText, parseConfigTextFully } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SEED = 1_414_2026;

function normalize(value: unknown): unknown {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = normalize(v);
    return out;
  }
  return value;
}

/** What `yaml` makes of a text, or null when it reports any error or warning. */
function reference(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, intAsBigInt: true, prettyErrors: false, logLevel: 'silent' });
  if (doc.errors.length > 0 || doc.warnings.length > 0) return null;
  try {
    return normalize(doc.toJS({ maxAliasCount: 100 }));
  } catch {
    return null;
  }
}

/** The property: the fast reader gives up, or agrees with `yaml` (which then must have accepted the text). */
function agrees(text: string): boolean {
  const fast = fastParseYaml(text);
  if (fast === null) return true;
  const ref = reference(text);
  expect(ref, `fast accepted a text yaml refuses:\n${text}`).not.toBeNull();
  expect(fast.value, text).toStrictEqual(ref);
  return true;
}

function compilesAlike(text: string): void {
  const run = (f: typeof parseConfigText) => {
    try {
      return { ok: f(text, 'w.yaml', { cwd: '/srv', env: {} }) };
    } catch (err) {
      if (err instanceof ConfigError) return { issues: err.issues };
      throw err;
    }
  };
  expect(run(parseConfigText)).toStrictEqual(run(parseConfigTextFully));
}

const TRICKY = [
  '2s', '500ms', '0x1F', '0o17', '017', '1e3', '1.5e-3', '.5', '-.5', '+1', '-0', '1.', '.inf', '-.Inf', '.NaN', 'null',
  'Null', 'NULL', '~', 'true', 'True', 'TRUE', 'tRue', 'false', 'on', 'yes', 'no', 'y', '12345678901234567890',
  '9007199254740993', '1295006', '0', 'a1BwAGVxxxx', 'cn-shanghai', 'http://127.0.0.1:8787', 'a:b', 'a: b', 'a #b',
  'a#b', "it's", 'say "hi"', ' spaced ', '', '-x', '- x', '?x', '@x', '%x', '!x', '&x', '*x', '|', '>', 'x,y', '[x]',
  '{x}', 'x]', 'éè', '*/15 * * * *', 'a\\b', '#', 'k:', '2026-11-28', '1_000', '0b101', '=', '<<',
];

const scalarText = fc.constantFrom(...TRICKY);
const quoting = fc.constantFrom('plain', 'single', 'double');

function renderScalar(text: string, q: string): string {
  if (q === 'single') return `'${text.replace(/'/g, "''")}'`;
  if (q === 'double') return `"${text}"`;
  return text;
}

type Tree = { kind: 'scalar'; text: string; q: string } | { kind: 'map'; entries: [string, Tree][] } | { kind: 'seq'; items: Tree[] };

const keyText = fc.constantFrom('applyId', 'productKey', 'name', 'labels', 'polling', 'site', 'a', 'b', 'on', 'null', '1', 'x y', 'k-1', '__proto__', 'batches');

const tree: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('scalar' as const), text: scalarText, q: quoting }),
    fc.record({ kind: fc.constant('map' as const), entries: fc.array(fc.tuple(keyText, tie('tree')), { maxLength: 4 }) }),
    fc.record({ kind: fc.constant('seq' as const), items: fc.array(tie('tree'), { maxLength: 4 }) }),
  ),
})).tree;

function renderFlow(t: Tree): string {
  if (t.kind === 'scalar') return renderScalar(t.text, t.q);
  if (t.kind === 'map') return `{ ${t.entries.map(([k, v]) => `${k}: ${renderFlow(v)}`).join(', ')} }`;
  return `[${t.items.map(renderFlow).join(', ')}]`;
}

interface Style {
  indent: number;
  compact: boolean;
  flowAt: number;
  comments: boolean;
}

function renderBlock(t: Tree, depth: number, pad: string, style: Style): string[] {
  if (t.kind === 'scalar' || depth >= style.flowAt) return [`${renderFlow(t)}`];
  const step = ' '.repeat(style.indent);
  if (t.kind === 'map') {
    if (t.entries.length === 0) return ['{}'];
    const out: string[] = [];
    for (const [k, v] of t.entries) {
      const inner = renderBlock(v, depth + 1, pad + step, style);
      if (v.kind !== 'scalar' && depth + 1 < style.flowAt && inner[0] !== '{}' && inner[0] !== '[]') {
        out.push(`${pad}${k}:${style.comments ? ' # c' : ''}`);
        const childPad = v.kind === 'seq' && style.compact ? pad : pad + step;
        out.push(...renderBlock(v, depth + 1, childPad, style));
      } else {
        out.push(`${pad}${k}: ${inner[0]}`);
      }
    }
    return out;
  }
  if (t.items.length === 0) return ['[]'];
  const out: string[] = [];
  for (const item of t.items) {
    if (item.kind === 'map' && item.entries.length > 0 && depth + 1 < style.flowAt) {
      const lines = renderBlock(item, depth + 1, `${pad}  `, style);
      out.push(`${pad}- ${lines[0]!.slice(pad.length + 2)}`, ...lines.slice(1));
    } else if (item.kind === 'seq' && item.items.length > 0 && depth + 1 < style.flowAt) {
      out.push(`${pad}-`, ...renderBlock(item, depth + 1, pad + step, style));
    } else {
      out.push(`${pad}- ${renderBlock(item, depth + 1, pad + step, style)[0]}`);
    }
  }
  return out;
}

const style: fc.Arbitrary<Style> = fc.record({
  indent: fc.constantFrom(2, 4),
  compact: fc.boolean(),
  flowAt: fc.constantFrom(1, 2, 3, 9),
  comments: fc.boolean(),
});

describe('fast YAML reader', () => {
  it('agrees with yaml on every configuration file in the repository', () => {
    const files = [
      ...['config/watcher.yaml', 'config/demo.yaml'].map((f) => path.join(root, f)),
      ...readdirSync(path.join(root, 'test/fixtures/config/bad')).map((f) => path.join(root, 'test/fixtures/config/bad', f)),
    ];
    let accepted = 0;
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      if (fastParseYaml(text) !== null) accepted += 1;
      agrees(text);
      compilesAlike(text);
    }
    // The shipped examples are in the subset: the fast path is really taken for them.
    expect(fastParseYaml(readFileSync(path.join(root, 'config/watcher.yaml'), 'utf8'))).not.toBeNull();
    expect(accepted).toBeGreaterThan(2);
  });

  it('agrees with yaml on generated documents (block and flow, every quoting, comments)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(keyText, tree), { minLength: 1, maxLength: 4 }),
        style,
        fc.boolean(),
        (entries, s, dashes) => {
          const top: Tree = { kind: 'map', entries };
          const text = `${dashes ? '---\n' : ''}${renderBlock(top, 0, '', s).join('\n')}\n`;
          if (fastParseYaml(text) !== null) accepted += 1;
          return agrees(text);
        },
      ),
      { seed: SEED, numRuns: 1500 },
    );
    expect(accepted).toBeGreaterThan(300); // the property is not vacuous: many documents take the fast path
  });

  it('agrees with yaml on random one-character edits of the example', () => {
    const example = readFileSync(path.join(root, 'config/watcher.yaml'), 'utf8');
    const chars = fc.constantFrom(' ', '\n', ':', '-', '#', '"', "'", '{', '}', '[', ']', ',', 'a', '1', '&', '*', '|', '\t', '?');
    fc.assert(
      fc.property(fc.nat({ max: example.length - 1 }), fc.constantFrom('insert', 'delete', 'replace'), chars, (at, op, ch) => {
        const text =
          op === 'insert' ? example.slice(0, at) + ch + example.slice(at) : op === 'delete' ? example.slice(0, at) + example.slice(at + 1) : example.slice(0, at) + ch + example.slice(at + 1);
        agrees(text);
        compilesAlike(text);
        return true;
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('compiles generated configurations alike on both paths, batch positions included', () => {
    const batch = fc.record({
      applyId: fc.constantFrom('"1295006"', '1295006', '"9007199254740993"', '9007199254740993', '0', '"01"'),
      productKey: fc.constantFrom('a1SimProduct1', 'a1SimProduct2', '"a1 bad"'),
      name: fc.option(fc.constantFrom('line-3', "'it''s'", '"quoted"', 'x #comment', 'a: b'), { nil: undefined }),
      labels: fc.option(fc.constantFrom('{ site: sh }', '{ n: 3 }', '{}', '{ a: "1", b: x }'), { nil: undefined }),
      polling: fc.option(fc.constantFrom('{ maxDelay: 5m }', '{ initialDelay: 2m, maxDelay: 1m }', '{ timeout: soon }'), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(batch, { maxLength: 6 }), fc.boolean(), fc.boolean(), (batches, flow, compact) => {
        const pad = compact ? '' : '  ';
        const lines = ['alibaba:', '  regionId: cn-shanghai', 'http: { listen: "off" }', 'batches:'];
        for (const b of batches) {
          const pairs = Object.entries(b).filter(([, v]) => v !== undefined) as [string, string][];
          if (flow) lines.push(`${pad}- { ${pairs.map(([k, v]) => `${k}: ${v}`).join(', ')} }`);
          else pairs.forEach(([k, v], i) => lines.push(`${pad}${i === 0 ? '- ' : '  '}${k}: ${v}`));
        }
        if (batches.length === 0) lines[lines.length - 1] = 'batches: []';
        compilesAlike(`${lines.join('\n')}\n`);
        return true;
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('gives up on what is outside the subset', () => {
    for (const text of [
      'a: &x 1\nb: *x\n',
      'a: !!str 1\n',
      'a: |\n  text\n',
      'a: plain\n  continued\n',
      'a: 1\na: 2\n',
      '? a\n: 1\n',
      'a: "esc\\n"\n',
      '\tx: 1\n',
      'a: 1\r\n',
      '---\na: 1\n---\nb: 2\n',
      '- a\n',
      '1: x\n',
      '__proto__: 1\n',
      'batches: [{ applyId: "1", productKey: p }]\n',
    ]) {
      expect(fastParseYaml(text), JSON.stringify(text)).toBeNull();
      agrees(text);
    }
  });
});
