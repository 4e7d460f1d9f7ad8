/**
 * One upstream socket owned by something else (an HTTP agent, a custom
 * proxy), registered with a pool under its backend so it is torn down with
 * that backend, like a {@link PinnedConnection} but without a client socket.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import { BackendDownError, PoolClosedError } from './errors.js';
import type { TeardownReason } from './events.js';
import { closeTimeoutOf, MemberBase, type MemberInit } from './member-base.js';
import { kMember, kQuiesce, type DestroyOptions, type MemberCloseOptions } from './pool-member.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:conn');

// Shared listeners find their owner through this back-reference (as in
// pinned-connection.ts), so registering a socket allocates no closure.
const kPinned = Symbol('failover-proxy.pinned-socket');
type OwnedSocket = Socket & { [kPinned]?: PinnedSocket };

// Assigned in the class's static block, where it may read private state.
let closingReasonOf: (pinned: PinnedSocket) => TeardownReason;

/** Options of a {@link PinnedSocket}: its backend, id and clock. */
export type PinnedSocketInit = MemberInit;

/**
 * An upstream socket that a pool can tear down, for owners that do their own
 * I/O on it (an `http.Agent`, a multiplexer). Register it with
 * `pool.register(pinned)`: when its backend leaves service the socket is
 * destroyed **with an error** before `markDown` returns, so whoever is
 * reading or writing it (a request, a streaming response) fails with a code
 * it can act on:
 *
 * - `BACKEND_DOWN` ({@link BackendDownError}, `reason` = the teardown reason)
 *   for `markDown`, maintenance, removal, a drain deadline or `destroy()`;
 * - `POOL_CLOSED` when the pool's close deadline passed or it was destroyed.
 *
 * It emits `closed` exactly once, like a {@link PinnedConnection}, with
 * reason `upstream-closed` (the backend closed it), `upstream-error` (the
 * socket failed), `client-closed` (its owner closed it: a request finished
 * without keep-alive, an idle timeout), or the teardown reason. There is no
 * client socket, so `bytesFromClient` counts bytes written to the backend.
 *
 * @example
 * ```ts
 * const { backend, socket } = await pool.connect();
 * const pinned = new PinnedSocket(socket, { backend });
 * pool.register(pinned);
 * pinned.on('closed', ({ reason }) => console.log(reason));
 * socket.on('error', (err) => console.log((err as FailoverProxyError).code)); // 'BACKEND_DOWN' after markDown
 * ```
 */
export class PinnedSocket extends MemberBase {
  /** The member brand. */
  readonly [kMember] = 'socket' as const;
  /** A lone upstream socket whose I/O someone else does. */
  readonly kind = 'socket' as const;
  /** The backend-facing socket. */
  readonly upstream: Socket;

  #closed = false;
  #closingReason: TeardownReason | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(upstream: Socket, init: PinnedSocketInit = {}) {
    if (typeof upstream !== 'object' || upstream === null || typeof (upstream).destroy !== 'function') {
      throw v.invalid('upstream', 'a net.Socket', upstream);
    }
    super(init, upstream);
    this.upstream = upstream;
    const owned = upstream as OwnedSocket;
    owned[kPinned] = this;
    // Always listened: an upstream failure must never crash the process, even
    // while the owner has no listener of its own (an idle keep-alive socket).
    upstream.on('error', onUpstreamError);
    upstream.on('close', onUpstreamClose);
    if (upstream.destroyed) queueMicrotask(() => this.destroy('upstream-closed'));
  }

  /** Bytes written to the backend (there is no client socket). */
  get bytesFromClient(): number {
    return this.upstream.bytesWritten;
  }

  /** Bytes read from the backend. */
  get bytesFromUpstream(): number {
    return this.upstream.bytesRead;
  }

  /** Whether the socket has been torn down. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Whether `close()` asked for the socket to go: its owner should not reuse
   * it (a {@link PoolAgent} keeps no such socket alive).
   */
  get closing(): boolean {
    return this.#closingReason !== undefined;
  }

  /**
   * Evicts the socket gracefully: destroyed now when it is idle (no request
   * on it, nothing left to write), else once its owner is done with it, or at
   * the deadline. Idempotent.
   */
  close(reason: TeardownReason = 'closed', options: MemberCloseOptions = {}): void {
    if (this.#closed || this.#closingReason !== undefined) return;
    const timeout = closeTimeoutOf(options);
    this.#closingReason = reason;
    if (isIdle(this.upstream)) {
      this.destroy(reason);
      return;
    }
    this.#closeTimer = setTimeout(onCloseDeadline, timeout, this);
    this.#closeTimer.unref();
  }

  /** @internal Nothing to stop: the owner does the I/O; the socket is destroyed on a later turn. */
  [kQuiesce](): void {}

  /**
   * Destroys the socket and emits `closed` before returning. A socket still
   * open is destroyed with `options.error`, or else with a `BACKEND_DOWN`
   * error (`POOL_CLOSED` for `pool-closed`/`pool-destroyed`), so its user
   * sees why. `options.reset` is ignored: there is no client to reset.
   * Idempotent; never throws.
   */
  destroy(reason: TeardownReason = 'destroyed', options: DestroyOptions = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#closeTimer !== undefined) {
      clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }
    const { upstream } = this;
    if (!upstream.destroyed) upstream.destroy(options.error ?? teardownError(this, reason));
    this.reportClosed(reason, options.error, upstream.bytesWritten, upstream.bytesRead);
  }

  static {
    closingReasonOf = (pinned) => pinned.#closingReason ?? 'closed';
  }
}

/** An HTTP client socket with no request on it and nothing queued to write. */
/**
 * An agent's socket between requests: Node's agent sets `_httpMessage` to
 * `null` when it frees one. A socket handed out by `pool.connect()` never
 * had one (`undefined`): its owner may be waiting for an answer with nothing
 * to write, so it is not idle; a graceful close leaves it to its deadline.
 */
function isIdle(socket: Socket): boolean {
  const message = (socket as Socket & { _httpMessage?: unknown })._httpMessage;
  return message === null && socket.writableLength === 0;
}

function onCloseDeadline(pinned: PinnedSocket): void {
  pinned.destroy(closingReasonOf(pinned));
}

function teardownError(pinned: PinnedSocket, reason: TeardownReason): Error {
  if (reason === 'pool-closed' || reason === 'pool-closing' || reason === 'pool-destroyed') return new PoolClosedError();
  return new BackendDownError(pinned.backend?.id ?? pinned.id, reason);
}

function onUpstreamError(this: OwnedSocket, err: Error): void {
  const pinned = this[kPinned];
  // After the first error (or our own teardown) further ones are noise.
  if (pinned === undefined || pinned.closed) return;
  if (log.enabled) log('%s upstream error: %s', pinned.id, (err as NodeJS.ErrnoException).code ?? err.message);
  pinned.destroy('upstream-error', { error: err });
}

function onUpstreamClose(this: OwnedSocket): void {
  const pinned = this[kPinned];
  if (pinned === undefined || pinned.closed) return;
  // A FIN from the backend ends the readable side first; otherwise the owner
  // closed the socket itself (a request without keep-alive, an idle timeout).
  // An eviction asked for by close() keeps its reason.
  pinned.destroy(pinned.closing ? closingReasonOf(pinned) : this.readableEnded ? 'upstream-closed' : 'client-closed');
}
