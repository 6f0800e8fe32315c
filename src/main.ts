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
import { type ParseArgsConfig, parseArgs } from 'node:util';

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;

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
import { formatStatusTable, toStatusRows } from './core/status-row.js';
import { Daemon } from './daemon.js';
import { ConfigError, DaemonError, coerceError, formatConfigIssues } from './errors.js';
import { createMemoryLedger } from './ledger/memory-ledger.js';
import { readLedgerReadOnly } from './ledger/read-ledger.js';
import { createLogger, type Logger } from './ops/logger.js';
import { runSimulatorCli } from './simulator/cli.js';
import { startSimulator } from './simulator/server.js';
import { loadScenario } from './simulator/scenario.js';

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

const USAGE = `Usage: iot-batch-watcher [command] [options]

Commands:
  run [--config FILE]                       run the daemon (default command)
  validate [--config FILE]                  check the configuration, print every problem, exit 0 or 2
  status [--config FILE] [--json]           batches from the ledger (works while the daemon runs)
  provision --product-key PK (--devices FILE | --count N) [--chunk-size N] [--until created|checked]
       [--name NAME] [--config FILE] [--endpoint URL]
                                            submit a fleet in chunks and watch it; report JSON on stdout
  wait --product-key PK --apply-id ID [--until created|checked] [--timeout 30m] [--register]
       [--config FILE] [--endpoint URL] [--region-id ID] [--iot-instance-id ID]
                                            watch one batch in the foreground; result JSON on stdout
  results [--account A] [--product-key PK] [--apply-id ID] [--format json|csv] [--config FILE]
                                            stored results (with device secrets) from either backend
  migrate --from-file DIR [--account A] [--config FILE]
                                            move a file ledger into PostgreSQL (state.postgres)
  simulator [--port 8787] [--scenario FILE] the built-in IoT Platform simulator (see --help)
  demo                                      simulator + daemon on config/demo.yaml, pretty logs, summary
  help                                      this text

The configuration file is --config, else $IBW_CONFIG, else config/watcher.yaml.
`;

const COMMANDS = new Set(['run', 'validate', 'status', 'wait', 'provision', 'results', 'migrate', 'simulator', 'demo', 'help']);

/** Runs one command and resolves with its exit code. */
export async function main(io: Io): Promise<number> {
  const [first, ...rest] = io.argv;
  const command = first === undefined || first.startsWith('-') ? 'run' : first;
  const args = first === undefined || first.startsWith('-') ? io.argv : rest;
  if (command === '--help' || command === '-h' || command === 'help' || args.includes('--help') && command !== 'simulator') {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (!COMMANDS.has(command)) {
    io.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
    return EXIT.usage;
  }
  try {
    switch (command) {
      case 'validate':
        return await validateCommand(args, { stdout: io.stdout, stderr: io.stderr, env: io.env, cwd: io.cwd });
      case 'status':
        return await statusCommand(args, io);
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
      io.stderr.write(`${err.message}\n\n${USAGE}`);
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

class UsageError extends Error {
  override name = 'UsageError';
}

function parse<const O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(coerceError(err).message);
  }
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
  return createLogger({ level: settings.level, format: forcePretty ? 'pretty' : settings.format, destination });
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
  try {
    try {
      await daemon.start();
    } catch (err) {
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
// status

async function statusCommand(args: string[], io: Io): Promise<number> {
  const opts = parse(args, { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } });
  const path = resolveConfigPath(opts.config, io.env);
  const config = await loadConfig(path, io);
  if (!existsSync(config.state.dir)) {
    io.stderr.write(`no ledger yet in ${config.state.dir} (the daemon has not run with this configuration)\n`);
    io.stdout.write(opts.json ? '[]\n' : formatStatusTable([]));
    return EXIT.ok;
  }
  const snapshot = await readLedgerReadOnly(config.state.dir);
  const rows = toStatusRows(snapshot.batches.values());
  io.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : formatStatusTable(rows));
  return EXIT.ok;
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
    io.stdout.write(`\nDemo summary (results in ${config.output.resultsDir}):\n${formatStatusTable(rows)}`);
    if (code !== EXIT.ok) return code;
    const allSettled = rows.length > 0 && rows.every((r) => r.outcome !== null);
    return allSettled ? EXIT.ok : EXIT.runtime;
  } finally {
    clearTimeout(timer);
    await sim.close();
  }
}

function rowsOf(daemon: Daemon): ReturnType<typeof toStatusRows> {
  try {
    return daemon.watcher.list();
  } catch {
    return [];
  }
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

