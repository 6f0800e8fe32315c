/**
 * The container image's node options (Dockerfile `ENV NODE_OPTIONS`), which the real-path benchmarks read so that
 * they measure the daemon as the image runs it (test/bench/cli-child.ts `imageNodeOptions`).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { imageNodeOptions } from '../../bench/cli-child.js';

const dir = mkdtempSync(path.join(tmpdir(), 'ibw-dockerfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function dockerfile(text: string): string {
  files += 1;
  const file = path.join(dir, `Dockerfile-${files}`);
  writeFileSync(file, text);
  return file;
}

describe('the image node options', () => {
  it('caps the young generation in the real Dockerfile (a V8 option node cannot change once it runs)', () => {
    expect(imageNodeOptions()).toEqual(['--max-semi-space-size=4']);
  });

  it('reads NODE_OPTIONS from a continued ENV block, quoted or not, and [] when there is none', () => {
    expect(imageNodeOptions(dockerfile('FROM x\nENV NODE_ENV=production \\\n    NODE_OPTIONS=--a=1 \\\n    B=2\n'))).toEqual(['--a=1']);
    expect(imageNodeOptions(dockerfile('FROM x\nENV NODE_OPTIONS="--a=1 --b"\n'))).toEqual(['--a=1', '--b']);
    expect(imageNodeOptions(dockerfile('FROM x\nENV NODE_ENV=production\nCMD ["node", "dist/cli.js"]\n'))).toEqual([]);
  });
});
