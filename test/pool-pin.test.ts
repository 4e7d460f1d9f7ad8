import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type FailoverProxyError } from '../src/index.js';
import { closedPort, connect, frontend, HOST, listen, namedServer, readLine, unresponsiveBackend, waitFor } from './helpers/net.js';

test('bytes the client sends before the upstream is connected (a ClientHello) all reach the upstream', async (t) => {
  const hello = Buffer.alloc(32 * 1024, 0x16); // larger than one TCP segment
  hello[0] = 0x16;
  const received: Buffer[] = [];
  let ended = false;
  const { port: upstreamPort } = await listen(t, (socket) => {
    socket.on('data', (c: Buffer) => received.push(c));
    socket.once('end', () => (ended = true));
  });
  // A slow dialler: the client's bytes arrive well before the upstream is ready.
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: upstreamPort }],
    dial: async (backend, { signal }) => {
      await new Promise((r) => setTimeout(r, 150));
      signal.throwIfAborted();
      const s = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
      await once(s, 'connect');
      return s;
    },
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const client = net.connect({ host: HOST, port, allowHalfOpen: true });
  t.after(() => client.destroy());
  client.end(hello); // written immediately on connect, then FIN
  await waitFor(() => ended, { what: 'the upstream to see the FIN' });
  assert.deepEqual(Buffer.concat(received), hello);
});

test('a refused dial is retried on the next backend and the client is served', async (t) => {
  const refused = await closedPort();
  const { port: goodPort } = await namedServer(t, 'good');
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: refused, id: 'refused' },
      { host: HOST, port: goodPort, id: 'good' },
    ],
    balancer: 'round-robin',
  });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('connectFailed', (b, err) => failures.push(`${b.id}:${err.code}`));
  const port = await frontend(t, pool);
  for (let i = 0; i < 4; i++) {
    const client = await connect(t, port);
    assert.equal(await readLine(client), 'good');
  }
  assert.ok(failures.length >= 1);
  assert.ok(failures.every((f) => f === 'refused:CONNECT_FAILED'), failures.join());
  assert.ok(pool.stats().backends.find((b) => b.id === 'refused')!.connectFailures >= 1);
});

test('a backend that never answers the handshake fails with CONNECT_TIMEOUT, then the next backend serves', async (t) => {
  const silent = await unresponsiveBackend(t);
  const { port: goodPort } = await namedServer(t, 'good');
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: silent, id: 'silent' },
      { host: HOST, port: goodPort, id: 'good' },
    ],
    balancer: (candidates) => candidates.find((c) => c.backend.id === 'silent') ?? candidates[0],
    connectTimeout: 300,
  });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('connectFailed', (b, err) => failures.push(`${b.id}:${err.code}`));
  const port = await frontend(t, pool);
  const client = await connect(t, port);
  assert.equal(await readLine(client), 'good');
  assert.deepEqual(failures, ['silent:CONNECT_TIMEOUT']);
});

test('with retries exhausted the caller gets the last connect error, with its code, and the client is closed', async (t) => {
  const silent = await unresponsiveBackend(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: silent }], connectTimeout: 200, retries: 0 });
  t.after(() => pool.destroy());
  const results: string[] = [];
  const { port } = await listen(
    t,
    (socket) => {
      pool.pin(socket).then(
        () => results.push('pinned'),
        (err: FailoverProxyError) => results.push(err.code),
      );
    },
    { pauseOnConnect: true },
  );
  const c = await connect(t, port);
  c.resume();
  await waitFor(() => results.length === 1);
  assert.deepEqual(results, ['CONNECT_TIMEOUT']);
  if (!c.readableEnded) await once(c, 'end'); // the client was closed
});

