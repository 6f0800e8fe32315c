/**
 * Help texts: the global usage and each command's own (`iot-batch-watcher status --help`). `validate` and
 * `simulator` print their own help from their modules.
 */

/** The global usage (`iot-batch-watcher --help`). */
export const USAGE = `Usage: iot-batch-watcher [command] [options]

Commands:
  run [--config FILE]                       run the daemon (default command)
  validate [--config FILE] [--no-env]       check the configuration and the environment, exit 0 or 2
  status [--config FILE] [--json] [--wide] [--watch]
                                            batches from the ledger (works while the daemon runs)
  wait --product-key PK --apply-id ID [--until created|checked] [--timeout 30m] [--register]
       [--config FILE] [--endpoint URL] [--region-id ID] [--iot-instance-id ID]
                                            watch one batch in the foreground; result JSON on stdout
  provision --product-key PK (--devices FILE | --count N) [--chunk-size N] [--until created|checked]
       [--name NAME] [--config FILE] [--endpoint URL]
                                            submit a fleet in chunks and watch it; report JSON on stdout
  results [--account A] [--product-key PK] [--apply-id ID | --provision NAME] [--format json|csv] [--config FILE]
                                            stored results (with device secrets) from either backend
  migrate --from-file DIR [--account A] [--config FILE]
                                            move a file ledger into PostgreSQL (state.postgres)
  redeliver [--event-id ID | --all | --list] [--sink webhook] [--config FILE]
                                            replay webhook dead letters (with the daemon stopped)
  simulator [--port 8787] [--scenario FILE] the built-in IoT Platform simulator (see simulator --help)
  demo                                      simulator + daemon on config/demo.yaml, pretty logs, summary
  version                                   print the version (also --version, -V)
  help                                      this text

Every command takes -h/--help for its own options.
The configuration file is --config, else $IBW_CONFIG, else config/watcher.yaml.
Logs: LOG_LEVEL (info), LOG_FORMAT (json|pretty); NO_COLOR turns colour off.
`;

const CONFIG = '  -c, --config FILE      the configuration (else $IBW_CONFIG, else config/watcher.yaml)\n';
const HELP = '  -h, --help             this text\n';

/** Each command's own help, by command name. */
export const COMMAND_HELP: Readonly<Record<string, string>> = {
  run: `Usage: iot-batch-watcher [run] [--config FILE]

Runs the daemon: watches every batch of the configuration until it settles, logs to stdout (JSON, or
LOG_FORMAT=pretty), reloads the file on change and on SIGHUP, stops cleanly on SIGTERM/SIGINT.

${CONFIG}${HELP}`,
  status: `Usage: iot-batch-watcher status [options]

Batches from the ledger, read without the lock (works while the daemon runs).

${CONFIG}      --json             a JSON array, one object per batch (DESIGN.md §7 fields)
      --wide             every column (default: the columns that fit 100 characters)
      --state STATE      only batches in this state (pending, fetching, settled, parked; repeatable)
      --account NAME     only batches of this account (\`default\` until several accounts exist; repeatable)
      --job NAME         only batches of this provisioning job (repeatable)
      --jobs             one row per provisioning job instead (chunks settled/total, devices created/requested)
      --watch            a live view, redrawn every --interval (one summary line per interval without a terminal)
      --interval DUR     the watch interval, e.g. 2s, 500ms, 1m   default 2s
${HELP}`,
  provision: `Usage: iot-batch-watcher provision --product-key PK (--devices FILE | --count N) [options]
       iot-batch-watcher provision --name NAME [--config FILE]            (an entry of the file's provision list)
       iot-batch-watcher provision resolve --name NAME --chunk N (--apply-id ID | --not-submitted)

Submits a fleet in chunks (BatchCheckDeviceNames, names in the body, or BatchRegisterDevice), watches every
chunk to its outcome and prints the report JSON (with device secrets) on stdout; writes
<resultsDir>/<productKey>/provision-<name>.json and .csv (0600). Exit 0 complete, 3 incomplete, 4 timed out.
See docs/provisioning.md for the file formats, the exactly-once rules and submission_unknown.

${CONFIG}      --product-key PK   the product to create the devices in
      --devices FILE     DeviceName[,Nickname] CSV with a header, .jsonl or .txt
      --count N          random names instead (BatchRegisterDevice)
      --chunk-size N     names per ApplyId, 1..10000   default 1000
      --until created|checked                         default created
      --name NAME        the job's name (files, events, status)
      --endpoint URL     the API endpoint (default: from the configuration)
${HELP}`,
  results: `Usage: iot-batch-watcher results [options]

Prints stored results (with device secrets) from the state backend: the result files of the file backend,
the results table of the postgres backend.

${CONFIG}      --account NAME     only this account (the file backend has only \`default\`)
      --product-key PK   only this ProductKey
      --apply-id ID      only this ApplyId
      --provision NAME   the provisioning job NAME instead: json its report, csv its factory CSV
      --format json|csv  json (default): the result objects; csv: ProductKey,DeviceName,DeviceSecret,IotId
${HELP}`,
  migrate: `Usage: iot-batch-watcher migrate --from-file DIR [options]

Moves a file ledger (state.dir of the file backend), with its provisioning jobs, into PostgreSQL
(state.postgres of the configuration).
Idempotent; refuses while a daemon holds DIR or owns the account.

${CONFIG}      --from-file DIR    the file ledger's directory (required)
      --account NAME     the account to import it as   default default
${HELP}`,
  wait: `Usage: iot-batch-watcher wait --product-key PK --apply-id ID [options]

Watches one batch in the foreground (no ledger) and prints its result JSON on stdout.
Exit 0 created/checked, 3 failed or rejected, 4 timed out.

      --product-key PK   the batch's ProductKey (required)
      --apply-id ID      the batch's ApplyId (required)
      --until created|checked                                  default created
      --timeout DUR      give up after this long, e.g. 30m
      --register         call BatchRegisterDeviceWithApplyId after a successful check
      --endpoint URL     the API endpoint (default: the file's, else the region's)
      --region-id ID     the region (default: the file's, else cn-shanghai)
      --iot-instance-id ID
${CONFIG}${HELP}`,
  redeliver: `Usage: iot-batch-watcher redeliver [--event-id ID | --all | --list] [--sink webhook] [--config FILE]

Replays webhook dead letters (<state.dir>/dead-letter.jsonl) through the outbox: same event ids, same bodies,
same signatures. Each replayed letter is marked in <state.dir>/dead-letter.replayed.jsonl, so a second run does
not send it again. Refuses (exit 1) while a daemon holds the state directory: stop it first.
Exit 0 when every replayed letter was delivered, 1 when some were not (refused again, or still undelivered).

      --event-id ID      replay the latest dead letter of this event (repeatable)
      --all              replay every dead letter not replayed yet
      --list             print the dead letters and whether they were replayed; send nothing
      --sink NAME        the sink to deliver to (only webhook has dead letters)   default webhook
      --timeout DUR      how long to wait for delivery; the rest stays in the outbox  default 60s
${CONFIG}${HELP}`,
  demo: `Usage: iot-batch-watcher demo [--time-scale N]

Starts the simulator and the daemon on config/demo.yaml in a scratch directory, prints pretty logs and a
summary table, and exits 0 once every demo batch settled.

      --time-scale N     run the simulator N times faster         default 1
${HELP}`,
  version: 'Usage: iot-batch-watcher version\n\nPrints the version (also --version, -V).\n',
  help: USAGE,
};
