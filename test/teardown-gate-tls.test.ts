// Sliced teardown when a pair reads through 'data' events (a TLS upstream:
// TLS sockets cannot read into pooled buffers): past `teardown.syncMax`,
// markDown shuts the backend's shared gate instead of quiescing each pair,
// and a pair behind a shut gate must forward nothing in either direction
// from the moment the call returns until its slice closes it. teardown-slices.test.ts covers the same on the pooled-read path.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import tls, { type TLSSocket } from 'node:tls';
import { loadCerts } from '../examples/support/certs.js';
import { UpstreamPool, type PoolMember } from '../src/index.js';
import { connect, frontend, HOST, waitFor } from './helpers/net.js';

const certs = loadCerts();
const N = 120;
const SYNC_MAX = 8;

/** A TLS backend that greets each connection and counts what its clients send after that. */
async function tlsBackend(t: TestContext): Promise<{ port: number; sockets: Set<TLSSocket>; received: () => number }> {
  const sockets = new Set<TLSSocket>();
  let received = 0;
  const server = tls.createServer({ cert: certs.serverCert, key: certs.serverKey, allowHalfOpen: true }, (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    // The balancer closes a torn-down pair with a FIN: end ours too.
    socket.once('end', () => socket.end());
    socket.write('hello\n');
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as { port: number }).port, sockets, received: () => received };
}

test('markDown past syncMax with TLS upstreams: the shut gate forwards nothing either way until the slices close the pairs', { timeout: 120_000 }, async (t) => {
  const backend = await tlsBackend(t);
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: backend.port, id: 'b1' }],
    tls: { ca: certs.ca },
    teardown: { syncMax: SYNC_MAX, budgetMs: 2 },
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);

  const clients: Socket[] = [];
  for (let i = 0; i < N; i += 20) clients.push(...(await Promise.all(Array.from({ length: Math.min(20, N - i) }, () => connect(t, port)))));
  let received = 0;
  for (const socket of clients) socket.on('data', (chunk: Buffer) => (received += chunk.length));
  await waitFor(() => received === N * 'hello\n'.length && backend.sockets.size === N, { what: 'every greeting over TLS' });
  const sentBefore = backend.received();

  const members: PoolMember[] = [...pool.members('b1')];
  assert.equal(members.length, N);
  assert.equal(pool.markDown('b1'), N);
  // Up to the first await, this runs in the turn of the call.
  assert.equal([...pool.members('b1')].length, 0, 'b1 registry empty');
  assert.ok(members.every((m) => m.closed), 'every member reports closed');
  assert.equal(pool.stats().closing, N, 'past syncMax the sockets close on later turns (the gate path)');
  const receivedAtCall = received;
  // Both peers keep talking (half the clients also end): no byte may cross the balancer.
  for (const socket of backend.sockets) socket.write('late bytes from the backend\n');
  for (const [i, socket] of clients.entries()) {
    socket.write('late bytes from the client\n');
    if (i % 2 === 0) socket.end();
  }

  await waitFor(() => pool.stats().closing === 0, { what: 'the slices to close every pair' });
  await waitFor(() => clients.every((s) => s.destroyed), { what: 'every client to close' });
  await waitFor(() => backend.sockets.size === 0, { what: 'the backend to see every connection close' });
  assert.equal(received, receivedAtCall, 'no byte from the backend reached a client after markDown returned');
  assert.equal(backend.received(), sentBefore, 'no byte from a client reached the backend after markDown returned');
  assert.equal(pool.stats().teardowns['marked-down'], N, 'each member counted once');
});
