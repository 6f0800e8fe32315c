/**
 * A loopback webhook receiver for tests: listens on 127.0.0.1, verifies X-IBW-Signature with its own HMAC
 * (independent of the sink's code), de-duplicates by X-IBW-Event-Id like a real consumer, and answers from
 * a script (default 200).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
  signatureValid: boolean;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (for timeout tests). */
  hang?: boolean;
}

export interface Receiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** Unique event ids accepted with a 2xx, in first-arrival order (what a de-duplicating consumer keeps). */
  accepted: string[];
  /** Replies for the next requests, consumed in order. */
  script: Reply[];
  close(): Promise<void>;
}

export async function startReceiver(secret: string, port = 0): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const accepted: string[] = [];
  const seen = new Set<string>();
  const script: Reply[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`);
      const given = Buffer.from(String(req.headers['x-ibw-signature'] ?? ''));
      const signatureValid = given.length === expected.length && timingSafeEqual(given, expected);
      requests.push({ method: req.method ?? '', headers: req.headers, body: raw.toString('utf8'), signatureValid });
      if (!signatureValid) {
        res.writeHead(401).end('bad signature');
        return;
      }
      const reply = script.shift() ?? { status: 200 };
      if (reply.hang === true) return;
      if (reply.status >= 200 && reply.status < 300) {
        const id = String(req.headers['x-ibw-event-id']);
        if (!seen.has(id)) {
          seen.add(id);
          accepted.push(id);
        }
      }
      res.writeHead(reply.status, reply.headers).end(reply.body ?? '');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/hooks/iot?token=abc`,
    port: actual,
    requests,
    accepted,
    script,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port that was bound and then released: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
