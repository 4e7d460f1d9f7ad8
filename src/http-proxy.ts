/**
 * A ready-made `node:http` request handler for a gateway in front of an
 * {@link UpstreamPool}: requests go out through a {@link PoolAgent}, so they
 * are placed on healthy backends and torn down with theirs; upgrades are
 * pinned with {@link createUpgradeHandler}.
 *
 * @module
 */
import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import createDebug from 'debug';
import { FailoverProxyError, UpstreamError } from './errors.js';
import { gatewayStatus } from './gateway-status.js';
import { PoolAgent } from './pool-agent.js';
import { createUpgradeHandler, type UpgradeHandlerOptions } from './upgrade.js';
import type { UpstreamPool } from './upstream-pool.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:http');

// ------------------------------------------------------------------- options

/** Options of {@link createHttpProxy}. */
export interface HttpProxyOptions {
  /**
   * The agent upstream requests go through: one from `pool.createAgent()`
   * (of this pool), for settings such as `maxSockets`, `maxFreeSockets`, or
   * `secure: true` to speak HTTPS to backends the pool dials over TLS.
   * @default pool.createAgent() — made for this proxy, destroyed by `proxy.destroy()`
   */
  readonly agent?: PoolAgent | undefined;
  /**
   * Add `X-Forwarded-For` (the client's address, appended to the list the
   * request carried), `X-Forwarded-Proto` (`http` or `https`, as the client
   * connected to this server) and `X-Forwarded-Host` (the request's `Host`).
   * The last two replace whatever the client sent, which it could forge.
   * `false` adds nothing and forwards the request's own `X-Forwarded-*` as
   * they are: for a gateway behind a proxy that sets them.
   * @default true
   */
  readonly xForwarded?: boolean | undefined;
  /**
   * Body of the answer when no upstream response can be had:
   * `'text'` is the error code and a newline (`NO_HEALTHY_BACKEND\n`),
   * `'json'` is `{"status":503,"code":"NO_HEALTHY_BACKEND"}`.
   * @default 'text'
   */
  readonly errorFormat?: 'text' | 'json' | undefined;
  /**
   * Options of the `'upgrade'` listener, `proxy.upgrade`
   * ({@link createUpgradeHandler}). Its `onError` defaults to this proxy's.
   */
  readonly upgrade?: UpgradeHandlerOptions | undefined;
  /**
   * Told about every request that failed upstream — answered with an error
   * status, or cut short after its response started — and every refused
   * upgrade. `error` always carries a stable `code`: the pool's
   * ({@link FailoverProxyError}: `NO_HEALTHY_BACKEND`, `CONNECT_FAILED`...)
   * or, for an upstream socket that failed, an {@link UpstreamError}
   * (`UPSTREAM_ERROR`, the socket's error as `cause`). A client that leaves
   * is not an error. Also logged with `debug` (`failover-proxy:http`).
   */
  readonly onError?: ((error: FailoverProxyError, req: IncomingMessage) => void) | undefined;
}

/** Defaults of {@link HttpProxyOptions}. */
export const httpProxyDefaults = Object.freeze({
  xForwarded: true,
  errorFormat: 'text',
} as const);

/** @internal */
export interface ResolvedHttpProxyOptions {
  /** `undefined`: the proxy makes its own. */
  readonly agent: PoolAgent | undefined;
  readonly xForwarded: boolean;
  readonly errorFormat: 'text' | 'json';
  readonly upgrade: UpgradeHandlerOptions;
  readonly onError: ((error: FailoverProxyError, req: IncomingMessage) => void) | undefined;
}

const proxyKeys = ['agent', 'xForwarded', 'errorFormat', 'upgrade', 'onError'] as const;

/** Validates proxy options and fills in defaults. Throws `INVALID_ARGUMENT`. */
export function resolveHttpProxyOptions(pool: UpstreamPool, options: HttpProxyOptions = {}): ResolvedHttpProxyOptions {
  const raw = v.object('options', options);
  v.knownKeys('', raw, proxyKeys);
  const d = httpProxyDefaults;
  const { agent, upgrade } = options;
  if (agent !== undefined && !(agent instanceof PoolAgent && agent.pool === pool)) {
    throw v.invalid('agent', 'a PoolAgent of this pool (pool.createAgent())', agent);
  }
  return Object.freeze({
    agent,
    xForwarded: v.boolean('xForwarded', options.xForwarded ?? d.xForwarded),
    errorFormat: v.oneOf('errorFormat', options.errorFormat ?? d.errorFormat, ['text', 'json']),
    upgrade: upgrade === undefined ? {} : (v.object('upgrade', upgrade) as UpgradeHandlerOptions),
    onError: options.onError === undefined ? undefined : v.func<(error: FailoverProxyError, req: IncomingMessage) => void>('onError', options.onError),
  });
}

// ------------------------------------------------------------------- handler

/**
 * A `node:http` `'request'` listener that proxies to a pool, with the
 * matching `'upgrade'` listener as its `upgrade` property.
 */
