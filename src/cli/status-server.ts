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
 * connections is capped without locking anyone out: a connection over the
 * cap evicts the least recently active one (see {@link ConnectionCap}), so
 * `/livez` and `/readyz` answer whatever keep-alive hogs, idle or slow
 * clients do. Host headers other than an IP address, `localhost` or a
 * configured name are refused (DNS rebinding), except on `/livez` and
 * `/readyz`, which reveal one bit and must answer any prober.
 *
 * Beside the TCP listener, an optional Unix socket (`--admin-socket`, mode
 * 0600) serves the same paths; its file permissions are the credential, so
 * changes there need no bearer token (HAProxy's stats socket at `level
 * admin`).
 *
 * @module
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, isIP, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { AdminReply, AdminRequest } from './admin-api.js';
import type { HostPort } from './address.js';
import { metricsContentType } from './metrics.js';
import { statusPageCss, statusPageCsp, statusPageHtml, statusPageJs } from './status-page.js';

/** Largest request body the admin API reads, in bytes (16 KiB). */
export const MAX_BODY = 16 * 1024;

/**
 * Most connections the listener holds at once. One more evicts the least
 * recently active (see {@link ConnectionCap}) instead of being refused, so a
 * probe always gets in.
 */
export const MAX_CONNECTIONS = 64;

/** The listener's own options. */
export interface StatusServerOptions {
  /** Host names answered besides IP literals and `localhost` (lower case, no port). Default none. */
  readonly allowedHosts?: readonly string[] | undefined;
  /** A Unix socket path serving the same paths, mode 0600, where changes need no token. */
  readonly adminSocket?: string | undefined;
  /** Connections held at once per listener. @default MAX_CONNECTIONS */
  readonly maxConnections?: number | undefined;
}

/** What a connection was last seen doing, for eviction. */
interface Activity {
  /** When it connected, began its current request or finished its last answer (`performance.now()`). */
  since: number;
  /** A request is being answered. */
  busy: boolean;
}

const activityOf = new WeakMap<Socket, Activity>();

/**
 * Keeps at most `max` connections by evicting, when one more arrives, the
 * connection least recently active: idle keep-alive connections and clients
 * that have not finished sending a request first (a hog that sent its last
 * request 4 s ago, a slow sender stuck in its headers), then, only if every
 * connection is being answered, the one answered the longest (a slow body or
 * a reader that does not read). Node's own `maxConnections` would refuse the
 * newcomer instead, which is how 64 keep-alive hogs locked every probe out.
 */
class ConnectionCap {
  readonly #open = new Set<Socket>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** A connection was accepted. */
  readonly admit = (socket: Socket): void => {
    if (this.#open.size >= this.#max) this.#evict();
    this.#open.add(socket);
    activityOf.set(socket, { since: performance.now(), busy: false });
    socket.once('close', () => this.#open.delete(socket));
  };

  #evict(): void {
    let idle: Socket | undefined;
    let idleSince = Infinity;
    let busy: Socket | undefined;
    let busySince = Infinity;
    for (const socket of this.#open) {
      const a = activityOf.get(socket);
      if (a === undefined) continue;
      if (!a.busy && a.since < idleSince) [idle, idleSince] = [socket, a.since];
      if (a.busy && a.since < busySince) [busy, busySince] = [socket, a.since];
    }
    const victim = idle ?? busy;
    if (victim === undefined) return;
    this.#open.delete(victim);
    victim.destroy();
  }
}

/** Marks a connection busy while `res` is being answered. */
function trackRequest(req: IncomingMessage, res: ServerResponse): void {
  const a = activityOf.get(req.socket);
  if (a === undefined) return;
  a.busy = true;
  a.since = performance.now();
  res.once('close', () => {
    a.busy = false;
    a.since = performance.now();
  });
}

/** The host of a `Host` header, lower case, without port or trailing dot; `undefined` when malformed. */
function hostOf(header: string): string | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header);
  if (m === null) return undefined;
  return (m[1] ?? m[2]!).toLowerCase().replace(/\.$/, '');
}

/**
 * Whether a request's `Host` may reach the page and the API: an IP literal
 * (a DNS-rebinding page can only send its own name), `localhost`, or one of
 * `allowed`. A request without `Host` (HTTP/1.0) or with an empty one is not
 * a browser's.
 */
export function hostAllowed(header: string | undefined, allowed: readonly string[]): boolean {
  if (header === undefined || header === '') return true;
  const host = hostOf(header);
  if (host === undefined) return false;
  return isIP(host) !== 0 || host === 'localhost' || allowed.includes(host);
}

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
  /** The TCP listener's address; `undefined` when only the Unix socket listens. */
  readonly address: HostPort | undefined;
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

/** How one listener serves: which hosts it answers, whether it is the private Unix socket. */
interface Listener {
  readonly allowedHosts: readonly string[];
  /** The 0600 Unix socket: no Host check, changes without a token. */
  readonly local: boolean;
}

const hostRefused: AdminReply = {
  status: 421,
  body: { error: 'HOST_NOT_ALLOWED', message: 'this Host is not served here: use an IP address, localhost or a name given to --status-allowed-hosts' },
};

async function handle(sources: StatusSources, listener: Listener, req: IncomingMessage, res: ServerResponse): Promise<void> {
  trackRequest(req, res);
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  // Probes (a kubelet, keepalived) may send any Host; these answer one bit.
  if (!listener.local && path !== '/livez' && path !== '/readyz' && !hostAllowed(req.headers.host, listener.allowedHosts)) {
    req.resume();
    sendReply(req, res, hostRefused, { connection: 'close' });
    return;
  }
  if (sources.api !== undefined && path.startsWith('/api/')) {
    readBody(sources.api, listener, req, res, path, q === -1 ? '' : url.slice(q + 1));
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
function readBody(api: NonNullable<StatusSources['api']>, listener: Listener, req: IncomingMessage, res: ServerResponse, path: string, query: string): void {
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
        local: listener.local,
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

/** A hardened HTTP server for one listener. */
function statusHttpServer(sources: StatusSources, listener: Listener, maxConnections: number): Server {
  // connectionsCheckingInterval: how often the header and request deadlines
  // are enforced; Node's default (30 s) would let a slow client hold a
  // connection three times longer than the 10 s deadline.
  const server: Server = createServer({ maxHeaderSize: 8192, connectionsCheckingInterval: 1000 }, (req, res) => void handle(sources, listener, req, res));
  server.on('clientError', onClientError);
  // Small and slow-client-proof: a request (headers and body) gets 10 s, an
  // idle keep-alive connection 5 s, and at most maxConnections are open (the
  // least recently active evicted for a newcomer; no `server.maxConnections`,
  // which refuses the newcomer instead).
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.timeout = 30_000;
  server.maxHeadersCount = 50;
  server.on('connection', new ConnectionCap(maxConnections).admit);
  return server;
}

function listenOn(server: Server, target: { port: number; host: string } | string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (typeof target === 'string') server.listen(target, done);
    else server.listen(target.port, target.host, done);
  });
}

/** Whether something accepts connections on the Unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(new Error(`--admin-socket ${path}: cannot tell whether it is in use (${err.code ?? err.message})`));
    });
  });
}

/**
 * Listens on a Unix socket at `path`, mode 0600 from the start (umask around
 * the bind, then chmod). A socket file nobody answers on (left by a crash) is
 * replaced; a live one, or a file that is not a socket, is refused and left
 * alone. Returns the socket's inode, so close removes only its own file.
 */
async function listenUnix(server: Server, path: string): Promise<number> {
  let existing;
  try {
    existing = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`--admin-socket ${path}: cannot inspect it (${(err as NodeJS.ErrnoException).code})`, { cause: err });
  }
  if (existing !== undefined) {
    if (!existing.isSocket()) throw new Error(`--admin-socket ${path}: exists and is not a socket; not replacing it`);
    if (await socketAnswers(path)) throw new Error(`--admin-socket ${path}: another process is listening on it`);
    // Stale: left by a balancer that did not close.
    unlinkSync(path);
  }
  const umask = process.umask(0o177);
  let listening: Promise<void>;
  try {
    // The bind happens inside listen(), synchronously, under the umask.
    listening = listenOn(server, path);
  } finally {
    process.umask(umask);
  }
  await listening;
  chmodSync(path, 0o600);
  return lstatSync(path).ino;
}

/**
 * Listens on `address` (and on `options.adminSocket`) and serves `sources`.
 * Rejects when it cannot listen (the address is taken, not local, the socket
 * path is in use...), leaving nothing open.
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
export async function startStatusServer(address: HostPort | undefined, sources: StatusSources, options: StatusServerOptions = {}): Promise<StatusServer> {
  const max = options.maxConnections ?? MAX_CONNECTIONS;
  const allowedHosts = options.allowedHosts ?? [];
  const tcp = address === undefined ? undefined : statusHttpServer(sources, { allowedHosts, local: false }, max);
  const unix = options.adminSocket === undefined ? undefined : statusHttpServer(sources, { allowedHosts, local: true }, max);
  let socketIno: number | undefined;
  const closeAll = (): Promise<void> =>
    Promise.all(
      [tcp, unix].map(
        (server) =>
          new Promise<void>((resolve) => {
            if (server === undefined || !server.listening) return resolve();
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    ).then(() => {
      // libuv unlinks the path itself on close; this covers a file left otherwise, and never removes another's.
      if (options.adminSocket === undefined || socketIno === undefined) return;
      try {
        if (lstatSync(options.adminSocket).ino === socketIno) unlinkSync(options.adminSocket);
      } catch {
        /* already gone */
      }
    });
  try {
    if (tcp !== undefined && address !== undefined) await listenOn(tcp, address);
    if (unix !== undefined && options.adminSocket !== undefined) socketIno = await listenUnix(unix, options.adminSocket);
  } catch (err) {
    await closeAll();
    throw err;
  }
  tcp?.on('error', () => {});
  unix?.on('error', () => {});
  const bound = tcp?.address() as AddressInfo | undefined;
  let closing: Promise<void> | undefined;
  return {
    address: bound === undefined ? undefined : { host: bound.address, port: bound.port },
    close() {
      closing ??= closeAll();
      return closing;
    },
  };
}
