/**
 * One client socket piped to one upstream socket, owned as a unit: both
 * directions with backpressure, half-close forwarded, and one `destroy(reason)`
 * that takes down both sides.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { Backend } from './backend.js';
import { systemClock, type Clock } from './clock.js';
import type { ConnectionClosedInfo, MemberEvents, TeardownReason } from './events.js';
import { resolvePinnedConnectionOptions, type PinnedConnectionOptions } from './options.js';
import {
  DEFAULT_MEMBER_CLOSE_TIMEOUT,
  kMember,
  kQuiesce,
  type DestroyOptions,
  type MemberCloseOptions,
  type PoolMember,
} from './pool-member.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:conn');

// Socket listeners are shared functions that find their connection through this
// back-reference (as `ws` does), so no closure is allocated per connection.
const kConnection = Symbol('failover-proxy.connection');
type OwnedSocket = Socket & { [kConnection]?: PinnedConnection };
type Side = 'client' | 'upstream';

// Assigned in the class's static block, where they may touch private state.
let socketClosed: (conn: PinnedConnection, side: Side) => void;
let socketFailed: (conn: PinnedConnection, side: Side, err: Error) => void;
let pendingReasonOf: (conn: PinnedConnection) => TeardownReason;

/** Options of a {@link PinnedConnection} built by hand. */
export interface PinnedConnectionInit extends PinnedConnectionOptions {
  /** The backend the upstream socket leads to (needed to register with a pool). */
  readonly backend?: Backend | undefined;
  /** An identifier for logs. @default `${client.remoteAddress}:${client.remotePort}` */
  readonly id?: string | undefined;
  /** Time source for `openedAt` and `durationMs`. */
  readonly clock?: Clock | undefined;
}

export type { DestroyOptions } from './pool-member.js';

/**
 * A client socket piped to an upstream socket.
 *
 * Bytes flow both ways with backpressure, so a slow reader on either side pauses
 * the other (memory stays bounded by the sockets' high-water marks). A FIN from
 * either side is forwarded as `end()` to the other while the other direction
 * keeps flowing. A reset, error or destroy on either side tears down both, and
 * `closed` is emitted exactly once with the reason.
 *
 * The byte counters are the sockets' own kernel-side counts (`bytesRead`), so
 * the data path does no per-chunk bookkeeping.
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { PinnedConnection } from 'failover-proxy';
 *
 * net.createServer({ allowHalfOpen: true }, (client) => {
 *   const upstream = net.connect({ host: '127.0.0.1', port: 8080, allowHalfOpen: true });
 *   upstream.once('connect', () => {
 *     const conn = new PinnedConnection(client, upstream);
 *     conn.on('closed', ({ reason, bytesFromClient }) => console.log(reason, bytesFromClient));
 *   });
 *   upstream.once('error', () => client.destroy());
 * }).listen(8000);
 * ```
 */
export class PinnedConnection extends EventEmitter<MemberEvents> implements PoolMember {
  /** The member brand. */
  readonly [kMember] = 'connection' as const;
  /** A client-to-upstream pair. */
  readonly kind = 'connection' as const;
  /** The client-facing socket. */
  readonly client: Socket;
  /** The backend-facing socket. */
  readonly upstream: Socket;
  /** The backend this connection is pinned to, when known. */
  readonly backend: Backend | undefined;
  /** Identifier for logs. */
  readonly id: string;
  /** Clock time the connection was pinned (ms since epoch). */
  readonly openedAt: number;

