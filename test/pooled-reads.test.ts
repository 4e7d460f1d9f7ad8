/**
 * The pooled data path of PinnedConnection: plain TCP sockets read into the
 * process's shared read buffers (src/read-buffer-pool.ts) instead of a new
 * buffer per read. These tests pin down what that must never break: bytes
 * intact when many connections share the landing buffer while some writes are
 * pending, a stalled small write resuming its source, no buffer left lent or
 * held by an idle or closed connection, and TLS sockets on the 'data' path.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { test, type TestContext } from 'node:test';
import { PinnedConnection } from '../src/index.js';
import { readBufferPool } from '../src/read-buffer-pool.js';
import { canReadInto } from '../src/read-into.js';
import { closedOf, connect, HOST, listen, waitFor } from './helpers/net.js';
import { Prng } from './helpers/faults.js';

/** A proxy listener that pins every client to `upstreamPort`, with the server's `pauseOnConnect` as a balancer uses it. */
async function proxyTo(t: TestContext, upstreamPort: number) {
  const conns: PinnedConnection[] = [];
  const { port } = await listen(
    t,
    (client) => {
      const upstream = net.connect({ host: HOST, port: upstreamPort, allowHalfOpen: true });
      upstream.on('error', () => client.destroy());
      upstream.once('connect', () => conns.push(new PinnedConnection(client, upstream)));
    },
    { pauseOnConnect: true },
  );
  return { port, conns };
}

const fixture = (name: string): Buffer => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));

/** Collects everything `socket` reads until its FIN. */
function collect(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return once(socket, 'end').then(() => Buffer.concat(chunks));
}

test('plain TCP sockets read into pooled buffers (no data listener); a TLS socket does not', async (t) => {
  const { port: upstreamPort } = await listen(t, (s) => s.pipe(s));
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  await waitFor(() => conns.length === 1);
  const conn = conns[0]!;
  assert.equal(conn.client.listenerCount('data'), 0, 'the client is read through onread, not data events');
  assert.equal(conn.upstream.listenerCount('data'), 0);
  client.write('ping');
  const [echo] = (await once(client, 'data')) as [Buffer];
  assert.equal(echo.toString(), 'ping');

  const tlsServer = tls.createServer({ cert: fixture('server.crt'), key: fixture('server.key') }, (s) => s.pipe(s));
  tlsServer.listen(0, HOST);
  await once(tlsServer, 'listening');
  const secure = tls.connect({ host: HOST, port: (tlsServer.address() as net.AddressInfo).port, rejectUnauthorized: false });
  t.after(() => {
    secure.destroy();
    return new Promise<void>((resolve) => tlsServer.close(() => resolve()));
  });
  await once(secure, 'secureConnect');
  assert.equal(canReadInto(secure), false, 'a TLS socket reads decrypted bytes: it keeps data events');
});

test('16 connections at once, random chunk sizes, readers stalling long enough to fill the kernel buffers: every byte intact', async (t) => {
  // Stalled readers make the proxy's writes to them pend while other
  // connections keep reading into the shared landing buffer: bytes written
  // from it, or from a buffer reused too early, would arrive corrupted.
  const COUNT = 16;
  const prng = new Prng(7);
  const { port: upstreamPort } = await listen(t, (socket) => socket.pipe(socket));
  const { port } = await proxyTo(t, upstreamPort);
  const runs = Array.from({ length: COUNT }, async (_, i) => {
    const size = 6 * 1024 * 1024 + prng.int(0, 4 * 1024 * 1024);
    const client = await connect(t, port);
    const stalls = i % 2 === 0;
    const received = new Promise<{ bytes: number; digest: string }>((resolve) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let chunks = 0;
      client.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        if (stalls && ++chunks % 16 === 0) {
          client.pause();
          setTimeout(() => client.resume(), 30);
        }
      });
      client.once('end', () => resolve({ bytes, digest: hash.digest('hex') }));
    });
    const sent = createHash('sha256');
    for (let off = 0; off < size; ) {
      const chunk = randomBytes(Math.min(size - off, 1 + prng.int(0, 70_000)));
      sent.update(chunk);
      off += chunk.length;
      if (!client.write(chunk)) await once(client, 'drain');
    }
    client.end();
    const got = await received;
    assert.equal(got.bytes, size, `connection ${i}: length`);
    assert.equal(got.digest, sent.digest('hex'), `connection ${i}: content`);
  });
  await Promise.all(runs);
});

