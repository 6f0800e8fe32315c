/**
 * The five typed IoT Platform actions over {@link RpcClient}, implementing `IotApi` (src/core/ports.ts).
 *
 * Normalisation (reference §1.4, §1.5, §7): no field of a response is trusted to be present. A missing
 * `Data`, a list given as `{Name: [...]}`, missing, `null` or `[]` all become arrays; non-string entries are
 * dropped. `InvalidDetailList.invalidDetailList[]` (lower-case inner key, as the Java/C# SDKs map it; the
 * capitalised spelling is accepted too) becomes `{deviceName, errors (ErrorMsg split on '|'), nickName}`.
 * ApplyId is a string end to end: integer ApplyIds in the JSON are quoted before parsing (lossless-json.ts).
 * Required values that are missing or of the wrong type (an ApplyId from a register call, `Total` of a
 * page, a device without `DeviceName`/`IotId`) give an `ApiError` `Response.Malformed` (transient).
 */
import type { InvalidDetail } from '../core/record.js';
import type {
  AllDevices,
  BatchStatusResult,
  BatchTarget,
  CallOptions,
  DeviceInfo,
  DevicePage,
  IotApi,
} from '../core/ports.js';
import { DaemonError } from '../errors.js';
import { ApiError } from './errors.js';
import type { RpcCallOptions, RpcClient, RpcResponse } from './rpc-client.js';

/** Page size used by `listAllDevicesByApplyId` (the API maximum). */
export const DEVICE_PAGE_SIZE = 50;

/** Most names one BatchCheckDeviceNames call accepts; the API silently drops the rest, so we refuse. */
export const MAX_DEVICE_NAMES_PER_CALL = 10_000;

export interface IotApiOptions {
  rpc: RpcClient;
  /**
   * IotInstanceId used when a request leaves `iotInstanceId` undefined. `null` or `''` (here or in a
   * request) sends no IotInstanceId (legacy public instance). @default null
   */
  defaultIotInstanceId?: string | null;
  /** Safety bound on pages fetched by `listAllDevicesByApplyId`. @default 1000 */
  maxPages?: number;
}

/** What BatchCheckDeviceNames answers, every list of reference §9 parsed. */
export interface BatchCheckDeviceNamesResult {
  applyId: string;
  /** `InvalidDeviceNameList.InvalidDeviceName[]`: names refused at once. */
  invalidDeviceNames: string[];
  /** `InvalidDetailList.InvalidDetailList[]`: refused names with their reasons. */
  invalidDetails: InvalidDetail[];
  /** `RepeatedDeviceNameList.RepeatDevieNameList[]` (sic): names given more than once in the request. */
  repeatedDeviceNames: string[];
  /** `InvalidDeviceNicknameList.InvalidDeviceNickname[]`: nicknames refused at once; absent when none. */
  invalidDeviceNicknames?: string[];
  requestId: string | null;
}

/** The typed API: `IotApi` (core/ports.ts), with the full BatchCheckDeviceNames answer. */
export interface AlibabaIotApi extends IotApi {
  /** With `nicknames` (device name → nickname), names go as `DeviceNameList.N.DeviceName`/`.DeviceNickname`. */
  batchCheckDeviceNames(
    req: Parameters<IotApi['batchCheckDeviceNames']>[0] & { nicknames?: Readonly<Record<string, string>> },
    options?: CallOptions,
  ): Promise<BatchCheckDeviceNamesResult>;
}

