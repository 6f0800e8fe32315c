/**
 * Request authentication as the API gateway does it: the AccessKey must be known, the timestamp within
 * 15 minutes, the signature exact (recomputed with the shared signers, reference §2.3 and §2.5), and the
 * nonce unused for 15 minutes. STS keys issued by the simulator need their security token.
 *
 * Order of checks (the first failure answers): required parts → AccessKey → timestamp → STS token →
 * (V3) payload hash → signature → nonce.
 */
import { timingSafeEqual } from 'node:crypto';

import type { Random } from '../core/clock.js';
import { signV1 } from '../alibaba/sign-v1.js';
import { ACS3_ALGORITHM, sha256Hex, signV3 } from '../alibaba/sign-v3.js';

/** 15 minutes: the gateway's timestamp tolerance and nonce memory. */
export const FIFTEEN_MINUTES_MS = 15 * 60 * 1000;

/** A gateway error before any IoT logic runs (HTTP 4xx/5xx, `{RequestId, HostId, Code, Message, Recommend}`). */
export interface GatewayFailure {
  httpStatus: number;
  code: string;
  message: string;
}

export type SignatureVersion = 'v1' | 'v3';

/** An STS credential issued by the simulator. */
export interface StsCredential {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken: string;
  /** Clock ms after which the token is rejected with `InvalidSecurityToken.Expired`. */
  expiresAt: number;
}

interface KeyEntry {
  secret: string;
  securityToken: string | null;
  expiresAt: number | null;
}

/** The request as received, decoded. */
export interface ReceivedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  form: Record<string, string>;
  /** Lower-case names (node's `req.headers`). */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: Buffer;
}

export type AuthResult =
  | { ok: true; version: SignatureVersion; accessKeyId: string; action: string; apiVersion: string; params: Record<string, string> }
  | { ok: false; version: SignatureVersion | null; action: string | null; params: Record<string, string>; failure: GatewayFailure };

/** Known AccessKeys (one long-term pair plus issued STS keys) and the nonce memory. */
export class Authenticator {
  private readonly keys = new Map<string, KeyEntry>();
  /** `accessKeyId \n nonce` → clock ms when first seen, in insertion order. */
  private readonly nonces = new Map<string, number>();

  constructor(
    accessKeyId: string,
    accessKeySecret: string,
    private readonly random: Random,
  ) {
    this.keys.set(accessKeyId, { secret: accessKeySecret, securityToken: null, expiresAt: null });
  }

  /** Issues an STS credential accepted until `now + durationMs`. */
  issueSts(now: number, durationMs: number): StsCredential {
    const accessKeyId = `STS.${this.token(24)}`;
    const accessKeySecret = this.token(40);
    const securityToken = `CAIS${this.token(120)}`;
    const expiresAt = now + durationMs;
    this.keys.set(accessKeyId, { secret: accessKeySecret, securityToken, expiresAt });
    return { accessKeyId, accessKeySecret, securityToken, expiresAt };
  }

  /**
   * @param skewedNow the simulator's notion of "now" for timestamp checks
   * @param now the clock, for the nonce memory and token expiry
   */
  verify(req: ReceivedRequest, skewedNow: number, now: number): AuthResult {
    const params = { ...req.query, ...req.form };
    const authorization = header(req.headers, 'authorization');
    if (authorization?.startsWith(`${ACS3_ALGORITHM} `) === true) return this.verifyV3(req, authorization, params, skewedNow, now);
    return this.verifyV1(req, params, skewedNow, now);
  }

  private verifyV1(req: ReceivedRequest, params: Record<string, string>, skewedNow: number, now: number): AuthResult {
    const action = params.Action ?? null;
    const fail = (failure: GatewayFailure): AuthResult => ({ ok: false, version: 'v1', action, params, failure });
    for (const name of ['Signature', 'AccessKeyId', 'Action', 'Version', 'SignatureNonce', 'Timestamp'] as const) {
      if (params[name] === undefined || params[name] === '') return fail(missing(name));
    }
    if (params.SignatureMethod !== undefined && params.SignatureMethod !== 'HMAC-SHA1') {
      return fail({ httpStatus: 400, code: 'InvalidSignatureMethod', message: `Specified signature method ${params.SignatureMethod} is not supported.` });
    }
    const accessKeyId = params.AccessKeyId ?? '';
    const key = this.keys.get(accessKeyId);
    if (key === undefined) return fail(akNotFound());
    const ts = checkTimestamp(params.Timestamp ?? '', skewedNow);
    if (ts !== null) return fail(ts);
    const sts = checkToken(key, params.SecurityToken, now);
    if (sts !== null) return fail(sts);
    const expected = signV1(params, req.method, key.secret);
    if (!safeEqual(expected.signature, params.Signature ?? '')) return fail(signatureMismatch());
    const nonce = this.useNonce(accessKeyId, params.SignatureNonce ?? '', now);
    if (nonce !== null) return fail(nonce);
    const rest: Record<string, string> = {};
    for (const [k, v] of Object.entries(params)) if (k !== 'Signature') rest[k] = v;
    return { ok: true, version: 'v1', accessKeyId, action: params.Action ?? '', apiVersion: params.Version ?? '', params: rest };
  }

