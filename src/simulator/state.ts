/**
 * The simulator's IoT model: products, their devices, and batch applications (ApplyIds).
 *
 * A batch's status is a pure function of the clock (reference §1.3, DESIGN.md §1):
 *
 * ```
 * custom:  startedAt ──checkMs──► CHECK_SUCCESS ──(register)── registeredAt ──createMs──► CREATE_SUCCESS | CREATE_FAILED
 *          (CHECK before)          └─► CHECK_FAILED when any name is invalid         (CREATE before)
 * random:  startedAt = registeredAt ──createMs──► CREATE_SUCCESS | CREATE_FAILED        (CREATE before)
 * ```
 *
 * Durations are simulated ms: elapsed clock time is multiplied by `timeScale`. Outcome `never` keeps the last
 * phase (CHECK for an unregistered custom batch, else CREATE) forever; `slow` multiplies both durations by
 * `slowFactor`. Devices are materialised the first time a batch is seen past its CREATE phase, so a name
 * taken in between by another batch fails at create time, like the real service.
 */
import type { Random } from '../core/clock.js';
import type { BatchOutcome, ScenarioBatch } from './scenario.js';

export type ApplyStatus = 'CHECK' | 'CHECK_SUCCESS' | 'CHECK_FAILED' | 'CREATE' | 'CREATE_SUCCESS' | 'CREATE_FAILED';

/** A device as QueryPageByApplyId returns it (plus where it came from). */
export interface SimDevice {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  iotId: string;
  deviceId: string;
  nickname: string | null;
  /** The ApplyId that created it, or null for a preloaded device. */
  applyId: string | null;
}

/** A failed name with its reason, as in `InvalidDetailList`. */
export interface InvalidDetail {
  deviceName: string;
  errorMsg: string;
  nickname: string;
}

/** What `control.batch(applyId)` returns. */
export interface BatchSnapshot {
  applyId: string;
  productKey: string;
  mode: 'custom' | 'random';
  outcome: BatchOutcome;
  /** The true current status (no injected faults). */
  status: ApplyStatus;
  deviceCount: number;
  /** Clock ms when the batch started (check or random registration). */
  startedAt: number;
  /** Clock ms when it was registered, or null. */
  registeredAt: number | null;
  /** BatchRegisterDeviceWithApplyId calls that reached this batch. */
  registrations: number;
  /** Names created (after CREATE), or that passed the check (CHECK_FAILED). */
  validNames: string[];
  invalid: InvalidDetail[];
}

export interface BatchState {
  applyId: string;
  productKey: string;
  mode: 'custom' | 'random';
  outcome: BatchOutcome;
  /** Custom: the requested names. Random: filled when created. */
  names: string[];
  count: number;
  nicknames: Map<string, string>;
  startedAt: number;
  checkMs: number;
  createMs: number;
  /** Name → reason, decided when the batch is checked. */
  checkInvalid: Map<string, string>;
  /** Custom partial: names that fail at create time. */
  createFailNames: Set<string>;
  /** Random partial: how many devices fail at create time. */
  createFailCount: number;
  autoRegister: boolean;
  registeredAt: number | null;
  registrations: number;
  created: { valid: string[]; invalid: InvalidDetail[] } | null;
  statusBackwardsPending: boolean;
  unknownStatusPending: boolean;
  lastReturned: ApplyStatus | null;
}

export interface SimStateOptions {
  now: () => number;
  timeScale: number;
  random: Random;
  checkMs: number;
  createBaseMs: number;
  createMsPerDevice: number;
  slowFactor: number;
  bigApplyIds: boolean;
}

/** DeviceName rules (reference §1.1): 4–32 characters of letters, digits, `-`, `_`, `@`, `.`, `:`. */
export const DEVICE_NAME_PATTERN = /^[A-Za-z0-9_.@:-]{4,32}$/;

/** DeviceNickname rules: 4–32 characters of letters (any script), digits and `_`. */
export const NICKNAME_PATTERN = /^[\p{L}\p{N}_]{4,32}$/u;

const MSG_FORMAT = 'The device name format is invalid.';
const MSG_EXISTS = 'The device name already exists.';
const MSG_DUPLICATE = 'The device name is duplicated in the request.';
const MSG_REJECTED = 'The device name was rejected by the check.';
const MSG_CREATE_FAILED = 'Failed to create the device.';
const BIG_BASE = 2n ** 53n + 1n;

