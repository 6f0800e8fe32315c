/**
 * Fuzz smoke: whatever the input, the loader returns a CompiledConfig or throws a ConfigError whose issues all
 * have a position inside the file and a message — never another error. Seeded, a few hundred runs each.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { parseConfigText } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLE = readFileSync(path.join(root, 'config/watcher.yaml'), 'utf8');
const SEED = 20_261_128;

/** True when the outcome is acceptable; throws (failing the property) otherwise. */
function loadsOrConfigError(text: string): boolean {
  const lineCount = text.split('\n').length;
  try {
    parseConfigText(text, 'fuzz.yaml', { cwd: '/fuzz' });
    return true;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.issues.length).toBeGreaterThan(0);
    for (const issue of err.issues) {
      expect(issue.file).toBe('fuzz.yaml');
      expect(issue.message.length).toBeGreaterThan(0);
      expect(issue.line).toBeGreaterThanOrEqual(1);
      expect(issue.line).toBeLessThanOrEqual(lineCount + 1);
      expect(issue.col).toBeGreaterThanOrEqual(1);
    }
    return true;
  }
}

const yamlChar = fc.constantFrom(
  ...'abcdefgxyz0123456789 :-_{}[],"\'#&*!|>?.\n\t%@`'.split(''),
  'alibaba',
  'regionId',
  'batches',
  'applyId',
  'polling',
  '  ',
  '\n  ',
  '- ',
  ': ',
);

const yamlText = fc.array(yamlChar, { maxLength: 80 }).map((parts) => parts.join(''));

const fragment = fc.oneof(
  fc.constantFrom(
    '',
    ':',
    '- ',
    '*a',
    '&a ',
    '{',
    ']',
    '"',
    '\n',
    '  ',
    '9007199254740993',
    '-1',
    '1.5s',
    '0',
    'null',
    '~',
    '[]',
    '{}',
    'true',
    '!!binary ',
    '<<: *a',
    '? ',
    '\t',
    'x: y',
  ),
  fc.string({ maxLength: 12 }),
);

/** Random edits of the valid example: delete, insert, replace a line, swap two lines. */
const mutatedExample = fc
  .array(
    fc.tuple(fc.constantFrom('delete', 'insert', 'replaceLine', 'swapLines'), fc.nat(), fc.nat(), fragment),
    { minLength: 1, maxLength: 4 },
  )
  .map((edits) => {
    let text = EXAMPLE;
    for (const [kind, a, b, piece] of edits) {
      const lines = text.split('\n');
      const i = a % Math.max(1, text.length);
      if (kind === 'delete') text = text.slice(0, i) + text.slice(i + 1 + (b % 20));
      else if (kind === 'insert') text = text.slice(0, i) + piece + text.slice(i);
      else if (kind === 'replaceLine') {
        const li = a % lines.length;
        lines[li] = lines[li]!.replace(/:.*$/, `: ${piece}`);
        text = lines.join('\n');
      } else {
        const x = a % lines.length;
        const y = b % lines.length;
        [lines[x], lines[y]] = [lines[y]!, lines[x]!];
        text = lines.join('\n');
      }
    }
    return text;
  });

describe('config fuzz smoke', () => {
  it('random YAML-ish text never throws anything but ConfigError', () => {
    fc.assert(fc.property(yamlText, loadsOrConfigError), { numRuns: 300, seed: SEED });
  });

  it('random edits of the valid example never throw anything but ConfigError', () => {
    fc.assert(fc.property(mutatedExample, loadsOrConfigError), { numRuns: 300, seed: SEED });
  });

  it('random JavaScript values never throw anything but ConfigError from compileConfigObject', () => {
    const valid = { alibaba: { regionId: 'cn-shanghai' }, batches: [{ applyId: '1', productKey: 'p' }] };
    const arbitrary = fc.oneof(
      fc.anything(),
      fc.record({ alibaba: fc.anything(), polling: fc.anything(), batches: fc.anything() }, { requiredKeys: [] }),
      fc.record({ alibaba: fc.constant(valid.alibaba), batches: fc.array(fc.dictionary(fc.constantFrom('applyId', 'productKey', 'polling', 'labels', 'until', 'register'), fc.anything())) }),
    );
    fc.assert(
      fc.property(arbitrary, (raw) => {
        try {
          compileConfigObject(raw, { cwd: '/fuzz' });
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          for (const issue of err.issues) expect(issue).toMatchObject({ file: '<object>', line: 0, col: 0 });
        }
        return true;
      }),
      { numRuns: 300, seed: SEED },
    );
    expect(compileConfigObject(valid).batches).toHaveLength(1);
  });
});