export interface HttpProxy {
  (req: IncomingMessage, res: ServerResponse): void;
  /** The `'upgrade'` listener: `server.on('upgrade', proxy.upgrade)`. */
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** The agent upstream requests go through. */
  readonly agent: PoolAgent;
  /**
   * Destroys the agent if the proxy made it (its keep-alive sockets close
   * and it stops listening to the pool); an agent passed in `options` is
   * left to its owner. Requests still in flight fail.
   */
  destroy(): void;
}

/** What the proxy shares between its requests. */
interface ProxyState {
  readonly agent: PoolAgent;
  readonly request: typeof http.request;
  readonly options: ResolvedHttpProxyOptions;
}

/** One request on its way through: found by its streams' listeners through `kExchange`. */
interface Exchange {
  readonly state: ProxyState;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  upstream: ClientRequest | undefined;
  /** The failure was answered (or the response cut) and reported: later errors of the same request are echoes. */
  failed: boolean;
}

const kExchange = Symbol('failover-proxy.http-exchange');
type Carrier = { [kExchange]?: Exchange };

/**
 * Creates a gateway handler over `pool`:
 *
 * - **Upstream requests** go through a {@link PoolAgent} (`pool.createAgent()`):
 *   a health-aware pick, retries and the queue on connect, keep-alive reuse,
 *   and a request or streaming response on a backend that leaves service
 *   fails at once.
 * - **Hop-by-hop headers** are this hop's business and are not forwarded, in
 *   either direction: `Connection`, `Keep-Alive`, `Proxy-*`, `TE`,
 *   `Trailer`, `Transfer-Encoding`, `Upgrade`, and every header `Connection`
 *   names (but `Content-Length` and `Host`). So a client's `Connection: close` closes its own connection, not
 *   the keep-alive connection to the backend. Every other header goes
 *   through as received: order, case and duplicates kept.
 * - **`X-Forwarded-For`/`-Proto`/`-Host`** are added (see `xForwarded`).
 * - **Bodies stream both ways** with backpressure: a slow reader slows the
 *   writer at the other end, nothing is buffered beyond the streams' marks.
 * - **Errors** get a status and a short fixed body (the error code; never
 *   anything from the request): `NO_HEALTHY_BACKEND`, `MAX_CONNECTIONS` and
 *   `POOL_CLOSED` 503; `CONNECT_TIMEOUT` 504; `CONNECT_FAILED`, `BACKEND_DOWN`
 *   and any other upstream failure 502. A failure after the response started
 *   (the backend marked down mid-stream) destroys the client's response, so
 *   the client sees it cut short rather than complete.
 * - **A client that leaves** (closes before its response is complete) takes
 *   its upstream request with it, so a watch does not stream on to nobody.
 *
 * Trailers and `1xx` interim responses are not forwarded.
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { createHttpProxy, HealthProbe, UpstreamPool } from 'failover-proxy';
 *
 * const pool = new UpstreamPool({ backends: [{ host: '10.0.0.1', port: 8080 }, { host: '10.0.0.2', port: 8080 }] });
 * new HealthProbe({ check: { type: 'http', path: '/readyz' } }).attach(pool);
 * const proxy = createHttpProxy(pool, { onError: (err) => console.log(err.code) });
 * const server = http.createServer(proxy);
 * server.on('upgrade', proxy.upgrade);
 * server.listen(8080);
 * ```
 */
export function createHttpProxy(pool: UpstreamPool, options: HttpProxyOptions = {}): HttpProxy {
  if (typeof (pool as Partial<UpstreamPool> | null)?.createAgent !== 'function') throw v.invalid('pool', 'an UpstreamPool', pool);
  const resolved = resolveHttpProxyOptions(pool, options);
  const { onError } = resolved;
  // Built (and validated) before the agent, so a bad upgrade option leaves nothing behind.
  const upgrade = createUpgradeHandler(pool, { ...resolved.upgrade, onError: resolved.upgrade.onError ?? onError });
  const owned = resolved.agent === undefined;
  const agent = resolved.agent ?? pool.createAgent();
  const state: ProxyState = {
    agent,
    // A `secure` agent serves https.request only (Node checks the protocol).
    request: agent.protocol === 'https:' ? https.request : http.request,
    options: resolved,
  };
  const handler = (req: IncomingMessage, res: ServerResponse): void => forward(state, req, res);
  return Object.freeze(
    Object.assign(handler, {
      upgrade,
      agent,
      destroy(): void {
        if (owned) agent.destroy();
      },
    }),
  );
}

function forward(state: ProxyState, req: IncomingMessage, res: ServerResponse): void {
  const exchange: Exchange = { state, req, res, upstream: undefined, failed: false };
  (res as ServerResponse & Carrier)[kExchange] = exchange;
  res.on('close', onClientClose);
  let upstream: ClientRequest;
  try {
    upstream = state.request({
      method: req.method,
      path: req.url,
      // Ignored by the agent (the pool picks the backend); named for error messages.
      host: 'upstream',
      // An array goes out exactly as given: Node adds only its own framing
      // and `Connection: keep-alive`.
      headers: requestHeaders(req, state.options.xForwarded),
      agent: state.agent,
    });
  } catch (err) {
    // A method or path Node's client will not send.
    fail(exchange, err as Error);
    return;
  }
  exchange.upstream = upstream;
  (upstream as ClientRequest & Carrier)[kExchange] = exchange;
  upstream.on('response', onUpstreamResponse);
  upstream.on('error', onUpstreamError);
  req.pipe(upstream);
}

