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

describe('second-stage table entries (reference §9, issue #13.7) and the table columns (issue #12)', () => {
  const business = (code: string, message = 'x'): ApiError =>
    new ApiError({ action: 'QueryBatchRegisterDeviceStatus', code, message, source: 'business', httpStatus: 200, requestId: 'rid' });

  it.each(['iot.auth.IotInstanceNotFound', 'iot.auth.InvalidIotInstanceId'])('%s is batch-fatal (a wrong IotInstanceId), not transient', (code) => {
    const c = classifyCode(code, 200);
    expect(c.known).toBe(true);
    expect(c.scope).toBe('batch');
    const err = business(code);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('iotInstanceId');
  });

  it('iot.prod.NotExistedProduct says a missing IotInstanceId is the usual cause', () => {
    expect(classifyCode('iot.prod.NotExistedProduct', 200)).toEqual({ kind: 'not-found', scope: 'batch', known: true });
    const err = business('iot.prod.NotExistedProduct', 'product not found');
    expect(err.advice).toMatch(/missing iotInstanceId is the usual cause/);
    expect(err.message).toContain('product not found');
    expect(err.message).toMatch(/missing iotInstanceId is the usual cause/);
  });

  it('iot.common.HighFrequentDeny is throttling (retried, halves the rate, safe to resend)', () => {
    expect(classifyCode('iot.common.HighFrequentDeny', 200)).toEqual({ kind: 'throttled', scope: 'attempt', known: true });
    const err = business('iot.common.HighFrequentDeny');
    expect(err.isThrottled).toBe(true);
    expect(err.notProcessed).toBe(true);
  });

  it('notProcessed column: exactly the codes after which a create call may be resent', () => {
    const resendable = Object.entries(ERROR_CODE_TABLE)
      .filter(([, c]) => c.notProcessed === true)
      .map(([code]) => code)
      .sort();
    expect(resendable).toEqual(
      [
        'Rejected.Throttling',
        'ServiceUnavailable',
        'SignatureNonceUsed',
        'Throttling',
        'Throttling.Api',
        'Throttling.Tenant',
        'Throttling.User',
        'Transport.ConnectTimeout',
        'Transport.ConnectionRefused',
        'Transport.DnsError',
        'iot.common.HighFrequentDeny',
      ].sort(),
    );
    // A timeout or reset after sending may have been acted on.
    expect(business('Transport.Timeout').notProcessed).toBe(false);
    expect(business('Transport.ConnectionReset').notProcessed).toBe(false);
    expect(business('Throttling.NewFamilyMember').notProcessed).toBe(true);
  });

  it('alreadyRegistered column is carried on the error for the core', () => {
    for (const code of ['iot.device.CreateDeviceTaskIsRunning', 'iot.device.ApplyIdAlreadyRegistered', 'iot.device.DeviceApplyAlreadyRegistered']) {
      const err = business(code);
      expect(err.alreadyRegistered, code).toBe(true);
      expect(err.scope, code).toBe('batch');
    }
    expect(business('iot.device.DeviceApplyIsNotFound').alreadyRegistered).toBe(false);
    expect(new DaemonError('x', { kind: 'internal', scope: 'process' }).alreadyRegistered).toBe(false);
  });

  it('advice column: every process-fatal code the fatal line used to match by hand has its advice, and it is not repeated in the message', () => {
    expect(business('SignatureDoesNotMatch').advice).toBe('the AccessKey secret is wrong: fix the credentials, then restart');
    expect(business('InvalidTimeStamp.Expired').advice).toBe('the clock is skewed by more than 15 minutes: fix NTP, then restart');
    expect(business('InvalidTimeStamp.Format').advice).toBe('the clock is skewed by more than 15 minutes: fix NTP, then restart');
    for (const code of ['InvalidAccessKeyId.NotFound', 'InvalidAccessKeyId.Inactive', 'InvalidAccessKeyId.Whatever']) {
      expect(business(code).advice, code).toBe('the AccessKey is unknown or disabled: fix the credentials, then restart');
    }
    expect(business('SignatureDoesNotMatch').message).not.toContain('fix the credentials');
    expect(business('Iot.system.BillIsOverDue').advice).toBeNull();
  });
});
