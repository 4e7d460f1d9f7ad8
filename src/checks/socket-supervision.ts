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
import { localErrorCode } from '../local-errors.js';
import { abortError } from './check.js';

/**
 * How far a check socket got: dialling, in the TLS handshake, or open (the
 * protocol layer). An error is blamed on the layer the socket was in.
 *
 * @internal
 */
export type SocketPhase = 'connect' | 'tls' | 'open';

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
  // Out of descriptors, buffers or local ports: this process's failure, at any phase.
  if (code !== undefined && localErrorCode(err) !== undefined) {
    return new CheckError('local', `Checking \`${target}\` failed here, not at the backend: ${detail}`, { cause: err });
  }
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

const kSupervision = Symbol('failover-proxy.checkSupervision');

interface SupervisedSocket extends Socket {
  [kSupervision]?: SocketSupervision | undefined;
}

// Socket listeners live here, once, and find their supervision through the
// socket (as ws does): nothing is allocated per check for them, and a socket
// handed back alive sheds them with `removeListener`.

function onConnect(this: SupervisedSocket): void {
  const supervision = this[kSupervision];
  if (supervision !== undefined) supervision.phase = this instanceof TLSSocket ? 'tls' : 'open';
}

function onSecureConnect(this: SupervisedSocket): void {
  const supervision = this[kSupervision];
  if (supervision !== undefined) supervision.phase = 'open';
}

function onError(this: SupervisedSocket, err: Error): void {
  // Only the first error matters (as in ws): later ones are the same failure
  // seen again while the socket is torn down.
  const supervision = this[kSupervision];
  if (supervision !== undefined) supervision.finish(socketError(supervision.target, supervision.phase, err));
}

function onClose(this: SupervisedSocket): void {
  const supervision = this[kSupervision];
  // Deferred one tick: an HTTP client on this socket turns the same close
  // into a more precise error ("socket hang up", a parser error) from its own
  // close listener, which runs after this one.
  if (supervision !== undefined) process.nextTick(settleClosed, supervision);
}

function settleClosed(supervision: SocketSupervision): void {
  supervision.closed();
}

/**
 * One check socket driven to exactly one outcome: the first of a call to
 * {@link finish}, a socket error, an abort of the signal, or the socket
 * closing. The socket is destroyed as soon as the outcome is known and
 * {@link promise} settles only after its `close` event — unless the check
 * {@link keep}s the socket alive for its next run, which settles at once.
 *
 * @internal
 */
export class SocketSupervision {
  /** How far the socket got; errors are blamed on this layer. */
  phase: SocketPhase;
  readonly target: string;
  readonly promise: Promise<void>;
  readonly #socket: SupervisedSocket;
  readonly #signal: AbortSignal;
  /** `undefined` while running; `null` for a pass. */
  #outcome: CheckError | null | undefined;
  #settled = false;
  #resolve!: () => void;
  #reject!: (error: CheckError) => void;

  constructor(socket: Socket, signal: AbortSignal, target: string, phase: SocketPhase) {
    this.phase = phase;
    this.target = target;
    this.#socket = socket;
    this.#signal = signal;
    this.promise = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#socket[kSupervision] = this;
    socket.on('connect', onConnect);
    if (socket instanceof TLSSocket) socket.on('secureConnect', onSecureConnect);
    socket.on('error', onError);
    socket.on('close', onClose);
    signal.addEventListener('abort', this);
  }

  /** Whether the outcome is known. */
  get done(): boolean {
    return this.#outcome !== undefined;
  }

  /** Ends the check: no argument for a pass, a `CheckError` for a failure. Only the first call counts. */
  finish(error?: CheckError): void {
    if (this.#outcome !== undefined) return;
    this.#outcome = error ?? null;
    this.#signal.removeEventListener('abort', this);
    this.#socket.destroy();
  }

  /**
   * Ends the check with a pass and hands the socket back alive: every
   * listener of this supervision is removed and the promise resolves now.
   * Returns `false` (and does nothing) when the outcome was already known.
   */
  keep(): boolean {
    if (this.#outcome !== undefined) return false;
    this.#outcome = null;
    this.#signal.removeEventListener('abort', this);
    const socket = this.#socket;
    socket.removeListener('connect', onConnect);
    socket.removeListener('secureConnect', onSecureConnect);
    socket.removeListener('error', onError);
    socket.removeListener('close', onClose);
    socket[kSupervision] = undefined;
    this.#settled = true;
    this.#resolve();
    return true;
  }

  /** The abort listener (an EventTarget calls `handleEvent`). @internal */
  handleEvent(): void {
    this.finish(abortError(this.#signal));
  }

  /** @internal */
  closed(): void {
    if (this.#settled) return;
    this.finish(closedEarly(this.target, this.phase));
    this.#settled = true;
    this.#socket[kSupervision] = undefined;
    if (this.#outcome) this.#reject(this.#outcome);
    else this.#resolve();
  }
}

/**
 * Drives one check socket to exactly one outcome (see {@link SocketSupervision})
 * and returns the promise of it. `setup` starts the exchange; a throw from it
 * fails the check at layer `protocol`.
 *
 * @internal
 */
export function superviseSocket(
  socket: Socket,
  signal: AbortSignal,
  target: string,
  setup: (supervision: SocketSupervision) => void,
  phase: SocketPhase = 'connect',
): Promise<void> {
  const supervision = new SocketSupervision(socket, signal, target, phase);
  if (signal.aborted) {
    supervision.handleEvent();
    return supervision.promise;
  }
  try {
    setup(supervision);
  } catch (err) {
    supervision.finish(new CheckError('protocol', `Could not start the check of \`${target}\`: ${(err as Error).message}`, { cause: err }));
  }
  return supervision.promise;
}
