/**
 * Command line: argv → command. The composition root for the CLI and the only module that touches `process.*`
 * (through the `Io` it is given, so tests can run commands in-process).
 *
 * Exit codes (DESIGN.md §7): 0 success, 1 runtime failure, 2 bad usage or config, 3 (`wait`) the batch failed
 * or was rejected, 4 (`wait`) timed out, 130/143 after SIGINT/SIGTERM when shutdown was not clean.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ParseArgsConfig } from 'node:util';

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;

import { parseOptions, UsageError, wantsHelp } from './commands/args.js';
import { COMMAND_HELP, USAGE } from './commands/help.js';
import { statusCommand } from './commands/status.js';
import { packageVersion } from './commands/version.js';
import type { CompiledConfig } from './config/types.js';
import { applyEnvOverrides } from './config/env-overrides.js';
import { createConfigSource, type ConfigSource } from './config/config-source.js';
import { loadConfigFile, parseConfigText, resolveConfigPath, resolveLogSettings } from './config/load.js';
import { maxConfigBytes } from './config/read-file.js';
import { validateCommand } from './config/validate-command.js';
import { migrateCommand } from './commands/migrate.js';
import { CommandUsageError, resultsCommand } from './commands/results.js';
import { compileWaitConfig } from './config/wait-config.js';
import type { BatchResult, ResultWriter } from './core/ports.js';
import type { StatusRow } from './core/status-row.js';
import type * as DaemonModule from './daemon.js';
import { ConfigError, DaemonError, coerceError, formatConfigIssues } from './errors.js';
import type * as MemoryLedgerModule from './ledger/memory-ledger.js';
import { createLogger, type Logger } from './ops/logger.js';
import { colorEnabled } from './ops/color.js';
import { formatStatusView } from './ops/status-view.js';
import type * as SimulatorCliModule from './simulator/cli.js';
import type * as SimulatorServerModule from './simulator/server.js';
import type * as ScenarioModule from './simulator/scenario.js';

// NOTE: the daemon and the simulator (undici, prom-client, the API client...) load only for the commands that
// run them, so `status`, `validate` and `--help` start fast (`status` at 20,000 batches in under a second).
type Daemon = DaemonModule.Daemon;
let Daemon: typeof DaemonModule.Daemon;
let createMemoryLedger: typeof MemoryLedgerModule.createMemoryLedger;
let runSimulatorCli: typeof SimulatorCliModule.runSimulatorCli;
let startSimulator: typeof SimulatorServerModule.startSimulator;
let loadScenario: typeof ScenarioModule.loadScenario;

async function loadRuntime(): Promise<void> {
  const [daemon, memory, simCli, simServer, scenario] = await Promise.all([
    import('./daemon.js'),
    import('./ledger/memory-ledger.js'),
    import('./simulator/cli.js'),
    import('./simulator/server.js'),
    import('./simulator/scenario.js'),
  ]);
  ({ Daemon } = daemon);
  ({ createMemoryLedger } = memory);
  ({ runSimulatorCli } = simCli);
  ({ startSimulator } = simServer);
  ({ loadScenario } = scenario);
}
const RUNTIME_COMMANDS = new Set(['run', 'wait', 'simulator', 'demo']);

/** What a command may touch of the outside world. */
export interface Io {
  argv: string[];
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Register a signal handler; returns an unsubscribe function. */
  onSignal(signal: NodeJS.Signals, handler: () => void): () => void;
  /** Exit at once (second signal, forced shutdown). */
  exit(code: number): void;
}

export const EXIT = { ok: 0, runtime: 1, usage: 2, failed: 3, timedOut: 4, sigint: 130, sigterm: 143 } as const;

const COMMANDS = new Set(['run', 'validate', 'status', 'wait', 'provision', 'results', 'migrate', 'simulator', 'demo', 'redeliver', 'version', 'help']);

