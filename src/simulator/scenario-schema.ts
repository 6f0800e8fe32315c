/**
 * The JSON Schema of scenario files (`config/scenario.schema.json`, written by `npm run gen:schema`; a test checks
 * the committed file is current and that config/demo-scenario.yaml validates against it). Input side: defaults
 * shown, unknown keys forbidden. Cross-field rules (deviceNames only for custom, ...) are checked by the
 * simulator when it loads the file, with line and column.
 */
import { z } from 'zod';

import { scenarioSchema } from './scenario.js';

/** The schema document, as an object. */
export function buildScenarioJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(scenarioSchema, { io: 'input', target: 'draft-07' });
  return { ...schema, title: 'iot-batch-watcher simulator scenario' };
}

/** The exact text of `config/scenario.schema.json`. */
export function renderScenarioJsonSchema(): string {
  return `${JSON.stringify(buildScenarioJsonSchema(), null, 2)}\n`;
}
