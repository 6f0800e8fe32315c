/**
 * `iot-batch-watcher redeliver [--event-id ID | --all | --list] [--sink webhook] [--config FILE]`: replays the
 * webhook's dead letters (`<state.dir>/dead-letter.jsonl`, written by src/sinks/webhook.ts for events the receiver
 * refused with a 4xx) through the normal outbox and webhook sink.
 *
 * - Same event ids, same bodies, same signatures: the dead letter keeps the event as JSON, and the webhook sink
 *   serialises it again (a JSON round trip of JSON data gives the same bytes), so `X-IBW-Signature` verifies
 *   with the same secret and receivers de-duplicate on the id.
 * - At least once: each letter is first made durable as an outbox entry in the ledger (acknowledged already by
 *   every sink but the webhook), then marked replayed in `<state.dir>/dead-letter.replayed.jsonl`, then
 *   delivered. A letter still undelivered when `--timeout` ends stays in the ledger's outbox: the daemon
 *   delivers it at its next start. A receiver that refuses it again (4xx) dead-letters it again, as a new letter.
 * - A second run does not resend a replayed letter (`--all` skips them; `--event-id` says so and skips it).
 * - The ledger has one writer: while a daemon holds the state directory, redeliver refuses (exit 1), naming the
 *   lock file. Stop the daemon, redeliver, start it again.
 *
 * Exit codes: 0 every selected letter delivered (or nothing to do), 1 some not delivered or the directory is in
 * use, 2 bad usage or configuration.
 */
import { readFile, open } from 'node:fs/promises';
import { join } from 'node:path';

import type { Logger } from 'pino';

import type { CompiledConfig } from '../config/types.js';
import { tryParseDuration } from '../config/duration.js';
import { resolveConfigPath } from '../config/env.js';
import { systemClock, systemRandom } from '../core/clock.js';
import type { JournalRecord } from '../core/ports.js';
import { SECRET_ENV_CODES, readEnvSecret } from '../secret-env.js';
import { DaemonError } from '../errors.js';
import type { WatcherEvent } from '../events.js';
import { openFileLedger } from '../ledger/file-ledger.js';
import { escapeControl } from '../ops/terminal-text.js';
import { Outbox } from '../sinks/outbox.js';
import { createWebhookSink } from '../sinks/webhook.js';
import { parseOptions, UsageError } from './args.js';

/** The dead-letter file in a state directory. */
export const DEAD_LETTER_FILE = 'dead-letter.jsonl';
/** The replay marks beside it. */
export const REPLAYED_FILE = 'dead-letter.replayed.jsonl';

/** Sinks of the daemon other than the webhook: a replayed entry counts as acknowledged by them. */
const OTHER_SINKS = ['log', 'emitter', 'events_file'];

/** What redeliver touches of the outside world. */
export interface RedeliverIo {
  env: Record<string, string | undefined>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** What redeliver needs from the composition root. */
export interface RedeliverDeps {
  loadConfig(path: string): Promise<CompiledConfig>;
  logger: Logger;
}

/** One line of the dead-letter file. */
export interface DeadLetter {
  at: string;
  event: WatcherEvent;
  status: number;
  reason: string;
  /** 1-based line in the file. */
  line: number;
}

/** A letter is identified by its event id and when it was dead-lettered (a refused replay is a new letter). */
export function letterKey(l: { event: { id: string }; at: string }): string {
  return `${l.event.id}@${l.at}`;
}

/** Reads the dead letters; a missing file is none. Lines that are not letters are reported in `bad`. */
export async function readDeadLetters(stateDir: string): Promise<{ letters: DeadLetter[]; bad: number[] }> {
  const text = await readOptional(join(stateDir, DEAD_LETTER_FILE));
  const letters: DeadLetter[] = [];
  const bad: number[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    try {
      const v = JSON.parse(raw) as Partial<DeadLetter>;
      if (typeof v.at !== 'string' || typeof v.event?.id !== 'string' || typeof v.event.type !== 'string') throw new Error('shape');
      letters.push({ at: v.at, event: v.event, status: Number(v.status), reason: String(v.reason ?? ''), line: i + 1 });
    } catch {
      bad.push(i + 1);
    }
  });
  return { letters, bad };
}

/** Keys of the letters already replayed, with when. */
export async function readReplayed(stateDir: string): Promise<Map<string, string>> {
  const text = await readOptional(join(stateDir, REPLAYED_FILE));
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    if (raw.trim() === '') continue;
    try {
      const v = JSON.parse(raw) as { key?: unknown; replayedAt?: unknown };
      if (typeof v.key === 'string') out.set(v.key, typeof v.replayedAt === 'string' ? v.replayedAt : '');
    } catch {
      // NOTE: a torn last line (crash while marking): that letter counts as not replayed, so at least once holds.
    }
  }
  return out;
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

