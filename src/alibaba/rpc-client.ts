/**
 * The signed, retrying RPC transport for Alibaba Cloud IoT Platform (API version 2018-01-20), on undici.
 *
 * One call = up to `maxAttempts` attempts. Each attempt:
 *   beforeAttempt hook (rate limiter) → credentials.get() → fresh nonce + timestamp → sign (V3 default, or V1)
 *   → POST on the endpoint's keep-alive pool under ONE total deadline (`requestTimeoutMs`: queueing, connect,
 *   headers and body; http-exchange.ts) → read the body under a size cap → classify → onAttempt hook
 *   → exactly one debug log line.
 * Only errors whose table scope is `attempt` are retried (p-retry), with capped exponential backoff and
 * jitter drawn from the injected Random and waited with the injected Clock, within `maxRetryTimeMs`.
 * Throttling is reported through `onAttempt` on every occurrence and, if retries run out, as an `ApiError`
 * with `kind: 'throttled'`; it is never absorbed silently.
 *
 * Non-idempotent actions (`idempotent: false`: BatchCheckDeviceNames, BatchRegisterDevice) are retried only
 * when the service cannot have acted on the request (the `notProcessed` column of error-codes.ts: throttled,
 * ServiceUnavailable, SignatureNonceUsed, connection refused / connect timeout / not sent before the deadline; or an
 * explicit Success:false answer); a timeout or reset after sending is surfaced to the caller instead of risking a
 * second batch.
 *
 * Response shapes (reference §3): HTTP 4xx/5xx → gateway `{Code, Message, RequestId, HostId, Recommend}`;
 * 2xx with `Success:false` → IoT business error `{Code, ErrorMessage}`; 2xx with `Success` true or absent → ok.
 * Anything else (not JSON, truncated, too large, wrong types) is an `ApiError` with a `Response.*` or
 * `Transport.*` code, never a crash.
 */
import pRetry, { AbortError } from 'p-retry';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { Pool } from 'undici';

import { nextDelayMs } from '../core/backoff.js';
import type { Clock, Random, Timers } from '../core/clock.js';
import { systemClock, systemRandom, systemTimers } from '../core/clock.js';
import type { ExchangeResponse } from '../http-exchange.js';
import { ExchangeError, exchange } from '../http-exchange.js';
import type { ApiAction } from '../core/ports.js';
import { AbortedError, DaemonError, coerceError } from '../errors.js';
import type { Credentials, CredentialsProvider } from './credentials.js';
import type { AttemptOutcome } from './error-codes.js';
import { outcomeOf } from './error-codes.js';
import type { ApiErrorSource } from './errors.js';
import { ApiError, scrubSecrets } from './errors.js';
import { parseJsonLossless } from './lossless-json.js';
import { canonicalQuery } from './percent-encode.js';
import { formatTimestamp, signV1, v1CommonParams } from './sign-v1.js';
import { EMPTY_SHA256, sha256Hex, signV3Rpc } from './sign-v3.js';
import { isLoopbackHost } from '../loopback.js';
import { checkUrl } from '../url-rule.js';

/** The IoT Platform API version. */
export const IOT_API_VERSION = '2018-01-20';

/** What `onAttempt` receives after every attempt (for metrics). */
export interface AttemptInfo {
  action: ApiAction;
  outcome: AttemptOutcome;
  /** null when no HTTP response arrived. */
  httpStatus: number | null;
  durationMs: number;
  requestId: string | null;
  /** The error code, or null on success. */
  code: string | null;
  /** 1-based attempt number within the call. */
  attempt: number;
  /** The endpoint origin the attempt went to (per-batch regions have their own). */
  endpoint: string;
  /** The error's message (scrubbed of secrets and shortened, `ApiError.apiMessage`), or null on success. */
  message: string | null;
}