/** Runs one command and resolves with its exit code. */
export async function main(io: Io): Promise<number> {
  const [first, ...rest] = io.argv;
  const command = first === undefined || first.startsWith('-') ? 'run' : first;
  const args = first === undefined || first.startsWith('-') ? io.argv : rest;
  if (first === '--help' || first === '-h' || command === 'help') {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (first === '--version' || first === '-V' || (command === 'version' && !wantsHelp(args))) {
    io.stdout.write(`${packageVersion()}\n`);
    return EXIT.ok;
  }
  if (!COMMANDS.has(command)) {
    io.stderr.write(`unknown command "${command}" (commands: ${[...COMMANDS].join(', ')}; see iot-batch-watcher --help)\n`);
    return EXIT.usage;
  }
  // NOTE: validate and simulator print their own help; `--help` anywhere else is the command's own text.
  if (command !== 'validate' && command !== 'simulator' && wantsHelp(args)) {
    io.stdout.write(COMMAND_HELP[command] ?? USAGE);
    return EXIT.ok;
  }
  try {
    if (RUNTIME_COMMANDS.has(command)) await loadRuntime();
    switch (command) {
      case 'validate':
        return await validateCommand(args, { stdout: io.stdout, stderr: io.stderr, env: io.env, cwd: io.cwd });
      case 'status':
        return await statusCommand(args, io, { loadConfig: (path) => loadConfig(path, io) });
      case 'redeliver': {
        const { redeliverCommand } = await import('./commands/redeliver.js');
        return await redeliverCommand(args, io, { loadConfig: (path) => loadConfig(path, io), logger: makeLogger(io, io.stderr) });
      }
      case 'wait':
        return await waitCommand(args, io);
      case 'provision': {
        // NOTE: loaded on demand, so other commands do not pay for the provisioning modules.
        const { provisionCommand } = await import('./commands/provision.js');
        const { systemClock, systemRandom } = await import('./core/clock.js');
        return await provisionCommand(args, {
          ...io,
          logger: makeLogger(io, io.stderr),
          clock: systemClock,
          random: systemRandom,
          // Like `wait`: the file (if any) gives alibaba/polling/state/output; without one, the defaults.
          loadBase: async (flag) => {
            const explicit = flag ?? io.env.IBW_CONFIG;
            const file = resolveConfigPath(flag, io.env);
            return explicit || existsSync(resolve(io.cwd, file)) ? loadConfig(file, io) : null;
          },
        });
      }
      case 'results':
        return await resultsCommand(args, { ...io, loadConfig: (path) => loadConfig(path, io) });
      case 'migrate':
        return await migrateCommand(args, { ...io, loadConfig: (path) => loadConfig(path, io), now: () => Date.now() });
      case 'simulator':
        return await simulatorCommand(args, io);
      case 'demo':
        return await demoCommand(args, io);
      default:
        return await runCommand(args, io);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof CommandUsageError) {
      io.stderr.write(`${command}: ${err.message} (see iot-batch-watcher ${command === 'run' ? '' : `${command} `}--help)\n`);
      return EXIT.usage;
    }
    if (err instanceof ConfigError) {
      io.stderr.write(`${formatConfigIssues(err.issues)}\n`);
      return EXIT.usage;
    }
    if (err instanceof DaemonError && err.kind === 'config') {
      io.stderr.write(`${err.message}\n`);
      return EXIT.usage;
    }
    io.stderr.write(`iot-batch-watcher: ${coerceError(err).message}\n`);
    return EXIT.runtime;
  }
}

function parse<const O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  return parseOptions(args, options);
}

/** One config source per command run (keyed by its Io) and file, so `run`'s reloads share the first load's state. */
const configSources = new WeakMap<object, Map<string, ConfigSource>>();

/**
 * Loads the configuration with the env overrides that are not in the file (IBW_HTTP_LISTEN). The first call for a
 * file reads it once it is stable; later calls (the daemon's reloads) go through the same {@link ConfigSource}, so
 * an unchanged file is not parsed again and a removal needs two stable reads (src/config/config-source.ts).
 */
