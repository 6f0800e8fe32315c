/**
 * Options of the built-in IoT Platform simulator and their defaults. The defaults marked "contract" are
 * DESIGN.md §9: scripts and other tools rely on them.
 */
import type { Logger } from 'pino';

import type { Clock } from '../core/clock.js';
import type { Scenario } from './scenario.js';

/** The five batch-registration actions the simulator implements. */
export const SIMULATOR_ACTIONS = [
  'BatchCheckDeviceNames',
  'BatchRegisterDevice',
  'BatchRegisterDeviceWithApplyId',
  'QueryBatchRegisterDeviceStatus',
  'QueryPageByApplyId',
] as const;

export type SimulatorAction = (typeof SIMULATOR_ACTIONS)[number];

/** The API version every action belongs to. */
export const IOT_API_VERSION = '2018-01-20';

/** Per-action QPS limits of the real service (reference §4). */
export const DEFAULT_QPS: Readonly<Record<SimulatorAction, number>> = Object.freeze({
  QueryBatchRegisterDeviceStatus: 30,
  QueryPageByApplyId: 50,
  BatchCheckDeviceNames: 10,
  BatchRegisterDevice: 10,
  BatchRegisterDeviceWithApplyId: 500,
});

/** Default values of {@link SimulatorOptions}. */
export const SIMULATOR_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 8787,
  accessKeyId: 'SimAccessKeyId',
  accessKeySecret: 'SimAccessKeySecret',
  productKeys: Object.freeze<string[]>(['a1SimProduct1', 'a1SimProduct2']),
  iotInstanceId: null as string | null,
  timeScale: 1,
  seed: 1,
  checkMs: 3000,
  createBaseMs: 2000,
  createMsPerDevice: 20,
  slowFactor: 10,
  slowMs: 5000,
  requestLogLimit: 100_000,
});

/**
 * A fault the simulator can inject into one request.
 * - `serviceUnavailable` (503) / `internalError` (500): gateway errors, the action is not executed.
 * - `systemException`: HTTP 200 with `Success:false`, `Code: iot.system.SystemException`; not executed.
 * - `throttle`: a `Throttling.User` answer regardless of the real rate; not executed.
 * - `reset`: the connection is destroyed without an answer; not executed.
 * - `slow`: the answer is delayed by `slowMs` (divided by `timeScale`), then the action runs normally.
 * - `malformed`: the action runs, then a non-JSON body is sent with status 200.
 * - `truncated`: the action runs, then the body is cut short of its `content-length` and the connection closed.
 * - `drip`: HTTP 200 headers at once, then one body byte per second (divided by `timeScale`), never finishing,
 *   until the client closes the connection; not executed. Only a total request deadline ends it (issue #13.1).
 * - `statusBackwards` / `unknownStatus`: only for `QueryBatchRegisterDeviceStatus`: the answer carries the
 *   previous status / the string `PROCESSING` instead of the real one.
 */
export type FaultKind =
  | 'serviceUnavailable'
  | 'internalError'
  | 'systemException'
  | 'throttle'
  | 'slow'
  | 'reset'
  | 'malformed'
  | 'truncated'
  | 'drip'
  | 'statusBackwards'
  | 'unknownStatus';

export const FAULT_KINDS: readonly FaultKind[] = [
  'serviceUnavailable',
  'internalError',
  'systemException',
  'throttle',
  'slow',
  'reset',
  'malformed',
  'truncated',
  'drip',
  'statusBackwards',
  'unknownStatus',
];

/** Probabilities (0..1, summing to at most 1) of a fault per authenticated, non-throttled request. */
export interface FaultRates {
  /** 5xx: `ServiceUnavailable` (503) or `InternalError` (500), half each. @default 0 */
  serverError?: number;
  /** `iot.system.SystemException` with HTTP 200. @default 0 */
  systemException?: number;
  /** A spurious `Throttling.User`. @default 0 */
  throttle?: number;
  /** A delayed reply. @default 0 */
  slow?: number;
  /** Delay of a slow reply, in simulated ms (divided by `timeScale`). @default 5000 */
  slowMs?: number;
  /** A connection reset. @default 0 */
  reset?: number;
  /** A non-JSON body. @default 0 */
  malformed?: number;
  /** A body shorter than its content-length. @default 0 */
  truncated?: number;
}

/**
 * A scripted fault. A rule matches a request when `action` and `applyId` (each optional) match; it fires on
 * matching requests number `nth` .. `nth + times - 1` (1-based).
 */
export interface ScriptedFault {
  action?: SimulatorAction;
  applyId?: string;
  /** First matching request that gets the fault (1-based). @default 1 */
  nth?: number;
  /** How many consecutive matching requests get it (`Infinity` = all from `nth` on). @default 1 */
  times?: number;
  fault: FaultKind;
}

export interface FaultOptions {
  /** @default {} (no random faults) */
  rates?: FaultRates;
  /** Seed of the fault PRNG, so that runs repeat. @default the simulator seed */
  seed?: number;
  /** @default [] */
  script?: ScriptedFault[];
}

/** Options of {@link startSimulator}. Every field is optional. */
export interface SimulatorOptions {
  /** @default '127.0.0.1' (contract) */
  host?: string;
  /** 0 picks a free port. @default 8787 (contract) */
  port?: number;
  /** @default 'SimAccessKeyId' (contract) */
  accessKeyId?: string;
  /** @default 'SimAccessKeySecret' (contract) */
  accessKeySecret?: string;
  /** Known products; scenario products are added. @default ['a1SimProduct1', 'a1SimProduct2'] (contract) */
  productKeys?: readonly string[];
  /**
   * When set, every request must pass it (else `iot.system.InstanceNotFound`); when none, passing one fails the
   * same way. Absent or null falls back to the scenario's `iotInstanceId`. @default null (the public instance)
   */
  iotInstanceId?: string | null;
  /** Processing runs N times faster (durations are divided by it). @default 1 */
  timeScale?: number;
  /** @default systemClock */
  clock?: Clock;
  /** Seed of the data PRNG (ApplyIds, RequestIds, device secrets). @default 1 */
  seed?: number;
  /** Per-action QPS limits; 0 or Infinity turns the limit off. @default DEFAULT_QPS */
  qps?: Partial<Record<SimulatorAction, number>>;
  /** Duration of CHECK, in simulated ms. @default 3000 */
  checkMs?: number;
  /** Fixed part of CREATE, in simulated ms. @default 2000 */
  createBaseMs?: number;
  /** Per-device part of CREATE, in simulated ms. @default 20 */
  createMsPerDevice?: number;
  /** Batches with outcome `slow` take this many times longer. @default 10 */
  slowFactor?: number;
  /** Half of the generated ApplyIds exceed 2^53 (a JS number cannot hold them exactly). @default false */
  bigApplyIds?: boolean;
  /** @default {} (no faults) */
  faults?: FaultOptions;
  /** Preloaded products and batches. @default none */
  scenario?: Scenario;
  /** Entries kept in the request log (oldest dropped first). @default 100000 */
  requestLogLimit?: number;
  /** @default a silent pino logger */
  logger?: Logger;
  /** Serve the HTTP control API under `/_sim/` (control-api.ts; the `simulator` command turns it on). @default false */
  controlApi?: boolean;
}

/** `0`, `Infinity` or a missing value mean "no limit". */
export function isQpsLimited(qps: number | undefined): qps is number {
  return qps !== undefined && Number.isFinite(qps) && qps > 0;
}
