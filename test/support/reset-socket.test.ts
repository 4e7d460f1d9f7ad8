import assert from 'node:assert/strict';
import { once } from 'node:events';
import type net from 'node:net';
import { test } from 'node:test';
import { resetSocket } from '../../examples/support/reset-socket.js';
import { connect, listen, waitFor } from '../helpers/net.js';

test('resetSocket right after end() (its shutdown still pending) still closes the socket: no handle is left open', async (t) => {
  const { port } = await listen(t);
  const socket = await connect(t, port);
  socket.on('error', () => {});
  socket.end();
  // Same tick: the shutdown is still pending. resetAndDestroy() here makes
  // libuv refuse the reset (EINVAL), and Node never closes the handle.
  assert.equal(socket.writableFinished, false);
  resetSocket(socket);
  let closed = false;
  socket.once('close', () => (closed = true));
  await waitFor(() => closed, { timeout: 5000, what: "the socket's 'close'" });
});

test('resetSocket sends an RST to a connected peer', async (t) => {
  const accepted: net.Socket[] = [];
  const { port } = await listen(t, (s) => accepted.push(s));
  const socket = await connect(t, port);
  await waitFor(() => accepted.length === 1, { what: 'the accept' });
  const peer = accepted[0]!;
  const error = once(peer, 'error');
  resetSocket(socket);
  const [err] = (await error) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
});
