/**
 * Shared pieces of the reliability suite (docs/reliability.md): the CI/full profile switch, a loopback webhook
 * receiver that verifies signatures and fails on purpose, request-rate windows, polling helpers and the
 * figures report.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createSeededRandom, type Random } from '../../src/core/clock.js';

/** `CHAOS_FULL=1` selects the long version of every suite. */
export const FULL = process.env.CHAOS_FULL === '1';

/** The CI value or the full value. */
export function profile<T>(ci: T, full: T): T {
  return FULL ? full : ci;
}

/** Where each suite writes its figures (one JSON file per suite). */
export const REPORT_DIR = process.env.CHAOS_REPORT_DIR ?? join(tmpdir(), 'ibw-chaos-report');

/** Records a suite's figures: a JSON file in {@link REPORT_DIR} and one line on stdout. */
export function writeReport(suite: string, figures: Record<string, unknown>): void {
  mkdirSync(REPORT_DIR, { recursive: true });
  const data = { suite, profile: FULL ? 'full' : 'ci', at: new Date().toISOString(), ...figures };
  writeFileSync(join(REPORT_DIR, `${suite}.json`), `${JSON.stringify(data, null, 2)}\n`);
  console.log(`[chaos:${suite}] ${JSON.stringify(figures)}`);
}

export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `ibw-chaos-${prefix}-`));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { waitUntil } from '../helpers/wait.js';
/** The largest number of `times` (ms) in any half-open window [t, t + windowMs), and where it starts. */
export function maxPerWindow(times: readonly number[], windowMs = 1000): { max: number; at: number | null } {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let at: number | null = null;
  let j = 0;
  for (let i = 0; i < sorted.length; i += 1) {
    const start = sorted[i]!;
    if (j < i) j = i;
    while (j < sorted.length && sorted[j]! < start + windowMs) j += 1;
    if (j - i > max) {
      max = j - i;
      at = start;
    }
  }
  return { max, at };
}

/** GET on a loopback URL: status and body text. */
export function httpGet(url: string, timeoutMs = 5000): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** JSON lines of a text; lines that do not parse (a torn tail after SIGKILL) are counted, not thrown. */
export function parseJsonLines(text: string): { values: Record<string, unknown>[]; torn: number } {
  const values: Record<string, unknown>[] = [];
  let torn = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      values.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      torn += 1;
    }
  }
  return { values, torn };
}

// ---------------------------------------------------------------------------------------------------------------
// webhook receiver

export interface WebhookDelivery {
  at: number;
  eventId: string;
  /** The `id` inside the body (must equal the header). */
  bodyId: string | null;
  type: string | null;
  applyId: string | null;
  body: string;
  headers: IncomingHttpHeaders;
  signatureOk: boolean;
  /** What the receiver answered: an HTTP status, or 0 when it dropped the connection. */
  answered: number;
}

export interface WebhookReceiver {
  readonly url: string;
  readonly port: number;
  readonly deliveries: WebhookDelivery[];
  /** true: stop listening (deliveries get ECONNREFUSED); false: listen again on the same port. */
  setDown(down: boolean): Promise<void>;
  /** Probability of answering a failure (5xx, 408, 429 or a dropped connection) instead of 200. */
  failRate: number;
  close(): Promise<void>;
}

/**
 * A loopback webhook receiver that checks `X-IBW-Signature` with its own HMAC of the raw body, records every
 * request, and fails a fraction `failRate` of them (seeded) with a retryable answer.
 */
export async function startWebhookReceiver(options: {
  secret: string;
  failRate?: number;
  seed?: number;
  /** Events to refuse for good with a 422 (they go to the daemon's dead-letter file). */
  refuse?: (eventId: string, type: string | null) => boolean;
}): Promise<WebhookReceiver> {
  const random: Random = createSeededRandom(options.seed ?? 7);
  const deliveries: WebhookDelivery[] = [];
  const sockets = new Set<Socket>();
  let server: Server;
  let port = 0;
  let down = false;
  const receiver: WebhookReceiver = {
    get url() {
      return `http://127.0.0.1:${port}/hook`;
    },
    get port() {
      return port;
    },
    deliveries,
    failRate: options.failRate ?? 0,
    async setDown(value) {
      if (value === down) return;
      down = value;
      if (value) await stop();
      else await listen(port);
    },
    async close() {
      down = true;
      await stop();
    },
  };
  const make = (): Server => {
    const s = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const body = raw.toString('utf8');
        const expected = `sha256=${createHmac('sha256', options.secret).update(raw).digest('hex')}`;
        const got = String(req.headers['x-ibw-signature'] ?? '');
        const signatureOk = got.length === expected.length && timingSafeEqual(Buffer.from(got), Buffer.from(expected));
        let parsed: Record<string, unknown> | null;
        try {
          parsed = JSON.parse(body) as Record<string, unknown>;
        } catch {
          parsed = null;
        }
        const roll = random.float();
        let answered = 200;
        if (!signatureOk) answered = 401;
        else if (options.refuse?.(String(req.headers['x-ibw-event-id'] ?? ''), typeof parsed?.type === 'string' ? parsed.type : null)) answered = 422;
        else if (roll < receiver.failRate) {
          const pick = random.float();
          answered = pick < 0.4 ? 500 : pick < 0.6 ? 503 : pick < 0.75 ? 429 : pick < 0.85 ? 408 : 0;
        }
        deliveries.push({
          at: Date.now(),
          eventId: String(req.headers['x-ibw-event-id'] ?? ''),
          bodyId: typeof parsed?.id === 'string' ? parsed.id : null,
          type: typeof parsed?.type === 'string' ? parsed.type : null,
          applyId: typeof parsed?.applyId === 'string' ? parsed.applyId : null,
          body,
          headers: req.headers,
          signatureOk,
          answered,
        });
        if (answered === 0) {
          req.socket.destroy();
          return;
        }
        res.writeHead(answered, { 'content-type': 'text/plain' });
        res.end(answered === 200 ? 'ok' : 'try again');
      });
    });
    s.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    return s;
  };
  const listen = async (p: number): Promise<void> => {
    server = make();
    server.listen(p, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  };
  const stop = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = once(server, 'close');
    server.close();
    for (const s of sockets) s.destroy();
    await closed;
  };
  await listen(0);
  return receiver;
}

/** Deliveries the receiver acknowledged (2xx), by event id. */
export function acknowledged(deliveries: readonly WebhookDelivery[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of deliveries) if (d.answered >= 200 && d.answered < 300) out.set(d.eventId, (out.get(d.eventId) ?? 0) + 1);
  return out;
}
