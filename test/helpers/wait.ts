/** Waiting helpers shared by the suites that drive real processes (e2e, chaos, bench). */
import { once } from 'node:events';
import { createServer } from 'node:net';

/** Polls `check` until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitUntil<T>(check: () => Promise<T> | T, timeoutMs: number, what: string, intervalMs = 200): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `; last error: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A free TCP port on 127.0.0.1 (bound and released; another process could take it in between). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  server.close();
  await once(server, 'close');
  return address.port;
}