export class SimState {
  readonly products = new Map<string, Map<string, SimDevice>>();
  readonly batches = new Map<string, BatchState>();
  private nextId: bigint;
  private generated = 0;

  constructor(private readonly opts: SimStateOptions) {
    this.nextId = 1_300_000n + BigInt(Math.floor(opts.random.float() * 100_000)) * 10n;
  }

  addProduct(productKey: string, deviceNames: readonly string[] = []): void {
    let devices = this.products.get(productKey);
    if (devices === undefined) {
      devices = new Map();
      this.products.set(productKey, devices);
    }
    for (const name of deviceNames) {
      if (!devices.has(name)) devices.set(name, this.makeDevice(productKey, name, null, null));
    }
  }

  hasProduct(productKey: string): boolean {
    return this.products.has(productKey);
  }

  /** A fresh numeric ApplyId (as a string); with bigApplyIds every other one is above 2^53. */
  newApplyId(): string {
    for (;;) {
      this.generated += 1;
      let id: bigint;
      if (this.opts.bigApplyIds && this.generated % 2 === 0) {
        id = BIG_BASE + BigInt(this.generated);
      } else {
        id = this.nextId;
        this.nextId += 1n;
      }
      const s = id.toString();
      if (!this.batches.has(s)) return s;
    }
  }

  /** Names that break the format rules (the synchronous part of BatchCheckDeviceNames). */
  static formatInvalid(names: readonly string[]): string[] {
    return names.filter((n) => !DEVICE_NAME_PATTERN.test(n));
  }

