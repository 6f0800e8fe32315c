import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ApiError } from '../../../src/alibaba/errors.js';
import { createRpcClient, isLoopbackHost, parseEndpoint } from '../../../src/alibaba/rpc-client.js';
import type { RpcClient } from '../../../src/alibaba/rpc-client.js';
import { createManualClock, createSeededRandom } from '../../../src/core/clock.js';
import { AbortedError, DaemonError } from '../../../src/errors.js';
import type { FakeServer, Handler } from './fake-server.js';
import { chunked, hang, json, raw, reset, sdkV1Signature, sdkV3Authorization, startFakeServer, truncated } from './fake-server.js';
import { AK_ID, AK_SECRET, STS_TOKEN, captureLogger, staticCredentials, testOptions } from './helpers.js';

const ACTION = 'QueryBatchRegisterDeviceStatus' as const;
const PARAMS = { ProductKey: 'a1BwAGVxxxx', ApplyId: '1295006', IotInstanceId: 'iot-cn-abc123' };
const OK = { RequestId: 'req-ok', Success: true, Data: { Status: 'CREATE' } };

const invalidUtf8: Handler = (_q, res) => {
  res.writeHead(200, { 'content-length': 3 });
  res.end(Buffer.from([0x7b, 0xff, 0x7d]));
};

let server: FakeServer;
let client: RpcClient | null = null;

