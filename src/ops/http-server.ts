/**
 * The operations HTTP server (DESIGN.md §8, contract), on node:http with no framework:
 *
 *   GET /healthz      200 `ok` while the event loop turns (answered inline, no I/O)
 *   GET /readyz       200 `ready` when `isReady()`, else 503 `not ready` (config + ledger loaded, no shutdown yet)
 *   GET /metrics      Prometheus text exposition, with the registry's content type
 *   GET /v1/batches   JSON array, the same objects as `status --json`
 *   GET /v1/jobs      JSON array, one object per provisioning job, as `status --jobs --json`
 *
 * HEAD is accepted wherever GET is. Other methods on those paths get 405 with `Allow`; unknown paths get 404
 * JSON.
 *
 * With `auth` (config `http.auth`), every path under `/v1/` (and `/metrics` when `auth.metrics`) needs
 * `Authorization: Bearer <token>`, checked in constant time, before anything else (so an unknown `/v1/...` path
 * reveals nothing either); a missing or wrong token gets 401 with `WWW-Authenticate: Bearer`. `/healthz` and
 * `/readyz` stay open for probes. The token is never logged. Without `auth` on a non-loopback host, a warning at
 * start says that `/v1/batches` is open to anyone who reaches the port. The handler never throws: a failing callback becomes a 500 JSON body that carries neither the
 * error's message nor its stack (the error goes to the log under `err`, where the logger's redaction applies).
 * `close()` also drops keep-alive connections, so shutdown never waits on an idle client.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from 'pino';

import type { HttpAuthConfig } from '../config/types.js';
import { DaemonError } from '../errors.js';
import { isLoopbackHost } from '../loopback.js';
import { readEnvSecret } from '../secret-env.js';

import type { Metrics } from './metrics.js';

/** Bearer-token protection of the ops server (resolved from `http.auth` by {@link resolveOpsAuth}). */
export interface OpsAuth {
  /** The token clients must send as `Authorization: Bearer <token>`. */
  token: string;
  /** Also protect `/metrics` (Prometheus then needs `authorization: { credentials_file: ... }`). */
  metrics: boolean;
}

/**
 * Reads the token of `http.auth` from `<tokenEnv>` or `<tokenEnv>_FILE`; undefined when `auth` is not configured.
 * Throws a DaemonError (kind `config`, exit 2) when the variable holds nothing, names both variables, never the value.
 */
export function resolveOpsAuth(auth: HttpAuthConfig | undefined, env: Readonly<Record<string, string | undefined>>): OpsAuth | undefined {
  if (!auth) return undefined;
  const token = readEnvSecret(env, auth.tokenEnv);
  if (!token) {
    throw new DaemonError(`http.auth is set but neither ${auth.tokenEnv} nor ${auth.tokenEnv}_FILE (http.auth.tokenEnv) holds a token`, {
      kind: 'config',
      scope: 'process',
      code: 'HttpTokenMissing',
    });
  }
  return { token, metrics: auth.metrics };
}

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
  /** The provisioning jobs for `/v1/jobs` (the `status --jobs --json` objects). @default none: an empty list */
  listJobs?: () => unknown[] | Promise<unknown[]>;
  /** Logger for request failures and server errors. */
  logger: Logger;
  /** Require a bearer token on `/v1/*` (and `/metrics` when asked). @default none: every path is open */
  auth?: OpsAuth;
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

type Route = '/healthz' | '/readyz' | '/metrics' | '/v1/batches' | '/v1/jobs';
const ROUTES: ReadonlySet<string> = new Set<Route>(['/healthz', '/readyz', '/metrics', '/v1/batches', '/v1/jobs']);

/** Starts the ops server; resolves once it listens, rejects if it cannot bind (e.g. EADDRINUSE). */
export function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { metrics, isReady, listBatches, logger, auth } = options;
  // NOTE: digests of equal length, so timingSafeEqual reveals neither the token nor its length.
  const tokenDigest = auth ? digest(auth.token) : null;

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
    if (tokenDigest && (path === '/v1' || path.startsWith('/v1/') || (auth?.metrics === true && path === '/metrics'))) {
      const presented = bearerToken(req.headers.authorization);
      if (presented === null || !timingSafeEqual(digest(presented), tokenDigest)) {
        res.setHeader('www-authenticate', presented === null ? 'Bearer realm="iot-batch-watcher"' : 'Bearer realm="iot-batch-watcher", error="invalid_token"');
        sendJson(res, 401, { error: 'unauthorized' });
        return;
      }
    }
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
      case '/v1/batches':
      case '/v1/jobs': {
        let body: string;
        try {
          const batches = path === '/v1/jobs' ? await (options.listJobs?.() ?? []) : await listBatches();
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
      if (!auth && !isLoopbackHost(options.host)) {
        logger.warn(
          { host: options.host, port },
          'ops endpoints listen beyond loopback without http.auth: /v1/batches (ApplyIds, names, labels, errors) is open to anyone who reaches the port',
        );
      }
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

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or null. */
function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  return m ? m[1]! : null;
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