async function appendSynced(path: string, text: string): Promise<void> {
  const handle = await open(path, 'a', 0o600);
  try {
    await handle.appendFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Runs `redeliver`; resolves with the exit code. */
export async function redeliverCommand(args: string[], io: RedeliverIo, deps: RedeliverDeps): Promise<number> {
  const opts = parseOptions(args, {
    config: { type: 'string', short: 'c' },
    'event-id': { type: 'string', multiple: true },
    all: { type: 'boolean' },
    list: { type: 'boolean' },
    sink: { type: 'string' },
    timeout: { type: 'string' },
  });
  const modes = [opts['event-id'] !== undefined, opts.all === true, opts.list === true].filter(Boolean).length;
  if (modes !== 1) throw new UsageError('choose one of --event-id ID, --all or --list');
  if ((opts.sink ?? 'webhook') !== 'webhook') throw new UsageError(`--sink: only webhook has dead letters, got ${JSON.stringify(opts.sink)}`);
  let timeoutMs = 60_000;
  if (opts.timeout !== undefined) {
    const d = tryParseDuration(opts.timeout);
    if (!d.ok || d.ms <= 0) throw new UsageError(`--timeout: expected a duration like "60s", got ${JSON.stringify(opts.timeout)}`);
    timeoutMs = d.ms;
  }
  const config = await deps.loadConfig(resolveConfigPath(opts.config, io.env));
  const stateDir = config.state.dir;
  const { letters, bad } = await readDeadLetters(stateDir);
  for (const line of bad) io.stderr.write(`${join(stateDir, DEAD_LETTER_FILE)}:${line}: not a dead letter; ignored\n`);
  const replayed = await readReplayed(stateDir);

  if (opts.list) {
    for (const l of letters) {
      const mark = replayed.get(letterKey(l));
      io.stdout.write(
        `${l.at}  ${escapeControl(l.event.id)}  ${l.event.type}  HTTP ${l.status}  ${mark === undefined ? 'not replayed' : `replayed ${mark}`}  ${escapeControl(l.reason).slice(0, 80)}\n`,
      );
    }
    if (letters.length === 0) io.stderr.write(`no dead letters in ${join(stateDir, DEAD_LETTER_FILE)}\n`);
    return 0;
  }

  let selected: DeadLetter[];
  if (opts.all) {
    selected = letters.filter((l) => !replayed.has(letterKey(l)));
  } else {
    selected = [];
    for (const id of new Set(opts['event-id'])) {
      // NOTE: the latest letter of the id (an event refused again has several).
      const latest = letters.filter((l) => l.event.id === id).at(-1);
      if (!latest) {
        io.stderr.write(`redeliver: no dead letter with event id ${JSON.stringify(id)} in ${join(stateDir, DEAD_LETTER_FILE)}\n`);
        return 1;
      }
      const mark = replayed.get(letterKey(latest));
      if (mark !== undefined) io.stderr.write(`redeliver: ${id} was already replayed (${mark}); not sending it again\n`);
      else selected.push(latest);
    }
  }
  // The same event may be dead-lettered twice without a replay in between (two daemons' runs); send it once.
  const byId = new Map<string, DeadLetter>();
  for (const l of selected) byId.set(l.event.id, l);
  if (byId.size === 0) {
    io.stderr.write('redeliver: nothing to replay\n');
    return 0;
  }

  const webhook = config.output.webhook;
  if (!webhook) {
    io.stderr.write('redeliver: output.webhook is not configured in this file; there is nowhere to deliver to\n');
    return 2;
  }
  const secret = readEnvSecret(io.env, webhook.secretEnv, { codes: SECRET_ENV_CODES.webhook });
  if (!secret) {
    io.stderr.write(`redeliver: neither ${webhook.secretEnv} nor ${webhook.secretEnv}_FILE (output.webhook.secretEnv) holds the webhook secret\n`);
    return 2;
  }

  let ledger;
  try {
    ledger = await openFileLedger({ dir: stateDir, logger: deps.logger });
  } catch (err) {
    if (err instanceof DaemonError && err.code === 'LedgerLocked') {
      io.stderr.write(
        `redeliver: the state directory is in use (${err.message}); lock file ${join(stateDir, 'LOCK')}. Stop the daemon, run redeliver, then start it again.\n`,
      );
      return 1;
    }
    throw err;
  }
  const logger = deps.logger;
  const sink = createWebhookSink({
    url: webhook.url,
    secret,
    timeoutMs: webhook.timeoutMs,
    deadLetterFile: join(stateDir, DEAD_LETTER_FILE),
    clock: systemClock,
    random: systemRandom,
    logger: logger.child({ component: 'webhook' }),
  });
  const outbox = new Outbox({ sinks: [sink], ledger, clock: systemClock, random: systemRandom, logger, retryInitialMs: 500, retryMaxMs: 5000 });
  try {
    const entries = [...byId.values()].map((l) => ({ event: l.event, acked: [...OTHER_SINKS] }));
    const records: JournalRecord[] = entries.map((entry) => ({ t: 'event', entry }));
    await ledger.append(records);
    const now = new Date(systemClock.now()).toISOString();
    await appendSynced(
      join(stateDir, REPLAYED_FILE),
      [...byId.values()].map((l) => `${JSON.stringify({ key: letterKey(l), eventId: l.event.id, deadLetteredAt: l.at, replayedAt: now })}\n`).join(''),
    );
    const before = sink.deadLettered();
    for (const entry of entries) outbox.enqueue(entry);
    outbox.start();
    const drained = await outbox.flush(timeoutMs);
    const again = sink.deadLettered() - before;
    const pending = outbox.pending();
    const sent = entries.length - pending;
    io.stdout.write(
      `redeliver: ${entries.length} dead letter(s) replayed: ${sent - again} delivered, ${again} refused again (see ${DEAD_LETTER_FILE})` +
        `${pending > 0 ? `, ${pending} still undelivered after ${timeoutMs} ms (kept in the ledger's outbox; the daemon delivers them at its next start)` : ''}\n`,
    );
    return drained && again === 0 ? 0 : 1;
  } finally {
    await outbox.close();
    await ledger.close();
  }
}