beforeEach(async () => {
  server = await startFakeServer();
});
afterEach(async () => {
  await client?.close();
  client = null;
  await server.close();
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

async function apiRejection(p: Promise<unknown>): Promise<ApiError> {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

describe('signing on the wire (checked with the official SDK functions)', () => {
  it('V3 by default: POST, RPC params in the query, x-acs-* headers, Authorization the SDK agrees with', async () => {
    const opts = testOptions(server.url);
    client = createRpcClient(opts);
    server.enqueue(json(200, OK));
    const res = await client.call(ACTION, PARAMS);
    expect(res.body.Data).toEqual({ Status: 'CREATE' });
    expect(res.requestId).toBe('req-ok');
    expect(res.attempts).toBe(1);
    const req = server.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.query).toEqual(PARAMS);
    expect(req.headers.host).toBe(`127.0.0.1:${server.port}`);
    expect(req.headers['x-acs-action']).toBe(ACTION);
    expect(req.headers['x-acs-version']).toBe('2018-01-20');
    expect(req.headers['x-acs-date']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(req.headers['x-acs-security-token']).toBeUndefined();
    expect(req.body).toBe('');
    expect(req.headers.authorization).toBe(sdkV3Authorization(req, AK_ID, AK_SECRET));
    expect(opts.attempts).toEqual([
      expect.objectContaining({ action: ACTION, outcome: 'success', httpStatus: 200, requestId: 'req-ok', code: null, attempt: 1 }),
    ]);
  });

  it('V1: POST with every parameter and the Signature in the query and an empty body', async () => {
    client = createRpcClient(testOptions(server.url, { signatureVersion: 'v1' }));
    server.enqueue(json(200, OK));
    await client.call(ACTION, PARAMS);
    const req = server.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.body).toBe('');
    expect(req.headers['content-length']).toBe('0');
    expect(req.query).toMatchObject({
      ...PARAMS,
      Action: ACTION,
      Version: '2018-01-20',
      Format: 'JSON',
      AccessKeyId: AK_ID,
      SignatureMethod: 'HMAC-SHA1',
      SignatureVersion: '1.0',
    });
    expect(req.query.SecurityToken).toBeUndefined();
    expect(req.query.Signature).toBe(sdkV1Signature(req, AK_SECRET));
    expect(req.headers.authorization).toBeUndefined();
  });

  it('STS: V1 sends a signed SecurityToken parameter, V3 the x-acs-security-token header', async () => {
    client = createRpcClient(testOptions(server.url, { signatureVersion: 'v1', credentials: staticCredentials(STS_TOKEN) }));
    await client.call(ACTION, PARAMS);
    const v1 = server.requests[0]!;
    expect(v1.query.SecurityToken).toBe(STS_TOKEN);
    expect(v1.query.Signature).toBe(sdkV1Signature(v1, AK_SECRET));
    await client.close();

    client = createRpcClient(testOptions(server.url, { credentials: staticCredentials(STS_TOKEN) }));
    await client.call(ACTION, PARAMS);
    const v3 = server.requests[1]!;
    expect(v3.headers['x-acs-security-token']).toBe(STS_TOKEN);
    expect(v3.query.SecurityToken).toBeUndefined();
    expect(v3.headers.authorization).toBe(sdkV3Authorization(v3, AK_ID, AK_SECRET));
  });

  it('re-signs every attempt with a fresh nonce and timestamp (V3 and V1)', async () => {
    for (const signatureVersion of ['v3', 'v1'] as const) {
      const random = createSeededRandom(7);
      const nonces: string[] = [];
      const wrapped = { float: () => random.float(), nonce: () => { const n = random.nonce(); nonces.push(n); return n; } };
      client = createRpcClient(testOptions(server.url, { signatureVersion, random: wrapped, maxAttempts: 4 }));
      const before = server.requests.length;
      server.enqueue(
        json(500, { Code: 'InternalError', Message: 'x', RequestId: 'r1' }),
        json(400, { Code: 'SignatureNonceUsed', Message: 'x', RequestId: 'r2' }),
        json(503, { Code: 'ServiceUnavailable', Message: 'x', RequestId: 'r3' }),
        json(200, OK),
      );
      const res = await client.call(ACTION, PARAMS);
      expect(res.attempts).toBe(4);
      const sent = server.requests.slice(before).map((r) => r.headers['x-acs-signature-nonce'] ?? r.query.SignatureNonce);
      expect(sent).toEqual(nonces);
      expect(new Set(sent).size).toBe(4);
      const sigs = server.requests.slice(before).map((r) => r.headers.authorization ?? r.query.Signature);
      expect(new Set(sigs).size).toBe(4);
      await client.close();
      client = null;
    }
  });

  it('reuses keep-alive connections for sequential calls', async () => {
    client = createRpcClient(testOptions(server.url));
    for (let i = 0; i < 10; i += 1) await client.call(ACTION, PARAMS);
    expect(server.requests).toHaveLength(10);
    // NOTE: undici's pool may open a second socket while the first one finishes its bookkeeping; the point
    // is that sockets are reused rather than opened per request.
    expect(server.connections()).toBeLessThanOrEqual(2);
  });
});

describe('response shapes', () => {
  it('gateway error (4xx) → ApiError with Code, Message, RequestId, HostId, Recommend; fatal ones are not retried', async () => {
    const opts = testOptions(server.url);
    client = createRpcClient(opts);
    server.enqueue(
      json(404, {
        RequestId: 'req-404',
        HostId: 'iot.cn-shanghai.aliyuncs.com',
        Code: 'InvalidApi.NotFound',
        Message: 'Specified api is not found, please check your url and method.',
        Recommend: 'https://api.aliyun.com/troubleshoot?q=InvalidApi.NotFound',
      }),
    );
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({
      action: ACTION,
      code: 'InvalidApi.NotFound',
      httpStatus: 404,
      requestId: 'req-404',
      hostId: 'iot.cn-shanghai.aliyuncs.com',
      recommend: 'https://api.aliyun.com/troubleshoot?q=InvalidApi.NotFound',
      source: 'gateway',
      kind: 'invalid-request',
      scope: 'process',
      known: true,
    });
    expect(err.message).toContain('Specified api is not found');
    expect(err).toBeInstanceOf(DaemonError);
    expect(server.requests).toHaveLength(1);
    expect(opts.attempts.map((a) => a.outcome)).toEqual(['fatal']);
  });

  it('business error (2xx, Success:false) → ApiError with Code and ErrorMessage', async () => {
    const opts = testOptions(server.url);
    client = createRpcClient(opts);
    server.enqueue(
      json(200, { RequestId: 'req-b', Success: false, Code: 'iot.device.DeviceApplyIsNotFound', ErrorMessage: 'apply not found' }),
    );
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({
      code: 'iot.device.DeviceApplyIsNotFound',
      apiMessage: 'apply not found',
      httpStatus: 200,
      requestId: 'req-b',
      source: 'business',
      kind: 'not-found',
      scope: 'batch',
    });
    expect(server.requests).toHaveLength(1);
    expect(opts.attempts.map((a) => a.outcome)).toEqual(['business_error']);
  });

  it('2xx with Success missing is ok; RequestId falls back to the x-acs-request-id header', async () => {
    client = createRpcClient(testOptions(server.url));
    server.enqueue(json(200, { Data: { Status: 'CHECK' } }, { 'x-acs-request-id': 'hdr-id' }));
    const res = await client.call(ACTION, PARAMS);
    expect(res.body).toEqual({ Data: { Status: 'CHECK' } });
    expect(res.requestId).toBe('hdr-id');
  });

  it.each([
    ['not JSON', raw(200, '<html>oops</html>', 'text/html'), 'Response.Malformed'],
    ['empty body', raw(200, ''), 'Response.Malformed'],
    ['a JSON array', raw(200, '[1,2]'), 'Response.Malformed'],
    ['JSON null', raw(200, 'null'), 'Response.Malformed'],
    ['Success of the wrong type', json(200, { Success: 'maybe' }), 'Response.Malformed'],
    ['truncated JSON (complete HTTP body)', raw(200, '{"RequestId":"x","Succ'), 'Response.Malformed'],
    ['invalid UTF-8', invalidUtf8, 'Response.Malformed'],
    ['a body cut short by the connection', truncated('{"RequestId":"x",', 500), 'Response.Truncated'],
  ] as const)('%s → ApiError %s (transient), never a crash', async (_name, handler, code) => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 1 }));
    server.enqueue(handler);
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err.code).toBe(code);
    expect(err.kind).toBe('transient');
    expect(err.scope).toBe('attempt');
  });

  it('oversized bodies → Response.TooLarge, by content-length and while streaming', async () => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 1, maxBodyBytes: 4096 }));
    server.enqueue(raw(200, JSON.stringify({ pad: 'x'.repeat(5000) })));
    expect((await apiRejection(client.call(ACTION, PARAMS))).code).toBe('Response.TooLarge');
    server.enqueue(chunked(64 * 1024));
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err.code).toBe('Response.TooLarge');
    expect(err.message).toContain('4096');
    // The client still works afterwards.
    server.enqueue(json(200, OK));
    expect((await client.call(ACTION, PARAMS)).requestId).toBe('req-ok');
  });

  it('a 5xx without a JSON body is a transient Http.<status> error', async () => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 1 }));
    server.enqueue(raw(502, '<html>bad gateway</html>', 'text/html'));
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({ code: 'Http.502', httpStatus: 502, kind: 'transient', scope: 'attempt', known: true });
  });
});

