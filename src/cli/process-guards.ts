/**
 * What the balancer process does about its own surroundings: output whose
 * reader went away (EPIPE) and Node's inspector, which SIGUSR1 opens by
 * default. Both are process-wide, so only the program (never the library or
 * a test importing the balancer) installs them.
 *
 * @module
 */
import { createServer, type Server } from 'node:net';
import type { Writable } from 'node:stream';

/**
 * A line writer for `stream` that survives the stream's reader going away:
 * after the first error (EPIPE when whatever read stdout exited, `| head`, a
 * log shipper restarting), lines are dropped instead of crashing the process
 * with an unhandled `'error'`. Proxying, the status endpoint and signals go
 * on; only the log is lost.
 */
export function resilientWriter(stream: Writable): (text: string) => void {
  let broken = false;
  stream.on('error', () => {
    broken = true;
  });
  return (text) => {
    if (broken || stream.destroyed || !stream.writable) return;
    stream.write(text);
  };
}

/** Whether Node was told not to start the inspector on SIGUSR1 (Node 22.14 and later). */
export function sigusr1Disabled(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env['NODE_OPTIONS'] ?? ''): boolean {
  return execArgv.includes('--disable-sigusr1') || /(?:^|\s)--disable-sigusr1(?:\s|$)/.test(nodeOptions);
}

/** How often a guard that could not take the inspector's port tries again. */
const GUARD_RETRY_MS = 5000;

/** The inspector guard: holds the port, or keeps trying. */
export interface InspectorGuard {
  /** Whether this process holds the inspector's address now. */
  readonly holding: boolean;
  close(): void;
}

/**
 * Keeps Node's inspector from ever listening after a SIGUSR1 on a Node
 * without `--disable-sigusr1` (Node 20 runs its SIGUSR1 handler on its own
 * thread; a JS listener does not replace it): this process listens on the
 * inspector's address (`127.0.0.1:process.debugPort`, 9229 by default)
 * itself and closes every connection at once, so the inspector's bind fails
 * ("address already in use" on stderr) and nothing runs. When another
 * process holds the port, the inspector cannot bind either; the guard tries
 * again every {@link GUARD_RETRY_MS} ms in case it is released. Unref'd: it
 * never keeps the process alive.
 */
export function guardInspector(): InspectorGuard {
  let server: Server | undefined;
  let holding = false;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  const attempt = (): void => {
    retry = undefined;
    if (closed) return;
    const s = createServer((socket) => socket.destroy());
    s.on('error', () => {
      s.close();
      if (closed) return;
      retry = setTimeout(attempt, GUARD_RETRY_MS);
      retry.unref();
    });
    // exclusive: a cluster worker binds for itself instead of sharing the primary's handle.
    s.listen({ port: process.debugPort, host: '127.0.0.1', exclusive: true, backlog: 1 }, () => {
      if (closed) {
        s.close();
        return;
      }
      server = s;
      holding = true;
    });
    s.unref();
  };
  attempt();
  return {
    get holding() {
      return holding;
    },
    close() {
      closed = true;
      if (retry !== undefined) clearTimeout(retry);
      server?.close();
      holding = false;
    },
  };
}