export interface RpcClientOptions {
  /** Default endpoint URL, e.g. `https://iot.cn-shanghai.aliyuncs.com`. `http:` only for loopback hosts. */
  endpoint: string;
  credentials: CredentialsProvider;
  /** API version. @default '2018-01-20' */
  version?: string;
  /** `v3` = ACS3-HMAC-SHA256 (what the official SDK sends), `v1` = HMAC-SHA1. @default 'v3' */
  signatureVersion?: 'v1' | 'v3';
  /**
   * Total deadline of each attempt, in ms: waiting for a connection, connecting, sending, headers and the whole
   * body. When it passes the request is aborted and its connection destroyed (`Transport.Timeout`). @default 10000
   */
  requestTimeoutMs?: number;
  /** TCP/TLS connect timeout, in ms. @default requestTimeoutMs */
  connectTimeoutMs?: number;
  /** Largest response body accepted, in bytes; more → `Response.TooLarge`. @default 8388608 (8 MiB) */
  maxBodyBytes?: number;
  /** Attempts per call, including the first. @default 4 */
  maxAttempts?: number;
  /** No retry starts once this much time (by the injected clock) has passed since the call began. @default 60000 */
  maxRetryTimeMs?: number;
  /** Backoff floor before the first retry, in ms. @default 200 */
  retryBaseDelayMs?: number;
  /** Backoff cap, in ms. @default 10000 */
  retryMaxDelayMs?: number;
  /** Keep-alive connections per endpoint origin. @default 16 */
  connectionsPerEndpoint?: number;
  /** Idle keep-alive socket lifetime, in ms. @default 4000 */
  keepAliveTimeoutMs?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default systemRandom */
  random?: Random;
  /** The one deadline timer per attempt. @default systemTimers */
  timers?: Timers;
  /** Receives one debug line per attempt and a warning per unknown error code. @default a disabled logger */
  logger?: Logger;
  /** Awaited before every attempt (the daemon's rate limiter takes a token here). */
  beforeAttempt?: (action: ApiAction, signal?: AbortSignal) => Promise<void>;
  /** Called after every attempt that was not aborted by the caller (metrics). Must not throw. */
  onAttempt?: (info: AttemptInfo) => void;
  /** `user-agent` header. @default 'iot-batch-watcher' */
  userAgent?: string;
}

export interface RpcCallOptions {
  signal?: AbortSignal;
  /** Endpoint override for this call (per-batch region). */
  endpoint?: string;
  /** False for actions that create something; see the module comment. @default true */
  idempotent?: boolean;
  /** Parameters sent in a form body instead of the query (already flattened: `DeviceName.1` …). */
  bodyParams?: Readonly<Record<string, string>>;
  /** Overrides the client's `maxAttempts` for this call. */
  maxAttempts?: number;
  /**
   * Awaited right before each attempt goes on the wire (after signing), e.g. to take a rate-limit token as late
   * as possible so the server sees the same spacing the limiter granted.
   */
  beforeSend?: () => Promise<void>;
  /** Called when an attempt's request is handed to its socket (the rate limiter's window counts that time). */
  onSent?: () => void;
}

export interface RpcResponse {
  /** The parsed JSON object; integer `ApplyId` values are strings (lossless). */
  body: Record<string, unknown>;
  httpStatus: number;
  requestId: string | null;
  /** Attempts this call took. */
  attempts: number;
}

/** A signed, retrying RPC client. */
export interface RpcClient {
  /** Calls `action` with RPC parameters (already flattened: `DeviceName.1` …). Rejects with `ApiError`, `AbortedError` or a config `DaemonError`. */
  call(action: ApiAction, params: Readonly<Record<string, string>>, options?: RpcCallOptions): Promise<RpcResponse>;
  /** Closes every pool, letting requests in flight finish. Later calls reject. */
  close(): Promise<void>;
  /** Closes every pool at once, failing requests in flight (forceful shutdown). */
  destroy(): Promise<void>;
}

const DEFAULT_MAX_BODY = 8 * 1024 * 1024;

export { isLoopbackHost };

/**
 * Parses and checks an endpoint by the one URL rule (src/url-rule.ts, origin only): `https:` anywhere, `http:`
 * only on a loopback host, no path, query or credentials. Throws a `DaemonError` (`kind: 'config'`, `scope: 'process'`, code `EndpointInvalid` or
 * `EndpointInsecure`); never connects.
 */
export function parseEndpoint(endpoint: string): URL {
  const check = checkUrl(endpoint, { originOnly: true });
  if (check.ok) return check.url;
  const where = check.kind === 'not-url' ? JSON.stringify(endpoint) : new URL(endpoint).origin;
  throw new DaemonError(`endpoint ${where}: ${check.message}`, {
    kind: 'config',
    scope: 'process',
    code: check.kind === 'insecure' ? 'EndpointInsecure' : 'EndpointInvalid',
  });
}

