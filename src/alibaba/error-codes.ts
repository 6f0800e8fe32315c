/**
 * The one table that decides what an Alibaba error means for the daemon (style guide rule 4).
 *
 * Sources: reference §3.3 (gateway codes from help.aliyun.com/document_detail/48054.html, IoT codes from
 * help.aliyun.com/document_detail/87387.htm) and the Terraform provider's retry predicate. The retry column
 * there is an inference from the docs' "retry later" wording, not an Alibaba statement.
 *
 * Lookup order in {@link classifyCode}: exact code in {@link ERROR_CODE_TABLE}, then the first matching
 * entry of {@link ERROR_CODE_PATTERNS}, then "any HTTP 5xx is transient", then unknown → transient with
 * `known: false` (the caller logs a warning so the table can be extended).
 */
import type { ErrorKind, ErrorScope } from '../errors.js';

/** How one error code is handled: one row of the table, every fact about the code in one place. */
export interface CodeClass {
  kind: ErrorKind;
  /** `attempt` = retry later, `batch` = park this batch, `process` = stop the daemon. */
  scope: ErrorScope;
  /** One line for operators (listed in the docs). */
  description: string;
  /**
   * The service cannot have acted on the request (it was refused before processing, or never sent), so a call
   * that creates something (BatchCheckDeviceNames, BatchRegisterDevice) may be sent again. @default false
   */
  notProcessed?: boolean;
  /** From BatchRegisterDeviceWithApplyId: the application is already registered (or being registered). @default false */
  alreadyRegistered?: boolean;
  /**
   * What the operator should do. Process-fatal codes: the fatal line's advice. Other codes: appended to the
   * error's message (it reaches the result file and the `batch.rejected` event).
   */
  advice?: string;
}

/** A classification result. `known` is false when nothing in the table or its patterns matched. */
export interface Classification {
  kind: ErrorKind;
  scope: ErrorScope;
  known: boolean;
}

type Columns = Pick<CodeClass, 'notProcessed' | 'alreadyRegistered' | 'advice'>;

const transient = (description: string, extra: Columns = {}): CodeClass => ({ kind: 'transient', scope: 'attempt', description, ...extra });
const throttled = (description: string): CodeClass => ({ kind: 'throttled', scope: 'attempt', description, notProcessed: true });
const batchNotFound = (description: string, extra: Columns = {}): CodeClass => ({ kind: 'not-found', scope: 'batch', description, ...extra });
const batchAuth = (description: string): CodeClass => ({ kind: 'auth', scope: 'batch', description });
const batchInvalid = (description: string, extra: Columns = {}): CodeClass => ({ kind: 'invalid-request', scope: 'batch', description, ...extra });
const processAuth = (description: string, advice?: string): CodeClass => ({ kind: 'auth', scope: 'process', description, ...(advice ? { advice } : {}) });
const processInvalid = (description: string, advice?: string): CodeClass => ({ kind: 'invalid-request', scope: 'process', description, ...(advice ? { advice } : {}) });

const CLOCK_ADVICE = 'the clock is skewed by more than 15 minutes: fix NTP, then restart';
const SECRET_ADVICE = 'the AccessKey secret is wrong: fix the credentials, then restart';
const KEY_ADVICE = 'the AccessKey is unknown or disabled: fix the credentials, then restart';
const INSTANCE_ADVICE = 'set the right alibaba.iotInstanceId / batch iotInstanceId (console Overview page), or remove it for a legacy public instance';

/**
 * Alibaba (and our own transport) error codes → classification. Exported so the docs can list it.
 * Codes are matched exactly (case-sensitive, as Alibaba spells them, including `Iot.system.BillIsOverDue`
 * and the misspelt `IncorrentDeviceApplyInfo`).
 */