test('a reader that stalls and catches up gets every byte, bulk and small messages alike (no lost wake-up)', async (t) => {
  // First a bulk burst the stalled reader cannot take (the proxy's write to it
  // stays pending and its upstream is paused), then 100-byte messages one per
  // turn of the loop, which the proxy reads and writes one by one.
  const BULK = 24 * 1024 * 1024;
  const MESSAGES = 2_000;
  let serverSide: Socket | undefined;
  const { port: upstreamPort } = await listen(t, (socket) => {
    serverSide = socket;
    const chunk = Buffer.alloc(65536, 0xaa);
    let sent = 0;
    let i = 0;
    const small = (): void => {
      if (i === MESSAGES) {
        socket.end();
        return;
      }
      const ok = socket.write(Buffer.alloc(100, i % 251));
      i++;
      if (ok) setImmediate(small);
      else socket.once('drain', small);
    };
    const bulk = (): void => {
      while (sent < BULK) {
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', bulk);
          return;
        }
      }
      small();
    };
    bulk();
  });
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  client.pause();
  await waitFor(() => conns.length === 1 && serverSide !== undefined);
  const conn = conns[0]!;
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
  assert.ok(conn.bytesFromUpstream < BULK, 'stalled by backpressure before the end of the bulk burst');
  const got = collect(client);
  client.resume();
  const all = await got;
  assert.equal(all.length, BULK + MESSAGES * 100);
  assert.equal(all.subarray(0, BULK).every((b) => b === 0xaa), true, 'bulk bytes');
  for (let i = 0; i < MESSAGES; i++) assert.equal(all[BULK + i * 100 + 99], i % 251, `message ${i}`);
  client.end();
  await closedOf(conn);
});

test('no pooled buffer stays lent after bulk transfers end, and an idle connection holds none', async (t) => {
  const pool = readBufferPool();
  const { port: upstreamPort } = await listen(t, (socket) => {
    socket.once('data', (d: Buffer) => {
      // "N\n": send N bytes, then keep the connection open and quiet.
      const n = Number(d.toString().trim());
      socket.write(Buffer.alloc(n, 1));
    });
  });
  const { port, conns } = await proxyTo(t, upstreamPort);
  const clients: Socket[] = [];
  for (let i = 0; i < 8; i++) {
    const client = await connect(t, port);
    clients.push(client);
    const size = (i + 1) * 1024 * 1024 + 13;
    let got = 0;
    const done = new Promise<void>((resolve) => {
      client.on('data', (c: Buffer) => {
        got += c.length;
        if (got === size) resolve();
      });
    });
    client.write(`${size}\n`);
    await done;
  }
  await waitFor(() => conns.length === 8);
  // Each transfer ended with a read shorter than a buffer (its last 13 bytes
  // at most): every socket is back on the landing buffer, idle.
  assert.equal(pool.stats().lent, 0, 'idle connections hold no lent buffer');
  for (const c of conns) c.destroy();
  assert.equal(pool.stats().lent, 0);
  assert.ok(pool.stats().free <= 32, 'the free list is bounded');
});

test('a buffer-sized transfer that ends on a full read: the lent buffer is returned when the connection closes', async (t) => {
  const pool = readBufferPool();
  const lentBefore = pool.stats().lent;
  let serverSide: Socket | undefined;
  const { port: upstreamPort } = await listen(t, (socket) => (serverSide = socket));
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  await waitFor(() => conns.length === 1 && serverSide !== undefined);
  let got = 0;
  client.on('data', (c: Buffer) => (got += c.length));
  // Exactly one buffer's worth, in one write: often one full read.
  serverSide!.write(Buffer.alloc(pool.bufferSize, 2));
  await waitFor(() => got === pool.bufferSize, { what: 'the bytes to arrive' });
  assert.ok(pool.stats().lent <= lentBefore + 1);
  conns[0]!.destroy();
  assert.equal(pool.stats().lent, lentBefore, 'closing gives the lend back');
});