interface BuiltRequest {
  path: string;
  headers: Record<string, string>;
  /** The form body (`application/x-www-form-urlencoded`), or null for none. */
  body: string | null;
  signature: string;
}

const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

/**
 * Builds the signed request of one attempt. Exported for tests.
 *
 * `bodyParams` (optional) go in a form body (`application/x-www-form-urlencoded`), as Alibaba's own SDK metadata
 * sends BatchCheckDeviceNames' names (reference §9): V1 signs query and body parameters together (the body is
 * not hashed); V3 signs the query only, plus `content-type` and the body's SHA-256 in `x-acs-content-sha256`.
 */
export function buildSignedRequest(input: {
  signatureVersion: 'v1' | 'v3';
  action: string;
  version: string;
  params: Readonly<Record<string, string>>;
  bodyParams?: Readonly<Record<string, string>> | undefined;
  host: string;
  credentials: Credentials;
  timestamp: string;
  nonce: string;
  userAgent: string;
}): BuiltRequest {
  const { credentials: c } = input;
  const body = input.bodyParams === undefined ? null : canonicalQuery(input.bodyParams);
  if (input.signatureVersion === 'v1') {
    const query: Record<string, string> = {
      ...input.params,
      ...v1CommonParams({
        action: input.action,
        version: input.version,
        accessKeyId: c.accessKeyId,
        timestamp: input.timestamp,
        nonce: input.nonce,
        securityToken: c.securityToken,
      }),
    };
    const { signature } = signV1(input.bodyParams === undefined ? query : { ...input.bodyParams, ...query }, 'POST', c.accessKeySecret);
    query.Signature = signature;
    const headers: Record<string, string> = {
      host: input.host,
      'x-acs-action': input.action,
      'x-acs-version': input.version,
      accept: 'application/json',
      'user-agent': input.userAgent,
    };
    if (body !== null) headers['content-type'] = FORM_CONTENT_TYPE;
    return { path: `/?${canonicalQuery(query)}`, headers, body, signature };
  }
  const bodySha256 = body === null ? EMPTY_SHA256 : sha256Hex(body);
  const query = canonicalQuery(input.params);
  const token = c.securityToken ? c.securityToken : null;
  const { signature, authorization } = signV3Rpc({
    host: input.host,
    action: input.action,
    version: input.version,
    date: input.timestamp,
    nonce: input.nonce,
    canonicalQueryString: query,
    bodySha256,
    contentType: body === null ? null : FORM_CONTENT_TYPE,
    accessKeyId: c.accessKeyId,
    accessKeySecret: c.accessKeySecret,
    securityToken: token,
  });
  // NOTE: the headers v3Headers() builds, in its order, then the unsigned ones.
  const headers: Record<string, string> = {
    host: input.host,
    'x-acs-action': input.action,
    'x-acs-version': input.version,
    'x-acs-date': input.timestamp,
    'x-acs-signature-nonce': input.nonce,
    'x-acs-content-sha256': bodySha256,
  };
  if (token !== null) {
    headers['x-acs-security-token'] = token;
    headers['x-acs-accesskey-id'] = c.accessKeyId;
  }
  headers.authorization = authorization;
  headers.accept = 'application/json';
  headers['user-agent'] = input.userAgent;
  if (body !== null) headers['content-type'] = FORM_CONTENT_TYPE;
  return { path: query === '' ? '/' : `/?${query}`, headers, body, signature };
}

/**
 * An endpoint resolved once: `URL.origin` and `URL.host` are getters that build a new string on every read, and the
 * pool map and the signed `host` header would read them on every attempt.
 */
interface Endpoint {
  origin: string;
  host: string;
}

const endpointOf = (url: URL): Endpoint => ({ origin: url.origin, host: url.host });

/** Per-call endpoints (per-batch regions) kept resolved; past this many distinct strings the map starts over. */
const MAX_ENDPOINTS = 64;

/** The service cannot have acted on the request: safe to resend a non-idempotent call (the table's column). */
function safeToResend(err: ApiError): boolean {
  return err.notProcessed || err.source === 'business';
}

