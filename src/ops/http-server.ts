/**
 * The operations HTTP server (DESIGN.md §8, contract), on node:http with no framework:
 *
 *   GET /healthz      200 `ok` while the event loop turns (answered inline, no I/O)
 *   GET /readyz       200 `ready` when `isReady()`, else 503 `not ready` (config + ledger loaded, no shutdown yet)
 *   GET /metrics      Prometheus text exposition, with the registry's content type
 *   GET /v1/batches   JSON array, the same objects as `status --json`
 *
 * HEAD is accepted wherever GET is. Other methods on those paths get 405 with `Allow`; unknown paths get 404
 * JSON. The handler never throws: a failing callback becomes a 500 JSON body that carries neither the
 * error's message nor its stack (the error goes to the log under `err`, where the logger's redaction applies).
 * `close()` also drops keep-alive connections, so shutdown never waits on an idle client.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from 'pino';

import type { Metrics } from './metrics.js';

/** Options of {@link startOpsServer}. */
export interface OpsServerOptions {
  /** Interface to listen on. The daemon's default is loopback (`127.0.0.1`); the image uses `0.0.0.0`. */
  host: string;
  /** TCP port; 0 picks a free one (tests). */
  port: number;
  /** The metrics rendered on `/metrics`. */
  metrics: Metrics;
  /** Readiness: true once config and ledger are loaded and until shutdown begins. */
  isReady: () => boolean;
  /** The batches for `/v1/batches` (the `status --json` objects). */
  listBatches: () => unknown[] | Promise<unknown[]>;
  /** Logger for request failures and server errors. */
  logger: Logger;
}

/** A running ops server. */
export interface OpsServer {
  /** Base URL, e.g. `http://127.0.0.1:9464`. */
  readonly url: string;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stops listening and closes every connection, idle keep-alive ones included. Idempotent. */
  close(): Promise<void>;
}

type Route = '/healthz' | '/readyz' | '/metrics' | '/v1/batches';
const ROUTES: ReadonlySet<string> = new Set<Route>(['/healthz', '/readyz', '/metrics', '/v1/batches']);

/** Starts the ops server; resolves once it listens, rejects if it cannot bind (e.g. EADDRINUSE). */
export function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { metrics, isReady, listBatches, logger } = options;

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // NOTE: handle() catches its own failures; this is the last line of defence (e.g. a write after destroy).
      logger.error({ err: error, path: req.url }, 'ops http handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req.url);
    if (!ROUTES.has(path)) {
      sendJson(res, 404, { error: 'not found' });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendJson(res, 405, { error: 'method not allowed', method: req.method ?? null });
      return;
    }
    switch (path as Route) {
      case '/healthz':
        sendText(res, 200, 'ok\n');
        return;
      case '/readyz': {
        let ready = false;
        try {
          ready = isReady();
        } catch (error) {
          logger.error({ err: error }, 'readiness check failed');
        }
        sendText(res, ready ? 200 : 503, ready ? 'ready\n' : 'not ready\n');
        return;
      }
      case '/metrics': {
        let body: string;
        try {
          body = await metrics.render();
        } catch (error) {
          logger.error({ err: error }, 'rendering metrics failed');
          sendJson(res, 500, { error: 'internal error' });
          return;
        }
        send(res, 200, metrics.contentType, body);
        return;
      }
      case '/v1/batches': {
        let body: string;
        try {
          const batches = await listBatches();
          body = JSON.stringify(batches);
        } catch (error) {
          logger.error({ err: error }, 'listing batches failed');
          sendJson(res, 500, { error: 'internal error' });
          return;
        }
        send(res, 200, 'application/json; charset=utf-8', `${body}\n`);
        return;
      }
    }
  }

  server.on('clientError', (error, socket) => {
    logger.debug({ err: error }, 'ops http client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  return new Promise<OpsServer>((resolve, reject) => {
    const onListenError = (error: Error): void => {
      reject(error);
    };
    server.once('error', onListenError);
    server.listen(options.port, options.host, () => {
      server.off('error', onListenError);
      server.on('error', (error) => {
        logger.error({ err: error }, 'ops http server error');
      });
      const port = (server.address() as AddressInfo).port;
      const url = `http://${formatHost(options.host)}:${port}`;
      let closing: Promise<void> | undefined;
      resolve({
        url,
        port,
        close() {
          closing ??= new Promise<void>((done) => {
            server.close(() => {
              done();
            });
            server.closeAllConnections();
          });
          return closing;
        },
      });
    });
  });
}

function pathOf(rawUrl: string | undefined): string {
  const url = rawUrl ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function sendText(res: ServerResponse, status: number, body: string): void {
  send(res, status, 'text/plain; charset=utf-8', body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`);
}
