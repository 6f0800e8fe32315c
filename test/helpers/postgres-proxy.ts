/**
 * A TCP proxy on 127.0.0.1 in front of a test PostgreSQL, that a test can cut: every open connection is
 * destroyed and new ones are refused until {@link PostgresProxy.restore}. One replica connects through it, the
 * others directly, so "the database went away" for that replica alone (a network partition), while the others
 * keep working and may take its accounts over.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A running proxy. */
export interface PostgresProxy {
  port: number;
  /** `url` with its port replaced by the proxy's. */
  url: string;
  /** Drops every connection and refuses new ones (each is destroyed as soon as it is accepted). */
  cut(): void;
  /** Lets connections through again. */
  restore(): void;
  close(): Promise<void>;
}

/** Starts a proxy to the server of `url` (a `postgres://` URL on 127.0.0.1). */
export async function startPostgresProxy(url: string): Promise<PostgresProxy> {
  const target = new URL(url);
  const targetPort = Number(target.port);
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const proxied = new URL(url);
  proxied.port = String(port);
  return {
    port,
    url: proxied.toString(),
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    async close() {
      open = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
