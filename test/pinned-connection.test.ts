import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { PinnedConnection, type ConnectionClosedInfo } from '../src/index.js';
import { closedOf, connect, HOST, listen, settle, waitFor } from './helpers/net.js';

/** A proxy listener that pins every client to `upstreamPort` with a PinnedConnection. */
async function proxyTo(t: TestContext, upstreamPort: number, init: ConstructorParameters<typeof PinnedConnection>[2] = {}) {
  const conns: PinnedConnection[] = [];
  const { port } = await listen(t, (client) => {
    client.pause();
    const upstream = net.connect({ host: HOST, port: upstreamPort, allowHalfOpen: true });
    upstream.on('error', () => client.destroy());
    upstream.once('connect', () => conns.push(new PinnedConnection(client, upstream, init)));
  });
  return { port, conns };
}

/** Writes `data` in 64 KiB slices, honouring backpressure, then ends. */
async function writeAll(socket: Socket, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += 65536) {
    if (!socket.write(data.subarray(off, off + 65536))) await once(socket, 'drain');
  }
  socket.end();
}

function hashStream(socket: Socket): Promise<{ digest: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  return new Promise((resolve) => socket.once('end', () => resolve({ digest: hash.digest('hex'), bytes })));
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('50 MB of random bytes each way at once arrive intact (sha256), then the connection closes cleanly', async (t) => {
  const SIZE = 50 * 1024 * 1024;
  const up = randomBytes(SIZE);
  const down = randomBytes(SIZE);
  let serverGot: Promise<{ digest: string; bytes: number }> | undefined;
  const { port: upstreamPort } = await listen(t, (socket) => {
    serverGot = hashStream(socket);
    void writeAll(socket, down);
  });
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  const clientGot = hashStream(client);
  await writeAll(client, up);
  const [atClient, atServer] = await Promise.all([clientGot, waitFor(() => serverGot !== undefined).then(() => serverGot!)]);
  assert.equal(atServer.bytes, SIZE);
  assert.equal(atServer.digest, sha(up));
  assert.equal(atClient.bytes, SIZE);
  assert.equal(atClient.digest, sha(down));
  const conn = conns[0]!;
  const info = conn.closedInfo ?? (await closedOf(conn));
  assert.equal(info.bytesFromClient, SIZE);
  assert.equal(info.bytesFromUpstream, SIZE);
  assert.ok(['client-closed', 'upstream-closed'].includes(info.reason), info.reason);
  assert.equal(info.error, undefined);
});

test('client FIN is forwarded while the upstream keeps answering (half-close client -> upstream)', async (t) => {
  const { port: upstreamPort } = await listen(t, (socket) => {
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString()));
    socket.once('end', () => {
      // Only now, after the client's FIN arrived, answer and close our side.
      socket.end(`you said ${got}`);
    });
  });
  const { port } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  client.end('hello');
  let reply = '';
  client.on('data', (c: Buffer) => (reply += c.toString()));
  await once(client, 'end');
  assert.equal(reply, 'you said hello');
});

test('upstream FIN is forwarded while the client keeps sending (half-close upstream -> client)', async (t) => {
  let serverSide: Socket | undefined;
  const received: Buffer[] = [];
  const { port: upstreamPort } = await listen(t, (socket) => {
    serverSide = socket;
    socket.on('data', (c: Buffer) => received.push(c));
    socket.end('bye\n'); // the server is done talking but still listens
  });
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  client.resume();
  await once(client, 'end');
  assert.ok(!client.destroyed, 'client must stay open for writing after the upstream FIN');
  client.end('still here');
  await waitFor(() => Buffer.concat(received).toString() === 'still here', { what: 'bytes after upstream FIN' });
  await waitFor(() => conns[0]?.closed === true, { what: 'connection close' });
  assert.ok(serverSide);
});

