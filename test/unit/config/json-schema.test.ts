import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { buildJsonSchema, renderJsonSchema } from '../../../src/config/json-schema.js';
import { parseConfigText } from '../../../src/config/load.js';
import { listSchemaKeys } from '../../../src/config/schema.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (p: string): string => readFileSync(path.join(root, p), 'utf8');

describe('config/watcher.schema.json', () => {
  it('is the schema generated from the zod schema (run `npm run gen:schema` after changing it)', () => {
    expect(read('config/watcher.schema.json')).toBe(renderJsonSchema());
  });

  it('describes durations as a pattern string or integer milliseconds, and forbids unknown keys', () => {
    // A JSON round trip gives the untyped document, as an editor would read it.
    const schema = JSON.parse(JSON.stringify(buildJsonSchema()));
    const maxDelay = schema.properties.polling.properties.maxDelay;
    expect(maxDelay.default).toBe('60s');
    expect(maxDelay.anyOf.map((s: { type: string }) => s.type)).toEqual(['string', 'integer']);
    const pattern = new RegExp(maxDelay.anyOf[0].pattern);
    expect(['2s', '1h30m', '500ms'].every((d) => pattern.test(d))).toBe(true);
    expect(['soon', '1.5s', '500'].some((d) => pattern.test(d))).toBe(false);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.batches.items.additionalProperties).toBe(false);
    expect(schema.properties.batches.items.required).toEqual(['applyId', 'productKey']);
    // alibaba is required without accounts, optional beside them.
    expect(schema.required).toBeUndefined();
    expect(schema.anyOf).toEqual([{ required: ['alibaba'] }, { required: ['accounts'] }]);
  });
});

describe('example configurations', () => {
  it.each(['config/watcher.yaml', 'config/demo.yaml'])('%s is valid and points editors at the schema', (file) => {
    const text = read(file);
    expect(text.split('\n')[0]).toBe('# yaml-language-server: $schema=./watcher.schema.json');
    expect(() => parseConfigText(text, file, { cwd: root })).not.toThrow();
  });

  it('config/watcher.yaml shows every key (set or commented out)', () => {
    const text = read('config/watcher.yaml');
    const missing = listSchemaKeys()
      .map((k) => k.split('.').pop()!.replace('[]', ''))
      .filter((leaf) => !new RegExp(`(^|[\\s{,#-])${leaf}:`, 'm').test(text));
    expect(missing).toEqual([]);
  });

  it('config/demo.yaml targets the simulator with the scenario batches', () => {
    const c = parseConfigText(read('config/demo.yaml'), 'config/demo.yaml', { cwd: '/app' });
    expect(c.alibaba).toMatchObject({ endpoint: 'http://127.0.0.1:8787', signatureVersion: 'v3' });
    expect(c.polling).toMatchObject({ initialDelayMs: 200, maxDelayMs: 2_000 });
    expect(c.state.dir).toBe('/app/data/demo/state');
    expect(c.output).toMatchObject({ resultsDir: '/app/data/demo/results', eventsFile: '/app/data/demo/events.jsonl' });
    expect(c.http.listen).toEqual({ host: '127.0.0.1', port: 9465 });
    expect(c.batches.map((b) => [b.key, b.until, b.register])).toEqual([
      ['a1SimProduct1/1300001', 'created', false],
      ['a1SimProduct1/1300002', 'created', false],
      ['a1SimProduct2/1300003', 'created', false],
      ['a1SimProduct2/1300004', 'created', true],
      ['a1SimProduct1/9007199254740993', 'created', false],
    ]);
  });
});
