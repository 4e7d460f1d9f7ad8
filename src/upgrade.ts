/**
 * Upgrade pinning: an HTTP server's `'upgrade'` request (a WebSocket, any
 * `Connection: upgrade` stream) relayed to a backend from the pool and pinned
 * there as a {@link PinnedConnection}, so it is torn down with its backend.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import createDebug from 'debug';
import { BackendDownError, ClientClosedError, ConnectError, FailoverProxyError, type ErrorCode } from './errors.js';
import { resolvePinnedConnectionOptions, type PinnedConnectionOptions } from './options.js';
import { PinnedConnection } from './pinned-connection.js';
import type { PinOptions, UpstreamPool } from './upstream-pool.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:upgrade');

/** Options of {@link pinUpgrade} and {@link createUpgradeHandler}. */
export interface UpgradeOptions extends PinOptions {
  /**
   * Socket settings of the pinned connection (the pool's `connection`
   * option only applies to `pin()`).
   * @default pinnedConnectionDefaults
   */
  readonly connection?: PinnedConnectionOptions | undefined;
}

/** Options of {@link createUpgradeHandler}. */
export interface UpgradeHandlerOptions extends UpgradeOptions {
  /**
   * Told about every upgrade that could not be placed, after the client was
   * answered (`502`/`503`) or, when it had left, closed. Also logged with
   * `debug` (`failover-proxy:upgrade`).
   */
  readonly onError?: ((error: FailoverProxyError, req: IncomingMessage) => void) | undefined;
}

// A pending client finds the dial to cancel through this back-reference.
const kPending = Symbol('failover-proxy.upgrade');
type PendingSocket = Socket & { [kPending]?: AbortController };

/** How long a refused client may take to read the answer and hang up. */
const REFUSAL_GRACE_MS = 2000;

/**
 * Re-placing when the backend left service between the pick and the
 * registration is bounded, so a flapping pool cannot spin an upgrade forever.
 */
const MAX_REPLACEMENTS = 3;

/**
 * Relays an upgrade request to a backend chosen by the pool and pins the
 * pair. The upstream gets the request line and the headers exactly as the
 * client sent them (`req.rawHeaders`: order, case and duplicates kept),
 * then `head` (bytes the client sent after its headers), and from then on
 * the two sockets are piped: the backend's `101 Switching Protocols` (or its
 * refusal) goes back to the client as it is.
 *
 * The connection is registered with the pool, so `markDown` of its backend
 * tears it down at once. The pool's retries, queue, passive health and
 * PROXY protocol header (with the client's address) apply as for `pin()`.
 *
 * Never leaves the client hanging: when no upstream can be had the client
 * gets `503 Service Unavailable` (`NO_HEALTHY_BACKEND`, `MAX_CONNECTIONS`,
 * `POOL_CLOSED`, `BACKEND_DOWN`) or `502 Bad Gateway` (`CONNECT_FAILED`,
 * `CONNECT_TIMEOUT`) and is closed, and the promise rejects with that
 * error; a client that left first (`CLIENT_CLOSED`) is just closed.
 *
 * @example
 * ```ts
 * server.on('upgrade', (req, socket, head) => {
 *   pinUpgrade(pool, req, socket, head).catch((err: FailoverProxyError) => log(err.code));
 * });
 * ```
 */
