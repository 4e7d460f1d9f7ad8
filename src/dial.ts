/**
 * The built-in dialler: plain TCP, or TLS when the backend (or the pool) has
 * TLS settings. Resolves once the socket can carry bytes.
 *
 * @module
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { Backend, UpstreamTlsOptions } from './backend.js';

/** Options of {@link dialBackend}. */
export interface DialOptions {
  /** Aborting destroys the socket and rejects with `signal.reason`. */
  readonly signal: AbortSignal;
  /** TLS settings used when the backend has none of its own (`backend.tls === undefined`). */
  readonly tls?: UpstreamTlsOptions | undefined;
}

/**
 * Opens a socket to `backend`: TCP, or TLS when `backend.tls` (or
 * `options.tls`) is set, resolving after the handshake. The socket is
 * half-open capable so FINs can be forwarded.
 *
 * @example
 * ```ts
 * const socket = await dialBackend(backend, { signal: AbortSignal.timeout(3000) });
 * ```
 */
export function dialBackend(backend: Backend, options: DialOptions): Promise<Socket> {
  const { signal } = options;
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
      readyEvent = 'connect';
    } else {
      const servername = tlsOptions.servername ?? backend.servername ?? (net.isIP(backend.host) === 0 ? backend.host : undefined);
      // allowHalfOpen is honoured by tls.connect but missing from its typings.
      const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
        ...tlsOptions,
        host: backend.host,
        port: backend.port,
        allowHalfOpen: true,
        ...(servername === undefined ? {} : { servername }),
      };
      socket = tls.connect(connectOptions);
      readyEvent = 'secureConnect';
    }

    const onAbort = (): void => {
      cleanup();
      socket.destroy();
      reject(signal.reason as Error);
    };
    const onError = (err: Error): void => {
      cleanup();
      socket.destroy();
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
