/**
 * The JSON Schema of the configuration file, generated from the zod schema (`scripts/gen-schema.ts` writes it to
 * `config/watcher.schema.json`; a test checks the committed file is current). Input side: durations accept a
 * string or integer milliseconds, defaults are shown. Draft-07, which yaml-language-server and most editors know.
 */

import { z } from 'zod';

import { configSchema } from './schema.js';

/** The schema's `$id`-less JSON document, as an object. */
export function buildJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-07' });
  // NOTE: `alibaba` is the one account without `accounts` and optional beside it (checkRootSections in
  // cross-checks.ts); zod cannot say "one of the two", so it is added here.
  return { ...schema, title: 'iot-batch-watcher configuration', anyOf: [{ required: ['alibaba'] }, { required: ['accounts'] }] };
}

/** The exact text of `config/watcher.schema.json`. */
export function renderJsonSchema(): string {
  return `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
}
