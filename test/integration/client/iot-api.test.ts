import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ApiError } from '../../../src/alibaba/errors.js';
import { createIotApi, toApplyId } from '../../../src/alibaba/iot-api.js';
import { createRpcClient } from '../../../src/alibaba/rpc-client.js';
import type { RpcClient } from '../../../src/alibaba/rpc-client.js';
import type { IotApi } from '../../../src/core/ports.js';
import type { FakeServer, Handler } from './fake-server.js';
import { json, raw, startFakeServer } from './fake-server.js';
import { testOptions } from './helpers.js';

const PK = 'a1BwAGVxxxx';
/** 2^53 + 1: not representable as a JS number. */
const BIG_APPLY_ID = '9007199254740993';

let server: FakeServer;
let rpc: RpcClient;
let api: IotApi;

beforeEach(async () => {
  server = await startFakeServer();
  rpc = createRpcClient(testOptions(server.url, { maxAttempts: 1 }));
  api = createIotApi({ rpc, defaultIotInstanceId: 'iot-default' });
});
afterEach(async () => {
  await rpc.close();
  await server.close();
});

async function apiRejection(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return err as ApiError;
  }
  throw new Error('expected a rejection');
}

describe('QueryBatchRegisterDeviceStatus', () => {
  it('sends ProductKey, ApplyId (as given) and the default IotInstanceId; normalises the documented shape', async () => {
    server.enqueue(
      json(200, {
        RequestId: 'r1',
        Success: true,
        Data: {
          Status: 'CREATE_FAILED',
          ValidList: { Name: ['dev1', 'dev2'] },
          InvalidList: { Name: ['bad1'] },
          InvalidDetailList: {
            invalidDetailList: [
              { DeviceName: 'bad1', ErrorMsg: 'name exists|nickname too long', NickName: 'nick' },
              { DeviceName: 'bad2', ErrorMsg: 'x' },
              { ErrorMsg: 'entry without a name is dropped' },
              'garbage',
            ],
          },
        },
      }),
    );
    const res = await api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: '1295006' });
    expect(server.requests[0]!.query).toEqual({ ProductKey: PK, ApplyId: '1295006', IotInstanceId: 'iot-default' });
    expect(server.requests[0]!.headers['x-acs-action']).toBe('QueryBatchRegisterDeviceStatus');
    expect(res).toEqual({
      status: 'CREATE_FAILED',
      validNames: ['dev1', 'dev2'],
      invalidNames: ['bad1'],
      invalidDetails: [
        { deviceName: 'bad1', errors: ['name exists', 'nickname too long'], nickName: 'nick' },
        { deviceName: 'bad2', errors: ['x'], nickName: null },
      ],
      requestId: 'r1',
    });
  });

  it.each([
    ['no Data', { RequestId: 'r', Success: true }, null],
    ['Data null', { RequestId: 'r', Success: true, Data: null }, null],
    ['lists missing', { RequestId: 'r', Success: true, Data: { Status: 'CHECK' } }, 'CHECK'],
    ['lists empty objects', { RequestId: 'r', Success: true, Data: { Status: 'CHECK', ValidList: {}, InvalidList: { Name: null } } }, 'CHECK'],
    ['lists as []', { RequestId: 'r', Success: true, Data: { Status: 'CREATE_SUCCESS', ValidList: [], InvalidList: { Name: [] }, InvalidDetailList: [] } }, 'CREATE_SUCCESS'],
    ['wrong types', { RequestId: 'r', Success: true, Data: { Status: 5, ValidList: 'x', InvalidList: { Name: [1, null] }, InvalidDetailList: { invalidDetailList: 'x' } } }, null],
  ])('%s → empty arrays, never a crash', async (_n, body, status) => {
    server.enqueue(json(200, body));
    const res = await api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: '1' });
    expect(res).toEqual({ status, validNames: [], invalidNames: [], invalidDetails: [], requestId: 'r' });
  });

  it('IotInstanceId: a per-target value wins, null or "" sends none', async () => {
    await api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: '1', iotInstanceId: 'iot-other' });
    await api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: '1', iotInstanceId: null });
    await api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: '1', iotInstanceId: '' });
    expect(server.requests.map((r) => r.query.IotInstanceId)).toEqual(['iot-other', undefined, undefined]);
  });

  it('a batch-fatal business error stays a typed ApiError', async () => {
    server.enqueue(json(200, { RequestId: 'r', Success: false, Code: 'iot.device.DeviceApplyIsNotFound', ErrorMessage: 'no such apply' }));
    const err = await apiRejection(api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: '1' }));
    expect(err).toMatchObject({ code: 'iot.device.DeviceApplyIsNotFound', scope: 'batch', action: 'QueryBatchRegisterDeviceStatus' });
  });
});