/** Creates the client. Throws a config `DaemonError` when `endpoint` is not acceptable. */
export function createRpcClient(options: RpcClientOptions): RpcClient {
  const defaultEndpoint = endpointOf(parseEndpoint(options.endpoint));
  const endpoints = new Map<string, Endpoint>();
  /** The endpoint of a call; an invalid one throws each time (never cached). */
  const resolveEndpoint = (endpoint: string | undefined): Endpoint => {
    if (endpoint === undefined) return defaultEndpoint;
    let e = endpoints.get(endpoint);
    if (e === undefined) {
      e = endpointOf(parseEndpoint(endpoint));
      if (endpoints.size >= MAX_ENDPOINTS) endpoints.clear();
      endpoints.set(endpoint, e);
    }
    return e;
  };
  const version = options.version ?? IOT_API_VERSION;
  const signatureVersion = options.signatureVersion ?? 'v3';
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? requestTimeoutMs;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const maxAttempts = options.maxAttempts ?? 4;
  const maxRetryTimeMs = options.maxRetryTimeMs ?? 60_000;
  const backoff = {
    initialDelayMs: options.retryBaseDelayMs ?? 200,
    maxDelayMs: options.retryMaxDelayMs ?? 10_000,
    multiplier: 2,
  };
  const clock = options.clock ?? systemClock;
  const random = options.random ?? systemRandom;
  const timers = options.timers ?? systemTimers;
  const logger = options.logger ?? pino({ enabled: false });
  const userAgent = options.userAgent ?? 'iot-batch-watcher';
  const pools = new Map<string, Pool>();
  const warnedCodes = new Set<string>();
  let closed = false;

  const closedError = (): DaemonError =>
    new DaemonError('RPC client is closed', { kind: 'internal', scope: 'process', code: 'ClientClosed' });

  const poolFor = (url: Endpoint): Pool => {
    if (closed) throw closedError();
    let pool = pools.get(url.origin);
    if (pool === undefined) {
      pool = new Pool(url.origin, {
        connections: options.connectionsPerEndpoint ?? 16,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? 4_000,
        connectTimeout: connectTimeoutMs,
        // NOTE: off; the total deadline of http-exchange.ts is the one timer of an attempt.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      pools.set(url.origin, pool);
    }
    return pool;
  };

  const attemptOnce = async (
    action: ApiAction,
    params: Readonly<Record<string, string>>,
    url: Endpoint,
    attempt: number,
    callOptions: RpcCallOptions,
  ): Promise<RpcResponse> => {
    const { signal, beforeSend, bodyParams, onSent } = callOptions;
    if (options.beforeAttempt) await options.beforeAttempt(action, signal);
    signal?.throwIfAborted();
    // NOTE: a retry after close()/destroy() must not open a new pool (poolFor throws ClientClosed).
    const pool = poolFor(url);
    const creds = await options.credentials.get();
    const req = buildSignedRequest({
      signatureVersion,
      action,
      version,
      params,
      bodyParams,
      host: url.host,
      credentials: creds,
      timestamp: formatTimestamp(clock.now()),
      nonce: random.nonce(),
      userAgent,
    });
    const secrets = [creds.accessKeySecret, creds.securityToken, req.signature];
    if (beforeSend) {
      await beforeSend();
      signal?.throwIfAborted();
    }
    const started = clock.now();
    let httpStatus: number | null = null;
    let requestId: string | null = null;
    let failure: unknown = null;
    try {
      let res: ExchangeResponse;
      try {
        res = await exchange(
          pool,
          { path: req.path, method: 'POST', headers: req.headers, body: req.body, headersTimeout: 0, bodyTimeout: 0 },
          { deadlineMs: requestTimeoutMs, maxBodyBytes, overflow: 'fail', timers, signal, onSent },
        );
      } catch (err) {
        throw exchangeFailure(action, err, secrets, requestTimeoutMs, logger);
      }
      httpStatus = res.statusCode;
      requestId = headerValue(res.headers['x-acs-request-id']);
      const text = decodeBody(action, res);
      const body = interpret(action, res.statusCode, text, requestId, secrets);
      requestId = stringField(body.RequestId) ?? requestId;
      return { body, httpStatus: res.statusCode, requestId, attempts: attempt };
    } catch (err) {
      if (err instanceof ApiError) requestId = err.requestId ?? requestId;
      failure = err;
      if (signal?.aborted) throw new AbortedError(`${action}: aborted`);
      throw err;
    } finally {
      const durationMs = Math.max(0, clock.now() - started);
      const aborted = signal?.aborted === true && !(failure === null);
      const apiErr = failure instanceof ApiError ? failure : null;
      const outcome: AttemptOutcome | 'aborted' | 'error' =
        failure === null ? 'success' : aborted ? 'aborted' : apiErr ? outcomeOf(apiErr, apiErr.source === 'business') : 'error';
      // NOTE: the level check first: the fields object is not built per request when debug is off.
      if (logger.isLevelEnabled('debug')) {
        logger.debug({ action, attempt, httpStatus, requestId, durationMs, outcome, code: apiErr?.code ?? null }, 'alibaba api request');
      }
      if (apiErr && !apiErr.known && !warnedCodes.has(apiErr.code)) {
        warnedCodes.add(apiErr.code);
        logger.warn(
          { action, code: apiErr.code, httpStatus, requestId },
          'unknown Alibaba error code; treating it as transient (add it to src/alibaba/error-codes.ts)',
        );
      }
      if (options.onAttempt && outcome !== 'aborted' && outcome !== 'error') {
        try {
          options.onAttempt({
            action,
            outcome,
            httpStatus,
            durationMs,
            requestId,
            code: apiErr?.code ?? null,
            attempt,
            endpoint: url.origin,
            message: apiErr?.apiMessage ?? null,
          });
        } catch (hookErr) {
          logger.warn({ err: hookErr, action }, 'onAttempt hook threw');
        }
      }
    }
  };

  return {
    async call(action, params, callOptions = {}) {
      if (closed) throw closedError();
      const url = resolveEndpoint(callOptions.endpoint);
      const signal = callOptions.signal;
      const attempts = Math.max(1, Math.floor(callOptions.maxAttempts ?? maxAttempts));
      const idempotent = callOptions.idempotent ?? true;
      const startedAt = clock.now();
      try {
        // NOTE: a single attempt (the daemon's status polls) skips p-retry's machinery: it is the hot path.
        if (attempts === 1) return await attemptOnce(action, params, url, 1, callOptions);
        return await pRetry(
          async (attemptNumber) => {
            try {
              return await attemptOnce(action, params, url, attemptNumber, callOptions);
            } catch (err) {
              if (err instanceof ApiError && err.scope === 'attempt' && (idempotent || safeToResend(err))) throw err;
              // Not retryable (batch/process scope, aborted, a bug): p-retry rejects with the original error.
              throw new AbortError(coerceError(err));
            }
          },
          {
            retries: attempts - 1,
            // NOTE: p-retry waits with real timers; we wait in shouldRetry with the injected clock instead.
            minTimeout: 0,
            factor: 1,
            signal,
            shouldRetry: async ({ attemptNumber }) => {
              if (closed) return false;
              const delay = nextDelayMs(backoff, attemptNumber, random);
              if (clock.now() - startedAt + delay >= maxRetryTimeMs) return false;
              await clock.sleep(delay, signal);
              return true;
            },
          },
        );
      } catch (err) {
        if (err instanceof DaemonError) throw err;
        if (signal?.aborted) throw new AbortedError(`${action}: aborted`);
        throw err;
      }
    },
    async close() {
      closed = true;
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.close()));
    },
    async destroy() {
      closed = true;
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.destroy()));
    },
  };
}

