/**
 * One HTTP request/response exchange on an undici dispatcher, ended by a TOTAL deadline (issue #13.1).
 *
 * undici's `headersTimeout`/`bodyTimeout` are inactivity timeouts: a server that sends its headers and then one
 * body byte per second holds them forever. Here one timer covers the whole exchange (queueing for a connection,
 * connecting, sending, headers and the whole body); when it fires the request is aborted, which destroys its
 * socket, and the promise rejects with an {@link ExchangeError} of code `Deadline`.
 *
 * Cost per exchange (the client's hot path, issue #14): one timer, one handler object, no AbortController, no
 * body stream; the caller's `signal` (if any) gets one listener for the exchange's lifetime.
 */
import type { Dispatcher } from 'undici';

import type { Timers } from './core/clock.js';

/** Why an exchange failed. */
export type ExchangeFailure =
  /** The total deadline passed; `sent` says whether the request had reached a socket. */
  | 'Deadline'
  /** The body exceeded `maxBodyBytes` (with `overflow: 'fail'`). */
  | 'TooLarge'
  /** The caller's signal aborted. */
  | 'Aborted'
  /** undici reported an error (connect, reset, closed...); the original is `cause`. */
  | 'Network';

/** A failed exchange. `statusCode` is set when the headers had arrived. */
export class ExchangeError extends Error {
  override name = 'ExchangeError';
  readonly failure: ExchangeFailure;
  /** True once the request was handed to a socket (the server may have acted on it). */
  readonly sent: boolean;
  readonly statusCode: number | null;
  /** Body bytes received before the failure. */
  readonly receivedBytes: number;

  constructor(failure: ExchangeFailure, message: string, state: { sent: boolean; statusCode: number | null; receivedBytes: number }, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.failure = failure;
    this.sent = state.sent;
    this.statusCode = state.statusCode;
    this.receivedBytes = state.receivedBytes;
  }
}

/** A completed exchange. */
export interface ExchangeResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** True when the body was cut at `maxBodyBytes` (with `overflow: 'truncate'`). */
  truncated: boolean;
}

/** Options of {@link exchange}. */
export interface ExchangeOptions {
  /** The total deadline of the exchange, in ms. */
  deadlineMs: number;
  /** Largest body kept, in bytes. */
  maxBodyBytes: number;
  /** `fail`: a larger body aborts the exchange (`TooLarge`); `truncate`: the rest is read and dropped. */
  overflow: 'fail' | 'truncate';
  timers: Timers;
  signal?: AbortSignal | undefined;
}

/**
 * Sends `request` on `dispatcher` and collects the response. Rejects only with an {@link ExchangeError}.
 * Callers pass `headersTimeout: 0, bodyTimeout: 0` (off): the deadline is the one timer.
 */
export function exchange(dispatcher: Dispatcher, request: Dispatcher.DispatchOptions, options: ExchangeOptions): Promise<ExchangeResponse> {
  return new Promise<ExchangeResponse>((resolve, reject) => {
    const { signal, timers, maxBodyBytes } = options;
    const state = { sent: false, statusCode: null as number | null, receivedBytes: 0 };
    let controller: Dispatcher.DispatchController | null = null;
    let pending: ExchangeError | null = null;
    let settled = false;
    let headers: Record<string, string | string[] | undefined> = {};
    let chunks: Buffer[] = [];
    let kept = 0;
    let truncated = false;

    const settle = (err: ExchangeError | null): void => {
      if (settled) return;
      settled = true;
      timers.clear(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err !== null) {
        chunks = [];
        reject(err);
        return;
      }
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, kept);
      resolve({ statusCode: state.statusCode ?? 0, headers, body, truncated });
    };
    /** Ends the exchange with `err`, aborting the request (and so destroying its socket) if it started. */
    const fail = (failure: ExchangeFailure, message: string): void => {
      if (settled) return;
      const err = new ExchangeError(failure, message, state);
      // NOTE: settle first: abort() calls onResponseError synchronously.
      settle(err);
      if (controller === null) pending = err;
      else if (!controller.aborted) controller.abort(err);
    };
    const onAbort = (): void => fail('Aborted', 'aborted by the caller');

    if (signal?.aborted) {
      reject(new ExchangeError('Aborted', 'aborted by the caller', state));
      return;
    }
    const timer = timers.set(options.deadlineMs, () =>
      fail('Deadline', `no complete response within ${options.deadlineMs} ms (${state.statusCode === null ? 'no headers' : `headers then ${state.receivedBytes} body bytes`})`),
    );
    signal?.addEventListener('abort', onAbort, { once: true });

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        // NOTE: the deadline (or the caller) ended this exchange while it waited for a connection: never send it.
        if (pending !== null) c.abort(pending);
        else state.sent = true;
      },
      onResponseStart(c, statusCode, responseHeaders) {
        // 1xx informational answers are not the response.
        if (statusCode < 200) return;
        state.statusCode = statusCode;
        headers = responseHeaders;
        const declared = Number(firstHeader(responseHeaders['content-length']) ?? NaN);
        if (options.overflow === 'fail' && Number.isFinite(declared) && declared > maxBodyBytes) {
          fail('TooLarge', `content-length ${declared} exceeds ${maxBodyBytes} bytes`);
        }
      },
      onResponseData(_c, chunk) {
        if (settled) return;
        state.receivedBytes += chunk.length;
        if (kept + chunk.length <= maxBodyBytes) {
          chunks.push(chunk);
          kept += chunk.length;
          return;
        }
        if (options.overflow === 'fail') {
          fail('TooLarge', `body exceeds ${maxBodyBytes} bytes`);
          return;
        }
        if (!truncated && kept < maxBodyBytes) {
          chunks.push(chunk.subarray(0, maxBodyBytes - kept));
          kept = maxBodyBytes;
        }
        truncated = true;
      },
      onResponseEnd() {
        settle(null);
      },
      onResponseError(_c, error) {
        if (settled) return;
        settle(new ExchangeError('Network', error.message, state, error));
      },
    };
    try {
      dispatcher.dispatch(request, handler);
    } catch (err) {
      settle(new ExchangeError('Network', err instanceof Error ? err.message : String(err), state, err));
    }
  });
}

/** The first value of a header that may repeat. */
export function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
