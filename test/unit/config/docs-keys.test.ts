/**
 * docs/configuration.md documents exactly the keys of the zod schema: every table row whose first cell is a
 * dotted key in backticks is compared with the schema's leaf keys, both ways.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { listSchemaKeys } from '../../../src/config/schema.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function documentedKeys(markdown: string): string[] {
  const keys: string[] = [];
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`([A-Za-z][A-Za-z0-9]*(?:\[\])?(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\])?)+)`\s*\|/.exec(line);
    if (m !== null) keys.push(m[1]!);
  }
  return keys;
}

describe('docs/configuration.md', () => {
  const docs = readFileSync(path.join(root, 'docs/configuration.md'), 'utf8');
  const documented = documentedKeys(docs);
  const schemaKeys = listSchemaKeys();

  it('finds the schema keys, including batches[] entries and per-batch polling', () => {
    expect(schemaKeys).toContain('polling.initialDelay');
    expect(schemaKeys).toContain('batches[].applyId');
    expect(schemaKeys).toContain('batches[].polling.maxDelay');
    expect(schemaKeys).toContain('output.webhook.url');
    expect(schemaKeys.length).toBeGreaterThan(40);
  });

  it('documents every schema key', () => {
    expect(schemaKeys.filter((k) => !documented.includes(k))).toEqual([]);
  });

  it('documents no key the schema does not have, and none twice', () => {
    expect(documented.filter((k) => !schemaKeys.includes(k))).toEqual([]);
    expect(documented.filter((k, i) => documented.indexOf(k) !== i)).toEqual([]);
  });

  it('documents the environment variables', () => {
    for (const name of [
      'IBW_CONFIG',
      'LOG_LEVEL',
      'LOG_FORMAT',
      'ALIBABA_CLOUD_ACCESS_KEY_ID',
      'ALIBABA_CLOUD_ACCESS_KEY_SECRET',
      'ALIBABA_CLOUD_SECURITY_TOKEN',
      'ALIBABA_CLOUD_ACCESS_KEY_ID_FILE',
      'IBW_WEBHOOK_SECRET',
    ]) {
      expect(docs).toContain(`| \`${name}\``);
    }
  });
});