describe('ApplyId stays a string end to end', () => {
  it(`keeps ${BIG_APPLY_ID} (2^53+1) exact from a JSON number, in the request and in the answer`, async () => {
    expect(Number(BIG_APPLY_ID).toString()).not.toBe(BIG_APPLY_ID); // the trap is real
    server.enqueue(raw(200, `{"RequestId":"r","Success":true,"Data":{"ApplyId":${BIG_APPLY_ID}}}`));
    const reg = await api.batchRegisterDevice({ productKey: PK, count: 3 });
    expect(reg.applyId).toBe(BIG_APPLY_ID);

    server.enqueue(raw(200, `{"RequestId":"r2","Success":true,"Data":{"ApplyId":${BIG_APPLY_ID}}}`));
    const again = await api.batchRegisterDeviceWithApplyId({ productKey: PK, applyId: BIG_APPLY_ID });
    expect(again.applyId).toBe(BIG_APPLY_ID);
    expect(server.requests[1]!.query.ApplyId).toBe(BIG_APPLY_ID);

    await api.queryBatchRegisterDeviceStatus({ productKey: PK, applyId: BIG_APPLY_ID });
    expect(server.requests[2]!.query.ApplyId).toBe(BIG_APPLY_ID);
  });

  it('accepts an ApplyId given as a string too; rejects non-integers as Response.Malformed', async () => {
    server.enqueue(json(200, { Success: true, Data: { ApplyId: '12345678901234567890' } }));
    expect((await api.batchRegisterDevice({ productKey: PK, count: 1 })).applyId).toBe('12345678901234567890');
    server.enqueue(json(200, { Success: true, Data: { ApplyId: 1.5 } }));
    expect((await apiRejection(api.batchRegisterDevice({ productKey: PK, count: 1 }))).code).toBe('Response.Malformed');
    server.enqueue(json(200, { Success: true }));
    expect((await apiRejection(api.batchRegisterDevice({ productKey: PK, count: 1 }))).code).toBe('Response.Malformed');
    expect(toApplyId(42)).toBe('42');
    expect(toApplyId(-1)).toBeNull();
    expect(toApplyId('12a')).toBeNull();
  });
});

