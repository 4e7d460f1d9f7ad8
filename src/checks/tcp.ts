/**
 * The TCP connect check.
 *
 * @module
 */
import { connect } from 'node:net';
import type { Backend } from '../backend.js';
import { abortError, type CheckContext, type CheckFunction } from './check.js';
import { superviseSocket } from './socket-supervision.js';

/**
 * The TCP check as written in options: connect, then close.
 */
export interface TcpCheckSpec {
  readonly type: 'tcp';
}

/**
 * Creates the TCP check: it passes once a TCP connection to the backend is
 * established, then closes it. It fails at layer `connect` (refused,
 * unreachable, DNS) or `timeout` (the signal fired first).
 *
 * @example
 * ```ts
 * const check = tcpCheck();
 * await check(backend, { signal: AbortSignal.timeout(1000) }); // throws CheckError
 * ```
 */
export function tcpCheck(): CheckFunction {
  return runTcpCheck;
}

function runTcpCheck(backend: Backend, { signal }: CheckContext): Promise<void> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  const socket = connect({ host: backend.host, port: backend.port });
  return superviseSocket(socket, signal, backend.id, (supervision) => {
    socket.once('connect', () => supervision.finish());
  });
}
