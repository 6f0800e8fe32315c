/**
 * Scenario files: YAML that preloads the simulator with products and batches, each batch with an outcome.
 *
 * ```yaml
 * iotInstanceId: null            # optional; a string makes the simulator an instance that requires it
 * products:                      # added to the simulator's --product-key list
 *   - a1DemoProduct1
 *   - productKey: a1DemoProduct2
 *     devices: [existing-01]     # devices already in the product (their names fail a check)
 * batches:
 *   - applyId: "1300001"         # a string (ApplyIds are Longs); generated when absent
 *     productKey: a1DemoProduct1
 *     mode: custom               # custom (deviceNames) | random (count)
 *     deviceNames: [lamp-0001, lamp-0002]
 *     registered: true           # custom: registered right after CHECK_SUCCESS (else waits for the caller)
 *     outcome: success           # success | check_failed | partial | slow | never
 *     checkMs: 2000              # optional timings, in simulated ms
 *     createMs: 3000
 *     ageMs: 0                   # the batch started this long before the simulator
 *     invalidNames: []           # check_failed: names that fail the check (default: the last one)
 *     failNames: []              # partial (custom): names that fail at create time (default: every 4th)
 *     failCount: 1               # partial (random): devices that fail at create time
 *     statusBackwardsOnce: false # once it advanced, one status answer shows the previous status
 *     unknownStatusOnce: false   # the first status answer is the unknown string PROCESSING
 * ```
 */
import { readFile } from 'node:fs/promises';

import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';

import { ConfigError, type ConfigIssue } from '../errors.js';

/** Largest Java Long, the type of ApplyId. */
const MAX_LONG = 9223372036854775807n;

/** How a preloaded batch ends. */
export type BatchOutcome = 'success' | 'check_failed' | 'partial' | 'slow' | 'never';

const applyIdSchema = z
  .string({ error: 'expected a numeric string (quote it: ApplyIds can exceed 2^53)' })
  .regex(/^[1-9][0-9]{0,18}$/, 'expected a positive integer of at most 19 digits, as a string')
  .refine((s) => BigInt(s) <= MAX_LONG, 'exceeds the largest Long (9223372036854775807)');

const durationSchema = z.number().finite().min(0);

/** Schema of one batch; also the argument of `control.addBatch`. */
export const scenarioBatchSchema = z
  .strictObject({
    applyId: applyIdSchema.optional().describe('The ApplyId, a numeric string (ApplyIds are Longs and may exceed 2^53); generated when absent.'),
    productKey: z.string().min(1).describe('The product; must be known to the simulator (--product-key or products:).'),
    mode: z
      .enum(['custom', 'random'])
      .default('custom')
      .describe('custom: a BatchCheckDeviceNames batch (deviceNames; CHECK, then CREATE once registered). random: a BatchRegisterDevice batch (count; CREATE only).'),
    deviceNames: z.array(z.string()).min(1).max(10_000).optional().describe('custom: the names checked and created.'),
    count: z.number().int().min(1).max(10_000).optional().describe('random: how many devices to create.'),
    outcome: z
      .enum(['success', 'check_failed', 'partial', 'slow', 'never'])
      .default('success')
      .describe('How the batch ends: success, check_failed (custom), partial (some devices fail at create), slow (timings x slowFactor), never (stays in CHECK/CREATE).'),
    registered: z.boolean().default(false).describe('custom: registered right after CHECK_SUCCESS (else it waits for BatchRegisterDeviceWithApplyId).'),
    invalidNames: z.array(z.string()).optional().describe('check_failed: names that fail the check (default: the last one).'),
    failNames: z.array(z.string()).optional().describe('partial, custom: names that fail at create time (default: every 4th).'),
    failCount: z.number().int().min(1).optional().describe('partial, random: devices that fail at create time.'),
    checkMs: durationSchema.optional().describe('custom: duration of CHECK, in simulated ms.'),
    createMs: durationSchema.optional().describe('Duration of CREATE, in simulated ms (default: proportional to the device count).'),
    ageMs: durationSchema.default(0).describe('The batch started this long (simulated ms) before the simulator.'),
    statusBackwardsOnce: z.boolean().default(false).describe('Once it advanced, one status answer shows the previous status.'),
    unknownStatusOnce: z.boolean().default(false).describe('The first status answer is the unknown string PROCESSING.'),
  })
  .superRefine((b, ctx) => {
    if (b.mode === 'custom') {
      if (b.deviceNames === undefined) ctx.addIssue({ code: 'custom', path: ['deviceNames'], message: 'required when mode is custom' });
      if (b.count !== undefined) ctx.addIssue({ code: 'custom', path: ['count'], message: 'only for mode random' });
      if (b.failCount !== undefined) ctx.addIssue({ code: 'custom', path: ['failCount'], message: 'only for mode random (use failNames)' });
      const names = new Set(b.deviceNames ?? []);
      for (const key of ['invalidNames', 'failNames'] as const) {
        (b[key] ?? []).forEach((n, i) => {
          if (!names.has(n)) ctx.addIssue({ code: 'custom', path: [key, i], message: `\`${n}\` is not one of deviceNames` });
        });
      }
    } else {
      if (b.count === undefined) ctx.addIssue({ code: 'custom', path: ['count'], message: 'required when mode is random' });
      for (const key of ['deviceNames', 'invalidNames', 'failNames'] as const) {
        if (b[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'only for mode custom' });
      }
      if (b.outcome === 'check_failed') ctx.addIssue({ code: 'custom', path: ['outcome'], message: 'random batches have no check phase' });
      if (b.registered) ctx.addIssue({ code: 'custom', path: ['registered'], message: 'only for mode custom' });
      if (b.checkMs !== undefined) ctx.addIssue({ code: 'custom', path: ['checkMs'], message: 'only for mode custom (random batches have no check phase)' });
      if (b.count !== undefined && b.failCount !== undefined && b.failCount > b.count) {
        ctx.addIssue({ code: 'custom', path: ['failCount'], message: `must be at most count (${b.count})` });
      }
    }
  });

