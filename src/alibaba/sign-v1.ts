/**
 * RPC signature V1 (HMAC-SHA1, `SignatureVersion=1.0`; Alibaba's docs call it "V2"). Pure: the timestamp and
 * nonce are parameters like any other. Reference §2.3, alibabacloud.com/help/doc-detail/30563.htm,
 * `OpenApiUtil.getRPCSignature` in @alicloud/openapi-util.
 */
import { createHmac } from 'node:crypto';

import { canonicalQuery, percentEncode } from './percent-encode.js';

export interface V1Signed {
  stringToSign: string;
  signature: string;
}

/**
 * Sign every parameter except `Signature`. `method` is the HTTP method actually used.
 * The key is `AccessKeySecret + "&"`.
 */
export function signV1(params: Readonly<Record<string, string>>, method: string, accessKeySecret: string): V1Signed {
  const rest: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) if (k !== 'Signature') rest[k] = v;
  const stringToSign = `${method.toUpperCase()}&${percentEncode('/')}&${percentEncode(canonicalQuery(rest))}`;
  const signature = createHmac('sha1', `${accessKeySecret}&`).update(stringToSign, 'utf8').digest('base64');
  return { stringToSign, signature };
}

/** The last second formatted (every request of the same second has the same timestamp). */
let lastSecond = Number.NaN;
let lastStamp = '';

/** Alibaba's timestamp format: UTC to the second, `YYYY-MM-DDThh:mm:ssZ`. */
export function formatTimestamp(epochMs: number): string {
  const second = Math.floor(epochMs / 1000);
  if (second !== lastSecond) {
    lastStamp = new Date(second * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    lastSecond = second;
  }
  return lastStamp;
}

/** The common parameters of an RPC V1 request, without the signature. */
export function v1CommonParams(input: {
  action: string;
  version: string;
  accessKeyId: string;
  timestamp: string;
  nonce: string;
  securityToken?: string | null;
}): Record<string, string> {
  const p: Record<string, string> = {
    Action: input.action,
    Format: 'JSON',
    Version: input.version,
    AccessKeyId: input.accessKeyId,
    SignatureMethod: 'HMAC-SHA1',
    SignatureVersion: '1.0',
    SignatureNonce: input.nonce,
    Timestamp: input.timestamp,
  };
  if (input.securityToken) p.SecurityToken = input.securityToken;
  return p;
}
