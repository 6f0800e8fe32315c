/**
 * A hostile HTTP server on 127.0.0.1 (issue #13.1): it answers every request with its headers at once and then
 * one body byte per `dripMs`, never finishing. undici's inactivity timeouts never fire against it; only a total
 * deadline ends such a request. Records when each connection opened and closed.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DripConnection {
  openedAt: number;
  /** null while the connection is open. */
  closedAt: number | null;
  /** Body bytes written so far. */
  bytes: number;
  /** Requests received on this connection (undici may open a spare connection that never carries one). */
  requests: number;
  /** When the last request on this connection arrived (null before any). */
  requestAt: number | null;
}

export interface DripServer {
  url: string;
  port: number;
  connections: DripConnection[];
  /** Requests received. */
  requests(): number;
  /** Connections that carried a request and are still open. */
  open(): number;
  close(): Promise<void>;
}

/** Starts the drip server. `status` is the status code sent with the headers. */
export async function startDripServer(options: { dripMs?: number; status?: number } = {}): Promise<DripServer> {
  const dripMs = options.dripMs ?? 1000;
  const connections: DripConnection[] = [];
  let requests = 0;
  const timers = new Set<NodeJS.Timeout>();
  const server: Server = createServer((req, res) => {
    requests += 1;
    req.resume();
    const conn = (req.socket as unknown as { _drip?: DripConnection })._drip;
    if (conn) {
      conn.requests += 1;
      conn.requestAt = performance.now();
    }
    // No content-length: a chunked body that never ends.
    res.writeHead(options.status ?? 200, { 'content-type': 'application/json' });
    res.write('{');
    const timer = setInterval(() => {
      if (res.destroyed) return;
      res.write(' ');
      if (conn) conn.bytes += 1;
    }, dripMs);
    timers.add(timer);
    res.on('close', () => {
      clearInterval(timer);
      timers.delete(timer);
    });
  });
  server.on('connection', (socket) => {
    const conn: DripConnection = { openedAt: performance.now(), closedAt: null, bytes: 0, requests: 0, requestAt: null };
    (socket as unknown as { _drip?: DripConnection })._drip = conn;
    connections.push(conn);
    socket.on('close', () => {
      conn.closedAt = performance.now();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections,
    requests: () => requests,
    open: () => connections.filter((c) => c.closedAt === null && c.requests > 0).length,
    async close() {
      for (const t of timers) clearInterval(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
