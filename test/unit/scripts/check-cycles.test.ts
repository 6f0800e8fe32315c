import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { findCycles, importGraph, tsFiles, valueImports } from '../../../scripts/check-cycles.js';

describe('check-cycles (the lint step that replaces import-x/no-cycle)', () => {
  it('counts value imports, re-exports and literal dynamic imports; not type-only ones or packages', () => {
    const text = [
      "import { a } from './a.js';",
      "import type { B } from './b.js';",
      "import { type C, type D } from './c.js';",
      "import { type E, f } from './e.js';",
      "export { g } from './g.js';",
      "export type { H } from './h.js';",
      "import pino from 'pino';",
      "import {\n  x,\n  y,\n} from './multi.js';",
      "async function later() { return import('./lazy.js'); }",
    ].join('\n');
    expect(valueImports('x.ts', text)).toEqual(['./a.js', './e.js', './g.js', './multi.js', './lazy.js']);
  });

  it('finds a cycle through value imports and ignores one closed only by a type import', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cycles-'));
    const files: Record<string, string> = {
      'a.ts': "import { b } from './b.js';\nexport const a = b;",
      'b.ts': "import { c } from './c.js';\nexport const b = c;",
      'c.ts': "import { a } from './a.js';\nexport const c = 1; void a;",
      'd.ts': "import type { E } from './e.js';\nexport type D = E;",
      'e.ts': "import { d } from './d.js';\nexport type E = number; void d;",
      'lone.ts': 'export const lone = 1;',
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const paths = Object.keys(files).map((n) => join(dir, n));
    const cycles = findCycles(importGraph(paths, (f) => readFileSync(f, 'utf8')));
    expect(cycles.map((c) => c.map((f) => f.slice(dir.length + 1)).sort())).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('the sources have no import cycle', () => {
    const src = join(import.meta.dirname, '../../../src');
    expect(findCycles(importGraph(tsFiles(src), (f) => readFileSync(f, 'utf8')))).toEqual([]);
  });
});
