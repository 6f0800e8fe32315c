import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { compileConfigObject } from '../../../src/config/compile.js';
import { ConfigError } from '../../../src/errors.js';
import { applyEnvOverrides } from '../../../src/main.js';
import { resolveOpsAuth, startOpsServer } from '../../../src/ops/http-server.js';
import type { OpsServer, OpsServerOptions } from '../../../src/ops/http-server.js';
import { createMetrics } from '../../../src/ops/metrics.js';
import { runCli, SIM_ENV } from '../../helpers/child.js';
import { createCaptureLogger } from '../../unit/ops/capture-logger.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(url: string, method = 'GET', agent?: Agent, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const servers: OpsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(overrides: Partial<OpsServerOptions> = {}) {
  const { logger, lines } = createCaptureLogger();
  const metrics = createMetrics({ collectDefault: false });
  const server = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    metrics,
    isReady: () => true,
    listBatches: () => [],
    logger,
    ...overrides,
  });
  servers.push(server);
  return { server, metrics, lines };
}

describe('startOpsServer', () => {
  it('listens on loopback with the port it got', async () => {
    const { server } = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  it('GET /healthz answers 200 ok', async () => {
    const { server } = await start();
    const reply = await call(`${server.url}/healthz`);
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('ok\n');
    expect(reply.headers['content-type']).toMatch(/^text\/plain/);
  });

  it('GET /readyz flips between 200 and 503 with isReady()', async () => {
    let ready = false;
    const { server } = await start({ isReady: () => ready });
    expect((await call(`${server.url}/readyz`)).status).toBe(503);
    ready = true;
    const reply = await call(`${server.url}/readyz?verbose=1`);
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('ready\n');
    ready = false;
    expect((await call(`${server.url}/readyz`)).status).toBe(503);
  });

  it('GET /readyz is 503 when isReady throws', async () => {
    const { server, lines } = await start({
      isReady: () => {
        throw new Error('boom');
      },
    });
    expect((await call(`${server.url}/readyz`)).status).toBe(503);
    expect(lines.some((l) => l.msg === 'readiness check failed')).toBe(true);
  });

  it('GET /metrics serves the Prometheus text with its content type', async () => {
    const { server, metrics } = await start();
    metrics.recordConfigReload('ok');
    const reply = await call(`${server.url}/metrics`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe(metrics.contentType);
    expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(reply.body).toContain('ibw_config_reloads_total{outcome="ok"} 1');
    expect(reply.body).toContain('# TYPE ibw_api_requests_total counter');
  });

  it('GET /v1/batches returns the JSON array from listBatches (sync or async)', async () => {
    const batches = [
      { applyId: '9007199254740993', productKey: 'a1SimProduct1', name: null, status: 'CHECK', outcome: null, polls: 2 },
    ];
    const { server } = await start({ listBatches: async () => batches });
    const reply = await call(`${server.url}/v1/batches`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(reply.body)).toEqual(batches);

    const sync = await start({ listBatches: () => [] });
    expect(JSON.parse((await call(`${sync.server.url}/v1/batches/`)).body)).toEqual([]);
  });

  it('a failing listBatches gives 500 JSON without the message or stack, and the error is logged', async () => {
    const { server, lines } = await start({
      listBatches: () => {
        throw new Error('ledger exploded: AccessKeySecret=hunter2');
      },
    });
    const reply = await call(`${server.url}/v1/batches`);
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.body)).toEqual({ error: 'internal error' });
    expect(reply.body).not.toContain('hunter2');
    expect(reply.body).not.toContain('at ');
    expect(lines.some((l) => l.msg === 'listing batches failed' && l.level === 50)).toBe(true);

    const rejecting = await start({ listBatches: () => Promise.reject(new Error('async boom')) });
    expect((await call(`${rejecting.server.url}/v1/batches`)).status).toBe(500);
    // The server keeps serving after a failure.
    expect((await call(`${server.url}/healthz`)).status).toBe(200);
  });

  it('unknown paths get 404 JSON', async () => {
    const { server } = await start();
    const reply = await call(`${server.url}/nope`);
    expect(reply.status).toBe(404);
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(reply.body)).toEqual({ error: 'not found' });
    expect((await call(`${server.url}/`)).status).toBe(404);
  });

  it('methods other than GET/HEAD get 405 with Allow', async () => {
    const { server } = await start();
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const reply = await call(`${server.url}/healthz`, method);
      expect(reply.status).toBe(405);
      expect(reply.headers.allow).toBe('GET, HEAD');
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'method not allowed' });
    }
    const head = await call(`${server.url}/healthz`, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('close() closes idle keep-alive connections and returns promptly', async () => {
    const { server } = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await call(`${server.url}/healthz`, 'GET', agent)).status).toBe(200);
      const sockets = Object.values(agent.freeSockets).flat();
      expect(sockets).toHaveLength(1); // a keep-alive connection is open and idle
      const socketClosed = new Promise<void>((resolve) => sockets[0]!.once('close', () => resolve()));
      const t0 = performance.now();
      await server.close();
      await socketClosed;
      expect(performance.now() - t0).toBeLessThan(2000);
      await expect(call(`${server.url}/healthz`)).rejects.toThrow(/ECONNREFUSED/);
      await server.close(); // idempotent
    } finally {
      agent.destroy();
    }
  });

  it('close() does not wait for a request in flight (a stuck listBatches)', async () => {
    const { server } = await start({ listBatches: () => new Promise<unknown[]>(() => undefined) });
    const pending = call(`${server.url}/v1/batches`);
    // Let the request reach the handler before closing.
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await server.close();
    expect(performance.now() - t0).toBeLessThan(2000);
    await expect(pending).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('rejects when the port is taken', async () => {
    const { server } = await start();
    const { logger } = createCaptureLogger();
    await expect(
      startOpsServer({
        host: '127.0.0.1',
        port: server.port,
        metrics: createMetrics({ collectDefault: false }),
        isReady: () => true,
        listBatches: () => [],
        logger,
      }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('startOpsServer with http.auth', () => {
  const TOKEN = 'ops-token-3f9c1d0a7b2e4c6d';
  const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
  const batches = [{ applyId: '1295006', name: 'secret-project' }];

  it('requires the bearer token on /v1/batches: 401 with WWW-Authenticate without it or with a wrong one', async () => {
    const { server } = await start({ auth: { token: TOKEN, metrics: false }, listBatches: () => batches });
    const none = await call(`${server.url}/v1/batches`);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="iot-batch-watcher"');
    expect(JSON.parse(none.body)).toEqual({ error: 'unauthorized' });
    expect(none.body).not.toContain('1295006');

    const wrong = await call(`${server.url}/v1/batches`, 'GET', undefined, bearer(`${TOKEN}x`));
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="iot-batch-watcher", error="invalid_token"');
    for (const header of [TOKEN, `Basic ${TOKEN}`, `Bearer`, `Bearer ${TOKEN} extra`, `Bearer ${TOKEN.slice(0, -1)}`]) {
      expect((await call(`${server.url}/v1/batches`, 'GET', undefined, { authorization: header })).status, header).toBe(401);
    }
    expect((await call(`${server.url}/v1/batches`, 'HEAD')).status).toBe(401);
    expect((await call(`${server.url}/v1/batches`, 'POST')).status).toBe(401);

    const ok = await call(`${server.url}/v1/batches`, 'GET', undefined, bearer(TOKEN));
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual(batches);
    // The scheme is case-insensitive (RFC 7235).
    expect((await call(`${server.url}/v1/batches/`, 'GET', undefined, { authorization: `bearer ${TOKEN}` })).status).toBe(200);
  });

  it('answers 401 for any /v1/ path before 404, so unknown paths reveal nothing', async () => {
    const { server } = await start({ auth: { token: TOKEN, metrics: false } });
    expect((await call(`${server.url}/v1/nothing-here`)).status).toBe(401);
    expect((await call(`${server.url}/v1`)).status).toBe(401);
    expect((await call(`${server.url}/v1/nothing-here`, 'GET', undefined, bearer(TOKEN))).status).toBe(404);
    expect((await call(`${server.url}/elsewhere`)).status).toBe(404);
  });

  it('keeps /healthz and /readyz open, and /metrics open unless auth.metrics', async () => {
    const open = await start({ auth: { token: TOKEN, metrics: false } });
    expect((await call(`${open.server.url}/healthz`)).status).toBe(200);
    expect((await call(`${open.server.url}/readyz`)).status).toBe(200);
    expect((await call(`${open.server.url}/metrics`)).status).toBe(200);

    const closed = await start({ auth: { token: TOKEN, metrics: true } });
    expect((await call(`${closed.server.url}/healthz`)).status).toBe(200);
    expect((await call(`${closed.server.url}/readyz`)).status).toBe(200);
    const denied = await call(`${closed.server.url}/metrics`);
    expect(denied.status).toBe(401);
    expect(denied.body).not.toContain('ibw_');
    const scraped = await call(`${closed.server.url}/metrics`, 'GET', undefined, bearer(TOKEN));
    expect(scraped.status).toBe(200);
    expect(scraped.body).toContain('ibw_batches');
  });

  it('never logs the token, right or wrong', async () => {
    const { server, lines } = await start({
      auth: { token: TOKEN, metrics: true },
      listBatches: () => {
        throw new Error('boom');
      },
    });
    await call(`${server.url}/v1/batches`, 'GET', undefined, bearer('wrong-token-1234'));
    await call(`${server.url}/v1/batches`, 'GET', undefined, bearer(TOKEN)); // 500: logs the error
    await call(`${server.url}/metrics`, 'GET', undefined, bearer(TOKEN));
    expect(lines.some((l) => l.msg === 'listing batches failed')).toBe(true);
    const text = JSON.stringify(lines);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('wrong-token-1234');
  });

  it('warns at start when listening beyond loopback without a token, and only then', async () => {
    // NOTE: bound on every interface for a moment, with no request sent; closed at once by afterEach.
    const exposed = await start({ host: '0.0.0.0' });
    const warning = exposed.lines.find((l) => l.level === 40);
    expect(warning?.msg).toMatch(/beyond loopback without http\.auth/);
    expect(warning).toMatchObject({ host: '0.0.0.0', port: exposed.server.port });
    const guarded = await start({ host: '0.0.0.0', auth: { token: TOKEN, metrics: false } });
    expect(guarded.lines.filter((l) => l.level === 40)).toEqual([]);
    const local = await start({ host: '127.0.0.1' });
    expect(local.lines.filter((l) => l.level === 40)).toEqual([]);
  });
});

describe('resolveOpsAuth and the http.auth key', () => {
  it('reads the token from the variable or from <NAME>_FILE (trimmed), and is undefined without http.auth', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ibw-auth-'));
    try {
      const file = join(dir, 'token');
      await writeFile(file, 'from-a-file-9b1e\n', { mode: 0o600 });
      expect(resolveOpsAuth(undefined, { IBW_HTTP_TOKEN: 'x' })).toBeUndefined();
      expect(resolveOpsAuth({ tokenEnv: 'OPS_TOKEN', metrics: true }, { OPS_TOKEN: 'direct-7c2a' })).toEqual({ token: 'direct-7c2a', metrics: true });
      expect(resolveOpsAuth({ tokenEnv: 'OPS_TOKEN', metrics: false }, { OPS_TOKEN_FILE: file })).toEqual({ token: 'from-a-file-9b1e', metrics: false });
      expect(() => resolveOpsAuth({ tokenEnv: 'OPS_TOKEN', metrics: false }, { OPS_TOKEN: 'a', OPS_TOKEN_FILE: file })).toThrow(
        expect.objectContaining({ kind: 'config', code: 'SecretConflict' }),
      );
      expect(() => resolveOpsAuth({ tokenEnv: 'OPS_TOKEN', metrics: false }, { OPS_TOKEN_FILE: join(dir, 'missing') })).toThrow(
        expect.objectContaining({ kind: 'config', code: 'SecretFileUnreadable' }),
      );
      const missing = (() => {
        try {
          resolveOpsAuth({ tokenEnv: 'OPS_TOKEN', metrics: false }, { OPS_TOKEN: '  ' });
        } catch (err) {
          return err as { kind: string; code: string; message: string };
        }
        return null;
      })();
      expect(missing).toMatchObject({ kind: 'config', code: 'HttpTokenMissing' });
      expect(missing!.message).toContain('OPS_TOKEN_FILE');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('compiles http.auth with its defaults, leaves it out when not given, and refuses a bad variable name', () => {
    const base = { alibaba: { regionId: 'cn-shanghai' } };
    expect(compileConfigObject({ ...base, http: { auth: {} } }).http.auth).toEqual({ tokenEnv: 'IBW_HTTP_TOKEN', metrics: false });
    expect(compileConfigObject({ ...base, http: { auth: { tokenEnv: 'OPS_TOKEN', metrics: true } } }).http.auth).toEqual({ tokenEnv: 'OPS_TOKEN', metrics: true });
    expect(compileConfigObject(base).http.auth).toBeUndefined();
    // IBW_HTTP_LISTEN moves the server (the image listens on 0.0.0.0) and must keep its protection.
    const moved = applyEnvOverrides(compileConfigObject({ ...base, http: { auth: { metrics: true } } }), { IBW_HTTP_LISTEN: '0.0.0.0:9464' });
    expect(moved.http).toEqual({ listen: { host: '0.0.0.0', port: 9464 }, auth: { tokenEnv: 'IBW_HTTP_TOKEN', metrics: true } });
    let error: unknown;
    try {
      compileConfigObject({ ...base, http: { auth: { tokenEnv: 'not a name', metrics: 'yes' } } });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((i) => i.path).sort()).toEqual(['http.auth.metrics', 'http.auth.tokenEnv']);
  });
});

describe('the daemon with http.auth (CLI child on the simulator)', () => {
  it('serves /v1/batches only with the token from IBW_HTTP_TOKEN_FILE, keeps /healthz open, and exits 2 without a token', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ibw-auth-daemon-'));
    const sim = runCli(['simulator', '--port', '0']);
    try {
      const simUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(await sim.waitFor(/simulator listening on/))![0];
      const token = 'daemon-token-5e8f2a1c';
      await writeFile(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
      const configFile = join(dir, 'watcher.yaml');
      await writeFile(
        configFile,
        [
          `alibaba: { regionId: cn-shanghai, endpoint: "${simUrl}" }`,
          `state: { dir: ${join(dir, 'state')} }`,
          `output: { resultsDir: ${join(dir, 'results')} }`,
          'http: { listen: "127.0.0.1:0", auth: { metrics: true } }',
          'batches: []',
          '',
        ].join('\n'),
      );
      const refused = runCli(['run', '--config', configFile], SIM_ENV);
      expect((await refused.exited).code).toBe(2);
      expect(refused.stdout.join('\n') + refused.stderr.join('')).toContain('IBW_HTTP_TOKEN_FILE');

      const daemon = runCli(['run', '--config', configFile], { ...SIM_ENV, IBW_HTTP_TOKEN_FILE: join(dir, 'token') });
      try {
        const line = await daemon.waitFor(/ops endpoints listening/);
        const url = (JSON.parse(line) as { url: string }).url;
        await daemon.waitFor(/iot-batch-watcher running/);
        expect((await call(`${url}/healthz`)).status).toBe(200);
        expect((await call(`${url}/readyz`)).status).toBe(200);
        expect((await call(`${url}/v1/batches`)).status).toBe(401);
        expect((await call(`${url}/metrics`)).status).toBe(401);
        const listed = await call(`${url}/v1/batches`, 'GET', undefined, { authorization: `Bearer ${token}` });
        expect(listed.status).toBe(200);
        expect(JSON.parse(listed.body)).toEqual([]);
        expect((await call(`${url}/metrics`, 'GET', undefined, { authorization: `Bearer ${token}` })).status).toBe(200);
      } finally {
        daemon.proc.kill('SIGTERM');
        expect((await daemon.exited).code).toBe(0);
      }
      expect(daemon.stdout.join('\n') + daemon.stderr.join('')).not.toContain(token);
    } finally {
      sim.proc.kill('SIGTERM');
      await sim.exited;
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
