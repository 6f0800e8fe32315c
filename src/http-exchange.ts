/**
 * One HTTP request/response exchange on an undici dispatcher, ended by a TOTAL deadline (issue #13.1).
 *
 * undici's `headersTimeout`/`bodyTimeout` are inactivity timeouts: a server that sends its headers and then one
 * body byte per second holds them forever. Here one timer covers the whole exchange (queueing for a connection,
 * connecting, sending, headers and the whole body); when it fires the request is aborted, which destroys its
 * socket, and the promise rejects with an {@link ExchangeError} of code `Deadline`.
 *
 * Cost per exchange (the client's hot path, issue #14): one timer, one handler object (which is also the signal's
 * listener: no closure per callback), no AbortController, no body stream; the caller's `signal` (if any) gets one
 * listener for the exchange's lifetime.
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
  /** Called once, when the request is handed to a socket (it was not aborted before). */
  onSent?: (() => void) | undefined;
}

/**
 * Sends `request` on `dispatcher` and collects the response. Rejects only with an {@link ExchangeError}.
 * Callers pass `headersTimeout: 0, bodyTimeout: 0` (off): the deadline is the one timer.
 */
export function exchange(dispatcher: Dispatcher, request: Dispatcher.DispatchOptions, options: ExchangeOptions): Promise<ExchangeResponse> {
  return new Promise<ExchangeResponse>((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) {
      reject(new ExchangeError('Aborted', 'aborted by the caller', { sent: false, statusCode: null, receivedBytes: 0 }));
      return;
    }
    const ex = new Exchange(options, resolve, reject);
    try {
      dispatcher.dispatch(request, ex);
    } catch (err) {
      ex.settle(new ExchangeError('Network', err instanceof Error ? err.message : String(err), ex, err));
    }
  });
}

/**
 * The state and the handler of one exchange in one object: its methods are the undici handler, `handleEvent` is
 * the listener on the caller's signal (no closure per callback; one for the timer).
 */
class Exchange implements Dispatcher.DispatchHandler {
  sent = false;
  statusCode: number | null = null;
  receivedBytes = 0;
  readonly #o: ExchangeOptions;
  readonly #resolve: (res: ExchangeResponse) => void;
  readonly #reject: (err: ExchangeError) => void;
  readonly #timer: unknown;
  #controller: Dispatcher.DispatchController | null = null;
  #pending: ExchangeError | null = null;
  #settled = false;
  #headers: Record<string, string | string[] | undefined> = {};
  #chunks: Buffer[] = [];
  #kept = 0;
  #truncated = false;

  constructor(options: ExchangeOptions, resolve: (res: ExchangeResponse) => void, reject: (err: ExchangeError) => void) {
    this.#o = options;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#timer = options.timers.set(options.deadlineMs, () =>
      this.#fail('Deadline', `no complete response within ${options.deadlineMs} ms (${this.statusCode === null ? 'no headers' : `headers then ${this.receivedBytes} body bytes`})`),
    );
    options.signal?.addEventListener('abort', this, { once: true });
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.#fail('Aborted', 'aborted by the caller');
  }

  settle(err: ExchangeError | null): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#o.timers.clear(this.#timer);
    this.#o.signal?.removeEventListener('abort', this);
    if (err !== null) {
      this.#chunks = [];
      this.#reject(err);
      return;
    }
    const chunks = this.#chunks;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.#kept);
    this.#resolve({ statusCode: this.statusCode ?? 0, headers: this.#headers, body, truncated: this.#truncated });
  }

  /** Ends the exchange with `err`, aborting the request (and so destroying its socket) if it started. */
  #fail(failure: ExchangeFailure, message: string): void {
    if (this.#settled) return;
    const err = new ExchangeError(failure, message, this);
    // NOTE: settle first: abort() calls onResponseError synchronously.
    this.settle(err);
    const c = this.#controller;
    if (c === null) this.#pending = err;
    else if (!c.aborted) c.abort(err);
  }

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.#controller = c;
    // NOTE: the deadline (or the caller) ended this exchange while it waited for a connection: never send it.
    if (this.#pending !== null) c.abort(this.#pending);
    else {
      this.sent = true;
      this.#o.onSent?.();
    }
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, responseHeaders: Record<string, string | string[] | undefined>): void {
    // 1xx informational answers are not the response.
    if (statusCode < 200) return;
    this.statusCode = statusCode;
    this.#headers = responseHeaders;
    if (this.#o.overflow === 'fail') {
      const declared = Number(firstHeader(responseHeaders['content-length']) ?? NaN);
      if (Number.isFinite(declared) && declared > this.#o.maxBodyBytes) this.#fail('TooLarge', `content-length ${declared} exceeds ${this.#o.maxBodyBytes} bytes`);
    }
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    const max = this.#o.maxBodyBytes;
    this.receivedBytes += chunk.length;
    if (this.#kept + chunk.length <= max) {
      this.#chunks.push(chunk);
      this.#kept += chunk.length;
      return;
    }
    if (this.#o.overflow === 'fail') {
      this.#fail('TooLarge', `body exceeds ${max} bytes`);
      return;
    }
    if (!this.#truncated && this.#kept < max) {
      this.#chunks.push(chunk.subarray(0, max - this.#kept));
      this.#kept = max;
    }
    this.#truncated = true;
  }

  onResponseEnd(): void {
    this.settle(null);
  }

  onResponseError(_c: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    this.settle(new ExchangeError('Network', error.message, this, error));
  }
}

/** The first value of a header that may repeat. */
export function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