export async function pinUpgrade(
  pool: UpstreamPool,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  options: UpgradeOptions = {},
): Promise<PinnedConnection> {
  const client = socket as PendingSocket;
  const { key, meta, connection } = options;
  const controller = new AbortController();
  client[kPending] = controller;
  // Until the pair is pinned, a client reset must not crash the process and a
  // client leaving must cancel the dial (as pin() does).
  client.on('error', onPendingError);
  client.on('close', onPendingClose);
  // Reading into the socket's buffer notices a reset even if nothing consumes
  // it yet; bytes read stay buffered for the upstream.
  if (!client.destroyed) client.read(0);
  try {
    const requestHead = serializeRequestHead(req);
    for (let attempt = 0; ; attempt++) {
      const { backend, socket: upstream } = await pool.connect({ key, meta, client, signal: controller.signal });
      if (client.destroyed) {
        upstream.destroy();
        throw new ClientClosedError();
      }
      // Checked and registered in one synchronous step: no markDown can slip
      // in between, so the pair is never pinned to a backend out of service.
      if (pool.status(backend.id)?.state !== 'up') {
        upstream.destroy();
        if (attempt < MAX_REPLACEMENTS) continue;
        throw new BackendDownError(backend.id, pool.status(backend.id)?.reason ?? 'backend-removed');
      }
      upstream.write(requestHead);
      if (head.length > 0) upstream.write(head);
      const conn = new PinnedConnection(client, upstream, { ...connection, backend });
      pool.register(conn);
      if (log.enabled) log('%s %s upgraded to %s', conn.id, req.url, backend.id);
      return conn;
    }
  } catch (err) {
    const error = err instanceof FailoverProxyError ? err : new ConnectError('?', { cause: err });
    refuse(client, error);
    if (log.enabled) log('upgrade of %s failed: %s', req.url, error.message);
    throw error;
  } finally {
    client.off('error', onPendingError);
    client.off('close', onPendingClose);
    delete client[kPending];
  }
}

/**
 * A ready-made `'upgrade'` listener: {@link pinUpgrade} for every request,
 * failures reported to `onError` (and `debug`), never thrown.
 *
 * @example
 * ```ts
 * const server = http.createServer(handler);
 * server.on('upgrade', createUpgradeHandler(pool, { onError: (err) => metrics.upgradeFailures.inc({ code: err.code }) }));
 * ```
 */
export function createUpgradeHandler(
  pool: UpstreamPool,
  options: UpgradeHandlerOptions = {},
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  v.knownKeys('options', v.object('options', options), ['key', 'meta', 'connection', 'onError']);
  const { onError, ...upgradeOptions } = options;
  if (onError !== undefined) v.func('onError', onError);
  // A bad setting must fail here, once, not turn every upgrade into a 503.
  resolvePinnedConnectionOptions(upgradeOptions.connection, 'connection');
  return (req, socket, head) => {
    pinUpgrade(pool, req, socket, head, upgradeOptions).catch((err: FailoverProxyError) => onError?.(err, req));
  };
}

/** `METHOD target HTTP/x.y`, then every header as received, then the blank line. */
function serializeRequestHead(req: IncomingMessage): Buffer {
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  text += '\r\n';
  // Node decodes header bytes as latin1; encoding back that way is lossless.
  return Buffer.from(text, 'latin1');
}

const statusByCode: Partial<Record<ErrorCode, string>> = {
  CONNECT_FAILED: '502 Bad Gateway',
  CONNECT_TIMEOUT: '502 Bad Gateway',
};

function refuse(client: Socket, error: FailoverProxyError): void {
  if (client.destroyed || error.code === 'CLIENT_CLOSED' || !client.writable) {
    client.destroy();
    return;
  }
  const status = statusByCode[error.code] ?? '503 Service Unavailable';
  const body = `${error.code}\n`;
  // Whatever the client still sends is discarded, so unread bytes cannot turn
  // our close into a reset that would swallow the answer.
  client.on('error', noop);
  client.resume();
  client.end(
    `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  // A client that never hangs up is closed after a grace period.
  client.setTimeout(REFUSAL_GRACE_MS, onRefusalTimeout);
}

function noop(): void {}

function onRefusalTimeout(this: Socket): void {
  this.destroy();
}

function onPendingError(this: PendingSocket, err: Error): void {
  this[kPending]?.abort(new ClientClosedError({ cause: err }));
}

function onPendingClose(this: PendingSocket): void {
  this[kPending]?.abort(new ClientClosedError());
}
