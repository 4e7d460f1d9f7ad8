/**
 * The built-in dialler: plain TCP, or TLS when the backend (or the pool) has
 * TLS settings. Resolves once the socket can carry bytes.
 *
 * @module
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { Backend, UpstreamTlsOptions } from './backend.js';
import { noop } from './noop.js';
import { servernameFor } from './servername.js';

/** Options of {@link dialBackend}. */
export interface DialOptions {
  /** Aborting destroys the socket and rejects with `signal.reason`. */
  readonly signal: AbortSignal;
  /** TLS settings used when the backend has none of its own (`backend.tls === undefined`). */
  readonly tls?: UpstreamTlsOptions | undefined;
  /**
   * Bytes sent first on the TCP connection, before the TLS handshake when
   * there is one: a PROXY protocol header, which backends expect in clear.
   */
  readonly preamble?: Buffer | undefined;
}

/**
 * Opens a socket to `backend`: TCP, or TLS when `backend.tls` (or
 * `options.tls`) is set, resolving after the handshake. The socket is
 * half-open capable so FINs can be forwarded.
 */
export function dialBackend(backend: Backend, options: DialOptions): Promise<Socket> {
  const { signal } = options;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  const attempt = new DialAttempt(backend, options.tls, options.preamble);
  const onAbort = (): void => attempt.abort(signal.reason as Error);
  signal.addEventListener('abort', onAbort, { once: true });
  const detach = (): void => signal.removeEventListener('abort', onAbort);
  attempt.promise.then(detach, detach);
  return attempt.promise;
}

// A dialling socket finds its attempt through this back-reference, so its
// listeners are shared functions and a dial allocates no closure for them.
const kAttempt = Symbol('failover-proxy.dial');
type DiallingSocket = Socket & { [kAttempt]?: DialAttempt | undefined };

/**
 * One dial by the built-in dialler, started when built: {@link promise}
 * settles once the socket can carry bytes (resolved) or cannot (rejected),
 * and {@link abort} cancels it. The pool uses it directly rather than
 * through an `AbortSignal`: an `AbortController`, its `EventTarget` and the
 * listeners on it were a measurable part of a connection's cost.
 *
 * @internal
 */
export class DialAttempt {
  readonly promise: Promise<Socket>;
  #socket: DiallingSocket | undefined;
  readonly #ready: 'connect' | 'secureConnect';
  #resolve!: (socket: Socket) => void;
  #reject!: (error: Error) => void;
  #settled = false;

  constructor(backend: Backend, defaults: UpstreamTlsOptions | undefined, preamble: Buffer | undefined) {
    this.promise = new Promise<Socket>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const tlsOptions = backend.tls === false ? undefined : (backend.tls ?? defaults);
    this.#ready = tlsOptions === undefined ? 'connect' : 'secureConnect';
    let socket: DiallingSocket | undefined;
    try {
      socket = open(backend, tlsOptions, preamble);
    } catch (err) {
      // Options the TLS layer refuses: a failed dial, like any other.
      this.#settled = true;
      this.#reject(err as Error);
      return;
    }
    this.#socket = socket;
    socket[kAttempt] = this;
    socket.once('error', onDialError);
    socket.once(this.#ready, onDialReady);
    socket.once('close', onDialClose);
  }

  /** Destroys the socket and rejects with `reason`, unless already settled. */
  abort(reason: Error): void {
    const socket = this.#settle();
    if (socket === undefined) return;
    abandon(socket);
    this.#reject(reason);
  }

  /** @internal */
  ready(): void {
    const socket = this.#settle();
    if (socket !== undefined) this.#resolve(socket);
  }

  /** @internal */
  failed(error: Error): void {
    const socket = this.#settle();
    if (socket === undefined) return;
    abandon(socket);
    this.#reject(error);
  }

  /** Marks it settled and lets the socket go: the socket, or undefined if it already was settled. */
  #settle(): DiallingSocket | undefined {
    const socket = this.#socket;
    if (this.#settled || socket === undefined) return undefined;
    this.#settled = true;
    socket.off('error', onDialError);
    socket.off(this.#ready, onDialReady);
    socket.off('close', onDialClose);
    // Not `delete`: deleting a property turns the socket into a slow
    // dictionary-mode object for the rest of its life.
    socket[kAttempt] = undefined;
    return socket;
  }
}

/** Starts the connection: TCP, or TLS over it, with `preamble` queued first. */
function open(backend: Backend, tlsOptions: UpstreamTlsOptions | undefined, preamble: Buffer | undefined): Socket {
  if (tlsOptions === undefined) {
    const socket = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    // Queued until the connection is up, and ahead of anything the caller writes.
    if (preamble !== undefined) socket.write(preamble);
    return socket;
  }
  const servername = servernameFor(backend, tlsOptions.servername);
  // allowHalfOpen is honoured by tls.connect but missing from its typings.
  const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    ...tlsOptions,
    host: backend.host,
    port: backend.port,
    allowHalfOpen: true,
    ...(servername === undefined ? {} : { servername }),
  };
  if (preamble === undefined) return tls.connect(connectOptions);
  // The preamble goes in clear ahead of the ClientHello, so TLS is layered
  // over a TCP socket that has already queued it.
  const raw = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
  raw.write(preamble);
  try {
    return tls.connect({ ...connectOptions, socket: raw });
  } catch (err) {
    // TLS options refused: the TCP socket under it has no owner yet.
    abandon(raw);
    throw err;
  }
}

function onDialError(this: DiallingSocket, err: Error): void {
  this[kAttempt]?.failed(err);
}

function onDialReady(this: DiallingSocket): void {
  this[kAttempt]?.ready();
}

function onDialClose(this: DiallingSocket): void {
  // Closed without an error before it was ready (e.g. the TLS peer hung up).
  this[kAttempt]?.failed(Object.assign(new Error('Socket closed before it was ready'), { code: 'ECONNRESET' }));
}

/**
 * Destroys a socket nobody will listen to again. A TLS socket layered over a
 * TCP socket re-emits the TCP socket's error after its own, so an error may
 * still come after ours was handled: it must not crash the process.
 */
function abandon(socket: Socket): void {
  socket.on('error', noop);
  socket.destroy();
}
