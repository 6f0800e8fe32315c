/**
 * The webhook sink (`output.webhook`, DESIGN.md §4, contract).
 *
 * Each event is serialised once; that exact byte string is the POST body and the input of the signature:
 *
 *   POST <url>
 *   content-type: application/json
 *   x-ibw-event-id: <event.id>          (also `idempotency-key: <event.id>`; consumers de-duplicate on it)
 *   x-ibw-event-type: <event.type>
 *   x-ibw-signature: sha256=<lowercase hex HMAC-SHA256(secret, body)>
 *
 * Outcome of one `deliver` call:
 * - 2xx: acknowledged, resolves.
 * - 408, 429, 5xx, other non-4xx statuses, network errors and timeouts: retried here with a short exponential
 *   backoff (Retry-After honoured up to `retryAfterMaxMs`) up to `maxAttempts`, then rejects; the outbox
 *   retries later with its own backoff, forever.
 * - any other 4xx: the receiver refuses this event for good. It is appended to the dead-letter file as
 *   `{at, event, status, reason}` (fsync'd) and counted; `deliver` resolves (acknowledged as dead-lettered)
 *   and `deliverReport` resolves with `'dead_letter'`.
 *
 * The secret and the signature are never logged. Plain http is accepted only for loopback hosts.
 */
import { createHmac } from 'node:crypto';
import path from 'node:path';

import type { Logger } from 'pino';
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';

import { nextDelayMs } from '../core/backoff.js';
import type { Clock, Random, Timers } from '../core/clock.js';
import { systemTimers } from '../core/clock.js';
import { AbortedError, DaemonError } from '../errors.js';
import type { WatcherEvent } from '../events.js';
import type { ExchangeResponse } from '../http-exchange.js';
import { ExchangeError, exchange } from '../http-exchange.js';

import type { DeliveryReport, ReportingSink } from './reporting.js';
import { isLoopbackHost } from '../loopback.js';
import { openAppendFile } from '../safe-fs.js';
import { checkUrl } from '../url-rule.js';

/** Options of {@link createWebhookSink}. */
export interface WebhookSinkOptions {
  /** Receiver URL: https, or http to a loopback host (127.0.0.0/8, ::1, localhost). */
  url: string;
  /** HMAC-SHA256 key for `X-IBW-Signature`. Never logged. */
  secret: string;
  /**
   * Total deadline of one attempt (connect, send, headers and body); past it the connection is destroyed and
   * the attempt counts as a retryable failure.
   */
  timeoutMs: number;
  /** Where permanently refused events go (`<state.dir>/dead-letter.jsonl`). */
  deadLetterFile: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The one deadline timer per attempt. @default systemTimers */
  timers?: Timers;
  /**
   * Attempts per `deliver` call before it rejects.
   * @default 3
   */
  maxAttempts?: number;
  /**
   * First retry delay inside one `deliver` call; the cap doubles per attempt, the delay is drawn in
   * [retryInitialMs, cap] (the one jitter formula, core/backoff.ts).
   * @default 250
   */
  retryInitialMs?: number;
  /**
   * Cap of the retry delay inside one `deliver` call.
   * @default 5000
   */
  retryMaxMs?: number;
  /**
   * Cap applied to a receiver's `Retry-After`.
   * @default 30000
   */
  retryAfterMaxMs?: number;
  /**
   * undici dispatcher to send with (tests may pass a MockAgent). When absent the sink owns an Agent and
   * closes it in `close()`.
   * @default a new undici Agent with `connect.timeout = timeoutMs`
   */
  dispatcher?: Dispatcher;
}

/** The webhook sink. */
export interface WebhookSink extends ReportingSink {
  /** Events dead-lettered since creation. */
  deadLettered(): number;
}