function headerValue(v: string | string[] | undefined): string | null {
  if (Array.isArray(v)) return v[0] ?? null;
  return v === undefined || v === '' ? null : v;
}

function stringField(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

function transportError(action: string, err: unknown, secrets: readonly (string | null)[]): ApiError {
  const code = errCode(err) ?? errCode((err as { cause?: unknown } | null)?.cause);
  let ours: string;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      ours = 'Transport.ConnectTimeout';
      break;
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      ours = 'Transport.Timeout';
      break;
    case 'ECONNREFUSED':
      ours = 'Transport.ConnectionRefused';
      break;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      ours = 'Transport.DnsError';
      break;
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
      ours = 'Transport.ConnectionReset';
      break;
    default:
      ours = 'Transport.Error';
  }
  return apiError(action, ours, 'transport', describe(err, secrets), null, err);
}

function describe(err: unknown, secrets: readonly (string | null)[]): string {
  const e = coerceError(err);
  return scrubSecrets(`${e.name}${errCode(e) ? ` ${errCode(e)}` : ''}: ${e.message}`, secrets);
}

function apiError(
  action: string,
  code: string,
  source: ApiErrorSource,
  message: string,
  httpStatus: number | null,
  cause?: unknown,
): ApiError {
  return new ApiError({ action, code, source, message, httpStatus, cause });
}

