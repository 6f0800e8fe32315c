/**
 * Writes config/scenario.schema.json from the simulator's zod schema (part of `npm run gen:schema`). `--check`
 * exits 1 when the committed file is out of date instead of writing it.
 */

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { renderScenarioJsonSchema } from '../src/simulator/scenario-schema.js';

const target = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'config', 'scenario.schema.json');
const text = renderScenarioJsonSchema();

if (process.argv.includes('--check')) {
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