function onUpstreamResponse(this: ClientRequest & Carrier, up: IncomingMessage): void {
  const exchange = this[kExchange]!;
  const { res } = exchange;
  (up as IncomingMessage & Carrier)[kExchange] = exchange;
  up.on('error', onUpstreamError);
  if (res.destroyed) {
    this.destroy();
    return;
  }
  try {
    res.writeHead(up.statusCode ?? 502, responseHeaders(up));
  } catch (err) {
    // A header Node's server will not send: answer 502 rather than half of it.
    this.destroy();
    fail(exchange, err as Error);
    return;
  }
  up.pipe(res);
}

/** The upstream request or its response failed (the pool's code, or a socket error). */
function onUpstreamError(this: Carrier, err: Error): void {
  fail(this[kExchange]!, err);
}

/** Answers with an error status, or cuts a response already under way. Once per request. */
function fail(exchange: Exchange, err: Error): void {
  if (exchange.failed) return;
  exchange.failed = true;
  const { req, res, state } = exchange;
  const error = err instanceof FailoverProxyError ? err : new UpstreamError({ cause: err });
  // The client left first, or its response is complete: nothing to answer or cut.
  if (res.destroyed || res.writableEnded) return;
  if (log.enabled) log('%s %s failed: %s', req.method, req.url, err.message);
  if (res.headersSent) {
    res.destroy();
  } else {
    const code = error.code;
    const status = gatewayStatus(code);
    const body =
      state.options.errorFormat === 'json' ? `${JSON.stringify({ status, code })}\n` : `${code}\n`;
    res.writeHead(status, {
      'content-type': state.options.errorFormat === 'json' ? 'application/json' : 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Part of the request body may still be on its way: do not read it as the next request.
      ...(req.complete ? {} : { connection: 'close' }),
    });
    res.end(body);
  }
  state.options.onError?.(error, req);
}

/** The client's response closed: finished, or the client left — then the upstream request goes too. */
function onClientClose(this: ServerResponse & Carrier): void {
  const exchange = this[kExchange];
  if (exchange === undefined) return;
  delete this[kExchange];
  if (!this.writableFinished) exchange.upstream?.destroy();
}

// ------------------------------------------------------------------- headers

/** Whether `name` (lower case) is hop-by-hop whatever `Connection` says. */
function isHopByHop(name: string): boolean {
  switch (name) {
    case 'connection':
    case 'keep-alive':
    case 'te':
    case 'trailer':
    case 'transfer-encoding':
    case 'upgrade':
      return true;
    default:
      return name.startsWith('proxy-');
  }
}

/**
 * The header names `Connection` lists (lower case), or `undefined` when it
 * lists none beyond the usual. `Content-Length` and `Host` stay whatever it
 * says: a sender that could strip the length of a body it sends would have
 * the body forwarded unframed, for the backend to read as a request of its own.
 */
function connectionNamed(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  let named: Set<string> | undefined;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '' || isHopByHop(name) || name === 'close' || name === 'content-length' || name === 'host') continue;
    (named ??= new Set()).add(name);
  }
  return named;
}

/** `rawHeaders` without hop-by-hop headers, as a flat `[name, value, …]` list. */
function endToEnd(raw: readonly string[], named: Set<string> | undefined, skip: (lower: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (isHopByHop(lower) || named?.has(lower) === true || skip(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function isForwarded(lower: string): boolean {
  return lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host';
}

function keepAll(): boolean {
  return false;
}

function requestHeaders(req: IncomingMessage, xForwarded: boolean): string[] {
  const out = endToEnd(req.rawHeaders, connectionNamed(req.headers.connection), xForwarded ? isForwarded : keepAll);
  // The body was chunked on the way in: say so on the way out whatever the
  // method, or Node would send a GET or DELETE body unframed.
  if (req.headers['transfer-encoding'] !== undefined) out.push('Transfer-Encoding', 'chunked');
  if (xForwarded) {
    const client = req.socket.remoteAddress;
    // Node joins repeated X-Forwarded-For lines with ', ' (typed as maybe a list all the same).
    const given = req.headers['x-forwarded-for'];
    const prior = Array.isArray(given) ? given.join(', ') : given;
    if (client !== undefined) out.push('X-Forwarded-For', prior === undefined || prior === '' ? client : `${prior}, ${client}`);
    else if (prior !== undefined) out.push('X-Forwarded-For', prior);
    out.push('X-Forwarded-Proto', (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http');
    const host = req.headers.host;
    if (host !== undefined) out.push('X-Forwarded-Host', host);
  }
  return out;
}

function responseHeaders(up: IncomingMessage): string[] {
  return endToEnd(up.rawHeaders, connectionNamed(up.headers.connection), keepAll);
}