async function loadConfig(path: string, io: Pick<Io, 'env' | 'cwd' | 'stdout'>): Promise<CompiledConfig> {
  let byFile = configSources.get(io);
  if (byFile === undefined) {
    byFile = new Map();
    configSources.set(io, byFile);
  }
  const key = resolve(io.cwd, path);
  let source = byFile.get(key);
  if (source === undefined) {
    const maxBytes = maxConfigBytes(io.env);
    let logger: Logger | undefined;
    source = createConfigSource({
      file: path,
      cwd: io.cwd,
      maxBytes,
      compile: (text, file) => applyEnvOverrides(parseConfigText(text, file, { env: io.env, cwd: io.cwd }), io.env),
      logger: {
        info: (obj, msg) => (logger ??= configLogger(io)).info({ component: 'config', ...obj }, msg),
        warn: (obj, msg) => (logger ??= configLogger(io)).warn({ component: 'config', ...obj }, msg),
      },
    });
    byFile.set(key, source);
  }
  return source.load();
}

/**
 * The logger of the config source. It logs only from the second load on, which only `run` does (its reloads), so
 * its lines go where `run` logs: stdout.
 */
function configLogger(io: Pick<Io, 'env' | 'stdout'>): Logger {
  const settings = resolveLogSettings(io.env);
  return createLogger({ level: settings.level, format: settings.format, destination: io.stdout });
}

// `IBW_HTTP_LISTEN` wins over `http.listen`, by the schema's own rule (src/config/env-overrides.ts).
export { applyEnvOverrides };

function makeLogger(io: Io, destination: NodeJS.WritableStream, forcePretty = false): Logger {
  const settings = resolveLogSettings(io.env);
  return createLogger({ level: settings.level, format: forcePretty ? 'pretty' : settings.format, destination, color: colorEnabled(io.env, destination) });
}

// -------------------------------------------------------------------------------------------------------------
// run

async function runCommand(args: string[], io: Io): Promise<number> {
  const opts = parse(args, { config: { type: 'string', short: 'c' } });
  const path = resolveConfigPath(opts.config, io.env);
  const config = await loadConfig(path, io);
  const logger = makeLogger(io, io.stdout);
  const daemon = new Daemon({
    config,
    logger,
    env: io.env,
    loadConfig: () => loadConfig(path, io),
  });
  return runDaemonUntilSignal(daemon, logger, io);
}

/**
 * Starts the daemon and runs it until a signal, a process-fatal error, or (when given) `until(daemon)` resolves,
 * which is called once the daemon has started. Then stops it gracefully and returns the exit code.
 */
async function runDaemonUntilSignal(daemon: Daemon, logger: Logger, io: Io, until?: (daemon: Daemon) => Promise<void>): Promise<number> {
  let signalled: NodeJS.Signals | null = null;
  let resolveSignal: (() => void) | null = null;
  const signalPromise = new Promise<void>((r) => (resolveSignal = r));
  const onStop = (signal: NodeJS.Signals) => () => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      io.exit(signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm);
      return;
    }
    signalled = signal;
    logger.info({ signal }, 'shutting down: finishing requests in flight, flushing the ledger and sinks');
    resolveSignal?.();
  };
  const unsubs = [
    io.onSignal('SIGTERM', onStop('SIGTERM')),
    io.onSignal('SIGINT', onStop('SIGINT')),
    io.onSignal('SIGHUP', () => {
      void daemon.reload('SIGHUP');
    }),
  ];
  // A signal during start (a standby waiting for the account's lease) ends the start.
  void signalPromise.then(() => (daemon.state === 'starting' ? daemon.stop() : undefined));
  try {
    try {
      await daemon.start();
    } catch (err) {
      if (signalled) {
        logger.info({}, 'stopped before the start completed');
        return EXIT.ok;
      }
      const e = coerceError(err);
      if (err instanceof DaemonError && err.kind === 'config') {
        logger.fatal({ code: err.code }, err.message);
        return EXIT.usage;
      }
      logger.fatal({ err: e, code: err instanceof DaemonError ? err.code : undefined }, `cannot start: ${e.message}`);
      return EXIT.runtime;
    }
    const ended = await Promise.race([
      daemon.done().then((r) => ({ kind: 'done' as const, r })),
      signalPromise.then(() => ({ kind: 'signal' as const })),
      ...(until ? [until(daemon).then(() => ({ kind: 'until' as const }))] : []),
    ]);
    const result = await daemon.stop();
    if (ended.kind === 'done' || result.reason === 'fatal') {
      const err = result.error;
      if (err) {
        logger.fatal({ code: err.code, kind: err.kind }, `stopping: ${err.message} (${fatalAdvice(err)})`);
        return EXIT.runtime;
      }
    }
    if (result.flushError) {
      logger.error({ code: result.flushError.code }, `stopped, but the state could not be flushed: ${result.flushError.message}`);
      return EXIT.runtime;
    }
    logger.info({}, 'stopped cleanly');
    return EXIT.ok;
  } finally {
    for (const u of unsubs) u();
  }
}

