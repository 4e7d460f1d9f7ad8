/**
 * The pooled read path (src/read-into.ts) relies on how Node stores a socket's
 * `onread` state. Every read checks that it landed in the buffer its
 * connection set for it; when one does not, that socket goes back to stream
 * reads and `'data'` events, and no later socket is switched. The fault is
 * forced here by giving the handle a read buffer the connection never chose
 * (the consistent way: the handle reads into it and Node hands it to the
 * callback), which is what a change in Node's internals would look like.
 *
 * One file of its own: after the fallback the whole process reads through
 * `'data'`, which the other pooled-reads tests must not inherit.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { PinnedConnection } from '../src/index.js';
import { readBufferPool } from '../src/read-buffer-pool.js';
import { canReadInto } from '../src/read-into.js';
import { closedOf, connect, HOST, listen, waitFor } from './helpers/net.js';

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

/** Makes the next reads of `socket` land in `foreign`, a buffer its connection did not set. */
function readIntoForeignBuffer(socket: Socket, foreign: Buffer): void {
  const owner = socket as unknown as Record<symbol, unknown>;
  const kBuffer = Object.getOwnPropertySymbols(owner).find((s) => s.description === 'kBuffer');
  assert.ok(kBuffer !== undefined, 'the socket reads through onread');
  owner[kBuffer] = foreign;
  (socket as unknown as { _handle: { useUserBuffer(b: Buffer): void } })._handle.useUserBuffer(foreign);
}

/** Sends `size` random bytes through `client` and returns the digest of what comes back (an echo upstream). */
async function roundTrip(client: Socket, size: number): Promise<{ sent: string; received: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const onData = (c: Buffer): void => {
    hash.update(c);
    bytes += c.length;
  };
  client.on('data', onData);
  const sent = createHash('sha256');
  for (let off = 0; off < size; ) {
    const chunk = randomBytes(Math.min(size - off, 50_000));
    sent.update(chunk);
    off += chunk.length;
    if (!client.write(chunk)) await once(client, 'drain');
  }
  await waitFor(() => bytes >= size, { what: 'the echo' });
  client.off('data', onData);
  return { sent: sent.digest('hex'), received: hash.digest('hex'), bytes };
}

test('a read that lands outside the buffers set for it: that socket falls back to data events, bytes intact, later sockets too', async (t) => {
  const pool = readBufferPool();
  const { port: upstreamPort } = await listen(t, (s) => s.pipe(s));
  const { port, conns } = await proxyTo(t, upstreamPort);
  const client = await connect(t, port);
  await waitFor(() => conns.length === 1);
  const conn = conns[0]!;
  assert.equal(conn.client.listenerCount('data'), 0, 'pooled to begin with');
  assert.equal(canReadInto(client), true, 'this Node reads into pooled buffers');

  const before = await roundTrip(client, 256 * 1024);
  assert.equal(before.received, before.sent);

  const foreign = Buffer.alloc(pool.bufferSize);
  readIntoForeignBuffer(conn.client, foreign);
  const after = await roundTrip(client, 4 * 1024 * 1024);
  assert.equal(after.bytes, 4 * 1024 * 1024);
  assert.equal(after.received, after.sent, 'every byte after the fallback, in order');
  assert.equal(conn.client.listenerCount('data'), 1, 'the client side now reads through data events');
  assert.equal(conn.upstream.listenerCount('data'), 0, 'the upstream side, whose reads landed where set, stays pooled');
  assert.equal(conn.closed, false, 'the connection lives on');

  // No later socket is switched: this Node is no longer trusted to read into pooled buffers.
  const second = await connect(t, port);
  await waitFor(() => conns.length === 2);
  assert.equal(canReadInto(second), false);
  assert.equal(conns[1]!.client.listenerCount('data'), 1);
  assert.equal(conns[1]!.upstream.listenerCount('data'), 1);
  const third = await roundTrip(second, 1024 * 1024);
  assert.equal(third.received, third.sent);

  client.end();
  second.end();
  await Promise.all([closedOf(conn), closedOf(conns[1]!)]);
  assert.equal(pool.stats().lent, 0, 'no pooled buffer left lent');
});
