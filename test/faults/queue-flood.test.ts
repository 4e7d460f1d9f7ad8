/**
 * Fault: a flood of clients while every backend is down, each pushing bytes
 * at the proxy. The waiting room is bounded (`queue.max`): the excess is
 * refused at once with NO_HEALTHY_BACKEND (queue-full), the waiting count
 * never exceeds the bound, and what the proxy buffers per waiting client is
 * bounded by its socket's high-water mark (TCP backpressure holds the rest in
 * the client), so memory cannot grow with the flood.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type FailoverProxyError } from '../../src/index.js';
import { Prng } from '../helpers/faults.js';
import { HOST, listen, waitFor } from '../helpers/net.js';

test('2,000 clients pushing 256 KiB each while everything is down: queue bounded at 50, buffering bounded per client, the queued ones served intact later', async (t) => {
  const received = new Map<string, string>();
  const { port: up } = await listen(t, (socket) => {
    const hash = createHash('sha256');
    socket.on('data', (d: Buffer) => hash.update(d));
    socket.once('end', () => {
      received.set(String(socket.remotePort), hash.digest('hex'));
      socket.end();
    });
  });
  const MAX = 50;
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: up, id: 'b1' }], initialState: 'probe', queue: { max: MAX, timeout: 120_000 } });
  t.after(() => pool.destroy());
  let peakWaiting = 0;
  const refusals: string[] = [];
  pool.on('pinFailed', (err: FailoverProxyError) => {
    peakWaiting = Math.max(peakWaiting, pool.stats().waiting);
    refusals.push(`${err.code}:${(err as { reason?: string }).reason}`);
  });
  const { port, sockets: accepted } = await listen(t, (s) => pool.accept(s), { pauseOnConnect: true });

  const random = new Prng(0xf100d);
  const payload = random.bytes(256 * 1024);
  const digest = createHash('sha256').update(payload).digest('hex');
  const N = 2000;
  const clients: Socket[] = [];
  // In waves of 200 so the test's own client sockets stay few at a time.
  for (let wave = 0; wave < N / 200; wave++) {
    const batch = Array.from({ length: 200 }, () => {
      const c = net.connect({ host: HOST, port, allowHalfOpen: true });
      c.on('error', () => undefined);
      c.on('data', () => undefined);
      c.once('connect', () => c.end(payload));
      return c;
    });
    clients.push(...batch);
    await waitFor(() => refusals.length + pool.stats().waiting >= (wave + 1) * 200, { what: `wave ${wave} placed or refused` });
    peakWaiting = Math.max(peakWaiting, pool.stats().waiting);
    // Refused clients are gone; keep only the waiting ones.
    for (const c of batch) if (c.destroyed || c.readableEnded) c.destroy();
  }
  assert.ok(peakWaiting <= MAX, `peak waiting ${peakWaiting}`);
  assert.equal(pool.stats().waiting, MAX);
  assert.equal(refusals.length, N - MAX);
  assert.deepEqual(new Set(refusals), new Set(['NO_HEALTHY_BACKEND:queue-full']));
  // What the proxy holds for each waiting client is bounded by its high-water mark plus one read.
  const buffered = [...accepted].filter((s) => !s.destroyed).map((s) => s.readableLength);
  const maxBuffered = Math.max(...buffered);
  const total = buffered.reduce((a, b) => a + b, 0);
  t.diagnostic(`waiting ${buffered.length}; proxy-side buffer per waiting client at most ${maxBuffered} B of 256 KiB sent, ${(total / 1024 / 1024).toFixed(1)} MiB in all`);
  assert.equal(buffered.length, MAX);
  assert.ok(maxBuffered <= 128 * 1024, `a waiting client's bytes are held back by TCP, not buffered whole (${maxBuffered} B)`);

  // A backend comes up: every waiting client is served and its 256 KiB arrives intact.
  pool.markUp('b1', 'probe-passed');
  await waitFor(() => received.size === MAX, { timeout: 60_000, what: 'the queued clients to be served' });
  assert.deepEqual(new Set(received.values()), new Set([digest]));
  assert.equal(pool.stats().pinFailures['NO_HEALTHY_BACKEND'], N - MAX);
  for (const c of clients) c.destroy();
});