/** The advice column of the error-code table (carried on the error), else a fallback by kind. */
function fatalAdvice(err: DaemonError): string {
  if (err.advice !== null) return err.advice;
  if (err.kind === 'store') return 'the state directory is unusable';
  return 'retrying cannot help; fix the cause, then restart';
}

// -------------------------------------------------------------------------------------------------------------
// wait

class MemoryResultWriter implements ResultWriter {
  last: BatchResult | null = null;
  write(result: BatchResult): Promise<string> {
    this.last = result;
    return Promise.resolve('(stdout)');
  }
}

async function waitCommand(args: string[], io: Io): Promise<number> {
  const opts = parse(args, {
    config: { type: 'string', short: 'c' },
    'product-key': { type: 'string' },
    'apply-id': { type: 'string' },
    until: { type: 'string' },
    timeout: { type: 'string' },
    register: { type: 'boolean' },
    endpoint: { type: 'string' },
    'region-id': { type: 'string' },
    'iot-instance-id': { type: 'string' },
  });
  // The file (if any) gives alibaba/polling/rateLimit/devices settings; its batches are ignored.
  const explicit = opts.config ?? io.env.IBW_CONFIG;
  const path = resolveConfigPath(opts.config, io.env);
  const base = explicit || existsSync(resolve(io.cwd, path)) ? await loadConfig(path, io) : null;
  const config = compileWaitConfig(
    {
      productKey: opts['product-key'],
      applyId: opts['apply-id'],
      until: opts.until,
      timeout: opts.timeout,
      register: opts.register,
      endpoint: opts.endpoint,
      regionId: opts['region-id'],
      iotInstanceId: opts['iot-instance-id'],
    },
    base,
    io.cwd,
  );
  const logger = makeLogger(io, io.stderr);
  const batch = config.batches[0]!;
  // Says which endpoint it talks to: without --endpoint (and without a file) that is Alibaba's production endpoint.
  logger.info(
    { endpoint: config.alibaba.endpoint, regionId: config.alibaba.regionId, productKey: batch.productKey, applyId: batch.applyId, config: base ? path : null },
    `wait: watching ${batch.key} at ${config.alibaba.endpoint}`,
  );
  const results = new MemoryResultWriter();
  const daemon = new Daemon({
    config,
    logger,
    env: io.env,
    ledger: createMemoryLedger(),
    results,
    http: false,
    housekeeping: false,
  });
  const code = await runDaemonUntilSignal(daemon, logger, io, (d) => d.whenAllSettled());
  if (code !== EXIT.ok) return code;
  const result = results.last;
  if (!result) return EXIT.runtime;
  io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  switch (result.outcome) {
    case 'created':
    case 'checked':
      return EXIT.ok;
    case 'timed_out':
      return EXIT.timedOut;
    default:
      return EXIT.failed;
  }
}


