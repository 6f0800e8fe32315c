/**
 * The simulator's HTTP control API (`iot-batch-watcher simulator` turns it on; see README "Driving the simulator
 * by hand"): create batches of both kinds, schedule them, add products, change QPS limits and faults, and read
 * the batches' true state, with curl. JSON in, JSON out, under {@link CONTROL_PREFIX}; no signature (the
 * simulator listens on loopback by default; do not expose it).
 *
 *   GET  /_sim/                    the routes
 *   GET  /_sim/batches             every batch with its true current status
 *   GET  /_sim/batches/<applyId>   one batch (404 when unknown)
 *   POST /_sim/batches             a scenario batch, or an array of them; extra keys:
 *                                    kind: "check" (= mode custom: deviceNames, CHECK then CREATE once registered)
 *                                          "register" (= mode random: count, CREATE only)
 *                                    afterMs: create it this many simulated ms from now (script the timing)
 *   POST /_sim/products            {"productKey": "...", "devices": ["existing-01"]}
 *   POST /_sim/qps                 {"QueryBatchRegisterDeviceStatus": 5, ...}  (0 = no limit)
 *   POST /_sim/faults              {"rates": {"serverError": 0.1}, "script": [...]} (replaces the faults)
 */
import type { Logger } from 'pino';

import type { Clock } from '../core/clock.js';
import { ConfigError } from '../errors.js';
import { SIMULATOR_ACTIONS, type FaultOptions, type SimulatorAction } from './options.js';
import { parseScenarioBatch, type ScenarioBatchInput } from './scenario.js';

/** Paths under this prefix are the control API (when enabled). */
export const CONTROL_PREFIX = '/_sim/';

/** What the control API drives (the simulator's `control`). */
export interface ControlTarget {
  addBatch(batch: ScenarioBatchInput): string;
  addProduct(productKey: string, deviceNames?: readonly string[]): void;
  batch(applyId: string): unknown;
  batches(): unknown[];
  setQps(qps: Partial<Record<SimulatorAction, number>>): void;
  setFaults(faults: FaultOptions): void;
}

/** What a control request needs besides the target. */
export interface ControlApiDeps {
  control: ControlTarget;
  clock: Clock;
  timeScale: number;
  /** Aborted when the simulator closes: scheduled batches are dropped. */
  signal: AbortSignal;
  logger: Logger;
}

/** A control answer: HTTP status and JSON body. */
export interface ControlAnswer {
  status: number;
  body: unknown;
}

const ROUTES = [
  'GET  /_sim/batches',
  'GET  /_sim/batches/<applyId>',
  'POST /_sim/batches  {kind: check|register, productKey, deviceNames | count, outcome, checkMs, createMs, ageMs, afterMs, ...} or an array',
  'POST /_sim/products {productKey, devices}',
  'POST /_sim/qps      {<Action>: qps}',
  'POST /_sim/faults   {rates, script, seed}',
];

const bad = (message: string, issues?: unknown): ControlAnswer => ({ status: 400, body: { error: message, ...(issues ? { issues } : {}) } });

function parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8') || 'null') as unknown };
  } catch {
    return { ok: false };
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Answers one control request. */
export function handleControlRequest(method: string, path: string, body: Buffer, deps: ControlApiDeps): ControlAnswer {
  const rest = path.slice(CONTROL_PREFIX.length).replace(/\/+$/, '');
  const { control } = deps;
  if (method === 'GET') {
    if (rest === '') return { status: 200, body: { routes: ROUTES } };
    if (rest === 'batches') return { status: 200, body: control.batches() };
    const m = /^batches\/([0-9]{1,19})$/.exec(rest);
    if (m) {
      const b = control.batch(BigInt(m[1]!).toString());
      return b === undefined ? { status: 404, body: { error: `no batch ${m[1]!}` } } : { status: 200, body: b };
    }
    return { status: 404, body: { error: `unknown control route GET ${path}`, routes: ROUTES } };
  }
  const parsed = parseJson(body);
  if (!parsed.ok) return bad('the body is not JSON');
  const input = parsed.value;
  switch (rest) {
    case 'batches':
      return addBatches(Array.isArray(input) ? input : [input], deps);
    case 'products': {
      if (!isObject(input) || typeof input.productKey !== 'string' || input.productKey === '') return bad('expected {"productKey": "...", "devices": [...]}');
      const devices = Array.isArray(input.devices) ? input.devices.filter((d): d is string => typeof d === 'string') : [];
      control.addProduct(input.productKey, devices);
      return { status: 201, body: { productKey: input.productKey, devices } };
    }
    case 'qps': {
      if (!isObject(input)) return bad('expected {"<Action>": qps, ...}');
      const qps: Partial<Record<SimulatorAction, number>> = {};
      for (const [action, value] of Object.entries(input)) {
        if (!(SIMULATOR_ACTIONS as readonly string[]).includes(action)) return bad(`unknown action ${JSON.stringify(action)}; one of ${SIMULATOR_ACTIONS.join(', ')}`);
        if (typeof value !== 'number' || !(value >= 0)) return bad(`${action}: expected a number >= 0 (0 = no limit)`);
        qps[action as SimulatorAction] = value;
      }
      control.setQps(qps);
      return { status: 200, body: { qps } };
    }
    case 'faults': {
      if (!isObject(input)) return bad('expected {"rates": {...}, "script": [...]}');
      control.setFaults(input);
      return { status: 200, body: { faults: input } };
    }
    default:
      return { status: 404, body: { error: `unknown control route POST ${path}`, routes: ROUTES } };
  }
}

function addBatches(items: unknown[], deps: ControlApiDeps): ControlAnswer {
  const prepared: { batch: ScenarioBatchInput; afterMs: number }[] = [];
  for (const [i, item] of items.entries()) {
    if (!isObject(item)) return bad(`[${i}]: expected a batch object`);
    const { kind, afterMs = 0, ...rest } = item;
    if (kind !== undefined && kind !== 'check' && kind !== 'register') return bad(`[${i}].kind: expected "check" or "register"`);
    const mode = kind === 'check' ? 'custom' : kind === 'register' ? 'random' : undefined;
    if (mode !== undefined && rest.mode !== undefined && rest.mode !== mode) return bad(`[${i}]: kind ${String(kind)} means mode ${mode}, not ${JSON.stringify(rest.mode)}`);
    if (typeof afterMs !== 'number' || !(afterMs >= 0)) return bad(`[${i}].afterMs: expected simulated milliseconds >= 0`);
    const batch = { ...rest, ...(mode ? { mode } : {}) } as ScenarioBatchInput;
    try {
      parseScenarioBatch(batch);
    } catch (err) {
      if (err instanceof ConfigError) return bad(`[${i}]: not a valid batch`, err.issues.map((x) => ({ path: x.path, message: x.message })));
      throw err;
    }
    if (batch.applyId !== undefined && deps.control.batch(BigInt(batch.applyId).toString()) !== undefined) {
      return { status: 409, body: { error: `[${i}]: batch ${batch.applyId} already exists` } };
    }
    prepared.push({ batch, afterMs });
  }
  const created: unknown[] = [];
  for (const { batch, afterMs } of prepared) {
    if (afterMs === 0) {
      const applyId = deps.control.addBatch(batch);
      created.push(deps.control.batch(applyId));
      continue;
    }
    created.push({ scheduled: true, afterMs, applyId: batch.applyId ?? null });
    void deps.clock.sleep(afterMs / deps.timeScale, deps.signal).then(
      () => {
        const applyId = deps.control.addBatch(batch);
        deps.logger.info({ applyId, afterMs }, 'scheduled batch created');
      },
      () => undefined, // the simulator closed first
    );
  }
  return { status: 201, body: { batches: created } };
}