/** Creates the typed API. */
export function createIotApi(options: IotApiOptions): AlibabaIotApi {
  const { rpc } = options;
  const defaultInstance = options.defaultIotInstanceId ?? null;
  const maxPages = options.maxPages ?? 1000;

  const withInstance = (params: Record<string, string>, iotInstanceId: string | null | undefined): Record<string, string> => {
    const id = iotInstanceId === undefined ? defaultInstance : iotInstanceId;
    if (id !== null && id !== '') params.IotInstanceId = id;
    return params;
  };
  // NOTE: assignments, not four conditional spreads: this runs on every status poll; absent options stay absent.
  const rpcOpts = (o: CallOptions | undefined, idempotent = true): RpcCallOptions => {
    const out: RpcCallOptions = { idempotent };
    if (o === undefined) return out;
    if (o.signal !== undefined) out.signal = o.signal;
    if (o.endpoint !== undefined) out.endpoint = o.endpoint;
    if (o.beforeSend !== undefined) out.beforeSend = o.beforeSend;
    if (o.onSent !== undefined) out.onSent = o.onSent;
    return out;
  };

  const queryPageByApplyId: IotApi['queryPageByApplyId'] = async (req, o) => {
    const action = 'QueryPageByApplyId';
    const res = await rpc.call(
      action,
      withInstance(
        { ApplyId: req.applyId, CurrentPage: String(req.currentPage), PageSize: String(req.pageSize) },
        req.iotInstanceId,
      ),
      rpcOpts(o),
    );
    return normalisePage(action, res, req.currentPage, req.pageSize);
  };

  return {
    async queryBatchRegisterDeviceStatus(target: BatchTarget, o?: CallOptions): Promise<BatchStatusResult> {
      const res = await rpc.call(
        'QueryBatchRegisterDeviceStatus',
        withInstance({ ProductKey: target.productKey, ApplyId: target.applyId }, target.iotInstanceId),
        rpcOpts(o),
      );
      return normaliseStatus(res);
    },

    queryPageByApplyId,

    async listAllDevicesByApplyId(req, o): Promise<AllDevices> {
      const devices: DeviceInfo[] = [];
      let total: number | null = null;
      for (let page = 1; ; page += 1) {
        if (page > maxPages) {
          throw mismatch(`stopped after ${maxPages} pages of ApplyId ${req.applyId}`, null);
        }
        const p = await queryPageByApplyId(
          { applyId: req.applyId, currentPage: page, pageSize: DEVICE_PAGE_SIZE, iotInstanceId: req.iotInstanceId },
          o,
        );
        if (total !== null && p.total !== total) {
          throw mismatch(`Total changed from ${total} to ${p.total} while paging ApplyId ${req.applyId}`, p.requestId);
        }
        total = p.total;
        devices.push(...p.devices);
        if (p.devices.length === 0 || p.page >= p.pageCount || p.devices.length < DEVICE_PAGE_SIZE) break;
      }
      const unique = new Set(devices.map((d) => d.deviceName)).size;
      if (devices.length !== total || unique !== devices.length) {
        throw mismatch(
          `ApplyId ${req.applyId}: ${devices.length} rows (${unique} distinct) but Total is ${total}`,
          null,
        );
      }
      return { total, devices };
    },

    async batchRegisterDeviceWithApplyId(target, o) {
      const action = 'BatchRegisterDeviceWithApplyId';
      const res = await rpc.call(
        action,
        withInstance({ ProductKey: target.productKey, ApplyId: target.applyId }, target.iotInstanceId),
        // NOTE: not idempotent: after a lost answer (timeout, reset, malformed body) the registration may have
        // happened; resending could register twice. The watcher re-polls and decides (see transitions.ts).
        rpcOpts(o, false),
      );
      const data = record(res.body.Data);
      const applyId = data?.ApplyId === undefined ? target.applyId : requireApplyId(action, data.ApplyId, res);
      return { applyId, requestId: res.requestId };
    },

    async batchCheckDeviceNames(req, o) {
      const action = 'BatchCheckDeviceNames';
      if (req.deviceNames.length === 0 || req.deviceNames.length > MAX_DEVICE_NAMES_PER_CALL) {
        throw new DaemonError(
          `BatchCheckDeviceNames takes 1 to ${MAX_DEVICE_NAMES_PER_CALL} names per call, got ${req.deviceNames.length}`,
          { kind: 'invalid-request', scope: 'batch', code: 'DeviceNames.Count' },
        );
      }
      // NOTE: the names go in the form body (reference §9: Alibaba's SDK metadata puts them there); 10,000 names
      // in a query string would make a URL of about 500 kB.
      const names: Record<string, string> = {};
      const nicknames = req.nicknames;
      const withNicknames = nicknames !== undefined && Object.keys(nicknames).length > 0;
      req.deviceNames.forEach((name, i) => {
        if (!withNicknames) names[`DeviceName.${i + 1}`] = name;
        else {
          // NOTE: the list form carries nicknames; Alibaba prefers it over DeviceName.N (reference §1.1).
          names[`DeviceNameList.${i + 1}.DeviceName`] = name;
          const nickname = Object.hasOwn(nicknames, name) ? nicknames[name] : undefined;
          if (nickname !== undefined && nickname !== '') names[`DeviceNameList.${i + 1}.DeviceNickname`] = nickname;
        }
      });
      // NOTE: not idempotent: each accepted call creates a new ApplyId.
      const res = await rpc.call(action, withInstance({ ProductKey: req.productKey }, req.iotInstanceId), {
        ...rpcOpts(o, false),
        bodyParams: names,
      });
      const data = record(res.body.Data);
      return {
        applyId: requireApplyId(action, data?.ApplyId, res),
        invalidDeviceNames: stringList(data?.InvalidDeviceNameList, 'InvalidDeviceName'),
        invalidDetails: parseInvalidDetails(data?.InvalidDetailList),
        // NOTE: Alibaba's inner key is misspelt `RepeatDevieNameList` (reference §9); the plain spelling is accepted too.
        repeatedDeviceNames: uniqueStrings([
          ...stringList(data?.RepeatedDeviceNameList, 'RepeatDevieNameList'),
          ...stringList(data?.RepeatedDeviceNameList, 'RepeatedDeviceNameList'),
          ...stringList(data?.RepeatedDeviceNameList, 'RepeatDeviceNameList'),
        ]),
        // NOTE: only when there are some, so the answer of a call without nicknames keeps its shape.
        ...nicknameList(stringList(data?.InvalidDeviceNicknameList, 'InvalidDeviceNickname')),
        requestId: res.requestId,
      };
    },

    async batchRegisterDevice(req, o) {
      const action = 'BatchRegisterDevice';
      if (!Number.isInteger(req.count) || req.count < 1 || req.count > MAX_DEVICE_NAMES_PER_CALL) {
        throw new DaemonError(`BatchRegisterDevice Count must be an integer 1..${MAX_DEVICE_NAMES_PER_CALL}, got ${req.count}`, {
          kind: 'invalid-request',
          scope: 'batch',
          code: 'DeviceCount.Invalid',
        });
      }
      const res = await rpc.call(
        action,
        withInstance({ ProductKey: req.productKey, Count: String(req.count) }, req.iotInstanceId),
        rpcOpts(o, false),
      );
      return { applyId: requireApplyId(action, record(res.body.Data)?.ApplyId, res), requestId: res.requestId };
    },
  };
}