export const ERROR_CODE_TABLE: Readonly<Record<string, CodeClass>> = Object.freeze({
  // --- transient: retry with backoff, re-signed -------------------------------------------------------
  Throttling: throttled('flow control'),
  'Throttling.User': throttled('flow control (account quota)'),
  'Throttling.Api': throttled('flow control (API quota)'),
  'Throttling.Tenant': throttled('flow control (tenant quota)'),
  'Rejected.Throttling': throttled('flow control (rejected)'),
  // Reference §9: "called too many times" in related IoT error lists.
  'iot.common.HighFrequentDeny': throttled('IoT flow control (called too many times)'),
  ServiceUnavailable: transient('gateway temporarily unavailable', { notProcessed: true }),
  InternalError: transient('unknown server error'),
  SignatureNonceUsed: transient('nonce reused; retried with a fresh nonce and timestamp', { notProcessed: true }),
  'iot.system.SystemException': transient('IoT system error; the docs say retry later'),
  'iot.device.QueryDeviceApplyActionError': transient('error while reading the application; bounded retry'),
  // Our own codes for the transport and for responses we cannot use.
  'Transport.Timeout': transient('no complete response within the request timeout (total deadline; connection closed)'),
  'Transport.ConnectTimeout': transient('TCP/TLS connect timed out (request not sent)', { notProcessed: true }),
  'Transport.ConnectionReset': transient('connection reset or closed by the server'),
  'Transport.ConnectionRefused': transient('connection refused (request not sent)', { notProcessed: true }),
  'Transport.DnsError': transient('endpoint host name did not resolve', { notProcessed: true }),
  'Transport.Error': transient('other network error'),
  'Response.Malformed': transient('body is not the JSON object expected'),
  'Response.Truncated': transient('body ended early'),
  'Response.TooLarge': transient('body exceeded the size cap'),
  'Devices.CountMismatch': transient('QueryPageByApplyId rows do not add up to Total'),

  // --- batch-fatal: this batch cannot make progress; park it -------------------------------------------
  'iot.device.DeviceApplyIsNotFound': batchNotFound('ApplyId not found'),
  'iot.device.InvalidFormattedApplyId': batchInvalid('malformed ApplyId'),
  'iot.device.NullApplyId': batchInvalid('empty ApplyId'),
  'iot.device.IncorrentDeviceApplyInfo': batchInvalid('ApplyId does not match the ProductKey'),
  'iot.prod.NotExistedProduct': batchNotFound('ProductKey not found', {
    advice: 'check the ProductKey and region; on an Enterprise Edition instance a missing iotInstanceId is the usual cause',
  }),
  'iot.prod.InvalidFormattedProductkey': batchInvalid('malformed ProductKey'),
  'iot.prod.NullProductKey': batchInvalid('empty ProductKey'),
  'iot.system.InstanceNotFound': batchNotFound('IotInstanceId not found', { advice: INSTANCE_ADVICE }),
  'iot.Sre.IotInstanceNotFound': batchNotFound('IotInstanceId not found', { advice: INSTANCE_ADVICE }),
  // Seen in public client code (reference §9): the IotInstanceId is wrong.
  'iot.auth.IotInstanceNotFound': batchNotFound('IotInstanceId not found', { advice: INSTANCE_ADVICE }),
  'iot.auth.InvalidIotInstanceId': batchInvalid('IotInstanceId malformed or not valid for this account', { advice: INSTANCE_ADVICE }),
  'iot.common.InvalidTenant': batchAuth('resource belongs to another tenant'),
  'iot.common.RamActionPermissionDeny': batchAuth('RAM policy denies this action'),
  'iot.common.AuthActionPermissionDeny': batchAuth('no permission on this resource'),
  'iot.common.APINotSupportedInInstance': batchInvalid('API not available on this instance type'),
  'iot.common.InvalidPageParams': batchInvalid('bad PageSize/CurrentPage'),
  'iot.common.InvalidFormattedParameter': batchInvalid('bad parameters'),
  'iot.check.InvalidFormattedParameter': batchInvalid('bad parameters'),
  'iot.system.IllegalRequest': batchInvalid('bad parameters'),
  'iot.device.CreateDeviceTaskIsRunning': batchInvalid('a creation task is already running for this application', { alreadyRegistered: true }),
  'iot.device.ApplyIdAlreadyRegistered': batchInvalid('the application is already registered', { alreadyRegistered: true }),
  'iot.device.DeviceApplyAlreadyRegistered': batchInvalid('the application is already registered', { alreadyRegistered: true }),
  'iot.device.ApplyManyDevicesFailed': batchInvalid('registration failed'),
  'iot.device.DeviceCountExceeded': batchInvalid('device count limit exceeded'),
  'iot.device.RegionNotSupportX509': batchInvalid('X.509 devices are not supported in this region'),
  'Forbidden.RAM': batchAuth('RAM user lacks permission for the resource'),
  'InvalidParameter.Format': batchInvalid('a parameter is malformed'),
  MissingParameter: batchInvalid('a required parameter is missing'),

  // --- process-fatal: nobody can make progress; stop the daemon ----------------------------------------
  SignatureDoesNotMatch: processAuth('wrong AccessKey secret or a canonicalisation bug', SECRET_ADVICE),
  IncompleteSignature: processAuth('signature incomplete'),
  'InvalidAccessKeyId.NotFound': processAuth('AccessKeyId does not exist', KEY_ADVICE),
  'InvalidAccessKeyId.Inactive': processAuth('AccessKeyId disabled', KEY_ADVICE),
  'InvalidTimeStamp.Expired': processAuth('clock skew over 15 minutes: fix the host clock', CLOCK_ADVICE),
  'InvalidTimeStamp.Format': processInvalid('timestamp format rejected', CLOCK_ADVICE),
  IllegalTimestamp: processInvalid('timestamp rejected'),
  'Iot.system.BillIsOverDue': processAuth('account in arrears'),
  'iot.system.UidNotFound': processAuth('account missing or IoT Platform not activated'),
  'Forbidden.RiskControl': processAuth('account blocked by risk control'),
  'Forbidden.UserVerification': processAuth('account needs verification'),
  'InvalidApi.NotFound': processInvalid('wrong Action, Version or endpoint'),
  'InvalidProduct.NotFound': processInvalid('wrong endpoint for this product'),
  'InvalidAction.NotFound': processInvalid('wrong Action or Version'),
});

