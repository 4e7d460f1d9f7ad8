/**
 * Fault: the upstream resets (RST) a connection in the middle of a stream.
 * The pinned connection is torn down once, leaves the registry, is counted
 * under an upstream reason, and its neighbours on the same backend keep
 * streaming.
 *
 * How the reset surfaces depends on what the proxy had not yet read: with its
 * receive queue empty the read fails with ECONNRESET (`upstream-error`); with
 * bytes still queued, libuv reports the hang-up as an EOF after the last
 * bytes, so the client gets a FIN and the connection closes when the client
 * does (`upstream-closed`, or `upstream-error` when the FIN forwarded back
 * hits the dead socket). Both are asserted for what they are.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type ConnectionClosedInfo, type PinnedConnection } from '../../src/index.js';
import { ConnectionLedger } from '../helpers/faults.js';
import { closedOf, connect, frontend, HOST, listen, waitFor } from '../helpers/net.js';

const upstreamReasons = new Set(['upstream-error', 'upstream-closed']);

function closedInfo(conn: PinnedConnection): Promise<ConnectionClosedInfo> {
  return conn.closedInfo ? Promise.resolve(conn.closedInfo) : closedOf(conn);
}

/** The backend's end of a pinned connection, matched by port. */
function serverSide(sockets: Set<Socket>, conn: PinnedConnection): Socket {
  const found = [...sockets].find((s) => s.remotePort === conn.upstream.localPort);
  assert.ok(found, `the backend side of connection ${conn.id}`);
  return found;
}

/** A client that, like any HTTP client, closes its side once the server's FIN arrives. */
async function politeClient(t: Parameters<typeof connect>[0], port: number): Promise<Socket> {
  const c = await connect(t, port);
  c.once('end', () => c.end());
  return c;
}

test('an RST between messages: reason upstream-error, cause ECONNRESET; the client is closed and neighbours carry on', async (t) => {
  const { port: upstream, sockets } = await listen(t, (socket) => socket.pipe(socket));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);

  const N = 6;
  const clients: Socket[] = [];
  for (let i = 0; i < N; i++) clients.push(await politeClient(t, port));
  await waitFor(() => pool.stats().active === N);

  // A round trip on every connection: bytes flowed both ways before the fault.
  const message = Buffer.alloc(64 * 1024, 0x5a);
  await Promise.all(
    clients.map(
      (c) =>
        new Promise<void>((resolve) => {
          let got = 0;
          const onData = (d: Buffer): void => {
            got += d.length;
            if (got === message.length) {
              c.off('data', onData);
              resolve();
            }
          };
          c.on('data', onData);
          c.write(message);
        }),
    ),
  );

  const victim = [...pool.connections()][0]!;
  const victimClient = clients.find((c) => c.localPort === victim.client.remotePort)!;
  const clientClosed = once(victimClient, 'close');
  serverSide(sockets, victim).resetAndDestroy();

  const info = await closedInfo(victim);
  assert.equal(info.reason, 'upstream-error');
  assert.equal((info.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET');
  assert.equal(info.bytesFromClient, message.length);
  assert.equal(info.bytesFromUpstream, message.length);
  await clientClosed;
  assert.equal(victim.client.destroyed && victim.upstream.destroyed, true, 'both sockets destroyed');

  // The neighbours still echo.
  const others = clients.filter((c) => c !== victimClient);
  await Promise.all(
    others.map(async (c) => {
      c.write('ping\n');
      const [d] = (await once(c, 'data')) as [Buffer];
      assert.equal(String(d), 'ping\n');
    }),
  );

  const stats = pool.stats();
  assert.equal(stats.active, N - 1);
  assert.deepEqual(stats.teardowns, { 'upstream-error': 1 });
  assert.equal(stats.backends[0]!.state, 'up', 'a reset is a connection fault, not a health verdict');
  assert.deepEqual(ledger.problems(), []);
});

test('an RST while the upstream streams to the client: the client sees its stream end, the connection closes once with an upstream reason', async (t) => {
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  const { port: upstream, sockets } = await listen(t, (socket) => {
    const pump = (): void => {
      while (!socket.destroyed && socket.write(chunk));
      if (!socket.destroyed) socket.once('drain', pump);
    };
    pump();
  });
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);

  const N = 4;
  const clients: Socket[] = [];
  const received: number[] = [];
  for (let i = 0; i < N; i++) {
    const c = await politeClient(t, port);
    received.push(0);
    c.on('data', (d: Buffer) => (received[i]! += d.length));
    clients.push(c);
  }
  await waitFor(() => pool.stats().active === N && received.every((n) => n > 256 * 1024), { what: 'every stream flowing' });

  const victim = [...pool.connections()][0]!;
  const victimIndex = clients.findIndex((c) => c.localPort === victim.client.remotePort);
  const clientClosed = once(clients[victimIndex]!, 'close');
  serverSide(sockets, victim).resetAndDestroy();

  const info = await closedInfo(victim);
  await clientClosed;
  t.diagnostic(`reset while streaming surfaced as ${info.reason}${info.error ? ` (${(info.error as NodeJS.ErrnoException).code})` : ''}`);
  assert.ok(upstreamReasons.has(info.reason), `reason ${info.reason}`);

  const before = received.slice();
  await waitFor(() => received.every((n, i) => i === victimIndex || n > before[i]! + 256 * 1024), { what: 'neighbours still streaming' });
  assert.equal(pool.stats().active, N - 1);
  assert.equal([...pool.connections()].includes(victim), false);
  assert.deepEqual(ledger.problems(), []);
});

test('RSTs on half of 40 connections with bytes in flight: each closed exactly once, registry and counters agree', async (t) => {
  const { port: upstream, sockets } = await listen(t, (socket) => socket.pipe(socket));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);
  const N = 40;
  const clients = await Promise.all(Array.from({ length: N }, () => politeClient(t, port)));
  await waitFor(() => pool.stats().active === N && sockets.size === N);
  for (const c of clients) {
    c.on('data', () => undefined);
    c.write(Buffer.alloc(64 * 1024, 1));
  }
  const victims = [...pool.connections()].slice(0, N / 2);
  for (const conn of victims) serverSide(sockets, conn).resetAndDestroy();
  await waitFor(() => pool.stats().active === N / 2, { what: 'half the connections torn down' });

  const stats = pool.stats();
  const upstreamSide = (stats.teardowns['upstream-error'] ?? 0) + (stats.teardowns['upstream-closed'] ?? 0);
  t.diagnostic(`teardowns: ${JSON.stringify(stats.teardowns)}`);
  assert.equal(upstreamSide, N / 2);
  assert.ok(victims.every((c) => c.closed && upstreamReasons.has(c.closedInfo!.reason)));
  assert.equal(stats.backends[0]!.active, N / 2);
  assert.deepEqual(
    new Set(pool.connections()),
    new Set(ledger.open().map((e) => e.conn)),
  );
  assert.deepEqual(ledger.problems(), []);
});
