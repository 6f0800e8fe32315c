/**
 * Library entry point. Run the watcher inside your own process:
 *
 * ```ts
 * import { createWatcher } from 'iot-batch-watcher';
 * const watcher = createWatcher({ alibaba: { regionId: 'cn-shanghai' }, batches: [{ applyId: '1295006', productKey: 'a1Bw...' }] });
 * watcher.on('batch.settled', (event) => console.log(event.outcome));
 * await watcher.start();
 * await watcher.whenAllSettled();
 * await watcher.close();
 * ```
 */
import type { CredentialsProvider } from './alibaba/credentials.js';
import { compileConfigObject } from './config/compile.js';
import type { CompiledConfig } from './config/types.js';
import type { Clock, Random } from './core/clock.js';
import type { RunResult } from './core/watcher.js';
import type { StatusRow } from './core/status-row.js';
import { Daemon } from './daemon.js';
import type { EventType, WatcherEvent, WatcherEventMap } from './events.js';
import { createLogger, type Logger } from './ops/logger.js';

export interface CreateWatcherOptions {
  /** @default a pino logger at `warn` on stderr */
  logger?: Logger;
  /** Environment for credentials and the webhook secret. @default process.env */
  env?: Record<string, string | undefined>;
  /** Credentials; overrides `alibaba.credentials`. */
  credentials?: CredentialsProvider;
  /** Base directory of relative paths in a raw config object. @default process.cwd() */
  cwd?: string;
  /** Run the ops HTTP server when `http.listen` is set. @default false for library use */
  http?: boolean;
  clock?: Clock;
  random?: Random;
}

export interface BatchWatcher {
  /** Subscribe to one event type (or `'*'` for all); returns an unsubscribe function. Listener errors are caught. */
  on<K extends EventType>(type: K, listener: WatcherEventMap[K]): () => void;
  on(type: '*', listener: (event: WatcherEvent) => void): () => void;
  /** Loads the ledger and starts polling. */
  start(): Promise<void>;
  /** Resolves once every configured batch has settled. */
  whenAllSettled(): Promise<void>;
  /** The batches, as `status --json` prints them. */
  list(): StatusRow[];
  /** Resolves when the watcher stops on its own (a process-fatal error) or after close(). */
  done(): Promise<RunResult>;
  /** Graceful stop: requests in flight finish, the ledger and sinks are flushed. */
  close(): Promise<RunResult>;
}

/**
 * Creates a watcher from a configuration: either a raw object with the keys of the YAML file (validated; throws
 * `ConfigError` listing every problem) or an already compiled configuration.
 */
export function createWatcher(config: CompiledConfig | Record<string, unknown>, options: CreateWatcherOptions = {}): BatchWatcher {
  const compiled = isCompiled(config) ? config : compileConfigObject(config, { cwd: options.cwd ?? process.cwd() });
  const daemon = new Daemon({
    config: compiled,
    logger: options.logger ?? createLogger({ level: 'warn', destination: process.stderr }),
    env: options.env ?? process.env,
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    http: options.http ?? false,
    housekeeping: false,
  });
  const emitter = daemon.emitter;
  return {
    on: ((type: EventType | '*', listener: (event: WatcherEvent) => void) => emitter.on(type as '*', listener)),
    start: () => daemon.start(),
    whenAllSettled: () => daemon.whenAllSettled(),
    list: () => daemon.list(),
    done: () => daemon.done(),
    close: () => daemon.stop(),
  };
}

function isCompiled(config: CompiledConfig | Record<string, unknown>): config is CompiledConfig {
  const c = config as Partial<CompiledConfig>;
  return Array.isArray(c.batches) && typeof c.alibaba === 'object' && c.alibaba !== null && 'requestTimeoutMs' in c.alibaba;
}

export { ConfigError, DaemonError } from './errors.js';
export { ApiError } from './alibaba/errors.js';
export type { CompiledConfig, BatchConfig } from './config/types.js';
export type { WatcherEvent, EventType, Outcome } from './events.js';
export type { BatchResult } from './core/ports.js';
export type { StatusRow } from './core/status-row.js';
export { startSimulator } from './simulator/server.js';
export { loadConfigFile } from './config/load.js';
export { compileConfigObject } from './config/compile.js';
// The typed API client, for pipelines that create batches (BatchCheckDeviceNames, BatchRegisterDevice) themselves.
export { createRpcClient, type RpcClientOptions } from './alibaba/rpc-client.js';
export { createIotApi } from './alibaba/iot-api.js';
export { createEnvCredentials, createChainCredentials, type CredentialsProvider } from './alibaba/credentials.js';
export type { IotApi, BatchStatusResult, DeviceInfo } from './core/ports.js';
