/**
 * TLS at both ends: the proxy terminates the clients' TLS with its own
 * certificate and re-originates TLS to the backends, verifying them against
 * a CA and authenticating itself with a client certificate (mutual TLS, as
 * a Kubernetes component would present to an apiserver).
 *
 * - front: `tls.createServer(...)`, each decrypted socket handed to
 *   `pool.accept(socket)`;
 * - upstream: the pool's `tls` option (`ca`, `cert`, `key`) and each
 *   backend's `servername`; verification stays on;
 * - a `HealthProbe` with an `https` check of `/readyz`, with the same
 *   client certificate.
 *
 * The scenario: a watch through the proxy; its apiserver reports not ready
 * (`/readyz` 500); the probe marks it down, the watch is torn down and the
 * client re-watches on the other apiserver, TLS at both ends throughout.
 *
 * ```sh
 * npx tsx examples/tls-terminating-proxy.ts               # runs the scenario, then keeps serving (Ctrl-C to stop)
 * npx tsx examples/tls-terminating-proxy.ts --self-test   # runs it and exits (0 when it went as described)
 * ```
 *
 * The certificates are the test fixtures (test/fixtures): never use them anywhere else.
 * See docs/tls-and-proxy-protocol.md and docs/examples.md.
 *
 * @module
 */
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { HealthProbe, UpstreamPool } from '../src/index.js';
import { ApiserverBackend } from './support/apiserver-backend.js';
import { loadCerts } from './support/certs.js';
import { WatchClient } from './support/watch-client.js';

const selfTest = process.argv.includes('--self-test');
const t0 = Date.now();
function say(line: string): void {
  process.stdout.write(`+${((Date.now() - t0) / 1000).toFixed(2).padStart(5)}s  ${line}\n`);
}

async function until(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<void> {
  const certs = loadCerts();

  // Two apiservers that require a client certificate signed by the CA.
  const backends: ApiserverBackend[] = [];
  for (const name of ['b1', 'b2']) {
    backends.push(
      await ApiserverBackend.start({
        name,
        tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, requestCert: true },
        watchIntervalMs: 100,
      }),
    );
  }

  // Upstream TLS: verify the apiservers against the CA (under the name
  // `apiserver.test`, sent as SNI), and present the client certificate.
  const upstreamTls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
  const pool = new UpstreamPool({
    backends: backends.map((b) => ({ ...b.address, id: b.name, servername: 'apiserver.test' })),
    tls: upstreamTls,
  });
  const probe = new HealthProbe({
    check: { type: 'https', path: '/readyz', servername: 'apiserver.test', ...upstreamTls },
    interval: 250,
    timeout: 200,
    fall: 2,
    rise: 2,
  });
  probe.attach(pool);
  pool.on('backendStateChanged', (b, c) => say(`pool: ${b.id} ${c.from} -> ${c.to} (${c.reason})`));
  // Ordinary ends (either side closing, our own shutdown) are not news.
  const ordinary = new Set(['client-closed', 'upstream-closed', 'pool-destroyed']);
  pool.on('connectionClosed', (conn, info) => {
    if (!ordinary.has(info.reason)) say(`pool: connection ${conn.id} on ${conn.backend?.id ?? '?'} torn down: ${info.reason}`);
  });
  pool.on('pinFailed', (err) => say(`pool: a client could not be placed: ${err.code}`));

  // Front TLS: the proxy's own certificate. Clients verify it; the proxy
  // sees plaintext and re-encrypts it for the backend.
  const sockets = new Set<Socket>();
  const front = tls.createServer({ cert: certs.serverCert, key: certs.serverKey, allowHalfOpen: true }, (socket: TLSSocket) => {
    pool.accept(socket);
  });
  front.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  front.on('tlsClientError', (err) => say(`front: TLS handshake failed: ${err.message}`));
  front.listen(selfTest ? 0 : Number(process.env.PORT ?? 8443), '127.0.0.1');
  await once(front, 'listening');
  const { port } = front.address() as AddressInfo;
  say(`proxy on https://127.0.0.1:${port} (TLS terminated) -> ${backends.map((b) => `${b.name}=${b.url}`).join(' ')} (TLS re-originated, mTLS)`);

  const failures: string[] = [];
  const watch = new WatchClient({ host: '127.0.0.1', port, backoffMs: 50, id: 'watch' });
  try {
    // One request: the client verified the proxy; the proxy verified the backend.
    const ready = await new Promise<{ status: number; backend: string }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/readyz', ca: certs.ca, agent: false }, (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, backend: String(res.headers['x-backend']) });
        })
        .once('error', reject);
    });
    say(`GET /readyz through the proxy: ${ready.status} from ${ready.backend}`);
    if (ready.status !== 200) failures.push(`GET /readyz answered ${ready.status}`);

    await until('the watch', () => watch.connected && watch.events >= 2);
    const first = watch.backend!;
    const [conn] = [...pool.connections(first)];
    const upstream = conn?.upstream as TLSSocket | undefined;
    say(`watch: streaming from ${first}; upstream TLS ${upstream?.getProtocol() ?? '?'}, backend certificate verified: ${String(upstream?.authorized)}`);
    if (upstream?.authorized !== true) failures.push('the upstream TLS connection is not verified');

    say(`${first}: /readyz now answers 500 (not ready)`);
    backends.find((b) => b.name === first)!.setReady(false);
    await until('the watch on the other apiserver', () => watch.connected && watch.backend !== undefined && watch.backend !== first);
    const events = watch.events;
    await until('events on the new watch', () => watch.events >= events + 2);
    say(`watch: re-established on ${watch.backend}`);
    if ((pool.stats().teardowns['probe-failed'] ?? 0) < 1) failures.push('the watch was not torn down by the probe');
  } catch (err) {
    failures.push((err as Error).message);
  }

  if (!selfTest && failures.length === 0) {
    say(`still serving on https://127.0.0.1:${port}; Ctrl-C to stop`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }

  await watch.stop();
  await probe.stop();
  await pool.destroy();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => front.close(() => resolve()));
  for (const b of backends) await b.close();
  if (failures.length > 0) {
    say(`FAILED: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    say('done');
  }
}

// A scenario that hangs is a failure too.
setTimeout(() => {
  say('FAILED: did not finish within 20 s');
  process.exit(1);
}, 20_000).unref();

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