function nicknameList(list: string[]): { invalidDeviceNicknames?: string[] } {
  return list.length > 0 ? { invalidDeviceNicknames: list } : {};
}

function record(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** `{Name: [...]}` / `[...]` / missing / null → string[] (non-strings dropped). */
function stringList(container: unknown, innerKey: string): string[] {
  const inner = Array.isArray(container) ? container : record(container)?.[innerKey];
  if (!Array.isArray(inner)) return [];
  return inner.filter((x): x is string => typeof x === 'string');
}

/** Accepts an ApplyId as a digit string (lossless parse) or a safe non-negative integer. */
export function toApplyId(v: unknown): string | null {
  if (typeof v === 'string' && /^\d{1,30}$/.test(v)) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return String(v);
  return null;
}

function requireApplyId(action: string, v: unknown, res: RpcResponse): string {
  const id = toApplyId(v);
  if (id === null) throw malformed(action, 'Data.ApplyId missing or not an integer', res);
  return id;
}

function malformed(action: string, message: string, res: RpcResponse): ApiError {
  return new ApiError({
    action,
    code: 'Response.Malformed',
    source: 'response',
    message,
    httpStatus: res.httpStatus,
    requestId: res.requestId,
  });
}

function mismatch(message: string, requestId: string | null): ApiError {
  return new ApiError({
    action: 'QueryPageByApplyId',
    code: 'Devices.CountMismatch',
    source: 'response',
    message,
    httpStatus: null,
    requestId,
  });
}

function normaliseStatus(res: RpcResponse): BatchStatusResult {
  const data = record(res.body.Data);
  const status = str(data?.Status);
  const invalidDetails = parseInvalidDetails(data?.InvalidDetailList);
  return {
    status: status === '' ? null : status,
    validNames: stringList(data?.ValidList, 'Name'),
    invalidNames: stringList(data?.InvalidList, 'Name'),
    invalidDetails,
    requestId: res.requestId,
  };
}

/**
 * `InvalidDetailList`: `{invalidDetailList: [...]}` (status call, as the Java/C# SDKs map it), `{InvalidDetailList:
 * [...]}` (check call, reference §9) or a bare list → `{deviceName, errors (ErrorMsg split on '|'), nickName}`.
 */
function parseInvalidDetails(container: unknown): InvalidDetail[] {
  const details = Array.isArray(container) ? container : (record(container)?.invalidDetailList ?? record(container)?.InvalidDetailList);
  const out: InvalidDetail[] = [];
  if (!Array.isArray(details)) return out;
  for (const d of details) {
    const r = record(d);
    const deviceName = str(r?.DeviceName);
    if (r === null || deviceName === null) continue;
    const msg = str(r.ErrorMsg);
    out.push({
      deviceName,
      errors: msg === null ? [] : msg.split('|').map((s) => s.trim()).filter((s) => s !== ''),
      nickName: str(r.NickName),
    });
  }
  return out;
}

function uniqueStrings(list: readonly string[]): string[] {
  return [...new Set(list)];
}

/** A non-negative integer from a number or a digit string, else null. */
function count(v: unknown): number | null {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string' && /^\d{1,15}$/.test(v)) return Number(v);
  return null;
}

function normalisePage(action: string, res: RpcResponse, currentPage: number, pageSize: number): DevicePage {
  const b = res.body;
  const total = count(b.Total);
  if (total === null) throw malformed(action, 'Total missing or not a non-negative integer', res);
  const size = count(b.PageSize) ?? pageSize;
  const page = count(b.Page) ?? currentPage;
  const pageCount = count(b.PageCount) ?? (size > 0 ? Math.ceil(total / size) : 0);
  const list = record(b.ApplyDeviceList)?.ApplyDeviceInfo ?? (Array.isArray(b.ApplyDeviceList) ? b.ApplyDeviceList : []);
  const devices: DeviceInfo[] = [];
  if (Array.isArray(list)) {
    for (const entry of list) {
      const r = record(entry);
      const deviceName = str(r?.DeviceName);
      const iotId = str(r?.IotId);
      if (deviceName === null || deviceName === '' || iotId === null || iotId === '') {
        throw malformed(action, `device row ${devices.length + 1} lacks DeviceName or IotId`, res);
      }
      const secret = str(r?.DeviceSecret);
      devices.push({ deviceName, iotId, deviceSecret: secret === '' ? null : secret });
    }
  } else if (list !== null && list !== undefined) {
    throw malformed(action, 'ApplyDeviceList.ApplyDeviceInfo is not a list', res);
  }
  return { page, pageSize: size, pageCount, total, devices, requestId: res.requestId };
}
