/**
 * Fault: every backend down, clients keep arriving, then one backend comes
 * back. Clients wait in the queue; when the probe brings the backend up
 * every one of them is served, bytes sent while waiting included, and none
 * is dropped before its queue timeout (on a fake clock: not one millisecond
 * early), while those that did wait the whole timeout are refused with
 * NO_HEALTHY_BACKEND (queue-timeout).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { HealthProbe, UpstreamPool } from '../../src/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { Prng } from '../helpers/faults.js';
import { connect, frontend, HOST, listen, waitFor } from '../helpers/net.js';

/**
 * A backend speaking two protocols on one port, as an apiserver serves both
 * /readyz and client traffic: `GET /readyz` gets 503 until `ready`, anything
 * else is hashed and the digest sent back at the client's FIN.
 */
async function dualBackend(t: Parameters<typeof listen>[0]): Promise<{ port: number; setReady: (r: boolean) => void; probes: () => number }> {
  let ready = false;
  let probes = 0;
  const { port } = await listen(t, (socket) => {
    const hash = createHash('sha256');
    let first = true;
    socket.on('data', (d: Buffer) => {
      if (first && d.subarray(0, 12).toString('latin1') === 'GET /readyz ') {
        probes++;
        socket.end(ready ? 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok' : 'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      first = false;
      hash.update(d);
    });
    socket.once('end', () => {
      if (!first) socket.end(hash.digest('hex'));
    });
  });
  return { port, setReady: (r) => (ready = r), probes: () => probes };
}

test('40 clients queued while the only backend is not ready: the probe brings it up and every one is served intact', async (t) => {
  const backend = await dualBackend(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: backend.port, id: 'b1' }], initialState: 'probe', queue: { max: 100, timeout: 60_000 } });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ check: { type: 'http', path: '/readyz' }, interval: 100, timeout: 100, rise: 2, fall: 2 });
  probe.attach(pool);
  t.after(() => probe.stop());
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(err.code));
  const port = await frontend(t, pool);

  const random = new Prng(0xa11d);
  const N = 40;
  const payloads = Array.from({ length: N }, () => random.bytes(random.int(1, 64 * 1024)));
  const replies: Promise<string>[] = [];
  for (const payload of payloads) {
    const c = await connect(t, port);
    let text = '';
    c.setEncoding('latin1').on('data', (d: string) => (text += d));
    replies.push(new Promise((resolve) => c.once('end', () => resolve(text))));
    // Bytes sent while waiting, and the FIN: both must survive the wait.
    c.end(payload);
  }
  await waitFor(() => pool.stats().waiting === N, { what: 'every client waiting' });
  await waitFor(() => backend.probes() >= 3, { what: 'a few failing probes' });
  assert.equal(pool.status('b1')?.state, 'down');

  backend.setReady(true);
  const digests = await Promise.all(replies);
  assert.deepEqual(
    digests,
    payloads.map((p) => createHash('sha256').update(p).digest('hex')),
  );
  assert.deepEqual(failures, [], 'nobody was dropped');
  assert.equal(pool.stats().waiting, 0);
  assert.equal(pool.stats().total, N);
  assert.equal(pool.status('b1')?.reason, 'probe-passed');
});

test('on a fake clock: a client is refused exactly at its queue timeout, never before; later arrivals are served when a backend comes up', async (t) => {
  const { port: up } = await listen(t, (s) => s.end('served\n'));
  const clock = new FakeClock();
  const TIMEOUT = 1000;
  const pool = new UpstreamPool({ clock, backends: [{ host: HOST, port: up, id: 'b1' }], initialState: 'probe', queue: { max: 100, timeout: TIMEOUT } });
  t.after(() => pool.destroy());
  const failures: { code: string; reason: string | undefined; at: number }[] = [];
  pool.on('pinFailed', (err) => failures.push({ code: err.code, reason: (err as { reason?: string }).reason, at: clock.now() }));
  const port = await frontend(t, pool);
  const start = clock.now();

  const wave = async (n: number): Promise<Promise<string>[]> => {
    const before = pool.stats().waiting;
    const out: Promise<string>[] = [];
    for (let i = 0; i < n; i++) {
      const c: Socket = await connect(t, port);
      let text = '';
      c.setEncoding('latin1').on('data', (d: string) => (text += d));
      out.push(new Promise((resolve) => c.once('end', () => resolve(text))));
    }
    await waitFor(() => pool.stats().waiting === before + n, { what: `${before + n} waiting` });
    return out;
  };
  const first = await wave(10); // queued at t = 0
  clock.advance(700);
  const second = await wave(10); // queued at t = 700
  clock.advance(TIMEOUT - 700 - 1); // t = 999: nobody is due yet
  await new Promise((r) => setImmediate(r));
  assert.equal(failures.length, 0, 'nobody dropped before the timeout');
  assert.equal(pool.stats().waiting, 20);
  clock.advance(1); // t = 1000: the first wave's deadline
  await waitFor(() => failures.length === 10, { what: 'the first wave refused' });
  assert.ok(failures.every((f) => f.code === 'NO_HEALTHY_BACKEND' && f.reason === 'queue-timeout' && f.at - start === TIMEOUT));
  assert.deepEqual(await Promise.all(first), Array(10).fill(''), 'the first wave is closed without data');
  assert.equal(pool.stats().waiting, 10);

  clock.advance(100); // t = 1100, the second wave has 600 ms left
  pool.markUp('b1', 'probe-passed');
  assert.deepEqual(await Promise.all(second), Array(10).fill('served\n'));
  assert.equal(failures.length, 10);
  assert.equal(pool.stats().waiting, 0);
});
