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
import { ConnectError, FailoverProxyError } from './errors.js';
import { gatewayStatusLine } from './gateway-status.js';
import { resolvePinnedConnectionOptions, type PinnedConnectionOptions } from './options.js';
import { PinnedConnection } from './pinned-connection.js';
import type { MemberFactory, PinOptions, PlaceOptions } from './placement.js';
import type { PoolMember } from './pool-member.js';
import * as v from './validate.js';
import { noop } from './noop.js';

const log = createDebug('failover-proxy:upgrade');

/** Options of {@link pinUpgrade} and {@link createUpgradeHandler}. */
export interface UpgradeOptions extends PinOptions {
  /**
   * Socket settings of the pinned connection (the pool's `connection`
   * option only applies to `pin()`).
   * @default the defaults of {@link PinnedConnectionOptions}
   */
  readonly connection?: PinnedConnectionOptions | undefined;
}

/** Options of {@link createUpgradeHandler}. */
export interface UpgradeHandlerOptions extends UpgradeOptions {
  /**
   * Told about every upgrade that could not be placed, after the client was
   * answered (`502`/`503`/`504`) or, when it had left, closed. Also logged with
   * `debug` (`failover-proxy:upgrade`).
   */
  readonly onError?: ((error: FailoverProxyError, req: IncomingMessage) => void) | undefined;
}

/** What an upgrade needs of a pool ({@link UpstreamPool} has it): the placement path. */
export interface UpgradePool {
  place<M extends PoolMember>(options: PlaceOptions, build: MemberFactory<M>): Promise<M>;
}

/** How long a refused client may take to read the answer and hang up. */
const REFUSAL_GRACE_MS = 2000;

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
 * gets the status `createHttpProxy` answers for the same failure (`503`
 * for `NO_HEALTHY_BACKEND`, `MAX_CONNECTIONS`, `POOL_CLOSED`; `504` for
 * `CONNECT_TIMEOUT`; `502` for `CONNECT_FAILED`, `BACKEND_DOWN`) and is closed, and the promise rejects with that
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
  pool: UpgradePool,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  options: UpgradeOptions = {},
): Promise<PinnedConnection> {
  const client = socket as Socket;
  const { key, meta, connection } = options;
  try {
    const requestHead = serializeRequestHead(req);
    // The pool watches the client while it is placed (a reset or close
    // cancels the dial) and checks the backend in the same step as this
    // callback, so the pair is never pinned to a backend out of service.
    const conn = await pool.place({ key, meta, client }, (backend, upstream, id) => {
      upstream.write(requestHead);
      if (head.length > 0) upstream.write(head);
      return new PinnedConnection(client, upstream, { ...connection, backend, id });
    });
    if (log.enabled) log('%s %s upgraded to %s', conn.id, req.url, conn.backend?.id);
    return conn;
  } catch (err) {
    const error = err instanceof FailoverProxyError ? err : new ConnectError('?', { cause: err });
    refuse(client, error);
    if (log.enabled) log('upgrade of %s failed: %s', req.url, error.message);
    throw error;
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
  pool: UpgradePool,
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

function refuse(client: Socket, error: FailoverProxyError): void {
  if (client.destroyed || error.code === 'CLIENT_CLOSED' || !client.writable) {
    client.destroy();
    return;
  }
  const status = gatewayStatusLine(error.code);
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


function onRefusalTimeout(this: Socket): void {
  this.destroy();
}
