/**
 * `iot-batch-watcher simulator`: argv → options → a running simulator until a stop signal.
 *
 * Prints exactly one line on stdout when ready (`simulator listening on http://127.0.0.1:8787`); logs go to stderr
 * (pino JSON, level from `LOG_LEVEL`, default info). Exit codes: 0 after a clean stop, 1 when it cannot start
 * (e.g. the port is taken), 2 for bad usage or an invalid scenario file.
 */
import { parseArgs } from 'node:util';

import { pino, type DestinationStream, type Level } from 'pino';

import { ConfigError } from '../errors.js';
import {
  SIMULATOR_ACTIONS,
  SIMULATOR_DEFAULTS,
  type FaultRates,
  type SimulatorAction,
  type SimulatorOptions,
} from './options.js';
import { loadScenario } from './scenario.js';
import { startSimulator } from './server.js';

/** Where the CLI writes, what it reads, and (optionally) what stops it. */
export interface SimulatorCliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  env: Readonly<Record<string, string | undefined>>;
  /**
   * Stops the simulator when aborted. When absent, the CLI listens for SIGTERM and SIGINT on `process` itself
   * (and removes its listeners when it returns).
   */
  signal?: AbortSignal;
}

/** The result of parsing the simulator's argv. */
export interface ParsedSimulatorArgs {
  options: Omit<SimulatorOptions, 'scenario' | 'logger' | 'clock'> & {
    host: string;
    port: number;
    accessKeyId: string;
    accessKeySecret: string;
    productKeys: string[];
    iotInstanceId: string | null;
    timeScale: number;
    seed: number;
  };
  scenarioPath: string | null;
  logLevel: Level | 'silent';
  help: boolean;
}

/** Bad command-line usage (exit code 2). */
export class SimulatorUsageError extends Error {
  override name = 'SimulatorUsageError';
}

export const SIMULATOR_USAGE = `Usage: iot-batch-watcher simulator [options]

  --port N                 listen port (0 = any free port)         default 8787
  --host ADDR              listen address                           default 127.0.0.1
  --scenario FILE          preload products and batches (YAML)
  --access-key-id ID       accepted AccessKey id                   default SimAccessKeyId
  --access-key-secret S    accepted AccessKey secret               default SimAccessKeySecret
  --product-key PK         a known product (repeatable)            default a1SimProduct1, a1SimProduct2
  --iot-instance-id ID     require this IotInstanceId              default none (public instance)
  --time-scale N           process N times faster                  default 1
  --seed N                 seed for ids and faults                 default 1
  --check-ms MS            duration of CHECK                       default 3000
  --qps ACTION=N           per-action QPS limit, 0 = off (repeatable)
  --fault-rate KIND=P      fault probability per request (repeatable); KIND is one of
                           serverError, systemException, throttle, slow, reset, malformed, truncated
  --slow-ms MS             delay of a slow reply                   default 5000
  --big-apply-ids          half of the generated ApplyIds exceed 2^53
  -h, --help               this text

Control API (plain JSON, no signature; keep the simulator on loopback):
  curl -s localhost:8787/_sim/batches
  curl -s localhost:8787/_sim/batches -d '{"kind":"check","productKey":"a1SimProduct1","deviceNames":["d-1","d-2"]}'
  curl -s localhost:8787/_sim/batches -d '{"kind":"register","productKey":"a1SimProduct1","count":100,"afterMs":5000}'
  also POST /_sim/products, /_sim/qps, /_sim/faults; GET /_sim/ lists the routes (README: the simulator).
Scenario files: config/scenario.schema.json describes the format (config/demo-scenario.yaml is an example).
`;

