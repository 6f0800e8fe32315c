/**
 * No log line, even at trace level, may contain the AccessKey secret, the STS token or a request signature
 * (DESIGN.md §6). We drive the client through successes, retries and errors, including a server that
 * echoes the (token-bearing) V1 string to sign in its SignatureDoesNotMatch message, then also log the
 * resulting errors the way the daemon would (`logger.error({err})`).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createIotApi } from '../../../src/alibaba/iot-api.js';
import { percentEncode } from '../../../src/alibaba/percent-encode.js';
import { createRpcClient } from '../../../src/alibaba/rpc-client.js';
import type { FakeServer, Handler } from './fake-server.js';
import { json, reset, startFakeServer } from './fake-server.js';
import { AK_SECRET, STS_TOKEN, captureLogger, staticCredentials, testOptions } from './helpers.js';

let server: FakeServer;
beforeEach(async () => {
  server = await startFakeServer();
});
afterEach(async () => {
  await server.close();
});

/** Answers SignatureDoesNotMatch and echoes what a real gateway echoes: the string to sign (with the token). */
const echoStringToSign: Handler = (req, res) => {
  const q = Object.entries(req.query)
    .filter(([k]) => k !== 'Signature')
    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
    .sort()
    .join('&');
  void json(400, {
    RequestId: 'sig',
    Code: 'SignatureDoesNotMatch',
    Message: `Specified signature is not matched with our calculation. server string to sign is:POST&%2F&${percentEncode(q)} ` +
      `signature ${req.query.Signature ?? ''} auth ${req.headers.authorization ?? ''} token ${STS_TOKEN}`,
  })(req, res, undefined as never);
};

describe('secrets never reach the log', () => {
  it.each(['v1', 'v3'] as const)('%s: trace-level lines carry no secret, token or signature', async (signatureVersion) => {
    const cap = captureLogger('trace');
    const rpc = createRpcClient(
      testOptions(server.url, { signatureVersion, credentials: staticCredentials(STS_TOKEN), logger: cap.logger }),
    );
    const api = createIotApi({ rpc });
    server.enqueue(
      json(503, { Code: 'ServiceUnavailable', Message: 'busy', RequestId: 'a' }),
      reset,
      json(200, { RequestId: 'ok', Success: true, Data: { Status: 'CREATE' } }),
      echoStringToSign,
      json(200, { Success: true, Total: 1, ApplyDeviceList: { ApplyDeviceInfo: [{ DeviceName: 'd', IotId: 'i', DeviceSecret: 'devSecretValue123' }] } }),
      json(400, { Code: 'Unknown.Code', Message: `echo ${AK_SECRET}`, RequestId: 'u' }),
    );
    await api.queryBatchRegisterDeviceStatus({ productKey: 'pk', applyId: '1' });
    const sigErr = await api.queryBatchRegisterDeviceStatus({ productKey: 'pk', applyId: '1' }).catch((e: unknown) => e);
    const page = await api.queryPageByApplyId({ applyId: '1', currentPage: 1, pageSize: 50 });
    const unknownErr = await rpc.call('QueryPageByApplyId', {}, { maxAttempts: 1 }).catch((e: unknown) => e);
    // What the daemon does with results and errors:
    cap.logger.error({ err: sigErr }, 'fatal api error');
    cap.logger.warn({ err: unknownErr }, 'api error');
    cap.logger.trace({ device: page.devices[0], credentials: { accessKeySecret: AK_SECRET, securityToken: STS_TOKEN } }, 'debugging');
    cap.logger.trace({ request: { headers: { authorization: 'ACS3-HMAC-SHA256 Signature=abc', 'x-acs-security-token': STS_TOKEN } } }, 'req');
    await rpc.close();

    const signatures = server.requests.flatMap((r) => {
      const v3 = /Signature=([0-9a-f]{64})/.exec(r.headers.authorization ?? '')?.[1];
      return [r.query.Signature, v3].filter((s): s is string => typeof s === 'string');
    });
    expect(signatures.length).toBe(server.requests.length);
    const forbidden = [AK_SECRET, STS_TOKEN, percentEncode(STS_TOKEN), percentEncode(percentEncode(STS_TOKEN)), 'devSecretValue123', ...signatures];
    const text = cap.text();
    for (const secret of forbidden) expect(text).not.toContain(secret);

    // ...and the lines are still useful: one debug line per attempt with the documented fields.
    const debug = cap.lines.filter((l) => l.msg === 'alibaba api request');
    expect(debug).toHaveLength(server.requests.length);
    for (const l of debug) expect(Object.keys(l)).toEqual(expect.arrayContaining(['action', 'httpStatus', 'requestId', 'durationMs', 'attempt']));
    expect(debug.map((l) => l.httpStatus)).toEqual([503, null, 200, 400, 200, 400]);
    const fatal = cap.lines.find((l) => l.msg === 'fatal api error') as { err: { code: string; message: string } };
    expect(fatal.err.code).toBe('SignatureDoesNotMatch');
    expect(fatal.err.message).toContain('[REDACTED]');
    expect(text).toContain('[REDACTED]');
  });
});
