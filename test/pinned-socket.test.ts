import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { PinnedSocket, UpstreamPool, type ConnectionClosedInfo, type FailoverProxyError } from '../src/index.js';
import { echoServer, HOST, waitFor } from './helpers/net.js';

async function setup(t: TestContext): Promise<{ pool: UpstreamPool; open: () => Promise<{ pinned: PinnedSocket; socket: Socket; errors: string[] }> }> {
  const a = await echoServer(t);
  const b = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }], balancer: 'round-robin' });
  t.after(() => pool.destroy());
  return {
    pool,
    open: async () => {
      const { backend, socket } = await pool.connect();
      const errors: string[] = [];
      socket.on('error', (err) => errors.push((err as FailoverProxyError).code));
      const pinned = new PinnedSocket(socket, { backend });
      pool.register(pinned);
      return { pinned, socket, errors };
    },
  };
}

test('markDown destroys a registered socket with BACKEND_DOWN and reports it once, with the teardown reason', async (t) => {
  const { pool, open } = await setup(t);
  const { pinned, socket, errors } = await open();
  const id = pinned.backend!.id;
  socket.write('ping');
  await once(socket, 'data');
  const closed: ConnectionClosedInfo[] = [];
  pinned.on('closed', (info) => closed.push(info));
  const events: string[] = [];
  pool.on('connectionClosed', (s, info) => events.push(`${s.id === pinned.id}:${info.reason}`));

  assert.equal(pool.markDown(id, 'probe-failed'), 1);
  assert.ok(pinned.closed && socket.destroyed);
  assert.equal(closed.length, 1);
  assert.equal(closed[0]!.reason, 'probe-failed');
  assert.equal(closed[0]!.bytesFromClient, 4);
  assert.equal(closed[0]!.bytesFromUpstream, 4);
  assert.deepEqual(events, ['true:probe-failed']);
  assert.equal((socket.errored as FailoverProxyError).code, 'BACKEND_DOWN');
  await waitFor(() => errors.length > 0, { what: 'the socket error' });
  assert.deepEqual(errors, ['BACKEND_DOWN']);
  pinned.destroy('again');
  assert.equal(closed.length, 1, 'closed only once');
  assert.equal(pool.stats().teardowns['probe-failed'], 1);
});

test('pool close deadline destroys a socket with POOL_CLOSED', async (t) => {
  const { pool, open } = await setup(t);
  const { socket, errors } = await open();
  await pool.close({ timeout: 0 });
  assert.ok(socket.destroyed);
  await waitFor(() => errors.length > 0, { what: 'the socket error' });
  assert.deepEqual(errors, ['POOL_CLOSED']);
  assert.equal(pool.stats().teardowns['pool-closed'], 1);
});

test('register() refuses a socket to a backend that is down, and destroys it', async (t) => {
  const { pool } = await setup(t);
  const { backend, socket } = await pool.connect();
  socket.on('error', () => {});
  pool.markDown(backend.id);
  const pinned = new PinnedSocket(socket, { backend });
  assert.throws(() => pool.register(pinned), (err: FailoverProxyError) => err.code === 'BACKEND_DOWN');
  assert.ok(pinned.closed && socket.destroyed);
  assert.equal([...pool.sockets()].length, 0);
});

test('a socket the backend closes leaves the registry with reason upstream-closed; one its owner closes, client-closed', async (t) => {
  const { pool, open } = await setup(t);
  const first = await open();
  const second = await open();
  const reasons: string[] = [];
  pool.on('connectionClosed', (s, info) => reasons.push(`${s === first.pinned ? 'first' : 'second'}:${info.reason}`));
  // The echo server answers our FIN with its own: the backend closed too.
  first.socket.end();
  second.socket.destroy();
  await waitFor(() => reasons.length === 2, { what: 'both sockets to close' });
  assert.deepEqual(reasons.sort(), ['first:upstream-closed', 'second:client-closed']);
  assert.equal(pool.stats().active, 0);
});
