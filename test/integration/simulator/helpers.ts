/**
 * Test helpers: raw signed requests to the simulator (V1 and V3, built with the shared signers) over
 * node:http on loopback, so tests can craft exactly what they need (reused nonces, odd bodies, skew).
 */
import { request, type Agent } from 'node:http';

import { canonicalQuery } from '../../../src/alibaba/percent-encode.js';
import { formatTimestamp, signV1, v1CommonParams } from '../../../src/alibaba/sign-v1.js';
import { sha256Hex, signV3, v3Headers } from '../../../src/alibaba/sign-v3.js';

export const SIM_AK = 'SimAccessKeyId';
export const SIM_SECRET = 'SimAccessKeySecret';

export interface RawCall {
  action: string;
  params?: Record<string, string>;
  /** @default 'v3' */
  version?: 'v1' | 'v3';
  /** @default 'POST' */
  method?: 'GET' | 'POST';
  /** V1 only: send every parameter in a form body instead of the query. */
  form?: boolean;
  accessKeyId?: string;
  accessKeySecret?: string;
  securityToken?: string;
  nonce?: string;
  /** Epoch ms used for Timestamp / x-acs-date. @default Date.now() */
  now?: number;
  apiVersion?: string;
  /** A keep-alive agent, for load tests. @default a new connection per request */
  agent?: Agent;
}

/**
 * A parsed JSON body, inspected field by field in assertions (which do the checking).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Loose = any;

export interface RawReply {
  status: number;
  text: string;
  json: Loose;
}

let nonceCounter = 0;
export function freshNonce(): string {
  nonceCounter += 1;
  return `test-nonce-${process.pid}-${nonceCounter}-${Date.now()}`;
}

/** Sends one signed request and returns the status and parsed body. */
export async function rawCall(port: number, call: RawCall): Promise<RawReply> {
  const method = call.method ?? 'POST';
  const accessKeyId = call.accessKeyId ?? SIM_AK;
  const secret = call.accessKeySecret ?? SIM_SECRET;
  const nonce = call.nonce ?? freshNonce();
  const timestamp = formatTimestamp(call.now ?? Date.now());
  const params = call.params ?? {};
  const host = `127.0.0.1:${port}`;
  if ((call.version ?? 'v3') === 'v1') {
    const all = {
      ...v1CommonParams({
        action: call.action,
        version: call.apiVersion ?? '2018-01-20',
        accessKeyId,
        timestamp,
        nonce,
        securityToken: call.securityToken ?? null,
      }),
      ...params,
    };
    const signature = signV1(all, method, secret).signature;
    const encoded = canonicalQuery({ ...all, Signature: signature });
    if (call.form === true) {
      return send(port, method, '/', { host, 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(encoded), call.agent);
    }
    return send(port, method, `/?${encoded}`, { host }, Buffer.alloc(0), call.agent);
  }
  const headers = v3Headers({
    host,
    action: call.action,
    version: call.apiVersion ?? '2018-01-20',
    date: timestamp,
    nonce,
    bodySha256: sha256Hex(''),
    securityToken: call.securityToken ?? null,
    accessKeyId,
  });
  const signed = signV3({ method, query: params, headers, accessKeyId, accessKeySecret: secret });
  const qs = canonicalQuery(params);
  return send(port, method, qs === '' ? '/' : `/?${qs}`, { ...headers, authorization: signed.authorization }, Buffer.alloc(0), call.agent);
}

/** A plain HTTP request (no signing). Resolves with status 0 and the error text on a transport error. */
export function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  agent?: Agent,
): Promise<RawReply> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: { ...headers, 'content-length': String(body.length) }, agent: agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => resolve({ status: 0, text: String(err), json: undefined }));
        res.on('aborted', () => resolve({ status: 0, text: 'aborted', json: undefined }));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
      },
    );
    req.on('error', (err) => resolve({ status: 0, text: String(err), json: undefined }));
    req.end(body);
  });
}
