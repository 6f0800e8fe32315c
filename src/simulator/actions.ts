/**
 * The five batch-registration actions with the real response shapes (reference §1.4, §1.5, SDK models).
 * Business errors are HTTP 200 with `Success:false`, `Code`, `ErrorMessage`; a missing required parameter is
 * a gateway error (HTTP 400 `Missing<Name>`). ApplyId is written as a bare Long literal (see json.ts).
 */
import type { GatewayFailure } from './auth.js';
import { longLiteral } from './json.js';
import type { FaultKind, SimulatorAction } from './options.js';
import { NICKNAME_PATTERN, SimState, type ApplyStatus, type BatchState, type InvalidDetail } from './state.js';

export interface ActionContext {
  state: SimState;
  iotInstanceId: string | null;
  requestId: string;
  /** A status fault to apply (`statusBackwards` / `unknownStatus`), if any. */
  fault: FaultKind | null;
}

export type ActionResult =
  | { kind: 'ok'; body: Record<string, unknown>; applyId: string | null }
  | { kind: 'business'; body: Record<string, unknown>; code: string; applyId: string | null }
  | { kind: 'gateway'; failure: GatewayFailure };

/** The string the `unknownStatus` fault reports. */
export const UNKNOWN_STATUS = 'PROCESSING';

const REQUIRED: Readonly<Record<SimulatorAction, readonly string[]>> = {
  BatchCheckDeviceNames: ['ProductKey'],
  BatchRegisterDevice: ['ProductKey', 'Count'],
  BatchRegisterDeviceWithApplyId: ['ProductKey', 'ApplyId'],
  QueryBatchRegisterDeviceStatus: ['ProductKey', 'ApplyId'],
  QueryPageByApplyId: ['ApplyId'],
};

const MAX_NAMES = 10_000;
const MAX_COUNT = 10_000;
const MAX_PAGE_SIZE = 50;