// -------------------------------------------------------------------------------------------------------------
// simulator

async function simulatorCommand(args: string[], io: Io): Promise<number> {
  const stop = new AbortController();
  const unsubs = (['SIGTERM', 'SIGINT'] as const).map((s) => io.onSignal(s, () => stop.abort()));
  try {
    return await runSimulatorCli(args, { stdout: io.stdout, stderr: io.stderr, env: io.env, signal: stop.signal });
  } finally {
    for (const u of unsubs) u();
  }
}

// -------------------------------------------------------------------------------------------------------------
// demo

/** The package root (where config/ lives), from the compiled file's location. */
export function packageRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/main.js or src/main.ts → one level up
  return resolve(here, '..');
}

async function demoCommand(args: string[], io: Io): Promise<number> {
  const opts = parse(args, { 'time-scale': { type: 'string' } });
  const root = packageRoot();
  const configPath = join(root, 'config', 'demo.yaml');
  const scenarioPath = join(root, 'config', 'demo-scenario.yaml');
  const logger = makeLogger(io, io.stdout, io.env.LOG_FORMAT !== 'json');
  const loaded = await loadConfigFile(configPath, { env: io.env, cwd: io.cwd });
  const demoDir = resolve(loaded.state.dir, '..');
  // The demo owns its directories: start from a clean slate so every run shows the whole story.
  await rm(loaded.state.dir, { recursive: true, force: true });
  await rm(loaded.output.resultsDir, { recursive: true, force: true });
  if (loaded.output.eventsFile) await rm(loaded.output.eventsFile, { force: true });
  const timeScale = Number(opts['time-scale'] ?? '1');
  const scenario = await loadScenario(scenarioPath);
  const sim = await startSimulator({
    port: 0,
    scenario,
    timeScale,
    logger: logger.child({ component: 'simulator' }),
  });
  const endpoint = sim.url;
  const config: CompiledConfig = {
    ...loaded,
    // NOTE: a free port, so a second demo (or anything on 9465) cannot make it fail; the URL is logged.
    http: { listen: loaded.http.listen ? { host: loaded.http.listen.host, port: 0 } : null },
    alibaba: { ...loaded.alibaba, endpoint },
    batches: loaded.batches.map((b) => ({ ...b, endpoint })),
  };
  logger.info({ simulator: endpoint, config: configPath, dir: demoDir }, 'demo: simulator started; watching the demo batches');
  const daemon = new Daemon({
    config,
    logger,
    env: io.env,
    credentials: {
      get: () => Promise.resolve({ accessKeyId: 'SimAccessKeyId', accessKeySecret: 'SimAccessKeySecret', securityToken: null }),
    },
    housekeeping: false,
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((r) => {
    timer = setTimeout(() => {
      logger.error({}, 'demo: not every batch settled within 90 s');
      r();
    }, 90_000);
  });
  try {
    const settled = async (d: Daemon): Promise<void> => {
      await Promise.race([d.whenAllSettled(), deadline]);
      await d.flushSinks(5000);
    };
    const code = await runDaemonUntilSignal(daemon, logger, io, settled);
    const rows = rowsOf(daemon);
    io.stdout.write(`\nDemo summary (results in ${config.output.resultsDir}):\n${formatStatusView(rows)}`);
    if (code !== EXIT.ok) return code;
    const allSettled = rows.length > 0 && rows.every((r) => r.outcome !== null);
    return allSettled ? EXIT.ok : EXIT.runtime;
  } finally {
    clearTimeout(timer);
    await sim.close();
  }
}

function rowsOf(daemon: Daemon): StatusRow[] {
  return daemon.list();
}

/** The real process as an Io. */
export function processIo(): Io {
  return {
    argv: process.argv.slice(2),
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    onSignal(signal, handler) {
      process.on(signal, handler);
      return () => process.off(signal, handler);
    },
    exit(code) {
      process.exit(code);
    },
  };
}

