/**
 * `buildSignedRequest` V3 (the per-request path: `signV3Rpc`, the precomputed-pad HMAC) against the official SDK's
 * `getAuthorization` (@alicloud/openapi-util) and our generic `signV3`, over the headers the request actually
 * carries: random parameters, timestamps, nonces, secrets, STS tokens (none, empty, set) and form bodies. And one
 * process signing request after request, one input changed each time, so no cached part (pad states, templates)
 * can answer for an earlier request.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import type { Credentials } from '../../../src/alibaba/credentials.js';
import { buildSignedRequest, IOT_API_VERSION } from '../../../src/alibaba/rpc-client.js';
import { sha256Hex, signV3 } from '../../../src/alibaba/sign-v3.js';
import { sdkUtil } from './official-sdk.js';

interface Case {
  action: string;
  params: Record<string, string>;
  bodyParams?: Record<string, string> | undefined;
  host: string;
  credentials: Credentials;
  timestamp: string;
  nonce: string;
}

const build = (c: Case): ReturnType<typeof buildSignedRequest> =>
  buildSignedRequest({ signatureVersion: 'v3', version: IOT_API_VERSION, userAgent: 'iot-batch-watcher', ...c });

/** The SDK's Authorization for the request as sent: its query parsed back from the path, its headers minus ours. */
function oracle(c: Case, req: ReturnType<typeof buildSignedRequest>): string {
  const headers = { ...req.headers };
  delete headers.authorization;
  const query = Object.fromEntries(new URLSearchParams(req.path.slice(2)));
  return sdkUtil().getAuthorization(
    { pathname: '/', method: 'POST', query, headers },
    'ACS3-HMAC-SHA256',
    req.body === null ? sha256Hex('') : sha256Hex(req.body),
    c.credentials.accessKeyId,
    c.credentials.accessKeySecret,
  );
}

/** Our generic signer over the same headers. */
function generic(c: Case, req: ReturnType<typeof buildSignedRequest>): string {
  const headers = { ...req.headers };
  delete headers.authorization;
  return signV3({
    method: 'POST',
    query: c.params,
    headers,
    bodySha256: req.body === null ? sha256Hex('') : sha256Hex(req.body),
    accessKeyId: c.credentials.accessKeyId,
    accessKeySecret: c.credentials.accessKeySecret,
  }).authorization;
}

const base: Case = {
  action: 'QueryBatchRegisterDeviceStatus',
  params: { ApplyId: '1295006', IotInstanceId: 'iot-cn-abc123', ProductKey: 'a1BwAGVxxxx' },
  host: 'iot.cn-shanghai.aliyuncs.com',
  credentials: { accessKeyId: 'testid', accessKeySecret: 'testsecret', securityToken: null },
  timestamp: '2024-01-02T03:04:05Z',
  nonce: 'fixed-nonce-0001',
};

