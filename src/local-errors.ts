/**
 * Errors this process causes itself, not the backend it was talking to: out
 * of descriptors, of buffers, of memory, of local ports, or refused a socket
 * by its own sandbox. A check or a dial that fails with one of them says
 * nothing about the backend, so it never counts toward `fall` (HAProxy's
 * checks report such a failure as a local "socket error", not as L4CON from
 * the server). One list, owned here.
 *
 * @module
 */
import { codeInChain } from './errors.js';

/**
 * The socket error codes that come from this host, not from the peer.
 * `EPERM`/`EACCES` are here because connect() only returns them for a local
 * policy (a firewall rule on this host, a seccomp or SELinux denial); a peer's
 * refusal is `ECONNREFUSED`, its silence `ETIMEDOUT`, its route
 * `EHOSTUNREACH`/`ENETUNREACH`, all of which keep counting.
 */
export const LOCAL_ERROR_CODES: ReadonlySet<string> = new Set([
  'EMFILE', // this process is out of descriptors
  'ENFILE', // the system is out of descriptors
  'ENOBUFS', // out of socket buffers
  'ENOMEM', // out of memory
  'EADDRNOTAVAIL', // no local address (ephemeral ports exhausted)
  'EADDRINUSE', // the local address (port) is taken
  'EAGAIN', // a resource is temporarily short (libuv returns it for some allocations)
  'EPERM', // a local policy refused the socket
  'EACCES', // a local policy refused the socket
  'ENOTSOCK',
  'EBADF',
]);

/**
 * The local code of an error (or of any error in its `cause` chain, up to a
 * few links), or `undefined` when the error may be the backend's.
 *
 * @internal
 */
export function localErrorCode(err: unknown): string | undefined {
  return codeInChain(err, LOCAL_ERROR_CODES);
}
