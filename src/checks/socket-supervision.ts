/**
 * The socket lifecycle every socket-based check (TCP, TLS, HTTP) shares: one
 * outcome, the layer read from how far the socket got, the socket destroyed on
 * abort, and the promise settled only once the socket has closed, so a
 * settled check never leaves a handle behind.
 *
 * @module
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { CheckError, errorCode } from '../errors.js';
import { abortError } from './check.js';

/**
 * How far a check socket got: dialling, in the TLS handshake, or open (the
 * protocol layer). An error is blamed on the layer the socket was in.
 *
 * @internal
 */
export type SocketPhase = 'connect' | 'tls' | 'open';

/**
 * Ends a supervised check: no argument for a pass, a {@link CheckError} for a
 * failure. Only the first call counts.
 *
 * @internal
 */
export type Finish = (error?: CheckError) => void;

/** OpenSSL and Node TLS errors keep their layer even when they arrive after the handshake. */
function isTlsCode(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'));
}

/**
 * Turns a socket (or HTTP parser) error into a `CheckError` for the layer the
 * socket was in when it failed.
 *
 * @internal
 */
export function socketError(target: string, phase: SocketPhase, err: unknown): CheckError {
  const code = errorCode(err);
  const detail = code ?? (err instanceof Error ? err.message : String(err));
  // TLS 1.3 servers reject a client certificate after the client considers the
  // handshake done, so that alert surfaces in the `open` phase.
  if (phase === 'tls' || isTlsCode(code)) {
    return new CheckError('tls', `TLS handshake with \`${target}\` failed: ${detail}`, { cause: err });
  }
  if (phase === 'connect') {
    return new CheckError('connect', `Connecting to \`${target}\` failed: ${detail}`, { cause: err });
  }
  return new CheckError('protocol', `Bad response from \`${target}\`: ${detail}`, { cause: err });
}

function closedEarly(target: string, phase: SocketPhase): CheckError {
  const where = phase === 'connect' ? 'before it connected' : phase === 'tls' ? 'during the TLS handshake' : 'before a complete answer';
  return socketError(target, phase, new Error(`connection closed ${where}`));
}

/**
 * Drives one check socket to exactly one outcome: the first of `setup`'s call
 * to `finish`, a socket error, an abort of `signal`, or the socket closing.
 * The socket is destroyed as soon as the outcome is known, and the returned
 * promise settles only after its `close` event.
 *
 * @internal
 */
export function superviseSocket(
  socket: Socket,
  signal: AbortSignal,
  target: string,
  setup: (finish: Finish, phase: () => SocketPhase) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let phase: SocketPhase = 'connect';
    let outcome: CheckError | null | undefined;
    const finish: Finish = (error) => {
      if (outcome !== undefined) return;
      outcome = error ?? null;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
    };
    const onAbort = (): void => finish(abortError(signal));

    socket.once('connect', () => {
      phase = socket instanceof TLSSocket ? 'tls' : 'open';
    });
    if (socket instanceof TLSSocket) {
      socket.once('secureConnect', () => {
        phase = 'open';
      });
    }
    // Only the first error matters (as in ws): later ones are the same failure
    // seen again while the socket is torn down.
    socket.on('error', (err) => finish(socketError(target, phase, err)));
    socket.once('close', () => {
      // Deferred one tick: an HTTP client on this socket turns the same close
      // into a more precise error ("socket hang up", a parser error) from its
      // own close listener, which runs after this one.
      process.nextTick(() => {
        finish(closedEarly(target, phase));
        if (outcome) reject(outcome);
        else resolve();
      });
    });
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) {
      onAbort();
      return;
    }
    try {
      setup(finish, () => phase);
    } catch (err) {
      finish(new CheckError('protocol', `Could not start the check of \`${target}\`: ${(err as Error).message}`, { cause: err }));
    }
  });
}