export function runAction(action: SimulatorAction, params: Readonly<Record<string, string>>, ctx: ActionContext): ActionResult {
  for (const name of REQUIRED[action]) {
    if ((params[name] ?? '') === '') {
      return { kind: 'gateway', failure: { httpStatus: 400, code: `Missing${name}`, message: `${name} is mandatory for this action.` } };
    }
  }
  const biz = (code: string, message: string, applyId: string | null = null): ActionResult => ({
    kind: 'business',
    code,
    applyId,
    body: { RequestId: ctx.requestId, Success: false, Code: code, ErrorMessage: message },
  });
  const instanceError = checkInstance(params.IotInstanceId, ctx.iotInstanceId);
  if (instanceError !== null) return biz('iot.system.InstanceNotFound', instanceError);
  const productKey = params.ProductKey;
  if (productKey !== undefined && productKey !== '' && !ctx.state.hasProduct(productKey)) {
    return biz('iot.prod.NotExistedProduct', 'The product does not exist.');
  }
  let applyId: string | null = null;
  if (params.ApplyId !== undefined) {
    if (!/^[0-9]{1,19}$/.test(params.ApplyId) || BigInt(params.ApplyId) > 9223372036854775807n || BigInt(params.ApplyId) === 0n) {
      return biz('iot.device.InvalidFormattedApplyId', 'The ApplyId format is invalid.');
    }
    applyId = BigInt(params.ApplyId).toString();
  }
  const ok = (body: Record<string, unknown>): ActionResult => ({ kind: 'ok', applyId, body: { RequestId: ctx.requestId, Success: true, ...body } });
  const findBatch = (): BatchState | undefined => {
    const b = applyId === null ? undefined : ctx.state.batches.get(applyId);
    if (b === undefined) return undefined;
    if (productKey !== undefined && b.productKey !== productKey) return undefined;
    return b;
  };
  const notFound = (): ActionResult => biz('iot.device.DeviceApplyIsNotFound', 'The device application does not exist.', applyId);

  switch (action) {
    case 'BatchCheckDeviceNames': {
      const { names, nicknames } = readNames(params);
      if (names.length === 0) return biz('iot.common.InvalidFormattedParameter', 'DeviceName is mandatory and must not be empty.');
      const pre = ctx.state.precheck(productKey ?? '', names, nicknames);
      const batch = ctx.state.startCheck({ productKey: productKey ?? '', names, nicknames });
      applyId = batch.applyId;
      const invalidNicknames = [...nicknames.values()].filter((n) => !NICKNAME_PATTERN.test(n));
      return ok({
        Data: {
          ApplyId: longLiteral(batch.applyId),
          InvalidDeviceNameList: { InvalidDeviceName: SimState.formatInvalid(names) },
          InvalidDeviceNicknameList: { InvalidDeviceNickname: invalidNicknames },
          // NOTE: reference §9: capital inner key here (the status call's is lower-case), and Alibaba's misspelt
          // `RepeatDevieNameList`.
          InvalidDetailList: {
            InvalidDetailList: pre.invalid.map((d) => ({ DeviceName: d.deviceName, ErrorMsg: d.errorMsg, NickName: d.nickname })),
          },
          RepeatedDeviceNameList: { RepeatDevieNameList: pre.repeated },
        },
      });
    }
    case 'BatchRegisterDevice': {
      const raw = params.Count ?? '';
      if (!/^[0-9]+$/.test(raw)) return biz('iot.common.InvalidFormattedParameter', 'Count must be a positive integer.');
      const count = Number(raw);
      if (count < 1) return biz('iot.common.InvalidFormattedParameter', 'Count must be a positive integer.');
      if (count > MAX_COUNT) return biz('iot.device.DeviceCountExceeded', `Count must be at most ${MAX_COUNT}.`);
      const batch = ctx.state.startRandom({ productKey: productKey ?? '', count });
      applyId = batch.applyId;
      return ok({ Data: { ApplyId: longLiteral(batch.applyId) } });
    }
    case 'BatchRegisterDeviceWithApplyId': {
      const batch = findBatch();
      if (batch === undefined) return notFound();
      batch.registrations += 1;
      if (batch.mode === 'random') return biz('iot.device.IncorrentDeviceApplyInfo', 'The application was not created by BatchCheckDeviceNames.', applyId);
      const status = ctx.state.status(batch);
      switch (status) {
        case 'CHECK_SUCCESS':
          ctx.state.markRegistered(batch);
          return ok({ Data: { ApplyId: longLiteral(batch.applyId) } });
        case 'CHECK':
          return biz('iot.device.IncorrentDeviceApplyInfo', 'The device names are still being checked.', applyId);
        case 'CHECK_FAILED':
          return biz('iot.device.IncorrentDeviceApplyInfo', 'The device name check failed; check the names again.', applyId);
        case 'CREATE':
          return biz('iot.device.CreateDeviceTaskIsRunning', 'The devices of this application are being created.', applyId);
        default:
          return biz('iot.device.IncorrentDeviceApplyInfo', 'The devices of this application were already registered.', applyId);
      }
    }
    case 'QueryBatchRegisterDeviceStatus': {
      const batch = findBatch();
      if (batch === undefined) return notFound();
      return ok({ Data: statusData(ctx, batch) });
    }
    case 'QueryPageByApplyId': {
      const pageSize = pageParam(params.PageSize, 10);
      const currentPage = pageParam(params.CurrentPage, 1);
      if (pageSize === null || pageSize < 1 || pageSize > MAX_PAGE_SIZE || currentPage === null || currentPage < 1) {
        return biz('iot.common.InvalidPageParams', `PageSize must be 1..${MAX_PAGE_SIZE} and CurrentPage at least 1.`, applyId);
      }
      const batch = findBatch();
      if (batch === undefined) return notFound();
      const devices = ctx.state.createdDevices(batch);
      const total = devices.length;
      const rows = devices.slice((currentPage - 1) * pageSize, currentPage * pageSize);
      return ok({
        Page: currentPage,
        PageSize: pageSize,
        PageCount: Math.ceil(total / pageSize),
        Total: total,
        ApplyDeviceList: {
          ApplyDeviceInfo: rows.map((d) => ({ DeviceName: d.deviceName, DeviceSecret: d.deviceSecret, IotId: d.iotId, DeviceId: d.deviceId })),
        },
      });
    }
  }
}

