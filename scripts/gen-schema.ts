/**
 * Writes the generated JSON Schemas (`npm run gen:schema`): config/watcher.schema.json from the configuration's
 * zod schema and config/scenario.schema.json from the simulator's. `--check` exits 1 when a committed file is out
 * of date instead of writing it.
 */

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { renderJsonSchema } from '../src/config/json-schema.js';
import { renderScenarioJsonSchema } from '../src/simulator/scenario-schema.js';

const configDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'config');
const schemas: [file: string, render: () => string][] = [
  ['watcher.schema.json', renderJsonSchema],
  ['scenario.schema.json', renderScenarioJsonSchema],
];
const check = process.argv.includes('--check');

for (const [file, render] of schemas) {
  const target = path.join(configDir, file);
  const text = render();
  if (check) {
    const current = await readFile(target, 'utf8').catch(() => '');
    if (current !== text) {
      console.error(`${target} is out of date: run npm run gen:schema`);
      process.exitCode = 1;
    } else {
      console.log(`${target} is up to date`);
    }
  } else {
    await writeFile(target, text);
    console.log(`wrote ${target}`);
  }
}
