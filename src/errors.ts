/**
 * One error taxonomy for the whole daemon (style guide rule 4).
 *
 * - `kind` says what went wrong; `scope` says how far the damage reaches:
 *   - `attempt`: transient; retry this request later (throttling, 5xx, timeouts, resets, unknown codes).
 *   - `batch`: this batch cannot make progress (unknown ApplyId/ProductKey/instance, no permission); park it.
 *   - `process`: nobody can make progress (bad AccessKey, signature mismatch, clock skew); stop the daemon.
 */
export type ErrorKind =
  | 'config'
  | 'auth'
  | 'throttled'
  | 'transient'
  | 'invalid-request'
  | 'not-found'
  | 'store'
  | 'sink'
  | 'internal'
  | 'aborted';

export type ErrorScope = 'attempt' | 'batch' | 'process';

export interface DaemonErrorOptions {
  kind: ErrorKind;
  scope: ErrorScope;
  code?: string;
  cause?: unknown;
  /** See {@link DaemonError.alreadyRegistered}. @default false */
  alreadyRegistered?: boolean;
  /** See {@link DaemonError.advice}. @default null */
  advice?: string | null;
}

/** Base class of every error the daemon raises on purpose. */
export class DaemonError extends Error {
  override name = 'DaemonError';
  readonly kind: ErrorKind;
  readonly scope: ErrorScope;
  /** A stable machine-readable code: the Alibaba `Code` for API errors, otherwise our own. */
  readonly code: string;
  /**
   * The answer of a registration call means "already registered" (set from the error-code table's column at
   * classification, so the core can act on it without knowing Alibaba's codes).
   */
  readonly alreadyRegistered: boolean;
  /** What an operator should do about it (the error-code table's advice column), or null. */
  readonly advice: string | null;

  constructor(message: string, options: DaemonErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = options.kind;
    this.scope = options.scope;
    this.code = options.code ?? options.kind;
    this.alreadyRegistered = options.alreadyRegistered ?? false;
    this.advice = options.advice ?? null;
  }

  /** True when trying the same request again later may succeed. */
  get retryable(): boolean {
    return this.scope === 'attempt';
  }
}

/** One problem found in a configuration file. */
export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  /** Dotted key path, e.g. `batches[2].polling.maxDelay`. */
  path: string;
  message: string;
}

/** Configuration is invalid; carries every issue found, not only the first. */
export class ConfigError extends DaemonError {
  override name = 'ConfigError';
  readonly issues: ConfigIssue[];

  constructor(issues: ConfigIssue[], message?: string) {
    super(message ?? formatConfigIssues(issues), { kind: 'config', scope: 'process', code: 'ConfigInvalid' });
    this.issues = issues;
  }
}

/** `file:line:col: path: message`, one line per issue. */
export function formatConfigIssues(issues: readonly ConfigIssue[]): string {
  return issues
    .map((i) => `${i.file}:${i.line}:${i.col}: ${i.path === '' ? '(root)' : i.path}: ${i.message}`)
    .join('\n');
}

/** Turns anything thrown into an Error, keeping the original as `cause`. */
export function coerceError(value: unknown): Error {
  if (value instanceof Error) return value;
  const err = new Error(typeof value === 'string' ? value : `non-Error thrown: ${safeString(value)}`);
  (err as Error & { cause?: unknown }).cause = value;
  return err;
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Thrown when an operation is aborted by its signal (shutdown). */
export class AbortedError extends DaemonError {
  override name = 'AbortedError';
  constructor(message = 'aborted') {
    super(message, { kind: 'aborted', scope: 'attempt', code: 'Aborted' });
  }
}