  #clock: Clock;
  #closed = false;
  /** Taken out by the registry: forwards nothing; its sockets close on a later turn. */
  #quiesced = false;
  #info: ConnectionClosedInfo | undefined;
  /** Reason noted when one side closed cleanly and the other is still flushing. */
  #pendingReason: TeardownReason | undefined;
  /** The graceful close's deadline, while one runs. */
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(client: Socket, upstream: Socket, init: PinnedConnectionInit = {}) {
    super();
    if (!isSocketLike(client)) throw v.invalid('client', 'a net.Socket', client);
    if (!isSocketLike(upstream)) throw v.invalid('upstream', 'a net.Socket', upstream);
    const options = resolvePinnedConnectionOptions(init, 'init');
    this.client = client;
    this.upstream = upstream;
    this.backend = init.backend;
    this.#clock = init.clock ?? systemClock;
    this.openedAt = this.#clock.now();
    this.id = init.id ?? `${client.remoteAddress ?? '?'}:${client.remotePort ?? '?'}`;

    const c = client as OwnedSocket;
    const u = upstream as OwnedSocket;
    c[kConnection] = this;
    u[kConnection] = this;

    // Half-close must be forwarded, not answered: with allowHalfOpen off, a
    // socket ends its own writable side when the peer sends FIN, cutting off the
    // reply still flowing the other way.
    client.allowHalfOpen = true;
    upstream.allowHalfOpen = true;

    configure(client, options.keepAlive, options.keepAliveInitialDelay, options.noDelay);
    configure(upstream, options.keepAlive, options.keepAliveInitialDelay, options.noDelay);

    client.on('error', onClientError);
    upstream.on('error', onUpstreamError);
    client.on('close', onClientClose);
    upstream.on('close', onUpstreamClose);

    if (options.idleTimeout > 0) {
      // The client socket sees every byte either way (reads from the client,
      // writes of upstream bytes), and Node refreshes its timer on both, so one
      // timer covers the pair.
      client.setTimeout(options.idleTimeout);
      client.on('timeout', onIdleTimeout);
    }

    if (client.destroyed || upstream.destroyed) {
      // Handed an already dead socket: report it once listeners can be attached.
      const reason: TeardownReason = client.destroyed ? 'client-closed' : 'upstream-closed';
      queueMicrotask(() => this.destroy(reason));
      return;
    }

    // Forwarding is six shared listeners rather than two pipe() calls: pipe()
    // allocates nine closures per direction and grows each socket's listener
    // arrays, ~3 kB of heap per connection; the behaviour is the same:
    // write, pause the source when the sink is full, resume it on 'drain',
    // and forward FIN as end().
    client.on('data', onClientData);
    upstream.on('data', onUpstreamData);
    client.on('drain', onClientDrain);
    upstream.on('drain', onUpstreamDrain);
    client.on('end', onClientEnd);
    upstream.on('end', onUpstreamEnd);
    // A FIN read before we listened (a client that half-closed while its
    // upstream was being dialled) has already emitted 'end': forward it now.
    if (client.readableEnded) upstream.end();
    if (upstream.readableEnded) client.end();
    // A socket the caller paused (or never read) must flow now that it has a sink.
    client.resume();
    upstream.resume();
    if (log.enabled) log('%s pinned to %s', this.id, this.backend?.id ?? `${upstream.remoteAddress}:${upstream.remotePort}`);
  }

  /** Bytes read from the client (and handed to the upstream). */
  get bytesFromClient(): number {
    return this.client.bytesRead;
  }

  /** Bytes read from the upstream (and handed to the client). */
  get bytesFromUpstream(): number {
    return this.upstream.bytesRead;
  }

  /** Whether the connection has been torn down (or taken out of service to be, a turn later). */
  get closed(): boolean {
    return this.#closed || this.#quiesced;
  }

  /** What the `closed` event reported, once closed. */
  get closedInfo(): ConnectionClosedInfo | undefined {
    return this.#info;
  }