describe('register and check actions', () => {
  it('BatchCheckDeviceNames flattens DeviceName.N into the form body (not the URL) and normalises the invalid names', async () => {
    server.enqueue(
      json(200, {
        RequestId: 'r',
        Success: true,
        Data: { ApplyId: 77, InvalidDeviceNameList: { InvalidDeviceName: ['bad name'] } },
      }),
    );
    const res = await api.batchCheckDeviceNames({ productKey: PK, deviceNames: ['dev-1', 'bad name', 'dev@3'], iotInstanceId: null });
    expect(res).toEqual({ applyId: '77', invalidDeviceNames: ['bad name'], invalidDetails: [], repeatedDeviceNames: [], requestId: 'r' });
    // Reference §9: the names belong in the body; the query keeps ProductKey only.
    expect(server.requests[0]!.query).toEqual({ ProductKey: PK });
    expect(server.requests[0]!.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(server.requests[0]!.body))).toEqual({
      'DeviceName.1': 'dev-1',
      'DeviceName.2': 'bad name',
      'DeviceName.3': 'dev@3',
    });
  });

  it('BatchCheckDeviceNames parses InvalidDetailList and RepeatedDeviceNameList (reference §9 spellings)', async () => {
    server.enqueue(
      json(200, {
        RequestId: 'r',
        Success: true,
        Data: {
          ApplyId: '9007199254740993',
          InvalidDeviceNameList: { InvalidDeviceName: ['ab', 'taken-1'] },
          InvalidDetailList: {
            InvalidDetailList: [
              { DeviceName: 'ab', ErrorMsg: 'The device name format is invalid.', NickName: null },
              { DeviceName: 'taken-1', ErrorMsg: 'The device name already exists.|second reason', NickName: 'nick_1' },
              { ErrorMsg: 'no name: dropped' },
            ],
          },
          RepeatedDeviceNameList: { RepeatDevieNameList: ['dup-1', 'dup-1', 7] },
        },
      }),
    );
    const res = await api.batchCheckDeviceNames({ productKey: PK, deviceNames: ['ab', 'taken-1', 'dup-1', 'dup-1'] });
    expect(res).toEqual({
      applyId: '9007199254740993',
      invalidDeviceNames: ['ab', 'taken-1'],
      invalidDetails: [
        { deviceName: 'ab', errors: ['The device name format is invalid.'], nickName: null },
        { deviceName: 'taken-1', errors: ['The device name already exists.', 'second reason'], nickName: 'nick_1' },
      ],
      repeatedDeviceNames: ['dup-1'],
      requestId: 'r',
    });
    expect(server.requests[0]!.query).toEqual({ ProductKey: PK, IotInstanceId: 'iot-default' });
  });

  it('BatchCheckDeviceNames refuses 0 or more than 10,000 names instead of letting the API drop them', async () => {
    const names = Array.from({ length: 10_001 }, (_, i) => `d${i}`);
    await expect(api.batchCheckDeviceNames({ productKey: PK, deviceNames: names })).rejects.toMatchObject({ code: 'DeviceNames.Count' });
    await expect(api.batchCheckDeviceNames({ productKey: PK, deviceNames: [] })).rejects.toMatchObject({ scope: 'batch' });
    expect(server.requests).toHaveLength(0);
  });

  it('BatchRegisterDevice sends Count; BatchRegisterDeviceWithApplyId falls back to the given ApplyId', async () => {
    server.enqueue(json(200, { RequestId: 'r', Success: true, Data: { ApplyId: 5 } }));
    expect(await api.batchRegisterDevice({ productKey: PK, count: 10 })).toEqual({ applyId: '5', requestId: 'r' });
    expect(server.requests[0]!.query).toEqual({ ProductKey: PK, Count: '10', IotInstanceId: 'iot-default' });
    server.enqueue(json(200, { RequestId: 'r2', Success: true }));
    expect(await api.batchRegisterDeviceWithApplyId({ productKey: PK, applyId: '6' })).toEqual({ applyId: '6', requestId: 'r2' });
  });
});

function pageHandler(all: { DeviceName: string; IotId: string; DeviceSecret?: string }[], opts: { total?: number } = {}): Handler {
  return (req, res) => {
    const page = Number(req.query.CurrentPage);
    const size = Number(req.query.PageSize);
    const rows = all.slice((page - 1) * size, page * size);
    const body = {
      RequestId: `p${page}`,
      Success: true,
      Page: page,
      PageSize: size,
      PageCount: Math.ceil(all.length / size),
      Total: opts.total ?? all.length,
      ApplyDeviceList: { ApplyDeviceInfo: rows },
    };
    return json(200, body)(req, res, undefined as never);
  };
}

const devices = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ DeviceName: `dev${i}`, IotId: `iot${i}`, DeviceSecret: `secret${i}`, DeviceId: 'legacy' }));