  private verifyV3(
    req: ReceivedRequest,
    authorization: string,
    params: Record<string, string>,
    skewedNow: number,
    now: number,
  ): AuthResult {
    const action = header(req.headers, 'x-acs-action') ?? null;
    const fail = (failure: GatewayFailure): AuthResult => ({ ok: false, version: 'v3', action, params, failure });
    const parsed = parseAuthorization(authorization);
    if (parsed === null) {
      return fail({ httpStatus: 400, code: 'IncompleteSignature', message: 'The Authorization header is malformed.' });
    }
    for (const name of ['x-acs-action', 'x-acs-version', 'x-acs-date', 'x-acs-signature-nonce'] as const) {
      if ((header(req.headers, name) ?? '') === '') {
        return fail({ httpStatus: 400, code: 'MissingParameter', message: `The header ${name} is mandatory for this request.` });
      }
    }
    const signed = parsed.signedHeaders.split(';');
    for (const name of ['x-acs-date', 'x-acs-signature-nonce']) {
      if (!signed.includes(name)) {
        return fail({ httpStatus: 400, code: 'IncompleteSignature', message: `The header ${name} must be signed.` });
      }
    }
    const key = this.keys.get(parsed.credential);
    if (key === undefined) return fail(akNotFound());
    const ts = checkTimestamp(header(req.headers, 'x-acs-date') ?? '', skewedNow);
    if (ts !== null) return fail(ts);
    const sts = checkToken(key, header(req.headers, 'x-acs-security-token'), now);
    if (sts !== null) return fail(sts);
    const bodyHash = sha256Hex(req.body);
    const claimedHash = header(req.headers, 'x-acs-content-sha256');
    if (claimedHash !== undefined && claimedHash !== bodyHash) {
      return fail({ httpStatus: 400, code: 'SignatureDoesNotMatch', message: 'The x-acs-content-sha256 header does not match the request body.' });
    }
    const headers: Record<string, string> = {};
    for (const name of signed) {
      const value = header(req.headers, name);
      if (value === undefined) return fail(signatureMismatch());
      headers[name] = value;
    }
    const expected = signV3({
      method: req.method,
      path: req.path,
      query: req.query,
      headers,
      bodySha256: claimedHash ?? bodyHash,
      accessKeyId: parsed.credential,
      accessKeySecret: key.secret,
    });
    if (expected.signedHeaders !== parsed.signedHeaders || !safeEqual(expected.signature, parsed.signature)) {
      return fail(signatureMismatch());
    }
    const nonce = this.useNonce(parsed.credential, header(req.headers, 'x-acs-signature-nonce') ?? '', now);
    if (nonce !== null) return fail(nonce);
    return {
      ok: true,
      version: 'v3',
      accessKeyId: parsed.credential,
      action: action ?? '',
      apiVersion: header(req.headers, 'x-acs-version') ?? '',
      params,
    };
  }

  private useNonce(accessKeyId: string, nonce: string, now: number): GatewayFailure | null {
    // NOTE: entries are inserted in clock order, so expired ones sit at the front of the Map.
    for (const [k, at] of this.nonces) {
      if (at > now - FIFTEEN_MINUTES_MS) break;
      this.nonces.delete(k);
    }
    const k = `${accessKeyId}\n${nonce}`;
    if (this.nonces.has(k)) {
      return { httpStatus: 400, code: 'SignatureNonceUsed', message: 'Specified signature nonce was used already.' };
    }
    this.nonces.set(k, now);
    return null;
  }

  private token(length: number): string {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let s = '';
    for (let i = 0; i < length; i += 1) s += alphabet[Math.floor(this.random.float() * alphabet.length)] ?? 'A';
    return s;
  }
}

function header(headers: ReceivedRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function parseAuthorization(value: string): { credential: string; signedHeaders: string; signature: string } | null {
  const fields = new Map<string, string>();
  for (const part of value.slice(ACS3_ALGORITHM.length + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!credential || !signedHeaders || !signature) return null;
  return { credential, signedHeaders, signature };
}

const TIMESTAMP_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function checkTimestamp(value: string, skewedNow: number): GatewayFailure | null {
  const at = TIMESTAMP_PATTERN.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(at)) {
    return { httpStatus: 400, code: 'InvalidTimeStamp.Format', message: `Specified time stamp or date value is not well formatted: ${value}` };
  }
  if (Math.abs(at - skewedNow) > FIFTEEN_MINUTES_MS) {
    return { httpStatus: 400, code: 'InvalidTimeStamp.Expired', message: 'Specified time stamp or date value is expired.' };
  }
  return null;
}

function checkToken(key: KeyEntry, token: string | undefined, now: number): GatewayFailure | null {
  if (key.securityToken === null) {
    if (token !== undefined && token !== '') {
      return { httpStatus: 400, code: 'InvalidSecurityToken.MismatchWithAccessKey', message: 'The security token does not belong to this AccessKey.' };
    }
    return null;
  }
  if (token === undefined || token === '') {
    return { httpStatus: 400, code: 'MissingSecurityToken', message: 'SecurityToken is mandatory for an STS AccessKey.' };
  }
  if (token !== key.securityToken) {
    return { httpStatus: 400, code: 'InvalidSecurityToken.MismatchWithAccessKey', message: 'The security token does not belong to this AccessKey.' };
  }
  if (key.expiresAt !== null && now > key.expiresAt) {
    return { httpStatus: 400, code: 'InvalidSecurityToken.Expired', message: 'Specified SecurityToken is expired.' };
  }
  return null;
}

function missing(name: string): GatewayFailure {
  return { httpStatus: 400, code: `Missing${name}`, message: `${name} is mandatory for this action.` };
}

function akNotFound(): GatewayFailure {
  return { httpStatus: 404, code: 'InvalidAccessKeyId.NotFound', message: 'Specified access key is not found.' };
}

function signatureMismatch(): GatewayFailure {
  return {
    httpStatus: 400,
    code: 'SignatureDoesNotMatch',
    message: 'Specified signature is not matched with our calculation.',
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