/** Families matched by pattern when the exact code is not in the table (first match wins). */
export const ERROR_CODE_PATTERNS: readonly (CodeClass & { pattern: RegExp })[] = Object.freeze([
  { pattern: /^Throttling(\..+)?$/, ...throttled('flow control (any Throttling.* code)') },
  { pattern: /^InvalidSecurityToken(\..+)?$/, ...processAuth('STS token invalid, expired or malformed') },
  { pattern: /^InvalidAccessKeyId(\..+)?$/, ...processAuth('AccessKeyId rejected', KEY_ADVICE) },
  { pattern: /^iot\.common\..*PermissionDeny$/, ...batchAuth('no permission on the resource') },
  { pattern: /^iot\.[A-Za-z]+\.(InvalidFormatted|Null)[A-Za-z]*$/, ...batchInvalid('malformed or empty parameter') },
  { pattern: /^Missing[A-Z][A-Za-z]*$/, ...batchInvalid('a required parameter is missing') },
]);

/**
 * Classifies an Alibaba `Code` (or one of our `Transport.*` / `Response.*` codes).
 * `httpStatus` only matters for codes not in the table: any 5xx then counts as transient (and known).
 * Everything else unknown is transient with `known: false`, so the caller can log a warning.
 */
export function classifyCode(code: string | null | undefined, httpStatus: number | null | undefined): Classification {
  const row = codeRow(code);
  if (row !== null) return { kind: row.kind, scope: row.scope, known: true };
  if (httpStatus !== null && httpStatus !== undefined && httpStatus >= 500 && httpStatus <= 599) {
    return { kind: 'transient', scope: 'attempt', known: true };
  }
  return { kind: 'transient', scope: 'attempt', known: false };
}

/**
 * The table row of `code`: the exact entry, else the first matching pattern, else null. Its optional columns
 * (`notProcessed`, `alreadyRegistered`, `advice`) are carried on the `ApiError` built from it.
 */
export function codeRow(code: string | null | undefined): CodeClass | null {
  if (code === null || code === undefined || code === '') return null;
  const exact = Object.hasOwn(ERROR_CODE_TABLE, code) ? ERROR_CODE_TABLE[code] : undefined;
  if (exact !== undefined) return exact;
  for (const p of ERROR_CODE_PATTERNS) {
    if (p.pattern.test(code)) return p;
  }
  return null;
}

/** The metrics outcome of one request attempt (`ibw_api_requests_total{outcome}`). */
export type AttemptOutcome = 'success' | 'throttled' | 'transient' | 'batch_error' | 'fatal' | 'business_error';

/**
 * Maps a classification to an attempt outcome: `throttled`, `transient` (other scope-`attempt`),
 * `fatal` (scope `process`), and for scope `batch`: `business_error` when the error came in a 2xx body with
 * `Success:false`, otherwise `batch_error`.
 */
export function outcomeOf(c: Pick<Classification, 'kind' | 'scope'>, isBusinessBody: boolean): AttemptOutcome {
  if (c.kind === 'throttled') return 'throttled';
  if (c.scope === 'attempt') return 'transient';
  if (c.scope === 'process') return 'fatal';
  return isBusinessBody ? 'business_error' : 'batch_error';
}
