/**
 * `ApiError`: every failure of an Alibaba API call, whether the gateway, IoT or the network said no.
 * Classified once, here at the boundary, by the table in `error-codes.ts`. Messages never carry secrets:
 * text that comes from the server is scrubbed of the caller's secret values and shortened.
 */
import { DaemonError } from '../errors.js';
import type { Classification } from './error-codes.js';
import { classifyCode, codeRow } from './error-codes.js';
import { percentEncode } from './percent-encode.js';

/** Where the error came from. */
export type ApiErrorSource =
  /** HTTP 4xx/5xx with the gateway shape `{Code, Message, RequestId, HostId, Recommend}`. */
  | 'gateway'
  /** HTTP 2xx with `Success:false`, `Code`, `ErrorMessage`. */
  | 'business'
  /** No usable HTTP response (timeout, reset, refused...). */
  | 'transport'
  /** A response arrived but could not be used (not JSON, truncated, too large, wrong shape). */
  | 'response';

export interface ApiErrorInit {
  action: string;
  code: string;
  /** Human text; the server's `Message`/`ErrorMessage` when there was one. Scrubbed and shortened. */
  message: string;
  source: ApiErrorSource;
  httpStatus?: number | null;
  requestId?: string | null;
  hostId?: string | null;
  recommend?: string | null;
  /** Overrides the table lookup (rarely needed). */
  classification?: Classification;
  cause?: unknown;
}

const MAX_MESSAGE_CHARS = 500;

/** An Alibaba API call failed. `kind`/`scope` come from `classifyCode(code, httpStatus)`. */
export class ApiError extends DaemonError {
  override name = 'ApiError';
  readonly action: string;
  readonly httpStatus: number | null;
  readonly requestId: string | null;
  readonly hostId: string | null;
  readonly recommend: string | null;
  readonly source: ApiErrorSource;
  /** The server's own message (or ours for transport errors), scrubbed and shortened. */
  readonly apiMessage: string;
  /** False when the code is not in the table (treated as transient; worth a warning). */
  readonly known: boolean;
  /** The service cannot have acted on the request (table column): safe to resend a call that creates something. */
  readonly notProcessed: boolean;

  constructor(init: ApiErrorInit) {
    const classification = init.classification ?? classifyCode(init.code, init.httpStatus ?? null);
    const apiMessage = shorten(init.message);
    const status = init.httpStatus === null || init.httpStatus === undefined ? '' : ` (HTTP ${init.httpStatus})`;
    const rid = init.requestId ? ` [RequestId ${init.requestId}]` : '';
    // NOTE: a process-fatal error's advice goes on the fatal line instead (main.ts), not twice.
    const row = codeRow(init.code);
    const advice = row?.advice ?? null;
    const hint = advice !== null && classification.scope !== 'process' ? ` (${advice})` : '';
    super(`${init.action}: ${init.code}${status}: ${apiMessage}${hint}${rid}`, {
      kind: classification.kind,
      scope: classification.scope,
      code: init.code,
      cause: init.cause,
      alreadyRegistered: row?.alreadyRegistered === true,
      advice,
    });
    this.action = init.action;
    this.httpStatus = init.httpStatus ?? null;
    this.requestId = init.requestId ?? null;
    this.hostId = init.hostId ?? null;
    this.recommend = init.recommend ?? null;
    this.source = init.source;
    this.apiMessage = apiMessage;
    this.known = classification.known;
    this.notProcessed = row?.notProcessed === true;
  }

  /** True for throttling codes (`kind === 'throttled'`). */
  get isThrottled(): boolean {
    return this.kind === 'throttled';
  }
}

/** Type guard. */
export function isApiError(value: unknown): value is ApiError {
  return value instanceof ApiError;
}

function shorten(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_MESSAGE_CHARS ? `${oneLine.slice(0, MAX_MESSAGE_CHARS)}…` : oneLine;
}

/**
 * Replaces every occurrence of each secret in `text` (raw, percent-encoded once and twice, as a V1
 * string-to-sign would show it) with `[REDACTED]`. Used on server-provided text before it enters an error:
 * a `SignatureDoesNotMatch` message echoes the server's string to sign, which holds a V1 `SecurityToken`.
 */
export function scrubSecrets(text: string, secrets: readonly (string | null | undefined)[]): string {
  let out = text;
  for (const s of secrets) {
    if (s === null || s === undefined || s.length < 4) continue;
    const once = percentEncode(s);
    const twice = percentEncode(once);
    for (const variant of [s, once, twice, encodeURIComponent(s)]) {
      if (variant.length > 0) out = out.split(variant).join('[REDACTED]');
    }
  }
  return out;
}
