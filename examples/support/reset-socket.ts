/**
 * Closing a socket with an RST, as a host that lost its connection state
 * answers, without the two ways Node's `resetAndDestroy()` can go wrong.
 *
 * @module
 */
import type { Socket } from 'node:net';

/**
 * Resets `socket` where there is a connection to reset, and destroys it
 * plainly otherwise:
 * - still connecting: there is nothing to reset yet (and `resetAndDestroy()`
 *   would wait for `'connect'`);
 * - after `end()`, while its shutdown is still pending (a FIN forwarded in the
 *   same tick): libuv refuses the reset (EINVAL) and Node then never closes
 *   the handle, so the socket never emits `'close'` and stays open for the
 *   life of the process (it hung a fault proxy's `close()` once, after a
 *   reset during a half-close);
 * - not a TCP socket (TLS): Node cannot reset it from JavaScript.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting || (socket.writableEnded && !socket.writableFinished)) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}