const productSchema = z.union([
  z.string().min(1).describe('A ProductKey.'),
  z.strictObject({
    productKey: z.string().min(1),
    devices: z.array(z.string()).default([]).describe('Devices already in the product (their names fail a check).'),
  }),
]);

/** Schema of a whole scenario file (config/scenario.schema.json is generated from it). */
export const scenarioSchema = z
  .strictObject({
    iotInstanceId: z
      .string()
      .min(1)
      .nullable()
      .default(null)
      .describe('null: the public instance. A string makes the simulator an instance that requires this IotInstanceId.'),
    products: z.array(productSchema).default([]).describe("Added to the simulator's --product-key list."),
    batches: z.array(scenarioBatchSchema).default([]).describe('Batches preloaded at start, each with its outcome and timings.'),
  })
  .superRefine((s, ctx) => {
    const seen = new Map<string, number>();
    s.batches.forEach((b, i) => {
      if (b.applyId === undefined) return;
      const id = BigInt(b.applyId).toString();
      const first = seen.get(id);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['batches', i, 'applyId'], message: `duplicates batches[${first}].applyId` });
      else seen.set(id, i);
    });
  });

/** A batch as written by a user (defaults not applied yet). */
export type ScenarioBatchInput = z.input<typeof scenarioBatchSchema>;
/** A validated batch with defaults applied. */
export type ScenarioBatch = z.output<typeof scenarioBatchSchema>;

export interface ScenarioProduct {
  productKey: string;
  /** Names of devices that already exist in the product. */
  devices: string[];
}

/** A parsed, validated scenario. */
export interface Scenario {
  iotInstanceId: string | null;
  products: ScenarioProduct[];
  batches: ScenarioBatch[];
}

/** Validates one batch (as given to `control.addBatch`); throws ConfigError listing every problem. */
export function parseScenarioBatch(input: ScenarioBatchInput): ScenarioBatch {
  const r = scenarioBatchSchema.safeParse(input);
  if (r.success) return r.data;
  throw new ConfigError(
    r.error.issues.map((i) => ({ file: '<batch>', line: 0, col: 0, path: formatPath(i.path), message: i.message })),
  );
}

/**
 * Parses and validates scenario YAML. Throws ConfigError with every issue and its line/column.
 * @param file used in messages only
 */
export function parseScenario(text: string, file = '<scenario>'): Scenario {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { file, line: pos.line, col: pos.col, path: '', message: e.message.split('\n')[0] ?? e.message };
      }),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const r = scenarioSchema.safeParse(raw);
  if (!r.success) {
    const issues: ConfigIssue[] = r.error.issues.map((i) => {
      const path = i.path.filter((p): p is string | number => typeof p !== 'symbol');
      const node = nearestNode(doc, path);
      const offset = node?.range?.[0];
      const pos = offset === undefined ? { line: 1, col: 1 } : lineCounter.linePos(offset);
      return { file, line: pos.line, col: pos.col, path: formatPath(path), message: i.message };
    });
    throw new ConfigError(issues);
  }
  return {
    iotInstanceId: r.data.iotInstanceId,
    products: r.data.products.map((p) => (typeof p === 'string' ? { productKey: p, devices: [] } : p)),
    batches: r.data.batches,
  };
}

/** Reads and parses a scenario file. */
export async function loadScenario(path: string): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file: path, line: 0, col: 0, path: '', message: `cannot read the scenario file: ${(err as Error).message}` }]);
  }
  return parseScenario(text, path);
}

function nearestNode(doc: ReturnType<typeof parseDocument>, path: (string | number)[]): { range?: [number, number, number] | null } | undefined {
  for (let n = path.length; n >= 0; n -= 1) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (node !== undefined && node !== null && typeof node === 'object' && 'range' in node) {
      return node as { range?: [number, number, number] | null };
    }
    if (isMap(node) || isSeq(node)) return node;
  }
  return undefined;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}