describe('taxonomy and retries', () => {
  it.each([
    // [code, http status, business body?, kind, scope, requests made with maxAttempts 3]
    ['Throttling.User', 400, false, 'throttled', 'attempt', 3],
    ['Rejected.Throttling', 400, false, 'throttled', 'attempt', 3],
    ['ServiceUnavailable', 503, false, 'transient', 'attempt', 3],
    ['InternalError', 500, false, 'transient', 'attempt', 3],
    ['iot.system.SystemException', 200, true, 'transient', 'attempt', 3],
    ['iot.device.DeviceApplyIsNotFound', 200, true, 'not-found', 'batch', 1],
    ['iot.prod.NotExistedProduct', 200, true, 'not-found', 'batch', 1],
    ['iot.common.AuthActionPermissionDeny', 200, true, 'auth', 'batch', 1],
    ['Forbidden.RAM', 403, false, 'auth', 'batch', 1],
    ['SignatureDoesNotMatch', 400, false, 'auth', 'process', 1],
    ['InvalidAccessKeyId.NotFound', 404, false, 'auth', 'process', 1],
    ['InvalidTimeStamp.Expired', 400, false, 'auth', 'process', 1],
    ['InvalidSecurityToken.Expired', 400, false, 'auth', 'process', 1],
  ] as const)('%s (HTTP %i, Success:false body: %s) → %s/%s', async (code, status, business, kind, scope, requests) => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 3 }));
    server.setDefault(
      business
        ? json(status, { RequestId: 'r', Success: false, Code: code, ErrorMessage: 'm' })
        : json(status, { RequestId: 'r', Code: code, Message: 'm' }),
    );
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err.code).toBe(code);
    expect(err.kind).toBe(kind);
    expect(err.scope).toBe(scope);
    expect(server.requests).toHaveLength(requests);
  });

  it('unknown codes are transient, retried, and logged once as a warning', async () => {
    const cap = captureLogger('debug');
    client = createRpcClient(testOptions(server.url, { maxAttempts: 2, logger: cap.logger }));
    server.setDefault(json(400, { RequestId: 'r', Code: 'Some.NewCode', Message: 'm' }));
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({ code: 'Some.NewCode', kind: 'transient', scope: 'attempt', known: false });
    expect(server.requests).toHaveLength(2);
    const warnings = cap.lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ code: 'Some.NewCode', action: ACTION });
  });

  it('retry then success', async () => {
    const opts = testOptions(server.url);
    client = createRpcClient(opts);
    server.enqueue(json(503, { Code: 'ServiceUnavailable', Message: 'busy', RequestId: 'r1' }), reset, json(200, OK));
    const res = await client.call(ACTION, PARAMS);
    expect(res.attempts).toBe(3);
    expect(opts.attempts.map((a) => [a.outcome, a.attempt, a.code])).toEqual([
      ['transient', 1, 'ServiceUnavailable'],
      ['transient', 2, 'Transport.ConnectionReset'],
      ['success', 3, null],
    ]);
  });

  it('throttling is surfaced on every attempt and as ApiError kind throttled when retries run out', async () => {
    const opts = testOptions(server.url, { maxAttempts: 3 });
    client = createRpcClient(opts);
    server.setDefault(json(400, { Code: 'Throttling.User', Message: 'Request was denied due to user flow control.', RequestId: 't' }));
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err.kind).toBe('throttled');
    expect(err.isThrottled).toBe(true);
    expect(opts.attempts.map((a) => a.outcome)).toEqual(['throttled', 'throttled', 'throttled']);

    const err1 = await apiRejection(client.call(ACTION, PARAMS, { maxAttempts: 1 }));
    expect(err1.kind).toBe('throttled');
    expect(opts.attempts).toHaveLength(4);
  });

  it('throttling then success still reports the throttled attempt', async () => {
    const opts = testOptions(server.url);
    client = createRpcClient(opts);
    server.enqueue(json(400, { Code: 'Throttling', Message: 'm', RequestId: 't' }), json(200, OK));
    await client.call(ACTION, PARAMS);
    expect(opts.attempts.map((a) => a.outcome)).toEqual(['throttled', 'success']);
  });

  it('calls beforeAttempt before every attempt', async () => {
    const calls: string[] = [];
    client = createRpcClient(
      testOptions(server.url, {
        beforeAttempt: (action) => {
          calls.push(action);
          return Promise.resolve();
        },
      }),
    );
    server.enqueue(json(500, { Code: 'InternalError', Message: 'm', RequestId: 'r' }), json(200, OK));
    await client.call(ACTION, PARAMS);
    expect(calls).toEqual([ACTION, ACTION]);
  });

  it('non-idempotent calls are not resent after an ambiguous failure, but are after throttling', async () => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 3 }));
    server.enqueue(reset);
    const err = await apiRejection(client.call('BatchRegisterDevice', { ProductKey: 'pk', Count: '3' }, { idempotent: false }));
    expect(err.code).toBe('Transport.ConnectionReset');
    expect(server.requests).toHaveLength(1);

    server.enqueue(json(400, { Code: 'Throttling.Api', Message: 'm', RequestId: 'r' }), json(200, { Success: true, Data: { ApplyId: 5 } }));
    const res = await client.call('BatchRegisterDevice', { ProductKey: 'pk', Count: '3' }, { idempotent: false });
    expect(res.attempts).toBe(2);
  });

  it('backoff waits on the injected clock, and maxRetryTimeMs bounds the total', async () => {
    const clock = createManualClock(Date.UTC(2024, 0, 2, 3, 4, 5));
    const opts = testOptions(server.url, {
      clock,
      random: createSeededRandom(1),
      retryBaseDelayMs: 1000,
      retryMaxDelayMs: 8000,
      maxAttempts: 5,
      maxRetryTimeMs: 5_000,
    });
    client = createRpcClient(opts);
    server.setDefault(json(503, { Code: 'ServiceUnavailable', Message: 'm', RequestId: 'r' }));
    const p = apiRejection(client.call(ACTION, PARAMS));
    const waitForSleep = async (): Promise<void> => {
      for (let i = 0; i < 2000 && clock.pendingSleeps() === 0; i += 1) await new Promise((r) => setTimeout(r, 1));
    };
    await waitForSleep();
    expect(clock.pendingSleeps()).toBe(1);
    expect(server.requests).toHaveLength(1); // nothing happens until the clock moves
    await clock.advance(1000); // first retry delay is exactly the base (1000 ms)
    await waitForSleep();
    expect(server.requests).toHaveLength(2);
    await clock.advance(2000); // second delay ∈ [1000, 2000]
    await waitForSleep();
    expect(server.requests).toHaveLength(3);
    // Elapsed is now 2000..3000 ms; the third delay (1000..4000) is only taken if it fits into 5 s.
    for (let i = 0; i < 5 && clock.pendingSleeps() > 0; i += 1) await clock.advance(4000);
    const err = await p;
    expect(err.code).toBe('ServiceUnavailable');
    expect(server.requests.length).toBeLessThan(5);
    expect(clock.now() - Date.UTC(2024, 0, 2, 3, 4, 5)).toBeLessThanOrEqual(5_000 + 4000);
    // The timestamp came from the injected clock.
    expect(server.requests[0]!.headers['x-acs-date']).toBe('2024-01-02T03:04:05Z');
  });

  it('an abort during the backoff wait rejects with AbortedError and stops retrying', async () => {
    const clock = createManualClock(0);
    client = createRpcClient(testOptions(server.url, { clock, retryBaseDelayMs: 1000 }));
    server.setDefault(json(500, { Code: 'InternalError', Message: 'm', RequestId: 'r' }));
    const ac = new AbortController();
    const p = rejection(client.call(ACTION, PARAMS, { signal: ac.signal }));
    for (let i = 0; i < 2000 && clock.pendingSleeps() === 0; i += 1) await new Promise((r) => setTimeout(r, 1));
    ac.abort();
    const err = await p;
    expect(err).toBeInstanceOf(AbortedError);
    expect(server.requests).toHaveLength(1);
  });

  it('an abort during a request rejects promptly with AbortedError', async () => {
    client = createRpcClient(testOptions(server.url, { requestTimeoutMs: 30_000 }));
    server.setDefault(hang);
    const ac = new AbortController();
    const p = rejection(client.call(ACTION, PARAMS, { signal: ac.signal }));
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 2));
    const t0 = performance.now();
    ac.abort();
    expect(await p).toBeInstanceOf(AbortedError);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('transport failures', () => {
  it('a request timeout → Transport.Timeout (transient)', async () => {
    const opts = testOptions(server.url, { requestTimeoutMs: 150, maxAttempts: 1 });
    client = createRpcClient(opts);
    server.setDefault(hang);
    const t0 = performance.now();
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({ code: 'Transport.Timeout', kind: 'transient', scope: 'attempt', httpStatus: null, source: 'transport' });
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(opts.attempts).toEqual([expect.objectContaining({ outcome: 'transient', httpStatus: null, code: 'Transport.Timeout' })]);
  });

  it('a reset connection → Transport.ConnectionReset', async () => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 1 }));
    server.enqueue(reset);
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({ code: 'Transport.ConnectionReset', kind: 'transient' });
  });

  it('a refused connection → Transport.ConnectionRefused', async () => {
    const other = await startFakeServer();
    const port = other.port;
    await other.close();
    client = createRpcClient(testOptions(`http://127.0.0.1:${port}`, { maxAttempts: 2 }));
    const err = await apiRejection(client.call(ACTION, PARAMS));
    expect(err).toMatchObject({ code: 'Transport.ConnectionRefused', kind: 'transient' });
  });
});

