/**
 * The balancer's status listener: `/stats` (JSON), `/metrics` (Prometheus
 * text), `/livez` and `/readyz` for supervisors (a kubelet's probes,
 * keepalived's check script), the status page (`/`, `/status.js`,
 * `/status.css`) and, when given one, the admin API under `/api/`. Nothing
 * from the request is ever written back (no echoed path, header or body), so
 * it cannot be used to reflect content.
 *
 * Built for a hostile loopback neighbour as much as for a scraper: bodies are
 * read only under `/api/` and only up to {@link MAX_BODY} bytes (413 beyond),
 * headers and the whole request have deadlines, and the number of
 * connections is capped.
 *
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AdminReply, AdminRequest } from './admin-api.js';
import type { HostPort } from './config.js';
import { metricsContentType } from './metrics.js';
import { statusPageCss, statusPageCsp, statusPageHtml, statusPageJs } from './status-page.js';

/** Largest request body the admin API reads, in bytes (16 KiB). */
export const MAX_BODY = 16 * 1024;

/** Most connections the listener holds at once; more are refused by the kernel's accept then closed. */
export const MAX_CONNECTIONS = 64;

/** What the endpoint serves, computed per request. */
export interface StatusSources {
  /** The `/stats` document (a promise when it is gathered from workers). */
  readonly stats: () => unknown;
  /** The `/metrics` text. */
  readonly metrics: () => string | Promise<string>;
  /**
   * Whether the balancer can serve clients now (`/readyz`: 200, else 503).
   * Not given: `/readyz` is not served.
   */
  readonly ready?: (() => boolean) | undefined;
  /** Answers `/api/…` (a promise when workers are asked first); without it those paths are 404. */
  readonly api?: ((req: AdminRequest) => AdminReply | Promise<AdminReply>) | undefined;
}

/** A listening status endpoint. */
export interface StatusServer {
  readonly address: HostPort;
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>;
}

const json = 'application/json; charset=utf-8';
/** For everything but the page: nothing may load, nothing may frame it. */
const strictCsp = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

function send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string, extra: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy': strictCsp,
    ...extra,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** JSON with `<`, `>`, `&` and the JS line separators escaped, so no reader can take it for markup. */
export function safeJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function sendReply(req: IncomingMessage, res: ServerResponse, reply: AdminReply, extra: Readonly<Record<string, string>> = {}): void {
  send(req, res, reply.status, json, safeJson(reply.body), { ...reply.headers, ...extra });
}

const staticFiles: Readonly<Record<string, readonly [type: string, body: string, csp: string]>> = {
  '/': ['text/html; charset=utf-8', statusPageHtml, statusPageCsp],
  '/status.js': ['text/javascript; charset=utf-8', statusPageJs, strictCsp],
  '/status.css': ['text/css; charset=utf-8', statusPageCss, strictCsp],
};

async function handle(sources: StatusSources, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (sources.api !== undefined && path.startsWith('/api/')) {
    readBody(sources.api, req, res, path, q === -1 ? '' : url.slice(q + 1));
    return;
  }
  // Bodies are never read here; discard whatever a client sends.
  req.resume();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(req, res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    return;
  }
  try {
    const file = staticFiles[path];
    if (file !== undefined) {
      send(req, res, 200, file[0], file[1], { 'content-security-policy': file[2] });
      return;
    }
    switch (path) {
      case '/favicon.ico':
        // Browsers ask for it on their own; a 404 would be an error in the page's console.
        send(req, res, 204, 'image/x-icon', '');
        return;
      case '/stats':
        send(req, res, 200, json, `${JSON.stringify(await sources.stats(), null, 2)}\n`);
        return;
      case '/metrics':
        send(req, res, 200, metricsContentType, await sources.metrics());
        return;
      case '/livez':
        send(req, res, 200, 'text/plain; charset=utf-8', 'ok\n');
        return;
      case '/readyz':
        if (sources.ready === undefined) break;
        if (sources.ready()) send(req, res, 200, 'text/plain; charset=utf-8', 'ready\n');
        else send(req, res, 503, 'text/plain; charset=utf-8', 'not ready\n');
        return;
    }
    send(req, res, 404, 'text/plain; charset=utf-8', 'not found\n');
  } catch {
    // A bug in a snapshot must not take the balancer down, nor leak a stack.
    if (res.headersSent || res.destroyed) return;
    send(req, res, 500, 'text/plain; charset=utf-8', 'internal error\n');
  }
}

