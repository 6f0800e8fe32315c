/**
 * The built-in IoT Platform simulator: an HTTP server that answers the five batch-registration actions the way
 * Alibaba's RPC endpoint does (DESIGN.md §9), for the demo, the tests, the benchmarks and rehearsals.
 *
 * Request pipeline (each step can answer and stop):
 * 1. method GET/POST, body read (form-urlencoded bodies are parameters too);
 * 2. authentication (auth.ts): gateway errors `Missing*`, `InvalidAccessKeyId.NotFound`, `InvalidTimeStamp.*`,
 *    `SignatureDoesNotMatch`, `SignatureNonceUsed`;
 * 3. API lookup: `InvalidApi.NotFound` for an unknown Action or Version;
 * 4. per-action QPS: `Throttling.User` (throttle.ts);
 * 5. faults (faults.ts): 5xx, `iot.system.SystemException`, spurious throttling and resets answer here; slow
 *    replies wait; malformed and truncated bodies replace the answer after the action ran;
 * 6. the action (actions.ts).
 * Every request lands in the request log. Nothing a client sends can crash the process: the handler is wrapped
 * and answers `InternalError` (500) on a bug.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { pino, type Logger } from 'pino';

import { coerceError } from '../errors.js';
import { createSeededRandom, systemClock, type Random } from '../core/clock.js';
import { runAction } from './actions.js';
import { Authenticator, type GatewayFailure, type ReceivedRequest, type SignatureVersion, type StsCredential } from './auth.js';
import { CONTROL_PREFIX, handleControlRequest } from './control-api.js';
import { FaultInjector } from './faults.js';
import { toJsonText } from './json.js';
import {
  DEFAULT_QPS,
  IOT_API_VERSION,
  SIMULATOR_ACTIONS,
  SIMULATOR_DEFAULTS,
  type FaultKind,
  type FaultOptions,
  type SimulatorAction,
  type SimulatorOptions,
} from './options.js';
import { parseScenarioBatch, type ScenarioBatchInput } from './scenario.js';
import { SimState, type BatchSnapshot, type SimDevice } from './state.js';
import { ActionThrottle } from './throttle.js';

/** One line of the request log. */
export interface RequestLogEntry {
  /** Clock ms when the request arrived. */
  at: number;
  /** The Action (or null when none could be read). */
  action: string | null;
  applyId: string | null;
  productKey: string | null;
  /** `ok`, the error Code (gateway or business), or the fault that replaced the answer (`reset`, `malformed`, `truncated`). */
  outcome: string;
  /** 0 for a connection reset. */
  httpStatus: number;
  signatureVersion: SignatureVersion | null;
  /** The injected fault, if any (including `slow`). */
  fault: FaultKind | null;
  requestId: string;
  /** For a `drip` fault: clock ms when the client closed the connection. */
  closedAt?: number;
  /** Where a request's `DeviceName*` parameters came: the query, the form body, both, or null when it had none. */
  deviceNamesIn?: 'query' | 'body' | 'both' | null;
}

/** Test and demo hooks on a running simulator. */
export interface SimulatorControl {
  /** Preloads a batch with an outcome (same fields as a scenario batch); returns its ApplyId. */
  addBatch(batch: ScenarioBatchInput): string;
  /** Adds a product (and optionally existing device names). */
  addProduct(productKey: string, deviceNames?: readonly string[]): void;
  /** An STS credential the server accepts until it expires. @param durationMs @default 3600000 */
  issueStsToken(durationMs?: number): StsCredential;
  /** A copy of the request log, oldest first. */
  requestLog(): RequestLogEntry[];
  clearRequestLog(): void;
  /** How many BatchRegisterDeviceWithApplyId calls reached this ApplyId (accepted or not). */
  registrations(applyId: string): number;
  /** Devices in a product (preloaded and created), in insertion order. */
  devices(productKey: string): SimDevice[];
  /** The batch with its true current status, or undefined. */
  batch(applyId: string): BatchSnapshot | undefined;
  /** Every batch with its true current status, in creation order. */
  batches(): BatchSnapshot[];
  /** Moves the simulator's "now" for timestamp checks (a client more than 15 min off gets `InvalidTimeStamp.Expired`). */
  setClockSkewMs(ms: number): void;
  /** true: close the listener and all connections (clients get ECONNREFUSED); false: listen again on the same port. */
  setDown(down: boolean): Promise<void>;
  /** Replaces the fault configuration (counters and PRNG restart). */
  setFaults(faults: FaultOptions): void;
  /** Changes per-action QPS limits (0 or Infinity = off). */
  setQps(qps: Partial<Record<SimulatorAction, number>>): void;
}