/** `sha256=<hex>`: the `X-IBW-Signature` value for `body` (exported so receivers and tests can verify). */
export function signWebhookBody(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export { isLoopbackHost };

const BODY_SNIPPET_CHARS = 500;

/** Creates the webhook sink (name `webhook`). Throws a config error on a bad URL, secret or option. */
export function createWebhookSink(options: WebhookSinkOptions): WebhookSink {
  const url = parseWebhookUrl(options.url);
  if (options.secret.length === 0) {
    throw configError('webhook secret is empty', 'WebhookSecretMissing');
  }
  const maxAttempts = options.maxAttempts ?? 3;
  const retryInitialMs = options.retryInitialMs ?? 250;
  const retryMaxMs = options.retryMaxMs ?? 5000;
  const retryAfterMaxMs = options.retryAfterMaxMs ?? 30_000;
  requireNumber('maxAttempts', maxAttempts, 1, true);
  requireNumber('timeoutMs', options.timeoutMs, 1, false);
  requireNumber('retryInitialMs', retryInitialMs, 0, false);
  requireNumber('retryMaxMs', retryMaxMs, 0, false);
  requireNumber('retryAfterMaxMs', retryAfterMaxMs, 0, false);

  const { clock, random, secret, timeoutMs } = options;
  const timers = options.timers ?? systemTimers;
  const ownsDispatcher = options.dispatcher === undefined;
  const dispatcher = options.dispatcher ?? new Agent({ connect: { timeout: timeoutMs } });
  // NOTE: only the origin is logged; a path or query string may embed a receiver token.
  const logger = options.logger.child({ sink: 'webhook', webhook: url.origin });
  const deadLetterFile = path.resolve(options.deadLetterFile);
  let deadLetterChain: Promise<unknown> = Promise.resolve();
  let deadLetterCount = 0;

  const appendDeadLetter = (line: string): Promise<void> => {
    const run = deadLetterChain.then(async () => {
      // Never through a symlink, regular files only (src/safe-fs.ts), like the events file.
      const handle = await openAppendFile(deadLetterFile, { mode: 0o600, label: 'dead-letter file' });
      try {
        await handle.appendFile(line, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
    deadLetterChain = run.catch(() => undefined);
    return run;
  };

  type Attempt =
    | { kind: 'ok'; status: number }
    | { kind: 'retry'; status: number | null; reason: string; retryAfterMs: number | null }
    | { kind: 'dead'; status: number; reason: string };

  const attemptOnce = async (body: string, event: WatcherEvent, signal?: AbortSignal): Promise<Attempt> => {
    let response: ExchangeResponse;
    try {
      response = await exchange(
        dispatcher,
        {
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headersTimeout: 0,
          bodyTimeout: 0,
          headers: {
            'content-type': 'application/json',
            'user-agent': 'iot-batch-watcher',
            'x-ibw-event-id': event.id,
            'x-ibw-event-type': event.type,
            'idempotency-key': event.id,
            'x-ibw-signature': signWebhookBody(secret, body),
          },
          body,
        },
        // NOTE: the body is read only for a refusal's reason; the rest is dropped, the deadline still applies.
        { deadlineMs: timeoutMs, maxBodyBytes: BODY_SNIPPET_CHARS * 4, overflow: 'truncate', timers, signal },
      );
    } catch (err) {
      if (signal?.aborted || (err instanceof ExchangeError && err.failure === 'Aborted')) throw new AbortedError('webhook delivery aborted');
      if (err instanceof ExchangeError && err.failure === 'Deadline') {
        logger.info({ eventId: event.id, eventType: event.type, status: err.statusCode, timeoutMs }, 'webhook delivery exceeded its deadline; connection closed');
        return { kind: 'retry', status: null, reason: `timeout: ${err.message}`, retryAfterMs: null };
      }
      return { kind: 'retry', status: null, reason: describeNetworkError(err instanceof ExchangeError ? (err.cause ?? err) : err), retryAfterMs: null };
    }
    const status = response.statusCode;
    if (status >= 200 && status < 300) return { kind: 'ok', status };
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      const snippet = snippetOf(response.body);
      return { kind: 'dead', status, reason: snippet === '' ? `HTTP ${status}` : `HTTP ${status}: ${snippet}` };
    }
    return {
      kind: 'retry',
      status,
      reason: `HTTP ${status}`,
      retryAfterMs: parseRetryAfter(response.headers['retry-after'], clock.now()),
    };
  };

  const deliverReport = async (event: WatcherEvent, signal?: AbortSignal): Promise<DeliveryReport> => {
    if (signal?.aborted) throw new AbortedError('webhook delivery aborted');
    const body = JSON.stringify(event);
    let last: Attempt | null = null;
    for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
      const result = await attemptOnce(body, event, signal);
      if (result.kind === 'ok') {
        logger.debug({ eventId: event.id, eventType: event.type, status: result.status, attempt }, 'webhook delivered');
        return 'ok';
      }
      if (result.kind === 'dead') {
        const line = `${JSON.stringify({
          at: new Date(clock.now()).toISOString(),
          event,
          status: result.status,
          reason: result.reason,
        })}\n`;
        await appendDeadLetter(line);
        deadLetterCount += 1;
        logger.warn(
          { eventId: event.id, eventType: event.type, status: result.status, deadLetterFile },
          'webhook refused the event; written to the dead-letter file',
        );
        return 'dead_letter';
      }
      last = result;
      if (attempt === maxAttempts) break;
      // NOTE: the one jitter formula (core/backoff.ts), as the API client and the outbox use it.
      const backoffMs = nextDelayMs({ initialDelayMs: retryInitialMs, maxDelayMs: retryMaxMs, multiplier: 2 }, attempt, random);
      const delayMs = result.retryAfterMs === null ? backoffMs : Math.min(retryAfterMaxMs, result.retryAfterMs);
      logger.debug(
        { eventId: event.id, eventType: event.type, status: result.status, reason: result.reason, attempt, delayMs },
        'webhook attempt failed; retrying',
      );
      await clock.sleep(delayMs, signal);
    }
    throw new DaemonError(
      `webhook delivery of ${event.id} failed after ${maxAttempts} attempt(s): ${last?.kind === 'retry' ? last.reason : 'unknown'}`,
      { kind: 'sink', scope: 'attempt', code: last?.status == null ? 'WebhookUnreachable' : `WebhookHttp${last.status}` },
    );
  };

  return {
    name: 'webhook',
    async deliver(event, signal) {
      await deliverReport(event, signal);
    },
    deliverReport,
    async close() {
      await deadLetterChain;
      if (ownsDispatcher) await dispatcher.close();
    },
    deadLettered: () => deadLetterCount,
  };
}

/** The one URL rule (src/url-rule.ts; a path and query allowed), with the webhook's own messages and codes. */
function parseWebhookUrl(raw: string): URL {
  const check = checkUrl(raw, { originOnly: false });
  if (check.ok) return check.url;
  switch (check.kind) {
    case 'not-url':
      throw configError(`webhook url is not a valid URL`, 'WebhookUrlInvalid');
    case 'credentials':
      throw configError('webhook url must not carry credentials (user:password@)', 'WebhookUrlInvalid');
    case 'insecure':
      throw configError(
        `webhook url must use https (plain http is allowed only for loopback hosts, got host \`${new URL(raw).hostname}\`)`,
        'WebhookUrlInsecure',
      );
    default:
      throw configError(`webhook url must use https, got \`${new URL(raw).protocol}\``, 'WebhookUrlInvalid');
  }
}

function configError(message: string, code: string): DaemonError {
  return new DaemonError(message, { kind: 'config', scope: 'process', code });
}

function requireNumber(name: string, value: number, min: number, integer: boolean): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new TypeError(
      `Expected \`${name}\` to be a finite ${integer ? 'integer' : 'number'} >= ${min}, got \`${String(value)}\` (${typeof value})`,
    );
  }
}

/** Retry-After as delay-seconds or an HTTP date; null when absent or unparseable. */
export function parseRetryAfter(header: string | string[] | undefined, nowMs: number): number | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - nowMs);
}

function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message;
  }
  return 'network error';
}

function snippetOf(body: Buffer): string {
  const text = body.toString('utf8').replace(/\s+/g, ' ').trim();
  return text.length > BODY_SNIPPET_CHARS ? `${text.slice(0, BODY_SNIPPET_CHARS)}…` : text;
}
