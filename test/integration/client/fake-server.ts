/**
 * A scripted loopback HTTP server for the client tests (127.0.0.1, port 0). It records every request
 * (query, headers, body, socket id) and answers from a queue of handlers, falling back to a default.
 * It can check V1/V3 signatures with the official SDK's own functions (@alicloud/openapi-util), so the
 * client's wire format is verified independently of our signer.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { sdkUtil } from '../../unit/alibaba/official-sdk.js';

export interface RecordedRequest {
  method: string;
  url: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: string;
  /** Which TCP connection carried it (1-based, in order of connection). */
  socketId: number;
}

export type Handler = (req: RecordedRequest, res: ServerResponse, raw: IncomingMessage) => void | Promise<void>;

export interface FakeServer {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Handlers for the next requests, in order. */
  enqueue(...handlers: Handler[]): void;
  /** Handler once the queue is empty. @default json(200, {RequestId:'default', Success:true}) */
  setDefault(handler: Handler): void;
  connections(): number;
  close(): Promise<void>;
}

export async function startFakeServer(): Promise<FakeServer> {
  const queue: Handler[] = [];
  let fallback: Handler = json(200, { RequestId: 'default', Success: true });
  const requests: RecordedRequest[] = [];
  const socketIds = new WeakMap<Socket, number>();
  let nextSocket = 0;
  const server: Server = createServer((raw, res) => {
    const chunks: Buffer[] = [];
    raw.on('data', (c: Buffer) => chunks.push(c));
    raw.on('end', () => {
      const u = new URL(raw.url ?? '/', 'http://127.0.0.1');
      const rec: RecordedRequest = {
        method: raw.method ?? '',
        url: raw.url ?? '',
        query: Object.fromEntries(u.searchParams.entries()),
        headers: raw.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        socketId: socketIds.get(raw.socket) ?? 0,
      };
      requests.push(rec);
      const handler = queue.shift() ?? fallback;
      Promise.resolve(handler(rec, res, raw)).catch((err: unknown) => {
        res.statusCode = 599;
        res.end(String(err));
      });
    });
  });
  server.on('connection', (socket: Socket) => {
    nextSocket += 1;
    socketIds.set(socket, nextSocket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    enqueue: (...h) => queue.push(...h),
    setDefault: (h) => {
      fallback = h;
    },
    connections: () => nextSocket,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers with a JSON body. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };
}

/** Answers with raw text. */
export function raw(status: number, text: string, contentType = 'application/json'): Handler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
}

/** Destroys the connection without answering. */
export const reset: Handler = (_req, _res, rawReq) => {
  rawReq.socket.destroy();
};

/** Never answers (until the server closes). */
export const hang: Handler = () => {};

/** Declares `declared` bytes, sends `text`, then cuts the connection. */
export function truncated(text: string, declared: number): Handler {
  return (_req, res, rawReq) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': declared });
    res.write(text, () => {
      setTimeout(() => rawReq.socket.destroy(), 5);
    });
  };
}

/** Streams `size` bytes with chunked encoding (no content-length). */
export function chunked(size: number): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = 'x'.repeat(1024);
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  };
}

/** Recomputes the V1 signature of a recorded request with the SDK (`getRPCSignature`). */
export function sdkV1Signature(req: RecordedRequest, secret: string): string {
  const params = { ...req.query };
  delete params.Signature;
  return sdkUtil().getRPCSignature(params, req.method, secret);
}

/** Recomputes the V3 Authorization header of a recorded request with the SDK (`getAuthorization`). */
export function sdkV3Authorization(req: RecordedRequest, accessKeyId: string, secret: string): string {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
  return sdkUtil().getAuthorization(
    { pathname: '/', method: req.method, query: req.query, headers },
    'ACS3-HMAC-SHA256',
    headers['x-acs-content-sha256'] ?? '',
    accessKeyId,
    secret,
  );
}