  /**
   * Closes gracefully: stops forwarding, sends FIN both ways, and emits
   * `closed` with `reason` once both peers have closed, or destroys the pair
   * at the deadline. Idempotent; a later `destroy()` cuts it short.
   *
   * @example
   * ```ts
   * conn.close('rebalanced'); // the client sees a clean end of stream and reconnects
   * ```
   */
  close(reason: TeardownReason = 'closed', options: MemberCloseOptions = {}): void {
    if (this.#closed || this.#quiesced || this.#closeTimer !== undefined) return;
    const timeout = v.integer('timeout', options.timeout ?? DEFAULT_MEMBER_CLOSE_TIMEOUT, 0, 2 ** 31 - 1);
    const { client, upstream } = this;
    this.#pendingReason = reason;
    // Bytes still arriving from either peer have nowhere to go once both
    // sides are ended: drop them (the sockets keep flowing so FINs are read).
    client.off('data', onClientData);
    upstream.off('data', onUpstreamData);
    client.resume();
    upstream.resume();
    client.end();
    upstream.end();
    this.#closeTimer = setTimeout(onCloseDeadline, timeout, this);
    this.#closeTimer.unref();
    if (log.enabled) log('%s closing: %s', this.id, reason);
  }

  /**
   * Stops moving bytes at once, closing nothing: the registry calls this when
   * it takes the pair out and closes the sockets on a later turn.
   *
   * @internal
   */
  [kQuiesce](): void {
    this.#quiesced = true;
    const { client, upstream } = this;
    client.off('data', onClientData);
    upstream.off('data', onUpstreamData);
    client.pause();
    upstream.pause();
  }

  /**
   * Tears down both sockets at once and emits `closed` before returning.
   * Idempotent: later calls do nothing. Never throws.
   */
  destroy(reason: TeardownReason = 'destroyed', options: DestroyOptions = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    const { client, upstream } = this;
    const error = options.error;
    if (this.#closeTimer !== undefined) {
      clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }

    if (options.reset === true && !client.destroyed) resetSocket(client);
    else client.destroy();
    upstream.destroy();
    // The client's idle timer must not outlive the connection.
    if (client.timeout) client.setTimeout(0);

    const info: ConnectionClosedInfo = Object.freeze({
      reason,
      kind: this.kind,
      error,
      bytesFromClient: client.bytesRead,
      bytesFromUpstream: upstream.bytesRead,
      durationMs: this.#clock.now() - this.openedAt,
    });
    this.#info = info;
    if (log.enabled) log('%s closed: %s (%d B in, %d B out)', this.id, reason, info.bytesFromClient, info.bytesFromUpstream);
    this.emit('closed', info);
  }

  static {
    socketClosed = (conn, side) => {
      if (conn.#closed) return;
      const self = side === 'client' ? conn.client : conn.upstream;
      const other = side === 'client' ? conn.upstream : conn.client;
      const reason: TeardownReason = conn.#pendingReason ?? (side === 'client' ? 'client-closed' : 'upstream-closed');
      // A clean close after FIN both ways: the other side was already ended by the
      // forwarding and may still be flushing the last bytes we sent it. Let it finish
      // and close on its own rather than cutting those bytes off.
      const cleanly = self.readableEnded && self.writableFinished;
      if (cleanly && other.writableEnded && !other.destroyed) {
        conn.#pendingReason = reason;
        return;
      }
      conn.destroy(reason);
    };
    pendingReasonOf = (conn) => conn.#pendingReason ?? 'closed';
    socketFailed = (conn, side, err) => {
      if (conn.#closed) return; // after the first error, further ones are noise
      if (log.enabled) log('%s %s error: %s', conn.id, side, (err as NodeJS.ErrnoException).code ?? err.message);
      // A peer that resets while we close it gracefully keeps the close's reason.
      const reason = conn.#closeTimer !== undefined ? conn.#pendingReason! : side === 'client' ? 'client-error' : 'upstream-error';
      conn.destroy(reason, { error: err });
    };
  }
}

function isSocketLike(value: unknown): value is Socket {
  return typeof value === 'object' && value !== null && typeof (value as Socket).write === 'function' && typeof (value as Socket).destroy === 'function';
}

function onCloseDeadline(conn: PinnedConnection): void {
  conn.destroy(pendingReasonOf(conn));
}

function configure(socket: Socket, keepAlive: boolean, delay: number, noDelay: boolean): void {
  // A TLSSocket over a duplex that is not a TCP socket has nothing to configure.
  try {
    socket.setKeepAlive(keepAlive, delay);
    socket.setNoDelay(noDelay);
  } catch {
    /* not a TCP socket */
  }
}

function resetSocket(socket: Socket): void {
  try {
    socket.resetAndDestroy();
  } catch {
    // TLS sockets cannot be reset from JavaScript (ERR_INVALID_HANDLE_TYPE).
    socket.destroy();
  }
}

function onClientError(this: OwnedSocket, err: Error): void {
  const conn = this[kConnection];
  if (conn) socketFailed(conn, 'client', err);
}

function onUpstreamError(this: OwnedSocket, err: Error): void {
  const conn = this[kConnection];
  if (conn) socketFailed(conn, 'upstream', err);
}

function onClientClose(this: OwnedSocket): void {
  const conn = this[kConnection];
  if (conn) socketClosed(conn, 'client');
}

function onUpstreamClose(this: OwnedSocket): void {
  const conn = this[kConnection];
  if (conn) socketClosed(conn, 'upstream');
}

// The data path. No allocation here: a chunk goes straight to the other
// socket, and a full socket pauses its source until it drains.

function onClientData(this: OwnedSocket, chunk: Buffer): void {
  const conn = this[kConnection];
  if (conn !== undefined && !conn.upstream.write(chunk)) this.pause();
}

function onUpstreamData(this: OwnedSocket, chunk: Buffer): void {
  const conn = this[kConnection];
  if (conn !== undefined && !conn.client.write(chunk)) this.pause();
}

function onClientDrain(this: OwnedSocket): void {
  // The client took what it was sent: let the upstream flow again.
  this[kConnection]?.upstream.resume();
}

function onUpstreamDrain(this: OwnedSocket): void {
  this[kConnection]?.client.resume();
}

function onClientEnd(this: OwnedSocket): void {
  // FIN from the client: pass it on; the upstream's reply keeps flowing.
  this[kConnection]?.upstream.end();
}

function onUpstreamEnd(this: OwnedSocket): void {
  this[kConnection]?.client.end();
}

function onIdleTimeout(this: OwnedSocket): void {
  this[kConnection]?.destroy('idle-timeout');
}