describe('buildSignedRequest V3', () => {
  it('the fixed-input vector of reference §2.5', () => {
    const req = build(base);
    expect(req.signature).toBe('84d88162c45c2a1af82bf536b7ab5f8278458a4a8c0ca7b795980637634768f8');
    expect(req.headers.authorization).toBe(
      `ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=${req.signature}`,
    );
    expect(req.path).toBe('/?ApplyId=1295006&IotInstanceId=iot-cn-abc123&ProductKey=a1BwAGVxxxx');
  });

  it('equals the SDK oracle and signV3 for random inputs, with and without STS and a form body', () => {
    const text = fc.string({ unit: fc.constantFrom(...'abcXYZ019-_.~ :/=+*!中é'.split('')), maxLength: 24 });
    const name = fc.string({ unit: fc.constantFrom(...'abcdefxyzABCXYZ0189-_.'.split('')), minLength: 1, maxLength: 12 });
    const params = fc.uniqueArray(fc.tuple(name, text), { selector: ([k]) => k, maxLength: 6 }).map((e) => Object.fromEntries(e));
    fc.assert(
      fc.property(
        fc.record({
          action: fc.constantFrom('QueryBatchRegisterDeviceStatus', 'QueryPageByApplyId', 'BatchCheckDeviceNames'),
          params,
          bodyParams: fc.option(params, { nil: undefined }),
          host: fc.constantFrom('iot.cn-shanghai.aliyuncs.com', '127.0.0.1:8787'),
          credentials: fc.record({
            accessKeyId: fc.string({ unit: fc.constantFrom(...'LTAI5tAbc09'.split('')), minLength: 1, maxLength: 24 }),
            accessKeySecret: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 70 }),
            // NOTE: real STS tokens are 1 to 2 kB; fast-check draws short strings unless told the length.
            securityToken: fc.oneof(
              fc.constant(null),
              fc.constant(''),
              fc.string({ unit: fc.constantFrom(...'CAIS+/=abc09 '.split('')), minLength: 1, maxLength: 64 }),
              fc.string({ unit: fc.constantFrom(...'CAIS+/=abc09'.split('')), minLength: 900, maxLength: 2000 }),
            ),
          }),
          timestamp: fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2030-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')),
          nonce: fc.uuid(),
        }),
        (c) => {
          const req = build(c);
          expect(req.headers.authorization).toBe(oracle(c, req));
          expect(req.headers.authorization).toBe(generic(c, req));
          expect(req.headers.authorization?.endsWith(`Signature=${req.signature}`)).toBe(true);
          if (c.credentials.securityToken) {
            expect(req.headers['x-acs-security-token']).toBe(c.credentials.securityToken);
            expect(req.headers['x-acs-accesskey-id']).toBe(c.credentials.accessKeyId);
          } else {
            expect(req.headers['x-acs-security-token']).toBeUndefined();
          }
          expect(req.headers['content-type']).toBe(c.bodyParams === undefined ? undefined : 'application/x-www-form-urlencoded');
        },
      ),
      { numRuns: 400 },
    );
  });

  it('request after request in one process, one input changed each time: a new Authorization, equal to the oracle', () => {
    const variants: Case[] = [
      base,
      { ...base, params: { ...base.params, ApplyId: '1295007' } },
      { ...base, params: { ApplyId: '1295006', ProductKey: 'a1BwAGVxxxx' } },
      { ...base, timestamp: '2024-01-02T03:04:06Z' },
      { ...base, nonce: 'fixed-nonce-0002' },
      { ...base, credentials: { ...base.credentials, securityToken: 'CAIS-token-1' } },
      { ...base, credentials: { ...base.credentials, securityToken: 'CAIS-token-2' } },
      { ...base, credentials: { ...base.credentials, securityToken: `CAIS${'x'.repeat(1500)}` } },
      { ...base, credentials: { ...base.credentials, securityToken: `CAIS${'x'.repeat(1499)}y` } },
      { ...base, credentials: { ...base.credentials, accessKeySecret: 'testsecret2' } },
      { ...base, credentials: { ...base.credentials, accessKeyId: 'testid2' } },
      { ...base, host: '127.0.0.1:8787' },
      { ...base, action: 'QueryPageByApplyId' },
      { ...base, bodyParams: { 'DeviceName.1': 'a' } },
      { ...base, bodyParams: { 'DeviceName.1': 'b' } },
    ];
    // NOTE: the Authorization, not the signature: without STS the AccessKeyId is only in `Credential=`.
    const first = variants.map((c) => {
      const req = build(c);
      expect(req.headers.authorization).toBe(oracle(c, req));
      return req.headers.authorization;
    });
    expect(new Set(first).size).toBe(variants.length);
    // The second pass, in the same process, gives each variant its own first answer again.
    expect(variants.map((c) => build(c).headers.authorization)).toEqual(first);
    expect(build(base).signature).toBe('84d88162c45c2a1af82bf536b7ab5f8278458a4a8c0ca7b795980637634768f8');
  });
});
