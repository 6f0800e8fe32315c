import { describe, expect, it } from 'vitest';

import { ERROR_CODE_PATTERNS, ERROR_CODE_TABLE, classifyCode, outcomeOf } from '../../../src/alibaba/error-codes.js';
import { ApiError, scrubSecrets } from '../../../src/alibaba/errors.js';
import { DaemonError } from '../../../src/errors.js';

describe('classifyCode', () => {
  it.each([
    ['Throttling', 400, 'throttled', 'attempt'],
    ['Throttling.User', 400, 'throttled', 'attempt'],
    ['Throttling.SomethingNew', 400, 'throttled', 'attempt'],
    ['Rejected.Throttling', 400, 'throttled', 'attempt'],
    ['ServiceUnavailable', 503, 'transient', 'attempt'],
    ['InternalError', 500, 'transient', 'attempt'],
    ['SignatureNonceUsed', 400, 'transient', 'attempt'],
    ['iot.system.SystemException', 200, 'transient', 'attempt'],
    ['iot.device.QueryDeviceApplyActionError', 200, 'transient', 'attempt'],
    ['Transport.Timeout', null, 'transient', 'attempt'],
    ['iot.device.DeviceApplyIsNotFound', 200, 'not-found', 'batch'],
    ['iot.prod.NotExistedProduct', 200, 'not-found', 'batch'],
    ['iot.system.InstanceNotFound', 200, 'not-found', 'batch'],
    ['iot.Sre.IotInstanceNotFound', 200, 'not-found', 'batch'],
    ['iot.common.RamActionPermissionDeny', 200, 'auth', 'batch'],
    ['iot.common.SomeOtherPermissionDeny', 200, 'auth', 'batch'],
    ['Forbidden.RAM', 403, 'auth', 'batch'],
    ['iot.device.InvalidFormattedApplyId', 200, 'invalid-request', 'batch'],
    ['iot.prod.InvalidFormattedProductkey', 200, 'invalid-request', 'batch'],
    ['iot.device.IncorrentDeviceApplyInfo', 200, 'invalid-request', 'batch'],
    ['iot.device.CreateDeviceTaskIsRunning', 200, 'invalid-request', 'batch'],
    ['SignatureDoesNotMatch', 400, 'auth', 'process'],
    ['InvalidAccessKeyId.NotFound', 404, 'auth', 'process'],
    ['InvalidAccessKeyId.Inactive', 400, 'auth', 'process'],
    ['InvalidTimeStamp.Expired', 400, 'auth', 'process'],
    ['IncompleteSignature', 400, 'auth', 'process'],
    ['InvalidSecurityToken.Expired', 400, 'auth', 'process'],
    ['InvalidSecurityToken.MismatchWithAccessKey', 400, 'auth', 'process'],
    ['Iot.system.BillIsOverDue', 200, 'auth', 'process'],
    ['iot.system.UidNotFound', 200, 'auth', 'process'],
    ['InvalidApi.NotFound', 404, 'invalid-request', 'process'],
  ] as const)('%s (HTTP %s) → %s / %s, known', (code, status, kind, scope) => {
    expect(classifyCode(code, status)).toEqual({ kind, scope, known: true });
  });

  it('any unknown 5xx is transient (known); any other unknown code is transient and unknown', () => {
    expect(classifyCode('Whatever', 502)).toEqual({ kind: 'transient', scope: 'attempt', known: true });
    expect(classifyCode(null, 500)).toEqual({ kind: 'transient', scope: 'attempt', known: true });
    expect(classifyCode('Whatever', 400)).toEqual({ kind: 'transient', scope: 'attempt', known: false });
    expect(classifyCode('', null)).toEqual({ kind: 'transient', scope: 'attempt', known: false });
    // Exact entries win over the status rule; lookups are own-property only.
    expect(classifyCode('SignatureDoesNotMatch', 500).scope).toBe('process');
    expect(classifyCode('toString', 400).known).toBe(false);
  });

  it('the table and patterns are exported, frozen and complete', () => {
    expect(Object.isFrozen(ERROR_CODE_TABLE)).toBe(true);
    for (const [code, c] of Object.entries(ERROR_CODE_TABLE)) {
      expect(c.description.length, code).toBeGreaterThan(0);
      if (c.kind === 'throttled') expect(c.scope).toBe('attempt');
    }
    expect(ERROR_CODE_PATTERNS.length).toBeGreaterThan(0);
  });

  it('outcomeOf maps classifications to metric outcomes', () => {
    expect(outcomeOf({ kind: 'throttled', scope: 'attempt' }, false)).toBe('throttled');
    expect(outcomeOf({ kind: 'transient', scope: 'attempt' }, true)).toBe('transient');
    expect(outcomeOf({ kind: 'auth', scope: 'process' }, true)).toBe('fatal');
    expect(outcomeOf({ kind: 'not-found', scope: 'batch' }, true)).toBe('business_error');
    expect(outcomeOf({ kind: 'auth', scope: 'batch' }, false)).toBe('batch_error');
  });
});

describe('ApiError', () => {
  it('is a DaemonError classified by the table, with every field', () => {
    const err = new ApiError({
      action: 'QueryPageByApplyId',
      code: 'Throttling.User',
      message: 'Request was denied due to user flow control.',
      source: 'gateway',
      httpStatus: 400,
      requestId: 'rid',
      hostId: 'iot.cn-shanghai.aliyuncs.com',
      recommend: 'https://example/diag',
    });
    expect(err).toBeInstanceOf(DaemonError);
    expect(err).toMatchObject({ name: 'ApiError', kind: 'throttled', scope: 'attempt', code: 'Throttling.User', known: true, retryable: true, isThrottled: true });
    expect(err.message).toBe('QueryPageByApplyId: Throttling.User (HTTP 400): Request was denied due to user flow control. [RequestId rid]');
  });

  it('shortens long server messages', () => {
    const err = new ApiError({ action: 'A', code: 'X', message: 'y'.repeat(5000), source: 'gateway', httpStatus: 400 });
    expect(err.apiMessage.length).toBeLessThanOrEqual(501);
  });

  it('scrubSecrets removes raw and percent-encoded (once and twice) secrets', () => {
    const token = 'ab+c/d=e:f';
    const text = `raw ${token} once ${encodeURIComponent(token)} twice %2B ab%252Bc%252Fd%253De%253Af`;
    const out = scrubSecrets(text, [token, null, undefined]);
    expect(out).not.toContain(token);
    expect(out).not.toContain('ab%2Bc%2Fd%3De%3Af');
    expect(out).not.toContain('ab%252Bc%252Fd%253De%253Af');
    expect(out.match(/\[REDACTED\]/g)).toHaveLength(3);
  });
});
