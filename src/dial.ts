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
  const { signal, preamble } = options;
  const tlsOptions = backend.tls === false ? undefined : (backend.tls ?? options.tls);
  return new Promise<Socket>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    let socket: Socket;
    let readyEvent: 'connect' | 'secureConnect';
    if (tlsOptions === undefined) {
      socket = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
      // Queued until the connection is up, and ahead of anything the caller writes.
      if (preamble !== undefined) socket.write(preamble);
      readyEvent = 'connect';
    } else {
      const servername = servernameFor(backend, tlsOptions.servername);
      // allowHalfOpen is honoured by tls.connect but missing from its typings.
      const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
        ...tlsOptions,
        host: backend.host,
        port: backend.port,
        allowHalfOpen: true,
        ...(servername === undefined ? {} : { servername }),
      };
      if (preamble === undefined) {
        socket = tls.connect(connectOptions);
      } else {
        // The preamble goes in clear ahead of the ClientHello, so TLS is
        // layered over a TCP socket that has already queued it.
        const raw = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
        raw.write(preamble);
        socket = tls.connect({ ...connectOptions, socket: raw });
      }
      readyEvent = 'secureConnect';
    }

    const onAbort = (): void => {
      cleanup();
      abandon(socket);
      reject(signal.reason as Error);
    };
    const onError = (err: Error): void => {
      cleanup();
      abandon(socket);
      reject(err);
    };
    const onReady = (): void => {
      cleanup();
      resolve(socket);
    };
    const onClose = (): void => {
      // Closed without an error before it was ready (e.g. the TLS peer hung up).
      cleanup();
      reject(Object.assign(new Error('Socket closed before it was ready'), { code: 'ECONNRESET' }));
    };
    function cleanup(): void {
      signal.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off(readyEvent, onReady);
      socket.off('close', onClose);
    }
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once(readyEvent, onReady);
    socket.once('close', onClose);
  });
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
