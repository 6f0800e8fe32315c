/**
 * Bad input, API responses: the real client (createRpcClient + createIotApi) against a loopback server that
 * answers random status codes and bodies — random JSON shapes for Data / ValidList / InvalidDetailList /
 * ApplyDeviceList, random bytes, truncated bodies, dropped connections, huge bodies. Every call must end in a
 * normalised value or an ApiError: never a crash, never another kind of error, never an unhandled rejection.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiError } from '../../src/alibaba/errors.js';
import { createIotApi } from '../../src/alibaba/iot-api.js';
import { createRpcClient, type RpcClient } from '../../src/alibaba/rpc-client.js';
import type { IotApi } from '../../src/core/ports.js';
import { profile, writeReport } from './helpers.js';

const RUNS = profile(400, 4000);
const MAX_BODY = 256 * 1024;
const SECRET = 'fuzz-api-secret-value-0193';

type Mode = 'normal' | 'chunked' | 'truncated' | 'drop' | 'huge' | 'huge-chunked';

interface Reply {
  status: number;
  mode: Mode;
  body: Buffer;
}

const BIG = '__BIGNUM__';
const statusStrings = fc.constantFrom('CHECK', 'CHECK_SUCCESS', 'CHECK_FAILED', 'CREATE', 'CREATE_SUCCESS', 'CREATE_FAILED', 'PROCESSING', '', 'create_success');
const junk = fc.anything({ maxDepth: 2, maxKeys: 3 });
const nameList = fc.oneof(
  fc.array(fc.oneof(fc.string({ maxLength: 12 }), junk), { maxLength: 5 }),
  fc.record({ Name: fc.oneof(fc.array(fc.oneof(fc.string({ maxLength: 12 }), junk), { maxLength: 5 }), junk) }, { requiredKeys: [] }),
  junk,
);
const detail = fc.record(
  { DeviceName: fc.oneof(fc.string({ maxLength: 12 }), junk), ErrorMsg: fc.oneof(fc.constantFrom('a|b', '|', ' x | y '), fc.string({ maxLength: 20 }), junk), NickName: fc.oneof(fc.string({ maxLength: 8 }), junk) },
  { requiredKeys: [] },
);
const detailList = fc.oneof(
  fc.array(fc.oneof(detail, junk), { maxLength: 4 }),
  fc.record({ invalidDetailList: fc.oneof(fc.array(fc.oneof(detail, junk), { maxLength: 4 }), junk) }, { requiredKeys: [] }),
  fc.record({ InvalidDetailList: fc.oneof(fc.array(detail, { maxLength: 4 }), junk) }, { requiredKeys: [] }),
  junk,
);
const applyIdish = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 70n }).map((n) => `${BIG}${n}`),
  fc.integer({ min: -5, max: 2 ** 31 }),
  fc.string({ maxLength: 12 }),
  junk,
);
const countish = fc.oneof(fc.nat({ max: 200 }), fc.constantFrom(-1, 1.5, 1e20, '12', '0x10', ''), junk);
const deviceRow = fc.record(
  { DeviceName: fc.oneof(fc.string({ maxLength: 10 }), junk), IotId: fc.oneof(fc.string({ maxLength: 10 }), junk), DeviceSecret: fc.oneof(fc.string({ maxLength: 10 }), junk) },
  { requiredKeys: [] },
);
const deviceList = fc.oneof(
  fc.record({ ApplyDeviceInfo: fc.oneof(fc.array(fc.oneof(deviceRow, junk), { maxLength: 6 }), junk) }, { requiredKeys: [] }),
  fc.array(deviceRow, { maxLength: 6 }),
  junk,
);
const jsonShape = fc
  .record(
    {
      RequestId: fc.oneof(fc.uuid(), junk),
      Success: fc.oneof(fc.boolean(), fc.constantFrom('true', 'false', 'yes', 0, null)),
      Code: fc.oneof(fc.constantFrom('Throttling.User', 'iot.system.SystemException', 'InvalidTimeStamp.Expired', 'SignatureDoesNotMatch', 'iot.device.ApplyIdNotFound', 'iot.prod.NotExistedProduct', 'ServiceUnavailable', 'Made.Up'), fc.string({ maxLength: 10 }), junk),
      ErrorMessage: fc.oneof(fc.string({ maxLength: 30 }), fc.constant(`echo ${SECRET}`), junk),
      Message: fc.oneof(fc.string({ maxLength: 30 }), junk),
      Data: fc.oneof(
        fc.record(
          { Status: fc.oneof(statusStrings, junk), ValidList: nameList, InvalidList: nameList, InvalidDetailList: detailList, ApplyId: applyIdish, InvalidDeviceNameList: nameList },
          { requiredKeys: [] },
        ),
        junk,
      ),
      Total: countish,
      Page: countish,
      PageSize: countish,
      PageCount: countish,
      ApplyDeviceList: deviceList,
    },
    { requiredKeys: [] },
  )
  .map((o) => JSON.stringify(o).replace(new RegExp(`"${BIG}(\\d+)"`, 'g'), '$1'));

const statusCode = fc.oneof(fc.constantFrom(200, 200, 200, 200, 400, 403, 404, 408, 429, 500, 502, 503, 504), fc.integer({ min: 200, max: 599 }));
const body = fc.oneof(
  { weight: 6, arbitrary: jsonShape.map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.constantFrom('', 'null', '[]', '"x"', '1', '{', '{"Data":', '\u0000', '<html>502</html>').map((s) => Buffer.from(s)) },
);
/** A well-formed answer for every action at once, then maybe one field replaced by junk: exercises the success paths. */
const plausibleBody = fc
  .record({
    names: fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{4,12}$/), { maxLength: 8 }),
    status: statusStrings,
    applyId: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
    details: fc.array(detail, { maxLength: 3 }),
    perturb: fc.option(
      fc.record({ key: fc.constantFrom('Success', 'Data', 'Status', 'ValidList', 'InvalidDetailList', 'ApplyId', 'Total', 'ApplyDeviceList', 'PageCount'), value: junk }),
      { freq: 2 },
    ),
  })
  .map(({ names, status, applyId, details, perturb }) => {
    const data: Record<string, unknown> = {
      Status: status,
      ValidList: { Name: names },
      InvalidList: { Name: [] },
      InvalidDetailList: { invalidDetailList: details },
      ApplyId: `${BIG}${applyId}`,
      InvalidDeviceNameList: { InvalidDeviceName: [] },
    };
    const o: Record<string, unknown> = {
      RequestId: 'E4E5A1B2-0000-0000-0000-000000000000',
      Success: true,
      Data: data,
      Total: names.length,
      Page: 1,
      PageSize: 50,
      PageCount: names.length === 0 ? 0 : 1,
      ApplyDeviceList: { ApplyDeviceInfo: names.map((n, i) => ({ DeviceName: n, IotId: `iot${i}${n}`, DeviceSecret: `s${i}` })) },
    };
    if (perturb) {
      if (perturb.key in data) data[perturb.key] = perturb.value;
      else o[perturb.key] = perturb.value;
    }
    return Buffer.from(JSON.stringify(o).replace(new RegExp(`"${BIG}(\\d+)"`, 'g'), '$1'));
  });