test('while nothing is up clients wait in the queue and are served as soon as a backend comes up', async (t) => {
  const { port: upstreamPort } = await namedServer(t, 'b1');
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstreamPort, id: 'b1' }], initialState: 'probe', queue: { max: 10, timeout: 20_000 } });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const clients = await Promise.all([1, 2, 3].map(() => connect(t, port)));
  await waitFor(() => pool.stats().waiting === 3, { what: 'three waiting clients' });
  pool.markUp('b1', 'probe-passed');
  for (const c of clients) assert.equal(await readLine(c), 'b1');
  assert.equal(pool.stats().waiting, 0);
});

test('the queue is bounded: past max, and past timeout, clients are closed with NO_HEALTHY_BACKEND', async (t) => {
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 9, id: 'x' }], initialState: 'probe', queue: { max: 2, timeout: 400 } });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(`${err.code}:${(err as { reason?: string }).reason}`));
  const port = await frontend(t, pool);
  const clients = [];
  for (let i = 0; i < 3; i++) {
    clients.push(await connect(t, port));
    await waitFor(() => pool.stats().waiting + failures.length === i + 1);
  }
  assert.deepEqual(failures, ['NO_HEALTHY_BACKEND:queue-full']);
  await waitFor(() => failures.length === 3, { what: 'queue timeouts' });
  assert.deepEqual(failures.slice(1), ['NO_HEALTHY_BACKEND:queue-timeout', 'NO_HEALTHY_BACKEND:queue-timeout']);
  for (const c of clients) {
    c.resume();
    if (!c.readableEnded) await once(c, 'end');
  }
  assert.deepEqual(pool.stats().pinFailures, { NO_HEALTHY_BACKEND: 3 });
});

test('queue.max 0 refuses at once when nothing is up', async (t) => {
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 9 }], initialState: 'probe', queue: { max: 0 } });
  t.after(() => pool.destroy());
  const { port } = await listen(t, (socket) => {
    pool.pin(socket).catch((err: FailoverProxyError) => codes.push(`${err.code}:${(err as { reason?: string }).reason}`));
  });
  const codes: string[] = [];
  await connect(t, port);
  await waitFor(() => codes.length === 1);
  assert.deepEqual(codes, ['NO_HEALTHY_BACKEND:queue-disabled']);
});

test('a client that leaves while its dial is in flight cancels the dial (CLIENT_CLOSED), nothing leaks', async (t) => {
  const silent = await unresponsiveBackend(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: silent }], connectTimeout: 60_000 });
  t.after(() => pool.destroy());
  const codes: string[] = [];
  pool.on('pinFailed', (err) => codes.push(err.code));
  const port = await frontend(t, pool);
  const client = await connect(t, port);
  await waitFor(() => pool.stats().backends[0]!.dialling === 1, { what: 'the dial to start' });
  client.resetAndDestroy();
  await waitFor(() => codes.length === 1, { what: 'the pin to fail' });
  assert.deepEqual(codes, ['CLIENT_CLOSED']);
  assert.equal(pool.stats().backends[0]!.dialling, 0);
  assert.equal(pool.stats().backends[0]!.connectFailures, 0, 'a cancelled dial is not a backend failure');
});

test('global maxConnections refuses the excess with MAX_CONNECTIONS; per-backend caps skip a full backend', async (t) => {
  const { port: a } = await namedServer(t, 'a');
  const { port: b } = await namedServer(t, 'b');
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: a, id: 'a', maxConnections: 1 },
      { host: HOST, port: b, id: 'b' },
    ],
    maxConnections: 3,
  });
  t.after(() => pool.destroy());
  const codes: string[] = [];
  pool.on('pinFailed', (err) => codes.push(err.code));
  const port = await frontend(t, pool);
  const names: string[] = [];
  for (let i = 0; i < 3; i++) names.push(await readLine(await connect(t, port)));
  assert.deepEqual(names.sort(), ['a', 'b', 'b']);
  const extra = await connect(t, port);
  extra.resume();
  await once(extra, 'end');
  assert.deepEqual(codes, ['MAX_CONNECTIONS']);
});
