/**
 * The balancer's read-only status endpoint: `/stats` (JSON) and `/metrics`
 * (Prometheus text). GET and HEAD only; nothing from the request is ever
 * written back (no echoed path, header or body), so it cannot be used to
 * reflect content.
 *
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from './config.js';
import { metricsContentType } from './metrics.js';

/** What the endpoint serves, computed per request. */
export interface StatusSources {
  /** The `/stats` document (a promise when it is gathered from workers). */
  readonly stats: () => unknown;
  /** The `/metrics` text. */
  readonly metrics: () => string | Promise<string>;
}

/** A listening status endpoint. */
export interface StatusServer {
  readonly address: HostPort;
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>;
}

const index = 'failover-proxy apiserver-balancer\n/stats    JSON snapshot of backends, connections and checks\n/metrics  Prometheus text exposition\n';

function send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

async function handle(sources: StatusSources, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Bodies are never read; discard whatever a client sends.
  req.resume();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(req, res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    return;
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  try {
    switch (path) {
      case '/stats':
        send(req, res, 200, 'application/json; charset=utf-8', `${JSON.stringify(await sources.stats(), null, 2)}\n`);
        return;
      case '/metrics':
        send(req, res, 200, metricsContentType, await sources.metrics());
        return;
      case '/':
        send(req, res, 200, 'text/plain; charset=utf-8', index);
        return;
      default:
        send(req, res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  } catch {
    // A bug in a snapshot must not take the balancer down, nor leak a stack.
    if (res.headersSent || res.destroyed) return;
    send(req, res, 500, 'text/plain; charset=utf-8', 'internal error\n');
  }
}

/**
 * Listens on `address` and serves `sources`. Rejects when it cannot listen
 * (the address is taken, not local...).
 *
 * @example
 * ```ts
 * const status = await startStatusServer({ host: '127.0.0.1', port: 9090 }, {
 *   stats: () => pool.stats(),
 *   metrics: () => renderMetrics(pool.stats(), {}),
 * });
 * await status.close();
 * ```
 */
export async function startStatusServer(address: HostPort, sources: StatusSources): Promise<StatusServer> {
  const server: Server = createServer((req, res) => void handle(sources, req, res));
  // Small and slow-client-proof: this endpoint is scraped, not browsed.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => {});
  const bound = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    address: { host: bound.address, port: bound.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