const reply: fc.Arbitrary<Reply> = fc.oneof(
  fc.record({
    status: statusCode,
    mode: fc.constantFrom<Mode>('normal', 'normal', 'normal', 'normal', 'chunked', 'truncated', 'drop', 'huge', 'huge-chunked'),
    body,
  }),
  fc.record({ status: fc.constant(200), mode: fc.constantFrom<Mode>('normal', 'chunked'), body: plausibleBody }),
);

type Call = 'status' | 'page' | 'listAll' | 'register' | 'check' | 'random';
const call = fc.constantFrom<Call>('status', 'page', 'listAll', 'register', 'check', 'random');

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function isCount(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Checks the normalised shape of a resolved call; returns a complaint or null. */
function shapeProblem(kind: Call, value: unknown): string | null {
  const v = value as Record<string, unknown>;
  const requestIdOk = kind === 'listAll' || v.requestId === null || typeof v.requestId === 'string';
  if (!requestIdOk) return 'requestId';
  switch (kind) {
    case 'status': {
      if (!(v.status === null || typeof v.status === 'string')) return 'status';
      if (!isStringArray(v.validNames) || !isStringArray(v.invalidNames)) return 'names';
      const details = v.invalidDetails as unknown[];
      if (!Array.isArray(details)) return 'invalidDetails';
      for (const d of details as Record<string, unknown>[]) {
        if (typeof d.deviceName !== 'string' || !isStringArray(d.errors) || !(d.nickName === null || typeof d.nickName === 'string')) return 'detail';
      }
      return null;
    }
    case 'page':
    case 'listAll': {
      if (kind === 'page' && ![v.page, v.pageSize, v.pageCount, v.total].every(isCount)) return 'page counts';
      if (kind === 'listAll' && !isCount(v.total)) return 'total';
      const devices = v.devices as Record<string, unknown>[];
      if (!Array.isArray(devices)) return 'devices';
      for (const d of devices) {
        if (typeof d.deviceName !== 'string' || d.deviceName === '' || typeof d.iotId !== 'string' || d.iotId === '') return 'device row';
        if (!(d.deviceSecret === null || typeof d.deviceSecret === 'string')) return 'deviceSecret';
      }
      return null;
    }
    case 'register':
    case 'check':
    case 'random':
      if (typeof v.applyId !== 'string' || !/^\d+$/.test(v.applyId)) return `applyId ${String(v.applyId)}`;
      if (kind === 'check' && !isStringArray(v.invalidDeviceNames)) return 'invalidDeviceNames';
      return null;
  }
}

describe('fuzz: API response bodies through the client', () => {
  let server: Server;
  let rpc: RpcClient;
  let api: IotApi;
  let current: Reply = { status: 200, mode: 'normal', body: Buffer.from('{}') };
  const sockets = new Set<Socket>();
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  const results = { cases: 0, values: 0, apiErrors: 0, byCode: {} as Record<string, number>, byMode: {} as Record<string, number> };

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtException', onUnhandled);
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const r = current;
        const headers = { 'content-type': 'application/json;charset=utf-8' };
        switch (r.mode) {
          case 'drop':
            req.socket.destroy();
            return;
          case 'truncated':
            res.writeHead(r.status, { ...headers, 'content-length': String(r.body.length + 10) });
            res.write(r.body.subarray(0, Math.floor(r.body.length / 2)), () => req.socket.destroy());
            return;
          case 'chunked':
            res.writeHead(r.status, headers);
            res.write(r.body.subarray(0, Math.floor(r.body.length / 2)));
            res.end(r.body.subarray(Math.floor(r.body.length / 2)));
            return;
          case 'huge': {
            const big = Buffer.alloc(MAX_BODY * 2, 0x20);
            r.body.copy(big, 0);
            res.writeHead(r.status, { ...headers, 'content-length': String(big.length) });
            res.end(big);
            return;
          }
          case 'huge-chunked': {
            res.writeHead(r.status, headers);
            const chunk = Buffer.alloc(64 * 1024, 0x20);
            res.write(r.body);
            let sent = 0;
            const pump = (): void => {
              while (sent < MAX_BODY * 2) {
                sent += chunk.length;
                if (!res.write(chunk)) {
                  res.once('drain', pump);
                  return;
                }
              }
              res.end();
            };
            res.on('error', () => undefined);
            pump();
            return;
          }
          default:
            res.writeHead(r.status, { ...headers, 'content-length': String(r.body.length) });
            res.end(r.body);
        }
      });
    });
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => sockets.delete(s));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    rpc = createRpcClient({
      endpoint: `http://127.0.0.1:${port}`,
      credentials: { get: async () => ({ accessKeyId: 'FuzzKeyId', accessKeySecret: SECRET, securityToken: null }) },
      maxAttempts: 1,
      requestTimeoutMs: 3000,
      maxBodyBytes: MAX_BODY,
    });
    api = createIotApi({ rpc, maxPages: 4 });
  });

  afterAll(async () => {
    await rpc?.close();
    for (const s of sockets) s.destroy();
    server?.close();
    process.off('unhandledRejection', onUnhandled);
    process.off('uncaughtException', onUnhandled);
    writeReport('fuzz-api', { ...results, unhandled: unhandled.length });
  });

  it(`${RUNS} random replies: a normalised value or an ApiError, every time`, async () => {
    await fc.assert(
      fc.asyncProperty(reply, call, async (r, kind) => {
        current = r;
        results.cases += 1;
        results.byMode[r.mode] = (results.byMode[r.mode] ?? 0) + 1;
        const target = { productKey: 'a1FuzzProduct', applyId: '9223372036854775807', iotInstanceId: null };
        let value: unknown;
        try {
          switch (kind) {
            case 'status':
              value = await api.queryBatchRegisterDeviceStatus(target);
              break;
            case 'page':
              value = await api.queryPageByApplyId({ applyId: target.applyId, currentPage: 1, pageSize: 50, iotInstanceId: null });
              break;
            case 'listAll':
              value = await api.listAllDevicesByApplyId({ applyId: target.applyId, iotInstanceId: null });
              break;
            case 'register':
              value = await api.batchRegisterDeviceWithApplyId(target);
              break;
            case 'check':
              value = await api.batchCheckDeviceNames({ productKey: target.productKey, deviceNames: ['dev-0001', 'dev-0002'], iotInstanceId: null });
              break;
            case 'random':
              value = await api.batchRegisterDevice({ productKey: target.productKey, count: 3, iotInstanceId: null });
              break;
          }
        } catch (err) {
          if (!(err instanceof ApiError)) {
            throw new Error(`${kind} on ${r.mode} HTTP ${r.status} rejected with a non-ApiError\nbody: ${r.body.toString('utf8').slice(0, 300)}`, { cause: err });
          }
          expect(err.message).not.toContain(SECRET);
          results.apiErrors += 1;
          // Codes echoed from random bodies are grouped; our own codes are kept.
          const code = /^(Response|Transport|Devices)\./.test(err.code) ? err.code : /^Http\.\d+$/.test(err.code) ? 'Http.<status> (no Code in body)' : 'Code from the body';
          results.byCode[code] = (results.byCode[code] ?? 0) + 1;
          return;
        }
        const problem = shapeProblem(kind, value);
        if (problem !== null) throw new Error(`${kind} on HTTP ${r.status} resolved with a bad ${problem}: ${JSON.stringify(value).slice(0, 300)}\nbody: ${r.body.toString('utf8').slice(0, 300)}`);
        results.values += 1;
      }),
      { numRuns: RUNS, seed: 2002 },
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(unhandled).toEqual([]);
    expect(results.values).toBeGreaterThan(0);
    expect(results.apiErrors).toBeGreaterThan(0);
  });
});
