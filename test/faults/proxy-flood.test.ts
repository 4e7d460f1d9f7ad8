/**
 * Fault: a flood of clients beyond `maxConnections` on the proxy listener
 * while long-lived connections stream. Each flooding client that does not
 * fit is refused cleanly: closed by the pool without a byte, counted in
 * `pinFailures.MAX_CONNECTIONS`; the pool never holds more than the cap, and
 * the streams already open keep flowing with every byte echoed intact
 * (compared byte for byte and by SHA-256) during and after the flood.
 */
import assert from 'node:assert/strict';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool } from '../../src/index.js';
import { EchoStream } from '../helpers/echo-stream.js';
import { Prng } from '../helpers/faults.js';
import { HOST, connect, echoServer, frontend, waitFor } from '../helpers/net.js';

const CAP = 40;
const STREAMS = 20;
const FLOOD = Number(process.env['FLOOD'] ?? 1000);

test(`a flood of ${FLOOD} clients beyond maxConnections ${CAP}: refused cleanly and counted, the cap held, ${STREAMS} live streams keep flowing intact`, { timeout: 120_000 }, async (t) => {
  const backends = await Promise.all([0, 1, 2].map(() => echoServer(t)));
  const pool = new UpstreamPool({ backends: backends.map((b, i) => ({ id: `b${i}`, host: HOST, port: b.port })), maxConnections: CAP });
  t.after(() => pool.destroy());
  let peak = 0;
  pool.on('connectionOpened', () => (peak = Math.max(peak, pool.stats().active)));
  // A backlog for the whole flood, as a listener meant to take one would have:
  // with Node's default (511), a loaded machine that accepts slowly drops the
  // SYNs beyond it, and those clients retry on TCP's backoff (1, 2, 4, 8, 16,
  // 32 s), so the flood reached the pool over minutes instead of at once.
  const port = await frontend(t, pool, { backlog: 2 * FLOOD });

  const random = new Prng(0xf100d);
  const streams: EchoStream[] = [];
  for (let i = 0; i < STREAMS; i++) streams.push(new EchoStream(await connect(t, port), new Prng(random.int(1, 2 ** 31))));
  await waitFor(() => pool.stats().active === STREAMS, { what: 'the streams placed' });
  const pumper = setInterval(() => {
    for (const s of streams) s.pump();
  }, 5);
  t.after(() => clearInterval(pumper));
  await waitFor(() => streams.every((s) => s.received > 64 * 1024), { what: 'the streams flowing' });
  const beforeFlood = streams.map((s) => s.received);

  // The flood: every client at once; those that fit stay connected and silent.
  const flood: { socket: Socket; closed: boolean; bytes: number }[] = [];
  for (let i = 0; i < FLOOD; i++) {
    const socket = net.connect({ host: HOST, port });
    const c = { socket, closed: false, bytes: 0 };
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => (c.bytes += d.length));
    socket.on('close', () => (c.closed = true));
    flood.push(c);
  }
  t.after(() => {
    for (const c of flood) c.socket.destroy();
  });
  const fits = CAP - STREAMS;
  await waitFor(() => flood.filter((c) => c.closed).length >= FLOOD - fits && pool.stats().active === CAP, { timeout: 60_000, what: 'the flood refused' });
  const refused = flood.filter((c) => c.closed);
  assert.equal(refused.length, FLOOD - fits, 'exactly those beyond the cap are refused');
  assert.ok(refused.every((c) => c.bytes === 0), 'a refused client gets no byte');
  assert.equal(pool.stats().pinFailures['MAX_CONNECTIONS'], FLOOD - fits);
  assert.ok(peak <= CAP, `peak ${peak}`);

  // The streams went on: more bytes, all intact, none closed.
  await waitFor(() => streams.every((s, i) => s.received > beforeFlood[i]! + 64 * 1024), { timeout: 60_000, what: 'the streams still flowing after the flood' });
  clearInterval(pumper);
  await waitFor(() => streams.every((s) => s.received === s.sent), { what: 'every echo back' });
  for (const s of streams) {
    assert.equal(s.closed, false);
    assert.equal(s.mismatches, 0);
    assert.equal(s.gotHash.digest('hex'), s.sentHash.digest('hex'));
  }
  const total = streams.reduce((n, s) => n + s.received, 0);
  t.diagnostic(`${refused.length} refused (MAX_CONNECTIONS ${pool.stats().pinFailures['MAX_CONNECTIONS']}), peak ${peak} of ${CAP}; ${(total / 2 ** 20).toFixed(1)} MiB echoed intact on ${STREAMS} streams`);
});
