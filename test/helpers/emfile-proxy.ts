/**
 * A pool and its front listener, run as a child process by
 * test/faults/fd-exhaustion.test.ts, whose file-descriptor limit the parent
 * lowers (`prlimit --pid`) once this is up:
 *
 * ```sh
 * node --import tsx test/helpers/emfile-proxy.ts <backend port>
 * # prints "ready <front port> <open fds>"; answers "stats" over IPC
 * ```
 *
 * Accept errors (EMFILE) reach the server's `error` listener, as in any
 * server that must not die of them; dial errors reach the pool, which fails
 * the pin with a code. Everything is counted and reported to the parent.
 */
import { readdirSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { UpstreamPool, type FailoverProxyError } from '../../src/index.js';
import { dialBackend } from '../../src/dial.js';

const backendPort = Number(process.argv[2]);
// `delay:<ms>` over IPC: dials start that much later, so a burst of accepts
// can take every descriptor first and the dials are the ones to hit EMFILE.
let dialDelay = 0;
const pool = new UpstreamPool({
  backends: [{ host: '127.0.0.1', port: backendPort, id: 'b1' }],
  connectTimeout: 5000,
  dial: async (backend, options) => {
    if (dialDelay > 0) await new Promise((resolve) => setTimeout(resolve, dialDelay));
    return dialBackend(backend, options);
  },
});
const serverErrors: Record<string, number> = {};
const pinFailureCauses: Record<string, number> = {};
pool.on('pinFailed', (err: FailoverProxyError) => {
  const cause = (err.cause as { code?: string } | undefined)?.code ?? 'none';
  const key = `${err.code}:${cause}`;
  pinFailureCauses[key] = (pinFailureCauses[key] ?? 0) + 1;
});
const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => pool.accept(socket));
server.on('error', (err: NodeJS.ErrnoException) => {
  const code = err.code ?? err.message;
  serverErrors[code] = (serverErrors[code] ?? 0) + 1;
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`ready ${(server.address() as AddressInfo).port} ${readdirSync('/proc/self/fd').length}\n`);
});

process.on('message', (message) => {
  if (typeof message === 'string' && message.startsWith('delay:')) {
    dialDelay = Number(message.slice('delay:'.length));
    process.send?.('ok');
    return;
  }
  if (message !== 'stats') return;
  let fds = -1;
  try {
    fds = readdirSync('/proc/self/fd').length;
  } catch {
    // Listing /proc/self/fd itself needs a descriptor.
  }
  const stats = pool.stats();
  process.send?.({ active: stats.active, total: stats.total, pinFailures: stats.pinFailures, teardowns: stats.teardowns, connectFailures: stats.backends[0]?.connectFailures, serverErrors, pinFailureCauses, fds });
});
process.on('disconnect', () => process.exit(0));