test('a slow reader keeps the proxy\'s buffered bytes bounded (backpressure)', async (t) => {
  let serverWritten = 0;
  let stop = false;
  const { port: upstreamPort } = await listen(t, (socket) => {
    const chunk = Buffer.alloc(65536, 7);
    const pump = (): void => {
      // Bounded: at most 64 MiB, and only while the test wants it.
      while (!stop && serverWritten < 64 * 1024 * 1024) {
        serverWritten += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  client.pause(); // never read
  await waitFor(() => conns.length === 1);
  const conn = conns[0]!;
  // Wait until the flow has stalled: the proxy's read counter stops moving.
  let last = -1;
  await waitFor(
    () => {
      const now = conn.bytesFromUpstream;
      const stalled = now === last && now > 0;
      last = now;
      return stalled;
    },
    { interval: 200, what: 'the flow to stall' },
  );
  stop = true;
  const buffered = conn.client.writableLength + conn.upstream.readableLength;
  t.diagnostic(`server wrote ${serverWritten} B; proxy read ${conn.bytesFromUpstream} B; proxy holds ${buffered} B in user space`);
  assert.ok(buffered <= 1024 * 1024, `proxy buffers ${buffered} bytes`);
  assert.ok(conn.bytesFromUpstream < serverWritten, 'the upstream must have been paused by backpressure');
  conn.destroy();
});

test('destroy() is idempotent, emits closed once with the reason, and tears down both sockets', async (t) => {
  const { port: upstreamPort, sockets } = await listen(t);
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  await waitFor(() => conns.length === 1 && sockets.size === 1);
  const conn = conns[0]!;
  const events: ConnectionClosedInfo[] = [];
  conn.on('closed', (info) => events.push(info));
  conn.destroy('probe-failed');
  conn.destroy('again');
  assert.equal(events.length, 1);
  assert.equal(events[0]!.reason, 'probe-failed');
  assert.ok(conn.client.destroyed && conn.upstream.destroyed);
  client.resume();
  await once(client, 'end'); // the proxy's FIN
  const [serverSide] = sockets;
  serverSide!.resume();
  await waitFor(() => serverSide!.readableEnded || serverSide!.destroyed, { what: 'the upstream to see the FIN' });
});

test('destroy({ reset: true }) resets the client (ECONNRESET) so it notices at once', async (t) => {
  const { port: upstreamPort } = await listen(t);
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = net.connect({ host: HOST, port });
  t.after(() => client.destroy());
  await once(client, 'connect');
  await waitFor(() => conns.length === 1);
  const errored = once(client, 'error');
  conns[0]!.destroy('probe-failed', { reset: true });
  const [err] = (await errored) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
});

test('an upstream reset tears down both sides with reason upstream-error and no uncaught error', async (t) => {
  let serverSide: Socket | undefined;
  const { port: upstreamPort } = await listen(t, (s) => (serverSide = s));
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  await waitFor(() => conns.length === 1 && serverSide !== undefined);
  const closed = closedOf(conns[0]!);
  serverSide!.resetAndDestroy();
  const info = await closed;
  assert.equal(info.reason, 'upstream-error');
  assert.equal((info.error as NodeJS.ErrnoException).code, 'ECONNRESET');
  client.resume();
  await once(client, 'end');
});

test('a client reset tears down the upstream with reason client-error', async (t) => {
  let serverSide: Socket | undefined;
  const { port: upstreamPort } = await listen(t, (s) => (serverSide = s));
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  await waitFor(() => conns.length === 1 && serverSide !== undefined);
  const closed = closedOf(conns[0]!);
  client.resetAndDestroy();
  const info = await closed;
  assert.equal(info.reason, 'client-error');
  serverSide!.resume();
  await waitFor(() => serverSide!.readableEnded || serverSide!.destroyed, { what: 'the upstream to see the FIN' });
});

test('idle timeout tears the connection down with reason idle-timeout; traffic either way keeps it alive', async (t) => {
  let serverSide: Socket | undefined;
  const { port: upstreamPort } = await listen(t, (s) => (serverSide = s));
  const { port, conns } = await proxyTo(t, upstreamPort, { idleTimeout: 1500 });
  const client = await connect(t, port);
  client.resume();
  await waitFor(() => conns.length === 1 && serverSide !== undefined);
  const conn = conns[0]!;
  // Upstream-only traffic for longer than the idle timeout: must not count as
  // idle. Writes come 100 ms apart against a 1,500 ms timeout, so a loaded
  // machine would have to stall the loop for well over a second to break it.
  for (let i = 0; i < 20; i++) {
    serverSide!.write('x');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(conn.closed, false, 'one-way traffic must keep the connection alive');
  const info = await closedOf(conn);
  assert.equal(info.reason, 'idle-timeout');
});

test('wrapping an already closed client reports client-closed', async (t) => {
  const { port: upstreamPort } = await listen(t);
  const upstream = await connect(t, upstreamPort);
  const client = new net.Socket();
  client.destroy();
  const conn = new PinnedConnection(client, upstream);
  const info = await closedOf(conn);
  assert.equal(info.reason, 'client-closed');
  assert.ok(upstream.destroyed);
  await settle();
});

test('invalid options throw INVALID_ARGUMENT naming the option', async (t) => {
  const { port: upstreamPort } = await listen(t);
  const a = await connect(t, upstreamPort);
  const b = await connect(t, upstreamPort);
  assert.throws(() => new PinnedConnection(a, b, { idleTimeout: -1 }), { code: 'INVALID_ARGUMENT', message: /idleTimeout/ });
  assert.throws(() => new PinnedConnection(a, b, { noDelay: 'yes' as unknown as boolean }), { code: 'INVALID_ARGUMENT', message: /noDelay/ });
});

test('a client FIN read before the connection was built is still forwarded to the upstream', async (t) => {
  let upstreamSawEnd = false;
  const { port: upstreamPort } = await listen(t, (socket) => {
    socket.resume();
    socket.once('end', () => {
      upstreamSawEnd = true;
      socket.end('bye\n');
    });
  });
  let accepted: Socket | undefined;
  const { port } = await listen(t, (client) => (accepted = client));
  const client = await connect(t, port);
  client.end(); // FIN with no data
  await waitFor(() => accepted !== undefined);
  const pending = accepted!;
  pending.resume(); // read the FIN: 'end' is emitted before anyone forwards it
  await waitFor(() => pending.readableEnded, { what: 'the FIN to be read' });
  const upstream = await connect(t, upstreamPort);
  const conn = new PinnedConnection(pending, upstream);
  let reply = '';
  client.on('data', (c: Buffer) => (reply += c.toString()));
  await once(client, 'end');
  assert.ok(upstreamSawEnd, 'the upstream got the FIN');
  assert.equal(reply, 'bye\n');
  await waitFor(() => conn.closed);
});
