/**
 * ACS3-HMAC-SHA256 (signature V3), what the official SDK sends by default. Pure: date and nonce are inputs.
 * Reference §2.5, help.aliyun.com/document_detail/2593177.html, `OpenApiUtil.getAuthorization`.
 */
import { createHash, createHmac } from 'node:crypto';

import { canonicalQuery } from './percent-encode.js';

export const ACS3_ALGORITHM = 'ACS3-HMAC-SHA256';

export interface V3Input {
  method: string;
  /** Always `/` for RPC-style APIs. @default '/' */
  path?: string;
  /** The RPC parameters, sent in the query string. */
  query: Readonly<Record<string, string>>;
  /** Request headers (any case). `host`, `content-type` and every `x-acs-*` header are signed. */
  headers: Readonly<Record<string, string>>;
  /** Hex SHA-256 of the body; computed from `body` when absent. */
  bodySha256?: string;
  body?: string | Uint8Array;
  accessKeyId: string;
  accessKeySecret: string;
}

export interface V3Signed {
  canonicalRequest: string;
  stringToSign: string;
  signedHeaders: string;
  signature: string;
  authorization: string;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export const EMPTY_SHA256 = sha256Hex('');

export function signV3(input: V3Input): V3Signed {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers)) headers[k.toLowerCase()] = v;
  const bodyHash = input.bodySha256 ?? headers['x-acs-content-sha256'] ?? sha256Hex(input.body ?? '');
  const names = Object.keys(headers)
    .filter((k) => k === 'host' || k === 'content-type' || k.startsWith('x-acs-'))
    .sort();
  const canonicalHeaders = names.map((k) => `${k}:${(headers[k] ?? '').trim()}\n`).join('');
  const signedHeaders = names.join(';');
  const canonicalRequest = [
    input.method.toUpperCase(),
    input.path ?? '/',
    canonicalQuery(input.query),
    canonicalHeaders,
    signedHeaders,
    bodyHash,
  ].join('\n');
  const stringToSign = `${ACS3_ALGORITHM}\n${sha256Hex(canonicalRequest)}`;
  const signature = createHmac('sha256', input.accessKeySecret).update(stringToSign, 'utf8').digest('hex');
  return {
    canonicalRequest,
    stringToSign,
    signedHeaders,
    signature,
    authorization: `${ACS3_ALGORITHM} Credential=${input.accessKeyId},SignedHeaders=${signedHeaders},Signature=${signature}`,
  };
}

/** Builds the `x-acs-*` headers of a V3 request (without Authorization). */
export function v3Headers(input: {
  host: string;
  action: string;
  version: string;
  date: string;
  nonce: string;
  bodySha256?: string;
  securityToken?: string | null;
  accessKeyId?: string;
}): Record<string, string> {
  const h: Record<string, string> = {
    host: input.host,
    'x-acs-action': input.action,
    'x-acs-version': input.version,
    'x-acs-date': input.date,
    'x-acs-signature-nonce': input.nonce,
    'x-acs-content-sha256': input.bodySha256 ?? EMPTY_SHA256,
  };
  if (input.securityToken) {
    h['x-acs-security-token'] = input.securityToken;
    if (input.accessKeyId) h['x-acs-accesskey-id'] = input.accessKeyId;
  }
  return h;
}