export interface SimulatorHandle {
  /** `http://host:port` */
  url: string;
  port: number;
  host: string;
  close(): Promise<void>;
  control: SimulatorControl;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** 10,000 names in the query string make a URL of ~500 kB; node's default header limit is 16 kB. */
const MAX_HEADER_BYTES = 4 * 1024 * 1024;

/** Starts the simulator and resolves once it listens. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const d = SIMULATOR_DEFAULTS;
  const clock = options.clock ?? systemClock;
  const timeScale = options.timeScale ?? d.timeScale;
  if (!(Number.isFinite(timeScale) && timeScale > 0)) {
    throw new RangeError(`Expected \`timeScale\` to be a finite number > 0, got \`${String(timeScale)}\``);
  }
  const seed = options.seed ?? d.seed;
  const host = options.host ?? d.host;
  const logger: Logger = options.logger ?? pino({ level: 'silent' });
  const scenario = options.scenario;
  const iotInstanceId = options.iotInstanceId ?? scenario?.iotInstanceId ?? null;
  const random = createSeededRandom(seed);
  const state = new SimState({
    now: () => clock.now(),
    timeScale,
    random,
    checkMs: options.checkMs ?? d.checkMs,
    createBaseMs: options.createBaseMs ?? d.createBaseMs,
    createMsPerDevice: options.createMsPerDevice ?? d.createMsPerDevice,
    slowFactor: options.slowFactor ?? d.slowFactor,
    bigApplyIds: options.bigApplyIds ?? false,
  });
  for (const pk of options.productKeys ?? d.productKeys) state.addProduct(pk);
  for (const p of scenario?.products ?? []) state.addProduct(p.productKey, p.devices);
  for (const b of scenario?.batches ?? []) state.addScenarioBatch(b);

  const auth = new Authenticator(options.accessKeyId ?? d.accessKeyId, options.accessKeySecret ?? d.accessKeySecret, createSeededRandom(seed + 1));
  const throttle = new ActionThrottle({ ...DEFAULT_QPS, ...(options.qps ?? {}) });
  let faults = new FaultInjector(options.faults ?? {}, seed);
  const requestIds: Random = createSeededRandom(seed + 2);
  const logLimit = options.requestLogLimit ?? d.requestLogLimit;
  let log: RequestLogEntry[] = [];
  let skewMs = 0;
  const closing = new AbortController();
  const sockets = new Set<Socket>();

  const record = (entry: RequestLogEntry): void => {
    log.push(entry);
    // NOTE: trimmed in steps of a tenth, so a full log costs amortised O(1) per request, not a copy each time.
    if (log.length > logLimit + Math.ceil(logLimit / 10)) log = log.slice(log.length - logLimit);
    logger.debug(
      { action: entry.action, applyId: entry.applyId, productKey: entry.productKey, outcome: entry.outcome, httpStatus: entry.httpStatus, fault: entry.fault, requestId: entry.requestId },
      'simulator request',
    );
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const at = clock.now();
    const requestId = newRequestId(requestIds);
    const entry: RequestLogEntry = { at, action: null, applyId: null, productKey: null, outcome: 'ok', httpStatus: 200, signatureVersion: null, fault: null, requestId };
    const hostId = req.headers.host ?? `${host}:${String(port)}`;
    const gateway = (f: GatewayFailure): void => {
      entry.outcome = f.code;
      entry.httpStatus = f.httpStatus;
      sendJson(res, f.httpStatus, requestId, {
        RequestId: requestId,
        HostId: hostId,
        Code: f.code,
        Message: f.message,
        Recommend: `https://api.aliyun.com/troubleshoot?q=${encodeURIComponent(f.code)}&product=Iot&requestId=${requestId}`,
      });
    };
    try {
      const method = (req.method ?? 'GET').toUpperCase();
      if (method !== 'GET' && method !== 'POST') {
        gateway({ httpStatus: 400, code: 'UnsupportedHTTPMethod', message: `The HTTP method ${method} is not supported.` });
        return;
      }
      const body = await readBody(req);
      if (body === null) {
        gateway({ httpStatus: 413, code: 'RequestEntityTooLarge', message: 'The request body is too large.' });
        res.once('finish', () => req.socket.destroy());
        return;
      }
      const url = new URL(req.url ?? '/', 'http://simulator.invalid');
      if (options.controlApi === true && url.pathname.startsWith(CONTROL_PREFIX)) {
        // NOTE: the control API (control-api.ts) is not the gateway: no signature, plain JSON answers.
        const answer = handleControlRequest(method, url.pathname, body, { control, clock, timeScale, signal: closing.signal, logger });
        entry.action = 'control';
        entry.httpStatus = answer.status;
        sendJson(res, answer.status, requestId, answer.body as Record<string, unknown>);
        return;
      }
      const received: ReceivedRequest = {
        method,
        path: url.pathname,
        query: toRecord(url.searchParams),
        form: isForm(req.headers['content-type']) ? toRecord(new URLSearchParams(body.toString('utf8'))) : {},
        headers: req.headers,
        body,
      };
      entry.deviceNamesIn = namesIn(received);
      const result = auth.verify(received, clock.now() + skewMs, clock.now());
      entry.signatureVersion = result.version;
      entry.action = result.action;
      entry.applyId = normaliseApplyId(result.params.ApplyId);
      entry.productKey = result.params.ProductKey ?? null;
      if (!result.ok) {
        gateway(result.failure);
        return;
      }
      const action = result.action as SimulatorAction;
      if (!SIMULATOR_ACTIONS.includes(action) || result.apiVersion !== IOT_API_VERSION) {
        gateway({ httpStatus: 404, code: 'InvalidApi.NotFound', message: 'Specified api is not found, please check your url and method.' });
        return;
      }
      // NOTE: judged at arrival time, the same instant the request log records, so the log shows exactly the
      // windows the limiter saw.
      if (!throttle.tryAcquire(action, at)) {
        gateway(throttled());
        return;
      }
      const fault = faults.pick(action, entry.applyId);
      entry.fault = fault;
      switch (fault) {
        case 'serviceUnavailable':
          gateway({ httpStatus: 503, code: 'ServiceUnavailable', message: 'The request has failed due to a temporary failure of the server.' });
          return;
        case 'internalError':
          gateway({ httpStatus: 500, code: 'InternalError', message: 'The request processing has failed due to some unknown error.' });
          return;
        case 'throttle':
          gateway(throttled());
          return;
        case 'systemException':
          entry.outcome = 'iot.system.SystemException';
          sendJson(res, 200, requestId, { RequestId: requestId, Success: false, Code: 'iot.system.SystemException', ErrorMessage: 'A system exception occurred.' });
          return;
        case 'reset':
          entry.outcome = 'reset';
          entry.httpStatus = 0;
          req.socket.destroy();
          return;
        case 'slow':
          await clock.sleep(faults.slowMs / timeScale, closing.signal);
          break;
        case 'drip':
          entry.outcome = 'drip';
          res.on('close', () => {
            entry.closedAt = clock.now();
          });
          res.writeHead(200, { 'content-type': 'application/json;charset=utf-8', 'x-acs-request-id': requestId });
          res.write('{');
          while (!res.destroyed && !closing.signal.aborted) {
            await clock.sleep(1000 / timeScale, closing.signal);
            if (!res.destroyed) res.write(' ');
          }
          return;
        default:
          break;
      }
      const outcome = runAction(action, result.params, { state, iotInstanceId, requestId, fault });
      if (outcome.kind === 'gateway') {
        gateway(outcome.failure);
        return;
      }
      if (outcome.applyId !== null) entry.applyId = outcome.applyId;
      entry.outcome = outcome.kind === 'ok' ? 'ok' : outcome.code;
      const text = toJsonText(outcome.body);
      if (fault === 'malformed') {
        entry.outcome = 'malformed';
        sendRaw(res, 200, requestId, '<html><head><title>502 Bad Gateway</title></head><body>upstream error</body>');
        return;
      }
      if (fault === 'truncated') {
        entry.outcome = 'truncated';
        const full = Buffer.from(text, 'utf8');
        res.writeHead(200, { 'content-type': 'application/json;charset=utf-8', 'content-length': String(full.length), 'x-acs-request-id': requestId });
        res.write(full.subarray(0, Math.floor(full.length / 2)), () => req.socket.destroy());
        return;
      }
      sendRaw(res, 200, requestId, text);
    } catch (err) {
      if (closing.signal.aborted) {
        req.socket.destroy();
        return;
      }
      logger.error({ err: coerceError(err), action: entry.action, requestId }, 'simulator handler failed');
      if (!res.headersSent) {
        gateway({ httpStatus: 500, code: 'InternalError', message: 'The request processing has failed due to some unknown error.' });
      } else {
        req.socket.destroy();
      }
    } finally {
      record(entry);
    }
  };

  const server: Server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err: coerceError(err) }, 'simulator handler crashed');
      req.socket.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    logger.debug({ err: { message: err.message, code: err.code } }, 'simulator client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  const listen = async (p: number): Promise<number> => {
    server.listen(p, host);
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  };
  const shutdown = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = once(server, 'close');
    server.close();
    for (const s of sockets) s.destroy();
    await closed;
  };

  let port = await listen(options.port ?? d.port);
  let down = false;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  logger.info({ host, port, iotInstanceId, timeScale, products: [...state.products.keys()] }, 'simulator listening');

  const control: SimulatorControl = {
    addBatch(batch) {
      return state.addScenarioBatch(parseScenarioBatch(batch)).applyId;
    },
    addProduct(productKey, deviceNames = []) {
      state.addProduct(productKey, deviceNames);
    },
    issueStsToken(durationMs = 3_600_000) {
      return auth.issueSts(clock.now(), durationMs);
    },
    requestLog: () => log.slice(Math.max(0, log.length - logLimit)).map((e) => ({ ...e })),
    clearRequestLog() {
      log = [];
    },
    registrations(applyId) {
      return state.batches.get(applyId)?.registrations ?? 0;
    },
    devices(productKey) {
      const devices = state.products.get(productKey);
      if (devices === undefined) return [];
      for (const b of state.batches.values()) if (b.productKey === productKey) state.status(b);
      return [...devices.values()].map((dev) => ({ ...dev }));
    },
    batch(applyId) {
      const b = state.batches.get(applyId);
      return b === undefined ? undefined : state.snapshot(b);
    },
    batches: () => [...state.batches.values()].map((b) => state.snapshot(b)),
    setClockSkewMs(ms) {
      skewMs = ms;
    },
    async setDown(value) {
      if (value === down) return;
      down = value;
      if (value) await shutdown();
      else port = await listen(port);
    },
    setFaults(f) {
      faults = new FaultInjector(f, seed);
    },
    setQps(qps) {
      throttle.setLimits(qps);
    },
  };

  return {
    url: `http://${urlHost}:${String(port)}`,
    port,
    host,
    async close() {
      closing.abort(new Error('simulator closed'));
      down = true;
      await shutdown();
      logger.info('simulator stopped');
    },
    control,
  };
}

function throttled(): GatewayFailure {
  return { httpStatus: 400, code: 'Throttling.User', message: 'Request was denied due to user flow control.' };
}

function newRequestId(random: Random): string {
  const hex = (n: number): string => {
    let s = '';
    for (let i = 0; i < n; i += 1) s += '0123456789ABCDEF'[Math.floor(random.float() * 16)] ?? '0';
    return s;
  };
  return `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`;
}

function normaliseApplyId(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null;
  return /^[0-9]{1,19}$/.test(raw) ? BigInt(raw).toString() : raw;
}

function isForm(contentType: string | undefined): boolean {
  return contentType?.toLowerCase().includes('application/x-www-form-urlencoded') === true;
}

function toRecord(params: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of params) out[k] = v;
  return out;
}

function namesIn(req: ReceivedRequest): RequestLogEntry['deviceNamesIn'] {
  const has = (r: Record<string, string>): boolean => Object.keys(r).some((k) => k.startsWith('DeviceName'));
  const q = has(req.query);
  const b = has(req.form);
  return q && b ? 'both' : q ? 'query' : b ? 'body' : null;
}

async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function sendJson(res: ServerResponse, status: number, requestId: string, body: Record<string, unknown>): void {
  sendRaw(res, status, requestId, toJsonText(body));
}

function sendRaw(res: ServerResponse, status: number, requestId: string, text: string): void {
  if (res.headersSent || res.destroyed) return;
  const buf = Buffer.from(text, 'utf8');
  res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', 'content-length': String(buf.length), 'x-acs-request-id': requestId });
  res.end(buf);
}