/** Decodes a complete body as UTF-8 (strict). */
function decodeBody(action: string, res: ExchangeResponse): string {
  try {
    return UTF8.decode(res.body);
  } catch (err) {
    throw apiError(action, 'Response.Malformed', 'response', 'body is not valid UTF-8', res.statusCode, err);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Maps a failed exchange to an `ApiError`: the total deadline → `Transport.Timeout` (or `Transport.ConnectTimeout`
 * when the request never reached a socket: nothing was sent), an oversized body → `Response.TooLarge`, a body
 * cut after the headers → `Response.Truncated`, anything else → the transport code of undici's error.
 * A deadline is logged at info (the connection was closed on purpose; operators should see it).
 */
function exchangeFailure(action: string, err: unknown, secrets: readonly (string | null)[], deadlineMs: number, logger: Logger): unknown {
  if (!(err instanceof ExchangeError)) return transportError(action, err, secrets);
  switch (err.failure) {
    case 'Aborted':
      return new AbortedError(`${action}: aborted`);
    case 'TooLarge':
      return apiError(action, 'Response.TooLarge', 'response', err.message, err.statusCode);
    case 'Deadline': {
      const code = err.sent ? 'Transport.Timeout' : 'Transport.ConnectTimeout';
      logger.info({ action, code, httpStatus: err.statusCode, receivedBytes: err.receivedBytes, requestTimeoutMs: deadlineMs }, 'alibaba api request exceeded its deadline; connection closed');
      return apiError(action, code, 'transport', `${err.message}; connection closed`, err.statusCode);
    }
    case 'Network':
      if (err.statusCode !== null) {
        return apiError(action, 'Response.Truncated', 'response', `body read failed after ${err.receivedBytes} bytes: ${describe(err.cause, secrets)}`, err.statusCode, err.cause);
      }
      return transportError(action, err.cause, secrets);
  }
}

function interpret(
  action: string,
  status: number,
  text: string,
  headerRequestId: string | null,
  secrets: readonly (string | null)[],
): Record<string, unknown> {
  let parsed: unknown;
  let parseOk = true;
  try {
    parsed = parseJsonLossless(text);
  } catch {
    parseOk = false;
  }
  const obj = isRecord(parsed) ? parsed : null;
  const requestId = stringField(obj?.RequestId) ?? headerRequestId;
  const scrub = (s: string): string => scrubSecrets(s, secrets);
  if (status < 200 || status > 299) {
    const code = stringField(obj?.Code) ?? `Http.${status}`;
    const message =
      stringField(obj?.Message) ?? stringField(obj?.ErrorMessage) ?? (obj ? 'no message' : `HTTP ${status} without a JSON body`);
    throw new ApiError({
      action,
      code,
      source: 'gateway',
      message: scrub(message),
      httpStatus: status,
      requestId,
      hostId: stringField(obj?.HostId),
      recommend: stringField(obj?.Recommend),
    });
  }
  if (obj === null) {
    const why = !parseOk
      ? text.trim() === ''
        ? 'empty body'
        : `body is not valid JSON (${text.length} chars)`
      : `body is JSON ${Array.isArray(parsed) ? 'array' : parsed === null ? 'null' : typeof parsed}, expected an object`;
    throw new ApiError({ action, code: 'Response.Malformed', source: 'response', message: why, httpStatus: status, requestId });
  }
  const success = obj.Success;
  if (success === false || success === 'false') {
    throw new ApiError({
      action,
      code: stringField(obj.Code) ?? 'Business.NoCode',
      source: 'business',
      message: scrub(stringField(obj.ErrorMessage) ?? stringField(obj.Message) ?? 'Success:false without a message'),
      httpStatus: status,
      requestId,
    });
  }
  if (success !== undefined && success !== true && success !== 'true') {
    throw new ApiError({
      action,
      code: 'Response.Malformed',
      source: 'response',
      message: `Success has type ${success === null ? 'null' : typeof success}, expected boolean`,
      httpStatus: status,
      requestId,
    });
  }
  return obj;
}