describe('endpoints', () => {
  it('requires https off loopback: a config error, with no connection attempt', async () => {
    const creds = staticCredentials();
    let before = 0;
    const make = (endpoint: string) =>
      createRpcClient(
        testOptions(endpoint, {
          credentials: creds,
          beforeAttempt: () => {
            before += 1;
            return Promise.resolve();
          },
        }),
      );
    for (const bad of ['http://iot.cn-shanghai.aliyuncs.com', 'http://10.0.0.1:8080', 'http://128.0.0.1']) {
      let thrown: unknown;
      try {
        make(bad);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(DaemonError);
      expect(thrown).toMatchObject({ kind: 'config', scope: 'process', code: 'EndpointInsecure' });
    }
    client = make(server.url);
    const err = await rejection(client.call(ACTION, PARAMS, { endpoint: 'http://example.com' }));
    expect(err).toMatchObject({ kind: 'config', code: 'EndpointInsecure' });
    expect(before).toBe(0);
    expect(creds.calls).toBe(0);
    expect(server.requests).toHaveLength(0);
  });

  it('accepts https anywhere and http on loopback only; rejects paths and other schemes', () => {
    expect(parseEndpoint('https://iot.cn-shanghai.aliyuncs.com').host).toBe('iot.cn-shanghai.aliyuncs.com');
    expect(parseEndpoint('http://localhost:8787').port).toBe('8787');
    expect(parseEndpoint('http://127.1.2.3:1').hostname).toBe('127.1.2.3');
    expect(parseEndpoint('http://[::1]:80').hostname).toBe('[::1]');
    expect(() => parseEndpoint('https://iot.example.com/api')).toThrow(/path/);
    expect(() => parseEndpoint('ftp://x')).toThrow(DaemonError);
    expect(() => parseEndpoint('not a url')).toThrow(DaemonError);
    expect(isLoopbackHost('127.0.0.1')).toBe(true);
    expect(isLoopbackHost('127.0.0.1.example.com')).toBe(false);
    expect(isLoopbackHost('localhost.example.com')).toBe(false);
  });

  it('a per-call endpoint override goes to its own origin', async () => {
    const other = await startFakeServer();
    try {
      client = createRpcClient(testOptions(server.url));
      await client.call(ACTION, PARAMS, { endpoint: other.url });
      expect(server.requests).toHaveLength(0);
      expect(other.requests).toHaveLength(1);
      expect(other.requests[0]!.headers.host).toBe(`127.0.0.1:${other.port}`);
      expect(other.requests[0]!.headers.authorization).toBe(sdkV3Authorization(other.requests[0]!, AK_ID, AK_SECRET));
      await client.close();
      client = null;
    } finally {
      await other.close();
    }
  });
});

describe('endpoints resolved once per client', () => {
  it('alternating per-call endpoints each reach their own origin, signed for their own host; an invalid one fails every time', async () => {
    const other = await startFakeServer();
    try {
      client = createRpcClient(testOptions(server.url, { maxAttempts: 1 }));
      // NOTE: the last override is the same origin spelt differently (a trailing slash): its own cache entry, same pool.
      const order = [other.url, undefined, other.url, other.url, undefined, `http://127.0.0.1:${other.port}/`, undefined];
      for (const endpoint of order) await client.call(ACTION, PARAMS, endpoint === undefined ? {} : { endpoint });
      expect(server.requests).toHaveLength(3);
      expect(other.requests).toHaveLength(4);
      for (const r of server.requests) {
        expect(r.headers.host).toBe(`127.0.0.1:${server.port}`);
        expect(r.headers.authorization).toBe(sdkV3Authorization(r, AK_ID, AK_SECRET));
      }
      expect(other.requests.map((r) => r.headers.host)).toEqual(Array.from({ length: 4 }, () => `127.0.0.1:${other.port}`));
      for (const r of other.requests) expect(r.headers.authorization).toBe(sdkV3Authorization(r, AK_ID, AK_SECRET));
      for (let i = 0; i < 2; i += 1) {
        await expect(client.call(ACTION, PARAMS, { endpoint: 'http://example.com' })).rejects.toMatchObject({ code: 'EndpointInsecure' });
      }
      await client.close();
      client = null;
    } finally {
      await other.close();
    }
  });
});

describe('lifecycle', () => {
  it('close() lets a request in flight finish; destroy() fails it; later calls reject', async () => {
    client = createRpcClient(testOptions(server.url, { maxAttempts: 1 }));
    server.enqueue((req, res) => {
      setTimeout(() => void json(200, OK)(req, res, undefined as never), 50);
    });
    const inFlight = client.call(ACTION, PARAMS);
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 2));
    await client.close();
    expect((await inFlight).requestId).toBe('req-ok');
    await expect(client.call(ACTION, PARAMS)).rejects.toMatchObject({ code: 'ClientClosed' });

    client = createRpcClient(testOptions(server.url, { maxAttempts: 3 }));
    server.enqueue(hang);
    const doomed = rejection(client.call(ACTION, PARAMS));
    while (server.requests.length < 2) await new Promise((r) => setTimeout(r, 2));
    await client.destroy();
    const err = await doomed;
    expect(err).toBeInstanceOf(ApiError);
    expect(server.requests).toHaveLength(2); // not retried after destroy
  });
});
