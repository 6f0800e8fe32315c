/**
 * ACS3-HMAC-SHA256 (signature V3), what the official SDK sends by default. Pure: date and nonce are inputs.
 * Reference §2.5, help.aliyun.com/document_detail/2593177.html, `OpenApiUtil.getAuthorization`.
 */
import { createHmac, hash } from 'node:crypto';

import { canonicalQuery } from './percent-encode.js';

export const ACS3_ALGORITHM = 'ACS3-HMAC-SHA256';

export interface V3Input {
  method: string;
  /** Always `/` for RPC-style APIs. @default '/' */
  path?: string;
  /** The RPC parameters, sent in the query string. */
  query: Readonly<Record<string, string>>;
  /** `canonicalQuery(query)` when the caller already has it (it also builds the URL from it). */
  canonicalQueryString?: string;
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
  // NOTE: the one-shot crypto.hash (Node >= 20.12) costs half of createHash().update().digest().
  return hash('sha256', data, 'hex');
}

export const EMPTY_SHA256 = sha256Hex('');

export function signV3(input: V3Input): V3Signed {
  const headers: Record<string, string> = {};
  const names: string[] = [];
  for (const k of Object.keys(input.headers)) {
    const lower = k.toLowerCase();
    const value = input.headers[k] ?? '';
    headers[lower] = value;
    if (lower === 'host' || lower === 'content-type' || lower.startsWith('x-acs-')) names.push(lower);
  }
  names.sort();
  const bodyHash = input.bodySha256 ?? headers['x-acs-content-sha256'] ?? sha256Hex(input.body ?? '');
  let canonicalHeaders = '';
  for (const k of names) canonicalHeaders += `${k}:${(headers[k] ?? '').trim()}\n`;
  const signedHeaders = names.join(';');
  const canonicalRequest = `${input.method.toUpperCase()}\n${input.path ?? '/'}\n${input.canonicalQueryString ?? canonicalQuery(input.query)}\n${canonicalHeaders}\n${signedHeaders}\n${bodyHash}`;
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

/** What {@link signV3Rpc} signs: the headers of {@link v3Headers}, plus `content-type` when there is a body. */
export interface V3RpcInput {
  host: string;
  action: string;
  version: string;
  date: string;
  nonce: string;
  /** `canonicalQuery(params)`: the caller builds the URL from it too. */
  canonicalQueryString: string;
  /** Hex SHA-256 of the body (`EMPTY_SHA256` for none); also the `x-acs-content-sha256` header. */
  bodySha256: string;
  /** The `content-type` header, or null when there is none (no body). */
  contentType: string | null;
  accessKeyId: string;
  accessKeySecret: string;
  /** STS token: then `x-acs-security-token` and `x-acs-accesskey-id` are signed too (as {@link v3Headers} sets them). */
  securityToken: string | null;
}

/**
 * {@link signV3} of a `POST /` RPC request whose signed headers are exactly those of {@link v3Headers} (plus
 * `content-type` with a body), the per-request path of rpc-client.ts. Same result as `signV3`, cheaper: the header
 * names are known, so their sorted order is written out instead of lower-casing, filtering and sorting a header
 * object per request. Returns the signature and the Authorization header value.
 */
export function signV3Rpc(input: V3RpcInput): { signature: string; authorization: string } {
  const token = input.securityToken ? input.securityToken : null;
  // NOTE: in code-point order of the names: content-type < host < x-acs-accesskey-id < x-acs-action
  // < x-acs-content-sha256 < x-acs-date < x-acs-security-token < x-acs-signature-nonce < x-acs-version.
  // Values trimmed as signV3 trims them.
  let headers = input.contentType === null ? '' : `content-type:${input.contentType.trim()}\n`;
  headers += `host:${input.host.trim()}\n`;
  if (token !== null) headers += `x-acs-accesskey-id:${input.accessKeyId.trim()}\n`;
  headers += `x-acs-action:${input.action.trim()}\nx-acs-content-sha256:${input.bodySha256.trim()}\nx-acs-date:${input.date.trim()}\n`;
  if (token !== null) headers += `x-acs-security-token:${token.trim()}\n`;
  headers += `x-acs-signature-nonce:${input.nonce.trim()}\nx-acs-version:${input.version.trim()}\n`;
  const signedHeaders =
    token === null
      ? input.contentType === null
        ? SIGNED_PLAIN
        : SIGNED_BODY
      : input.contentType === null
        ? SIGNED_STS
        : SIGNED_STS_BODY;
  const canonicalRequest = `POST\n/\n${input.canonicalQueryString}\n${headers}\n${signedHeaders}\n${input.bodySha256}`;
  const signature = createHmac('sha256', input.accessKeySecret).update(`${ACS3_ALGORITHM}\n${sha256Hex(canonicalRequest)}`, 'utf8').digest('hex');
  return {
    signature,
    authorization: `${ACS3_ALGORITHM} Credential=${input.accessKeyId},SignedHeaders=${signedHeaders},Signature=${signature}`,
  };
}

const SIGNED_PLAIN = 'host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version';
const SIGNED_BODY = `content-type;${SIGNED_PLAIN}`;
const SIGNED_STS = 'host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version';
const SIGNED_STS_BODY = `content-type;${SIGNED_STS}`;
