/**
 * Loopback building blocks for tests: servers on port 0, clients, and waiting
 * for a condition without asserting on wall-clock speed.
 */
import { spawn } from 'node:child_process';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import type { ConnectionClosedInfo } from '../../src/index.js';

export const HOST = '127.0.0.1';

/** Listens on 127.0.0.1:0 and closes the server (and every socket it accepted) after the test. */
export async function listen(
  t: TestContext,
  onConnection: (socket: Socket) => void = () => {},
  { backlog, ...options }: net.ServerOpts & { readonly backlog?: number } = {},
): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true, ...options }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  server.listen({ port: 0, host: HOST, ...(backlog !== undefined && { backlog }) });
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** A server that echoes every byte and answers FIN with FIN. */
export function echoServer(t: TestContext): ReturnType<typeof listen> {
  return listen(t, (socket) => socket.pipe(socket));
}

/** A server that greets each connection with its own name, then echoes. Tells which backend a client reached. */
export function namedServer(t: TestContext, name: string): ReturnType<typeof listen> {
  return listen(t, (socket) => {
    socket.write(`${name}\n`);
    socket.pipe(socket);
  });
}

/** A port with nothing listening on it (connections are refused). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, HOST);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Connects a client and registers its destruction after the test. */
export async function connect(t: TestContext, port: number, host = HOST): Promise<Socket> {
  const socket = net.connect({ host, port, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  return socket;
}

/** Reads from `socket` until a newline; resolves with the line. */
export function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('latin1');
      const i = buf.indexOf('\n');
      if (i >= 0) {
        socket.off('data', onData);
        socket.off('close', onClose);
        // Put back what came after the line.
        const rest = buf.slice(i + 1);
        if (rest.length > 0) socket.unshift(Buffer.from(rest, 'latin1'));
        resolve(buf.slice(0, i));
      }
    };
    const onClose = (): void => reject(new Error(`socket closed before a line was read (got ${JSON.stringify(buf)})`));
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/**
 * Polls `condition` until it holds. The bound is a safety net against a hung
 * test, never an assertion about speed: it is deliberately generous.
 */
export async function waitFor(condition: () => boolean, { timeout = 20_000, interval = 5, what = 'condition' } = {}): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeout) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Handles and timers the process holds right now, for before/after leak
 * checks. One-shot requests in flight (an fs call of the test runner or of a
 * log, a handle's close on its way, a pending setImmediate) come and go on a
 * loaded machine whatever the code under test does; they are not leaks, so
 * they are not counted.
 */
export function activeResources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r !== 'TTYWrap' && r !== 'Immediate' && r !== 'CloseReq' && !r.startsWith('FSReq'))
    .sort();
}

/** Lets pending closes finish (libuv closes handles on the next loop turn). */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/**
 * Node turns a backlog of 0 into its default of 511, so the child asks for 1;
 * Linux queues backlog + 1 handshaken connections, hence two fillers.
 */
const UNRESPONSIVE_BACKLOG = 1;
const UNRESPONSIVE_FILLERS = UNRESPONSIVE_BACKLOG + 1;

/**
 * The child behind `unresponsiveBackend`: it listens with a backlog of 1,
 * prints its port, then blocks its only thread in a synchronous read of stdin,
 * so its event loop never runs and never accepts. It exits when stdin closes,
 * so it cannot outlive a test runner that died before its `t.after`.
 */
const UNRESPONSIVE_CHILD = `
const fs = require('node:fs');
const server = require('node:net').createServer();
server.listen({ host: ${JSON.stringify(HOST)}, port: 0, backlog: ${UNRESPONSIVE_BACKLOG} }, () => {
  fs.writeSync(1, server.address().port + '\\n');
  const buf = Buffer.alloc(64);
  while (fs.readSync(0, buf) > 0);
  process.exit(0);
});`;

/**
 * A backend that never completes a handshake: a listener (in a child node
 * process whose thread is blocked) that never accepts, its accept queue filled
 * by a few first connections. Further SYNs are dropped by the kernel, so dials
 * hang until their timeout: a stand-in for a host that vanished.
 */
export async function unresponsiveBackend(t: TestContext): Promise<number> {
  const child = spawn(process.execPath, ['-e', UNRESPONSIVE_CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => {
    child.stdin.end();
    child.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`unresponsive backend exited early (${signal ?? code})`)));
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  for (let i = 0; i < UNRESPONSIVE_FILLERS; i++) {
    const filler = net.connect({ host: HOST, port });
    filler.on('error', () => {});
    t.after(() => {
      filler.destroy();
    });
    await once(filler, 'connect');
  }
  return port;
}

/** A front listener that hands every client to `pool.accept`, paused so early bytes stay queued. */
export async function frontend(t: TestContext, pool: { accept(socket: Socket): void }, options: { readonly backlog?: number } = {}): Promise<number> {
  const { port } = await listen(t, (socket) => pool.accept(socket), { pauseOnConnect: true, ...options });
  return port;
}

/** The next `closed` event of a connection (eventemitter3 emitters do not fit `events.once`'s typings). */
export function closedOf(conn: { once(event: 'closed', fn: (info: ConnectionClosedInfo) => void): unknown }): Promise<ConnectionClosedInfo> {
  return new Promise((resolve) => conn.once('closed', resolve));
}

/** Socket and timer handles only: the test runner's own pipes are not ours to count. */
export function ourHandles(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((name) => /TCP|TLS|Timeout/.test(name))
    .sort();
}

/**
 * The handles once they match `expected`, or after a bounded number of loop
 * turns: libuv releases a closed handle a turn or two after its `close` event,
 * and earlier tests' servers may still be on their way out.
 */
export async function handlesSettledTo(expected: readonly string[]): Promise<string[]> {
  let handles = ourHandles();
  for (let turn = 0; turn < 20 && handles.join() !== expected.join(); turn++) {
    await new Promise((resolve) => setImmediate(resolve));
    handles = ourHandles();
  }
  return handles;
}
