/**
 * The loopback backends of the TCP benches, run as a child process so their
 * CPU is not the proxy's nor the load generator's:
 *
 * - `source`: reads a decimal byte count and a newline, sends that many bytes
 *   (honouring backpressure), then ends. The download of the throughput bench.
 * - `echo-close`: answers the first chunk with the same bytes and closes, as an
 *   HTTP/1.0 server would. The exchange of the connection-rate bench.
 * - `echo`: echoes every byte until the client ends. The idle connections of
 *   the memory and teardown benches.
 *
 * ```sh
 * node --import tsx bench/lib/backend-server.ts --serve source@127.0.0.1:0 --serve echo@127.0.0.1:0
 * # prints "listening source 127.0.0.1:PORT" per listener, then "ready";
 * # answers "conns" on stdin with "conns N"; exits on SIGTERM
 * ```
 *
 * @module
 */
import net, { type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

type Mode = 'source' | 'echo-close' | 'echo';
const modes: readonly Mode[] = ['source', 'echo-close', 'echo'];

// One payload for every download; its contents do not matter.
const CHUNK = Buffer.alloc(256 * 1024, 0x61);
const sockets = new Set<Socket>();

function onSocketClose(this: Socket): void {
  sockets.delete(this);
}

function ignore(): void {}

/** Sends `remaining` bytes from CHUNK, waiting for 'drain' when the kernel buffer is full. */
function pump(socket: Socket, remaining: number): void {
  while (remaining > 0) {
    const n = Math.min(remaining, CHUNK.length);
    remaining -= n;
    if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
      socket.once('drain', () => pump(socket, remaining));
      return;
    }
  }
  socket.end();
}

function serveSource(socket: Socket): void {
  let head = '';
  const onData = (d: Buffer): void => {
    head += d.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl === -1) return;
    socket.off('data', onData);
    pump(socket, Number(head.slice(0, nl)));
  };
  socket.on('data', onData);
  socket.on('end', ignore);
}

function serveEchoClose(socket: Socket): void {
  socket.once('data', (d: Buffer) => socket.end(d));
  socket.on('end', ignore);
}

function serveEcho(socket: Socket): void {
  socket.pipe(socket);
}

function listen(mode: Mode, host: string, port: number): Promise<net.Server> {
  const handler = mode === 'source' ? serveSource : mode === 'echo-close' ? serveEchoClose : serveEcho;
  const server = net.createServer({ allowHalfOpen: false, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', ignore);
    socket.on('close', onSocketClose);
    handler(socket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => resolve(server));
  });
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { serve: { type: 'string', multiple: true } }, strict: true });
  const servers: net.Server[] = [];
  for (const spec of values.serve ?? []) {
    const m = /^([a-z-]+)@(.+):(\d+)$/.exec(spec);
    if (!m || !modes.includes(m[1] as Mode)) throw new TypeError(`Expected \`--serve\` to be MODE@HOST:PORT with MODE one of ${modes.join(', ')}, got \`${spec}\``);
    const server = await listen(m[1] as Mode, m[2]!, Number(m[3]));
    servers.push(server);
    const { address, port } = server.address() as AddressInfo;
    process.stdout.write(`listening ${m[1]} ${address}:${port}\n`);
  }
  process.stdout.write('ready\n');
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'conns') process.stdout.write(`conns ${sockets.size}\n`);
  });
  const stop = (): void => {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`backend-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
