/**
 * Fault: clients that half-close (FIN) at once, before or right after the
 * upstream is dialled, without sending a byte. A FIN is not an abort: the
 * dial goes on, the FIN reaches the upstream, and the upstream's answer still
 * reaches the client; the connection closes once, with reason
 * `client-closed`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { UpstreamPool } from '../../src/index.js';
import { ConnectionLedger } from '../helpers/faults.js';
import { frontend, HOST, listen, waitFor } from '../helpers/net.js';

test('50 clients FIN immediately while their dials are slow: each upstream sees the FIN, answers, and the answer arrives', async (t) => {
  let finsSeen = 0;
  const { port: up } = await listen(t, (socket) => {
    let bytes = 0;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.once('end', () => {
      finsSeen++;
      socket.end(`got ${bytes} bytes\n`);
    });
  });
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: up, id: 'b1' }],
    // A slow dialler: the FIN is in the client socket long before the upstream exists.
    dial: async (backend, { signal }) => {
      await new Promise((r) => setTimeout(r, 50));
      signal.throwIfAborted();
      const s = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
      await once(s, 'connect');
      return s;
    },
  });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(err.code));
  const port = await frontend(t, pool);

  const N = 50;
  const replies = Array.from<string | undefined>({ length: N });
  const clients: net.Socket[] = [];
  for (let i = 0; i < N; i++) {
    const c = net.connect({ host: HOST, port, allowHalfOpen: true });
    clients.push(c);
    t.after(() => c.destroy());
    let text = '';
    c.setEncoding('latin1').on('data', (d: string) => (text += d));
    c.once('connect', () => c.end());
    c.once('end', () => (replies[i] = text));
    c.once('error', (err: NodeJS.ErrnoException) => (replies[i] = `error ${err.code}`));
  }
  // Bounded, and on failure says which clients got nothing and what their connections look like.
  await waitFor(() => replies.every((r) => r !== undefined), { what: 'every answer' }).catch((err: Error) => {
    const missing = replies.flatMap((r, i) => (r === undefined ? [clients[i]!.localPort] : []));
    const open = ledger.open().map((e) => {
      const client = e.conn.client;
      return `#${e.conn.id} client(${client.remotePort}) ended=${client.readableEnded} upstream writableEnded=${e.conn.upstream.writableEnded} readableEnded=${e.conn.upstream.readableEnded}`;
    });
    throw new Error(`${err.message}: no answer for client ports ${missing.join(',')}; fins seen ${finsSeen}; stats ${JSON.stringify(pool.stats())}; open: ${open.join('; ')}`);
  });
  assert.deepEqual(replies, Array(N).fill('got 0 bytes\n'));
  assert.deepEqual(failures, []);
  await waitFor(() => pool.stats().active === 0 && finsSeen === N);
  const closed = ledger.closed();
  assert.equal(closed.length, N);
  assert.ok(closed.every((e) => e.info?.reason === 'client-closed' && e.info.error === undefined), JSON.stringify(pool.stats().teardowns));
  assert.deepEqual(ledger.problems(), []);
});

test('a client that FINs and vanishes before its dial completes is held half-open (TCP cannot tell) until idleTimeout', async (t) => {
  const { port: up, sockets } = await listen(t, (socket) => socket.on('data', () => undefined));
  let release: (() => void) | undefined;
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: up, id: 'b1' }],
    connection: { idleTimeout: 400 },
    dial: async (backend) => {
      await new Promise<void>((r) => (release = r));
      const s = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
      await once(s, 'connect');
      return s;
    },
  });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const codes: string[] = [];
  pool.on('pinFailed', (err) => codes.push(err.code));
  const port = await frontend(t, pool);
  const c = net.connect({ host: HOST, port, allowHalfOpen: true });
  c.on('error', () => undefined);
  await once(c, 'connect');
  // FIN, then gone: to the proxy this is exactly a half-close until it writes.
  c.end();
  c.destroy();
  await waitFor(() => release !== undefined);
  release!();
  await waitFor(() => ledger.entries.size === 1, { what: 'the connection to be pinned: a FIN is not an abort' });
  await waitFor(() => [...sockets].some((s) => s.readableEnded), { what: 'the upstream to see the FIN' });
  // The upstream stays silent, so only the idle timeout can reap the half-open pair.
  await waitFor(() => ledger.closed().length === 1, { what: 'the idle timeout' });
  assert.equal(ledger.closed()[0]!.info!.reason, 'idle-timeout');
  assert.deepEqual(codes, []);
  assert.equal(pool.stats().active, 0);
  assert.deepEqual(ledger.problems(), []);
});