const RATE_KINDS = ['serverError', 'systemException', 'throttle', 'slow', 'reset', 'malformed', 'truncated'] as const;
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Parses argv (without the `simulator` word). Throws SimulatorUsageError. */
export function parseSimulatorArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): ParsedSimulatorArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        scenario: { type: 'string' },
        'access-key-id': { type: 'string' },
        'access-key-secret': { type: 'string' },
        'product-key': { type: 'string', multiple: true },
        'iot-instance-id': { type: 'string' },
        'time-scale': { type: 'string' },
        seed: { type: 'string' },
        'check-ms': { type: 'string' },
        qps: { type: 'string', multiple: true },
        'fault-rate': { type: 'string', multiple: true },
        'slow-ms': { type: 'string' },
        'big-apply-ids': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new SimulatorUsageError((err as Error).message);
  }
  const d = SIMULATOR_DEFAULTS;
  const port = numberArg('--port', values.port, d.port, (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'an integer 0..65535');
  const timeScale = numberArg('--time-scale', values['time-scale'], d.timeScale, (n) => n > 0, 'a finite number > 0');
  const seed = numberArg('--seed', values.seed, d.seed, (n) => Number.isInteger(n), 'an integer');
  const checkMs = numberArg('--check-ms', values['check-ms'], d.checkMs, (n) => n >= 0, 'a finite number >= 0');
  const slowMs = numberArg('--slow-ms', values['slow-ms'], d.slowMs, (n) => n >= 0, 'a finite number >= 0');

  const qps: Partial<Record<SimulatorAction, number>> = {};
  for (const item of values.qps ?? []) {
    const [name, raw] = splitPair('--qps', item);
    if (!(SIMULATOR_ACTIONS as readonly string[]).includes(name)) {
      throw new SimulatorUsageError(`--qps: expected one of ${SIMULATOR_ACTIONS.join(', ')}, got \`${name}\``);
    }
    qps[name as SimulatorAction] = numberArg('--qps', raw, 0, (n) => n >= 0, 'a number >= 0 (0 = off)');
  }
  const rates: FaultRates = { slowMs };
  for (const item of values['fault-rate'] ?? []) {
    const [name, raw] = splitPair('--fault-rate', item);
    if (!(RATE_KINDS as readonly string[]).includes(name)) {
      throw new SimulatorUsageError(`--fault-rate: expected one of ${RATE_KINDS.join(', ')}, got \`${name}\``);
    }
    rates[name as (typeof RATE_KINDS)[number]] = numberArg('--fault-rate', raw, 0, (n) => n >= 0 && n <= 1, 'a probability in [0, 1]');
  }
  const sum = RATE_KINDS.reduce((s, k) => s + (rates[k] ?? 0), 0);
  if (sum > 1) throw new SimulatorUsageError(`--fault-rate: expected the rates to sum to at most 1, got ${sum}`);

  const rawLevel = env.LOG_LEVEL ?? 'info';
  if (!(LEVELS as readonly string[]).includes(rawLevel)) {
    throw new SimulatorUsageError(`LOG_LEVEL: expected one of ${LEVELS.join(', ')}, got \`${rawLevel}\``);
  }
  const accessKeyId = values['access-key-id'] ?? d.accessKeyId;
  const accessKeySecret = values['access-key-secret'] ?? d.accessKeySecret;
  if (accessKeyId === '' || accessKeySecret === '') throw new SimulatorUsageError('--access-key-id/--access-key-secret: expected a non-empty string');
  const productKeys = values['product-key'] ?? [...d.productKeys];
  if (productKeys.some((p) => p === '')) throw new SimulatorUsageError('--product-key: expected a non-empty string');
  return {
    options: {
      host: values.host ?? d.host,
      port,
      accessKeyId,
      accessKeySecret,
      productKeys,
      iotInstanceId: values['iot-instance-id'] === undefined || values['iot-instance-id'] === '' ? null : values['iot-instance-id'],
      timeScale,
      seed,
      checkMs,
      qps,
      bigApplyIds: values['big-apply-ids'] ?? false,
      faults: { rates, seed },
    },
    scenarioPath: values.scenario ?? null,
    logLevel: rawLevel as Level | 'silent',
    help: values.help ?? false,
  };
}

/**
 * Runs the simulator until `io.signal` aborts (or SIGTERM/SIGINT when no signal is given).
 * @returns the exit code: 0 clean stop, 1 start failure, 2 bad usage or scenario
 */
export async function runSimulatorCli(argv: readonly string[], io: SimulatorCliIo): Promise<number> {
  let parsed: ParsedSimulatorArgs;
  try {
    parsed = parseSimulatorArgs(argv, io.env);
  } catch (err) {
    io.stderr.write(`simulator: ${(err as Error).message}\n\n${SIMULATOR_USAGE}`);
    return 2;
  }
  if (parsed.help) {
    io.stdout.write(SIMULATOR_USAGE);
    return 0;
  }
  const destination: DestinationStream = { write: (msg: string) => void io.stderr.write(msg) };
  const logger = pino({ level: parsed.logLevel, base: { component: 'simulator' } }, destination);

  let scenario;
  if (parsed.scenarioPath !== null) {
    try {
      scenario = await loadScenario(parsed.scenarioPath);
    } catch (err) {
      io.stderr.write(`simulator: invalid scenario\n${err instanceof ConfigError ? err.message : (err as Error).message}\n`);
      return 2;
    }
  }

  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    logger.info({ signal: sig }, 'simulator stopping');
    stop.abort();
  };
  const ownSignals = io.signal === undefined;
  if (ownSignals) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  } else if (io.signal !== undefined) {
    if (io.signal.aborted) stop.abort();
    else io.signal.addEventListener('abort', () => stop.abort(), { once: true });
  }
  try {
    let handle;
    try {
      handle = await startSimulator({ ...parsed.options, ...(scenario === undefined ? {} : { scenario }), logger, controlApi: true });
    } catch (err) {
      logger.error({ err }, 'simulator failed to start');
      io.stderr.write(`simulator: cannot start: ${(err as Error).message}\n`);
      return 1;
    }
    io.stdout.write(`simulator listening on ${handle.url}\n`);
    if (!stop.signal.aborted) {
      await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
    await handle.close();
    return 0;
  } finally {
    if (ownSignals) {
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
    }
  }
}

function splitPair(flag: string, item: string): [string, string] {
  const eq = item.indexOf('=');
  if (eq <= 0) throw new SimulatorUsageError(`${flag}: expected NAME=VALUE, got \`${item}\``);
  return [item.slice(0, eq), item.slice(eq + 1)];
}

function numberArg(flag: string, raw: string | undefined, dflt: number, ok: (n: number) => boolean, expected: string): number {
  if (raw === undefined) return dflt;
  const n = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(n) || !ok(n)) throw new SimulatorUsageError(`${flag}: expected ${expected}, got \`${raw}\``);
  return n;
}