const internalError: AdminReply = { status: 500, body: { error: 'INTERNAL', message: 'internal error' } };
const parserRefusals: Readonly<Record<string, readonly [status: string, error: string, message: string]>> = {
  ERR_HTTP_REQUEST_TIMEOUT: ['408 Request Timeout', 'REQUEST_TIMEOUT', 'the request was not complete within its deadline'],
  HPE_HEADER_OVERFLOW: ['431 Request Header Fields Too Large', 'HEADERS_TOO_LARGE', 'the request headers are limited to 8192 bytes'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: ['413 Payload Too Large', 'PAYLOAD_TOO_LARGE', 'chunk extensions are too large'],
};
const badRequest = ['400 Bad Request', 'BAD_REQUEST', 'the request is not valid HTTP/1.1'] as const;

/**
 * A request the HTTP parser refused (malformed, headers over the limit, a
 * deadline missed): answered in the API's shape, `{error, message}`, with the
 * same headers as every answer, instead of Node's bare status line; never a
 * byte of the request. The socket is destroyed once the answer is written.
 */
function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  // Node's own rule: answer only if nothing was written on this connection yet.
  if (!socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten !== 0) {
    socket.destroy();
    return;
  }
  const [status, error, message] = parserRefusals[err.code ?? ''] ?? badRequest;
  const body = safeJson({ error, message });
  socket.write(
    `HTTP/1.1 ${status}\r\ncontent-type: ${json}\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n` +
      `x-content-type-options: nosniff\r\nx-frame-options: DENY\r\nreferrer-policy: no-referrer\r\ncontent-security-policy: ${strictCsp}\r\n` +
      `connection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

const tooLarge: AdminReply = { status: 413, body: { error: 'PAYLOAD_TOO_LARGE', message: `the body is limited to ${MAX_BODY} bytes` } };

/** Reads an `/api/` request's body (at most {@link MAX_BODY} bytes), then answers it. */
function readBody(api: NonNullable<StatusSources['api']>, req: IncomingMessage, res: ServerResponse, path: string, query: string): void {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > MAX_BODY) {
    // Not read: the connection cannot be reused.
    sendReply(req, res, tooLarge, { connection: 'close' });
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  req.on('data', (chunk: Buffer) => {
    if (done) return;
    size += chunk.length;
    if (size > MAX_BODY) {
      done = true;
      sendReply(req, res, tooLarge, { connection: 'close' });
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (done) return;
    done = true;
    let reply: AdminReply | Promise<AdminReply>;
    try {
      reply = api({
        method: req.method ?? 'GET',
        path,
        query: new URLSearchParams(query),
        authorization: req.headers.authorization,
        body: Buffer.concat(chunks, size),
      });
    } catch {
      reply = internalError;
    }
    if (!(reply instanceof Promise)) {
      sendReply(req, res, reply);
      return;
    }
    reply.then(
      (r) => sendReply(req, res, r),
      () => sendReply(req, res, internalError),
    );
  });
  req.on('error', () => {
    done = true;
  });
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
  // connectionsCheckingInterval: how often the header and request deadlines
  // are enforced; Node's default (30 s) would let a slow client hold a
  // connection three times longer than the 10 s deadline.
  const server: Server = createServer({ maxHeaderSize: 8192, connectionsCheckingInterval: 1000 }, (req, res) => void handle(sources, req, res));
  server.on('clientError', onClientError);
  // Small and slow-client-proof: a request (headers and body) gets 10 s, an
  // idle keep-alive connection 5 s, and at most MAX_CONNECTIONS are open.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.timeout = 30_000;
  server.maxHeadersCount = 50;
  server.maxConnections = MAX_CONNECTIONS;
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