  /**
   * The synchronous answer of BatchCheckDeviceNames about its names (reference §9): names that break the format
   * rules or already exist in the product, each once with its reason (`InvalidDetailList`), and names given more
   * than once in the request (`RepeatedDeviceNameList`). The asynchronous check rejects the same names.
   */
  precheck(productKey: string, names: readonly string[], nicknames: ReadonlyMap<string, string> = new Map()): { invalid: InvalidDetail[]; repeated: string[] } {
    const existing = this.products.get(productKey);
    const invalid: InvalidDetail[] = [];
    const repeated = new Set<string>();
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n)) {
        repeated.add(n);
        continue;
      }
      seen.add(n);
      const nickname = nicknames.get(n) ?? '';
      if (!DEVICE_NAME_PATTERN.test(n)) invalid.push({ deviceName: n, errorMsg: MSG_FORMAT, nickname });
      else if (existing?.has(n) === true) invalid.push({ deviceName: n, errorMsg: MSG_EXISTS, nickname });
    }
    return { invalid, repeated: [...repeated] };
  }

  /** Starts a custom-name check (BatchCheckDeviceNames or a preloaded custom batch). */
  startCheck(input: {
    applyId?: string;
    productKey: string;
    names: readonly string[];
    nicknames?: ReadonlyMap<string, string>;
    outcome?: BatchOutcome;
    invalidNames?: readonly string[];
    failNames?: readonly string[];
    autoRegister?: boolean;
    checkMs?: number;
    createMs?: number;
    ageMs?: number;
    statusBackwardsOnce?: boolean;
    unknownStatusOnce?: boolean;
  }): BatchState {
    const outcome = input.outcome ?? 'success';
    const names = [...input.names];
    const existing = this.products.get(input.productKey) ?? new Map<string, SimDevice>();
    const checkInvalid = new Map<string, string>();
    const seen = new Set<string>();
    for (const n of names) {
      if (!DEVICE_NAME_PATTERN.test(n)) checkInvalid.set(n, MSG_FORMAT);
      else if (seen.has(n)) checkInvalid.set(n, MSG_DUPLICATE);
      else if (existing.has(n)) checkInvalid.set(n, MSG_EXISTS);
      seen.add(n);
    }
    if (outcome === 'check_failed') {
      for (const n of input.invalidNames ?? []) if (!checkInvalid.has(n)) checkInvalid.set(n, MSG_REJECTED);
      const last = names[names.length - 1];
      if (checkInvalid.size === 0 && last !== undefined) checkInvalid.set(last, MSG_REJECTED);
    }
    const createFailNames = new Set<string>();
    if (outcome === 'partial') {
      for (const n of input.failNames ?? []) createFailNames.add(n);
      if (createFailNames.size === 0) {
        names.forEach((n, i) => {
          if (i % 4 === 3) createFailNames.add(n);
        });
        const last = names[names.length - 1];
        if (createFailNames.size === 0 && last !== undefined) createFailNames.add(last);
      }
    }
    const batch = this.register(input, 'custom', outcome, names, names.length);
    batch.checkInvalid = checkInvalid;
    batch.createFailNames = createFailNames;
    batch.autoRegister = input.autoRegister ?? false;
    if (input.nicknames) for (const [k, v] of input.nicknames) batch.nicknames.set(k, v);
    return batch;
  }

  /** Starts a random-name registration (BatchRegisterDevice or a preloaded random batch). */
  startRandom(input: {
    applyId?: string;
    productKey: string;
    count: number;
    outcome?: BatchOutcome;
    failCount?: number;
    createMs?: number;
    ageMs?: number;
    statusBackwardsOnce?: boolean;
    unknownStatusOnce?: boolean;
  }): BatchState {
    const outcome = input.outcome ?? 'success';
    const batch = this.register(input, 'random', outcome, [], input.count);
    batch.registeredAt = batch.startedAt;
    if (outcome === 'partial') batch.createFailCount = Math.min(input.count, input.failCount ?? Math.max(1, Math.floor(input.count / 4)));
    return batch;
  }

  /** Preloads a scenario batch. */
  addScenarioBatch(b: ScenarioBatch): BatchState {
    if (!this.hasProduct(b.productKey)) this.addProduct(b.productKey);
    const common = {
      ...(b.applyId === undefined ? {} : { applyId: b.applyId }),
      productKey: b.productKey,
      outcome: b.outcome,
      ageMs: b.ageMs,
      statusBackwardsOnce: b.statusBackwardsOnce,
      unknownStatusOnce: b.unknownStatusOnce,
      ...(b.createMs === undefined ? {} : { createMs: b.createMs }),
    };
    if (b.mode === 'random') {
      return this.startRandom({ ...common, count: b.count ?? 1, ...(b.failCount === undefined ? {} : { failCount: b.failCount }) });
    }
    return this.startCheck({
      ...common,
      names: b.deviceNames ?? [],
      autoRegister: b.registered,
      ...(b.checkMs === undefined ? {} : { checkMs: b.checkMs }),
      ...(b.invalidNames === undefined ? {} : { invalidNames: b.invalidNames }),
      ...(b.failNames === undefined ? {} : { failNames: b.failNames }),
    });
  }

  /** The true status now; materialises devices when CREATE has ended. */
  status(batch: BatchState): ApplyStatus {
    const now = this.opts.now();
    const scale = this.opts.timeScale;
    const never = batch.outcome === 'never';
    if (batch.mode === 'custom') {
      const checkEnd = batch.startedAt + batch.checkMs / scale;
      if (batch.registeredAt === null) {
        if (never && !batch.autoRegister) return 'CHECK';
        if (now < checkEnd) return 'CHECK';
        if (batch.checkInvalid.size > 0) return 'CHECK_FAILED';
        if (!batch.autoRegister) return 'CHECK_SUCCESS';
        batch.registeredAt = checkEnd;
      }
    }
    const registeredAt = batch.registeredAt ?? batch.startedAt;
    if (never || now < registeredAt + batch.createMs / scale) return 'CREATE';
    const created = this.materialise(batch);
    return created.invalid.length > 0 ? 'CREATE_FAILED' : 'CREATE_SUCCESS';
  }

  /** BatchRegisterDeviceWithApplyId on a batch whose status is CHECK_SUCCESS. */
  markRegistered(batch: BatchState): void {
    batch.registeredAt = this.opts.now();
  }

  /** Created devices of a batch, in creation order (empty until CREATE has ended). */
  createdDevices(batch: BatchState): SimDevice[] {
    this.status(batch);
    if (batch.created === null) return [];
    const devices = this.products.get(batch.productKey);
    const out: SimDevice[] = [];
    for (const n of batch.created.valid) {
      const d = devices?.get(n);
      if (d !== undefined && d.applyId === batch.applyId) out.push(d);
    }
    return out;
  }

  snapshot(batch: BatchState): BatchSnapshot {
    const status = this.status(batch);
    let validNames: string[] = [];
    let invalid: InvalidDetail[] = [];
    if (status === 'CHECK_FAILED') {
      validNames = batch.names.filter((n) => !batch.checkInvalid.has(n));
      invalid = this.checkDetails(batch);
    } else if (batch.created !== null) {
      validNames = [...batch.created.valid];
      invalid = [...batch.created.invalid];
    }
    return {
      applyId: batch.applyId,
      productKey: batch.productKey,
      mode: batch.mode,
      outcome: batch.outcome,
      status,
      deviceCount: batch.count,
      startedAt: batch.startedAt,
      registeredAt: batch.registeredAt,
      registrations: batch.registrations,
      validNames,
      invalid,
    };
  }

  checkDetails(batch: BatchState): InvalidDetail[] {
    return [...batch.checkInvalid].map(([deviceName, errorMsg]) => ({
      deviceName,
      errorMsg,
      nickname: batch.nicknames.get(deviceName) ?? '',
    }));
  }

  private register(
    input: { applyId?: string; productKey: string; checkMs?: number; createMs?: number; ageMs?: number; statusBackwardsOnce?: boolean; unknownStatusOnce?: boolean },
    mode: 'custom' | 'random',
    outcome: BatchOutcome,
    names: string[],
    count: number,
  ): BatchState {
    const applyId = input.applyId ?? this.newApplyId();
    if (this.batches.has(applyId)) throw new Error(`ApplyId ${applyId} already exists`);
    const factor = outcome === 'slow' ? this.opts.slowFactor : 1;
    const batch: BatchState = {
      applyId,
      productKey: input.productKey,
      mode,
      outcome,
      names,
      count,
      nicknames: new Map(),
      startedAt: this.opts.now() - (input.ageMs ?? 0) / this.opts.timeScale,
      checkMs: input.checkMs ?? this.opts.checkMs * factor,
      createMs: input.createMs ?? (this.opts.createBaseMs + this.opts.createMsPerDevice * count) * factor,
      checkInvalid: new Map(),
      createFailNames: new Set(),
      createFailCount: 0,
      autoRegister: false,
      registeredAt: null,
      registrations: 0,
      created: null,
      statusBackwardsPending: input.statusBackwardsOnce ?? false,
      unknownStatusPending: input.unknownStatusOnce ?? false,
      lastReturned: null,
    };
    this.batches.set(applyId, batch);
    return batch;
  }

  private materialise(batch: BatchState): { valid: string[]; invalid: InvalidDetail[] } {
    if (batch.created !== null) return batch.created;
    this.addProduct(batch.productKey);
    const devices = this.products.get(batch.productKey) ?? new Map<string, SimDevice>();
    const valid: string[] = [];
    const invalid: InvalidDetail[] = [];
    if (batch.mode === 'random') {
      const okCount = batch.count - batch.createFailCount;
      for (let i = 0; i < batch.count; i += 1) {
        let name = this.randomName();
        while (devices.has(name) || valid.includes(name)) name = this.randomName();
        batch.names.push(name);
        if (i >= okCount) invalid.push({ deviceName: name, errorMsg: MSG_CREATE_FAILED, nickname: '' });
        else valid.push(name);
      }
    } else {
      for (const name of batch.names) {
        const nickname = batch.nicknames.get(name) ?? '';
        if (batch.createFailNames.has(name)) invalid.push({ deviceName: name, errorMsg: MSG_CREATE_FAILED, nickname });
        else if (devices.has(name)) invalid.push({ deviceName: name, errorMsg: MSG_EXISTS, nickname });
        else valid.push(name);
      }
    }
    for (const name of valid) {
      devices.set(name, this.makeDevice(batch.productKey, name, batch.nicknames.get(name) ?? null, batch.applyId));
    }
    batch.created = { valid, invalid };
    return batch.created;
  }

  private makeDevice(productKey: string, deviceName: string, nickname: string | null, applyId: string | null): SimDevice {
    const iotId = this.randomString(20, ALNUM) + '000100';
    return { productKey, deviceName, deviceSecret: this.randomString(32, HEX), iotId, deviceId: iotId, nickname, applyId };
  }

  private randomName(): string {
    return this.randomString(20, ALNUM);
  }

  private randomString(length: number, alphabet: string): string {
    let s = '';
    for (let i = 0; i < length; i += 1) s += alphabet[Math.floor(this.opts.random.float() * alphabet.length)] ?? 'x';
    return s;
  }
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const HEX = '0123456789abcdef';
