/**
 * Property tests: our signers agree with the official SDK's functions (@alicloud/openapi-util 0.3.3,
 * `getRPCSignature` for V1 and `getAuthorization` for V3) on random parameter names and values, including
 * spaces, `*`, `~`, `+`, `/`, `=`, `!'()`, unicode and empty strings.
 *
 * NOTE (V3 names): the SDK's V3 canonical query percent-encodes values but not names; the V3 doc
 * (help.aliyun.com/document_detail/2593177.html) encodes both, and so do we. They agree for every name made
 * of unreserved characters (all real RPC parameter names, e.g. `DeviceName.1`), which is what V3 draws.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { canonicalQuery, percentEncode } from '../../../src/alibaba/percent-encode.js';
import { signV1 } from '../../../src/alibaba/sign-v1.js';
import { sha256Hex, signV3 } from '../../../src/alibaba/sign-v3.js';
import { sdkUtil } from './official-sdk.js';

const SPECIALS = [' ', '*', '~', '+', '/', '=', '!', "'", '(', ')', '&', '%', ':', '?', '#', '"', '\\', '中', '文', 'é', 'ß', '😀', '\u00a0'];
const specialChar = fc.constantFrom(...SPECIALS);
const alnum = fc.constantFrom(...'abcXYZ019-_.'.split(''));
const anyChar = fc.oneof(specialChar, alnum, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }));
const value = fc.string({ unit: anyChar, maxLength: 24 });
const freeName = fc.string({ unit: anyChar, minLength: 1, maxLength: 12 }).filter((k) => k !== '__proto__' && k !== 'Signature');
const unreservedName = fc.string({
  unit: fc.constantFrom(...'abcdefxyzABCDEFXYZ0123456789-_.~'.split('')),
  minLength: 1,
  maxLength: 12,
});

function paramsOf(nameArb: fc.Arbitrary<string>): fc.Arbitrary<Record<string, string>> {
  return fc
    .uniqueArray(fc.tuple(nameArb, value), { selector: ([k]) => k, maxLength: 8 })
    .map((entries) => Object.fromEntries(entries));
}

const secret = fc.string({ unit: anyChar, minLength: 1, maxLength: 20 });

describe('V1 signature equals the SDK getRPCSignature', () => {
  it('for random names and values, GET and POST', () => {
    const sdk = sdkUtil();
    fc.assert(
      fc.property(paramsOf(freeName), fc.constantFrom('GET', 'POST'), secret, (params, method, key) => {
        expect(signV1(params, method, key).signature).toBe(sdk.getRPCSignature(params, method, key));
      }),
      { numRuns: 400 },
    );
  });

  it('the special characters are encoded as reference §2.3 says', () => {
    expect(percentEncode(" *~+/=!'()")).toBe('%20%2A~%2B%2F%3D%21%27%28%29');
    expect(canonicalQuery({ b: '', a: '中' })).toBe('a=%E4%B8%AD&b=');
  });
});

describe('V3 signature equals the SDK getAuthorization', () => {
  it('for random query values, header values and bodies', () => {
    const sdk = sdkUtil();
    const headerValue = fc.string({ unit: fc.constantFrom(...'abc 019-_.:/=+'.split('')), maxLength: 20 });
    fc.assert(
      fc.property(
        paramsOf(unreservedName),
        fc.record({
          host: fc.constantFrom('iot.cn-shanghai.aliyuncs.com', '127.0.0.1:8787'),
          action: headerValue,
          date: headerValue,
          nonce: headerValue,
          extra: headerValue,
          token: fc.option(headerValue, { nil: undefined }),
        }),
        fc.string({ maxLength: 40 }),
        secret,
        (query, h, body, key) => {
          const bodyHash = sha256Hex(body);
          const headers: Record<string, string> = {
            host: h.host,
            'x-acs-action': h.action,
            'x-acs-version': '2018-01-20',
            'x-acs-date': h.date,
            'x-acs-signature-nonce': h.nonce,
            'x-acs-content-sha256': bodyHash,
            'X-Acs-Extra': h.extra,
            'user-agent': 'not signed',
            accept: 'application/json',
          };
          if (h.token !== undefined) headers['x-acs-security-token'] = h.token;
          const ours = signV3({ method: 'POST', query, headers, bodySha256: bodyHash, accessKeyId: 'ak', accessKeySecret: key });
          const theirs = sdk.getAuthorization(
            { pathname: '/', method: 'POST', query, headers },
            'ACS3-HMAC-SHA256',
            bodyHash,
            'ak',
            key,
          );
          expect(ours.authorization).toBe(theirs);
        },
      ),
      { numRuns: 300 },
    );
  });
});