describe('QueryPageByApplyId and listAllDevicesByApplyId', () => {
  it('normalises one page (DeviceSecret optional)', async () => {
    server.enqueue(
      json(200, {
        RequestId: 'r',
        Success: true,
        Page: 1,
        PageSize: 10,
        PageCount: 1,
        Total: 2,
        ApplyDeviceList: { ApplyDeviceInfo: [{ DeviceName: 'a', IotId: 'ia', DeviceSecret: 's' }, { DeviceName: 'b', IotId: 'ib' }] },
      }),
    );
    const page = await api.queryPageByApplyId({ applyId: BIG_APPLY_ID, currentPage: 1, pageSize: 10 });
    expect(page).toEqual({
      page: 1,
      pageSize: 10,
      pageCount: 1,
      total: 2,
      devices: [
        { deviceName: 'a', iotId: 'ia', deviceSecret: 's' },
        { deviceName: 'b', iotId: 'ib', deviceSecret: null },
      ],
      requestId: 'r',
    });
    expect(server.requests[0]!.query).toEqual({ ApplyId: BIG_APPLY_ID, CurrentPage: '1', PageSize: '10', IotInstanceId: 'iot-default' });
    expect(server.requests[0]!.query.ProductKey).toBeUndefined();
  });

  it('an empty batch: missing list and Total 0', async () => {
    server.enqueue(json(200, { RequestId: 'r', Success: true, Total: 0 }));
    expect(await api.listAllDevicesByApplyId({ applyId: '1' })).toEqual({ total: 0, devices: [] });
  });

  it('missing Total or a row without IotId → Response.Malformed', async () => {
    server.enqueue(json(200, { RequestId: 'r', Success: true, ApplyDeviceList: { ApplyDeviceInfo: [] } }));
    expect((await apiRejection(api.queryPageByApplyId({ applyId: '1', currentPage: 1, pageSize: 50 }))).code).toBe('Response.Malformed');
    server.enqueue(json(200, { Success: true, Total: 1, ApplyDeviceList: { ApplyDeviceInfo: [{ DeviceName: 'a' }] } }));
    expect((await apiRejection(api.queryPageByApplyId({ applyId: '1', currentPage: 1, pageSize: 50 }))).code).toBe('Response.Malformed');
  });

  it('pages with PageSize 50 until Page >= PageCount and returns every device', async () => {
    server.setDefault(pageHandler(devices(120)));
    const all = await api.listAllDevicesByApplyId({ applyId: BIG_APPLY_ID });
    expect(all.total).toBe(120);
    expect(all.devices).toHaveLength(120);
    expect(all.devices[119]).toEqual({ deviceName: 'dev119', iotId: 'iot119', deviceSecret: 'secret119' });
    expect(server.requests.map((r) => [r.query.CurrentPage, r.query.PageSize, r.query.ApplyId])).toEqual([
      ['1', '50', BIG_APPLY_ID],
      ['2', '50', BIG_APPLY_ID],
      ['3', '50', BIG_APPLY_ID],
    ]);
  });

  it('stops on a short page even when PageCount is missing or wrong', async () => {
    server.setDefault((req, res) => {
      const page = Number(req.query.CurrentPage);
      const rows = devices(60).slice((page - 1) * 50, page * 50);
      void json(200, { Success: true, Page: page, PageCount: 99, Total: 60, ApplyDeviceList: { ApplyDeviceInfo: rows } })(req, res, undefined as never);
    });
    const all = await api.listAllDevicesByApplyId({ applyId: '1' });
    expect(all.devices).toHaveLength(60);
    expect(server.requests).toHaveLength(2);
  });

  it('rows not adding up to Total → transient Devices.CountMismatch', async () => {
    server.setDefault(pageHandler(devices(70), { total: 75 }));
    const err = await apiRejection(api.listAllDevicesByApplyId({ applyId: '1' }));
    expect(err).toMatchObject({ code: 'Devices.CountMismatch', kind: 'transient', scope: 'attempt' });
    expect(err.message).toContain('70 rows');
  });

  it('duplicate rows (the list shifted while paging) → Devices.CountMismatch', async () => {
    const rows = devices(100);
    rows[60] = rows[10]!;
    server.setDefault(pageHandler(rows));
    expect((await apiRejection(api.listAllDevicesByApplyId({ applyId: '1' }))).code).toBe('Devices.CountMismatch');
  });
});