function statusData(ctx: ActionContext, batch: BatchState): Record<string, unknown> {
  const real = ctx.state.status(batch);
  let reported: string = real;
  if (ctx.fault === 'unknownStatus' || batch.unknownStatusPending) {
    if (ctx.fault !== 'unknownStatus') batch.unknownStatusPending = false;
    reported = UNKNOWN_STATUS;
  } else if (ctx.fault === 'statusBackwards') {
    reported = previousStatus(batch, real) ?? real;
  } else if (batch.statusBackwardsPending && batch.lastReturned === real && real !== initialStatus(batch)) {
    const prev = previousStatus(batch, real);
    if (prev !== null) {
      batch.statusBackwardsPending = false;
      reported = prev;
    }
  }
  if (reported === real) batch.lastReturned = real;
  let valid: string[] = [];
  let invalid: InvalidDetail[] = [];
  if (reported === 'CHECK_FAILED') {
    valid = batch.names.filter((n) => !batch.checkInvalid.has(n));
    invalid = ctx.state.checkDetails(batch);
  } else if (reported === 'CREATE_FAILED' && batch.created !== null) {
    valid = batch.created.valid;
    invalid = batch.created.invalid;
  }
  return {
    Status: reported,
    ValidList: { Name: [...valid] },
    InvalidList: { Name: invalid.map((d) => d.deviceName) },
    InvalidDetailList: {
      invalidDetailList: invalid.map((d) => ({ DeviceName: d.deviceName, ErrorMsg: d.errorMsg, NickName: d.nickname })),
    },
  };
}

function initialStatus(batch: BatchState): ApplyStatus {
  return batch.mode === 'custom' ? 'CHECK' : 'CREATE';
}

function previousStatus(batch: BatchState, status: ApplyStatus): ApplyStatus | null {
  switch (status) {
    case 'CHECK':
      return null;
    case 'CHECK_SUCCESS':
    case 'CHECK_FAILED':
      return 'CHECK';
    case 'CREATE':
      return batch.mode === 'custom' ? 'CHECK_SUCCESS' : null;
    case 'CREATE_SUCCESS':
    case 'CREATE_FAILED':
      return 'CREATE';
  }
}

function checkInstance(given: string | undefined, expected: string | null): string | null {
  const g = given ?? '';
  if (expected === null) return g === '' ? null : `The instance ${g} does not exist (this is the public instance; omit IotInstanceId).`;
  if (g === '') return 'IotInstanceId is required for this instance.';
  return g === expected ? null : `The instance ${g} does not exist.`;
}

function pageParam(raw: string | undefined, dflt: number): number | null {
  if (raw === undefined || raw === '') return dflt;
  return /^-?[0-9]{1,9}$/.test(raw) ? Number(raw) : null;
}

/** `DeviceNameList.N.DeviceName` wins over `DeviceName.N` (reference §1.1); at most 10,000, extras dropped. */
function readNames(params: Readonly<Record<string, string>>): { names: string[]; nicknames: Map<string, string> } {
  const list: { n: number; name: string; nickname: string | undefined }[] = [];
  const plain: { n: number; name: string }[] = [];
  for (const [k, v] of Object.entries(params)) {
    let m = /^DeviceNameList\.([0-9]+)\.DeviceName$/.exec(k);
    if (m?.[1] !== undefined) {
      list.push({ n: Number(m[1]), name: v, nickname: params[`DeviceNameList.${m[1]}.DeviceNickname`] });
      continue;
    }
    m = /^DeviceName\.([0-9]+)$/.exec(k);
    if (m?.[1] !== undefined) plain.push({ n: Number(m[1]), name: v });
  }
  const nicknames = new Map<string, string>();
  if (list.length > 0) {
    list.sort((a, b) => a.n - b.n);
    const kept = list.slice(0, MAX_NAMES);
    for (const e of kept) if (e.nickname !== undefined && e.nickname !== '') nicknames.set(e.name, e.nickname);
    return { names: kept.map((e) => e.name), nicknames };
  }
  plain.sort((a, b) => a.n - b.n);
  return { names: plain.slice(0, MAX_NAMES).map((e) => e.name), nicknames };
}
