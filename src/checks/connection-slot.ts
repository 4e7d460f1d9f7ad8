/**
 * Where a check keeps its connection to one backend from one check to the
 * next (HTTP keep-alive, as Envoy's `reuse_connection`).
 *
 * @module
 */
import type { Socket } from 'node:net';

const kSlot = Symbol('failover-proxy.connectionSlot');

interface KeptSocket extends Socket {
  [kSlot]?: ConnectionSlot | undefined;
}

/**
 * How long before a server's advertised keep-alive timeout (`Keep-Alive:
 * timeout=N`) a kept connection stops being reused: a request sent as the
 * server closes the connection would fail a healthy backend's check.
 */
const EXPIRY_MARGIN_MS = 1000;

// Listeners of a kept socket, once for all sockets: they find their slot
// through the socket.

function onKeptError(this: KeptSocket): void {
  // An error on a connection no check is using is nobody's failure; the close
  // that follows empties the slot.
  this.destroy();
}

function onKeptClose(this: KeptSocket): void {
  this[kSlot]?.forget(this);
}

/** The idle timeout a `Keep-Alive` response header advertises, in ms. */
function keepAliveTimeout(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const match = /(?:^|[\s,])timeout=(\d+)/i.exec(header);
  return match === null ? undefined : Number(match[1]) * 1000;
}

/**
 * One backend's kept connection, between two checks. {@link HealthProbe}
 * gives each backend one (as `connection` in the check's context) and closes
 * it when the backend is removed or the probe stops. A check called without
 * one uses a fresh connection every time.
 *
 * A kept socket is `unref()`ed while idle (it never keeps a process alive),
 * and given back only to the check that kept it, and only while it can carry
 * another request: the last response was read to its end, the server allowed
 * keep-alive, the connection has not been closed or reset, and the server's
 * advertised keep-alive timeout is more than a second away. Otherwise it is
 * destroyed and the check dials a fresh connection.
 *
 * @example
 * ```ts
 * // Reusing a connection between standalone checks:
 * const check = httpsCheck({ path: '/readyz', ca });
 * const connection = new ConnectionSlot();
 * await check(backend, { signal: AbortSignal.timeout(1000), connection });
 * await check(backend, { signal: AbortSignal.timeout(1000), connection }); // same connection
 * connection.close();
 * ```
 */
export class ConnectionSlot {
  #socket: KeptSocket | undefined;
  #owner: unknown;
  #ready = false;
  #expiresAt = Infinity;
  #closed = false;

  /** Whether a connection is kept (ready for reuse or still reading its last answer). */
  get holding(): boolean {
    return this.#socket !== undefined;
  }

  /**
   * Takes the kept socket out, `ref()`ed, when `owner` kept it and it can
   * carry another request; otherwise destroys whatever was kept and returns
   * `undefined`.
   */
  take(owner: unknown): Socket | undefined {
    const socket = this.#socket;
    if (socket === undefined) return undefined;
    // Bytes waiting on an idle connection are nobody's answer: they would be
    // read as the next one.
    const fit =
      this.#ready &&
      owner === this.#owner &&
      !socket.destroyed &&
      socket.writable &&
      !socket.readableEnded &&
      socket.readableLength === 0 &&
      Date.now() < this.#expiresAt;
    this.#empty(socket);
    if (!fit) {
      socket.destroy();
      return undefined;
    }
    socket.ref();
    return socket;
  }

  /**
   * Keeps `socket` for `owner`'s next check. It is not reused before
   * {@link ready} says its answer was read to the end. A closed slot
   * destroys the socket instead.
   */
  keep(owner: unknown, socket: Socket): void {
    const previous = this.#socket;
    if (previous !== undefined && previous !== socket) {
      this.#empty(previous);
      previous.destroy();
    }
    if (this.#closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    const kept = socket as KeptSocket;
    this.#socket = kept;
    this.#owner = owner;
    this.#ready = false;
    this.#expiresAt = Infinity;
    kept[kSlot] = this;
    kept.on('error', onKeptError);
    kept.on('close', onKeptClose);
    kept.unref();
  }

  /**
   * The kept socket read its answer to the end and the server allows
   * another request on it; `keepAlive` is the answer's `Keep-Alive` header.
   */
  ready(socket: Socket, keepAlive?: string): void {
    if (socket !== this.#socket) return;
    this.#ready = true;
    const timeout = keepAliveTimeout(keepAlive);
    if (timeout !== undefined) this.#expiresAt = Date.now() + timeout - EXPIRY_MARGIN_MS;
  }

  /** The socket cannot carry another request: destroyed, and forgotten if kept. */
  discard(socket: Socket): void {
    if (socket === this.#socket) this.#empty(this.#socket);
    socket.destroy();
  }

  /** Destroys the kept socket; from now on, sockets given to `keep` are destroyed. Idempotent. */
  close(): void {
    this.#closed = true;
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#empty(socket);
    socket.destroy();
  }

  /** The kept socket closed by itself. @internal */
  forget(socket: Socket): void {
    if (socket === this.#socket) this.#empty(this.#socket);
  }

  #empty(socket: KeptSocket): void {
    socket.removeListener('error', onKeptError);
    socket.removeListener('close', onKeptClose);
    socket[kSlot] = undefined;
    this.#socket = undefined;
    this.#owner = undefined;
    this.#ready = false;
  }
}
