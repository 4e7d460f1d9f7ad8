/**
 * Fault: the upstream half-closes (FIN) while the client is still sending.
 * A FIN is not a failure: it is forwarded to the client, the client's bytes
 * keep flowing to the upstream intact, and the connection closes once, when
 * both sides are done. An upstream that closes outright while the client
 * still sends tears the connection down with an upstream reason.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type PinnedConnection } from '../../src/index.js';
import { ConnectionLedger, Prng } from '../helpers/faults.js';
import { closedOf, connect, frontend, HOST, listen, waitFor } from '../helpers/net.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Received {
  hash: string;
  bytes: number;
  ended: boolean;
}

test('upstream FIN is forwarded; the client keeps sending 4 MiB afterwards and every byte arrives intact', async (t) => {
  const received = new Map<number, Received>();
  const { port: upstream } = await listen(t, (socket) => {
    const hash = createHash('sha256');
    const entry: Received = { hash: '', bytes: 0, ended: false };
    received.set(socket.remotePort!, entry);
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      entry.bytes += d.length;
    });
    socket.once('end', () => {
      entry.hash = hash.digest('hex');
      entry.ended = true;
    });
    // Answer, then half-close at once: nothing more from this side.
    socket.end('bye\n');
  });
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);

  const random = new Prng(0xf1f1);
  const N = 5;
  const payloads = Array.from({ length: N }, () => random.bytes(4 * 1024 * 1024));
  await Promise.all(
    payloads.map(async (payload) => {
      const client: Socket = await connect(t, port);
      let reply = '';
      client.setEncoding('latin1').on('data', (d: string) => (reply += d));
      await once(client, 'end'); // the upstream's FIN, forwarded
      assert.equal(reply, 'bye\n');
      assert.equal(client.writable, true, 'the client may still send');
      // Backpressure honoured on the way: write in slices, waiting for drain.
      for (let off = 0; off < payload.length; off += 256 * 1024) {
        if (!client.write(payload.subarray(off, off + 256 * 1024))) await once(client, 'drain');
      }
      client.end();
      await once(client, 'close');
    }),
  );
  await waitFor(() => pool.stats().active === 0, { what: 'every connection closed' });
  // The proxy closed its ends; the backend reads the last FIN a moment later.
  await waitFor(() => received.size === N && [...received.values()].every((r) => r.ended), { what: 'every backend connection to see the FIN' });
  const got = [...received.values()];
  assert.deepEqual(got.map((r) => r.hash).sort(), payloads.map(sha).sort(), 'sha256 of what each backend connection received');
  const closed = ledger.closed();
  assert.equal(closed.length, N);
  t.diagnostic(`teardowns: ${JSON.stringify(pool.stats().teardowns)}`);
  // The upstream finished first; nothing failed.
  assert.ok(closed.every((e) => e.info?.reason === 'upstream-closed' && e.info.error === undefined), JSON.stringify(closed.map((e) => e.info?.reason)));
  assert.ok(closed.every((e) => e.info!.bytesFromClient === 4 * 1024 * 1024 && e.info!.bytesFromUpstream === 4));
  assert.deepEqual(ledger.problems(), []);
});

test('an upstream that closes outright while the client streams: torn down once with an upstream reason, the client is closed', async (t) => {
  // allowHalfOpen off: the backend answers its own FIN by closing, and
  // whatever the client sends afterwards meets a closed socket (RST).
  let accepted = 0;
  const { port: upstream } = await listen(
    t,
    (socket) => {
      accepted++;
      socket.once('data', () => socket.destroy());
    },
    { allowHalfOpen: false },
  );
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);

  const N = 8;
  await Promise.all(
    Array.from({ length: N }, async () => {
      const client = await connect(t, port);
      client.on('data', () => undefined);
      // Not events.once: an 'error' (the RST our unread bytes provoke) must not reject it.
      const closed = new Promise((resolve) => client.once('close', resolve));
      const chunk = Buffer.alloc(64 * 1024, 7);
      // Keep sending until the proxy closes us; bounded by the socket closing.
      const pump = (): void => {
        while (!client.destroyed && client.writable && client.write(chunk));
        if (!client.destroyed && client.writable) client.once('drain', pump);
      };
      pump();
      await closed;
    }),
  );
  await waitFor(() => pool.stats().active === 0);
  assert.equal(accepted, N);
  const closed = ledger.closed();
  assert.equal(closed.length, N);
  t.diagnostic(`teardowns: ${JSON.stringify(pool.stats().teardowns)}`);
  for (const e of closed) assert.ok(['upstream-error', 'upstream-closed'].includes(e.info!.reason), e.info!.reason);
  assert.deepEqual(ledger.problems(), []);
});

test('client FIN at once, upstream FIN later: both directions complete and the reason names the side that finished first', async (t) => {
  const { port: upstream } = await listen(t, (socket) => {
    let n = 0;
    socket.on('data', (d: Buffer) => (n += d.length));
    socket.once('end', () => {
      // The client is done; answer with what we got, then FIN.
      socket.end(`${n}\n`);
    });
  });
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const client = await connect(t, port);
  let reply = '';
  client.setEncoding('latin1').on('data', (d: string) => (reply += d));
  const opened = new Promise<PinnedConnection>((resolve) => pool.once('connectionOpened', (m) => resolve(m as PinnedConnection)));
  client.end('x'.repeat(1000));
  const conn = await opened;
  const info = await closedOf(conn);
  if (!client.readableEnded) await once(client, 'end');
  assert.equal(reply, '1000\n');
  assert.equal(info.reason, 'client-closed');
  assert.equal(info.error, undefined);
});
